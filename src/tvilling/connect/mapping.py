"""Declarative payload mappings: turn a device's own JSON into canonical envelopes.

A mapping is configuration, never code: a topic pattern with placeholders, a small
JSON-path subset to pick fields, and optional unit conversion. It is validated when it
is loaded, with errors naming the mapping and the field.

>>> m = PayloadMapping.from_dict({
...     "name": "line sensors",
...     "topic": "plant/{line}/{machine}/sensors",
...     "twin": "{machine}",
...     "ts": "$.time", "ts_format": "epoch_s",
...     "values": {"vibration": "$.vib.rms",
...                "temperature": {"path": "$.t", "unit": "degreeFahrenheit", "to_unit": "degreeCelsius"}},
...     "id": "$.seq"})
>>> m.subscription
'plant/+/+/sensors'
>>> [env] = m.translate("plant/L1/M7/sensors", {"time": 1767225600, "vib": {"rms": 2.5}, "t": 212.0, "seq": 9})
>>> env.twin, env.ts.isoformat(), env.values, env.id
('M7', '2026-01-01T00:00:00+00:00', {'vibration': 2.5, 'temperature': 100.0}, '9')

Topic patterns: a whole level ``{name}`` matches one level (subscribed as ``+``), a last
level ``{name...}`` matches the rest (``#``), and ``+``/``#`` match without capturing.
Paths: ``$`` is the payload, ``.name`` a member, ``[0]`` a list element (``[-1]`` the
last), for example ``$.a.b[0].c``. A payload that is a JSON list is read as one record per
element. ``ts_format`` is ``auto`` (default: number = epoch milliseconds, string = ISO
8601), ``epoch_s``, ``epoch_ms``, ``epoch_us`` or ``iso``; with no ``ts`` the time the
message was received is used. A value with ``unit`` and ``to_unit`` is converted with
:func:`tvilling.models.units.convert`; with only ``unit`` it travels as ``{"value": v,
"unit": u}``, and the ingest pipeline converts it to the unit of the twin's model.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tvilling.core.envelope import QUALITIES, Envelope, parse_ts
from tvilling.core.errors import Invalid, TvillingError
from tvilling.core.ids import MAX_TWIN_ID
from tvilling.models.units import UNITS, convert

TS_FORMATS = ("auto", "epoch_s", "epoch_ms", "epoch_us", "iso")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{(" + _NAME + r")(\.\.\.)?\}")
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(-?\d+)\]")
_MAPPING_KEYS = frozenset({"name", "topic", "twin", "ts", "ts_format", "values", "id", "quality", "source"})
_VALUE_KEYS = frozenset({"path", "unit", "to_unit", "optional"})


class _Missing(Exception):
    """A path did not resolve in a payload (internal; becomes ``Invalid``)."""


# ------------------------------------------------------------------------------ topics


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """An MQTT topic filter whose levels may capture named variables.

    >>> p = TopicPattern.parse("plant/{line}/{rest...}")
    >>> p.subscription, p.match("plant/L1/a/b"), p.match("other/L1/a")
    ('plant/+/#', {'line': 'L1', 'rest': 'a/b'}, None)
    """

    pattern: str
    levels: tuple[str | None, ...]  # literal level, or None for a wildcard level
    names: tuple[str | None, ...]  # captured name for each wildcard level
    rest: str | None  # trailing multi-level wildcard: its name ('' when unnamed); None when absent

    @classmethod
    def parse(cls, pattern: str) -> TopicPattern:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("must be a non-empty topic pattern")
        if pattern.startswith("$"):
            raise ValueError("must not start with '$' (system or shared-subscription topics)")
        parts = pattern.split("/")
        levels: list[str | None] = []
        names: list[str | None] = []
        rest: str | None = None
        seen: set[str] = set()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            found = _PLACEHOLDER.fullmatch(part)
            if found or part in ("+", "#"):
                name = found.group(1) if found else None
                multi = part == "#" or bool(found and found.group(2))
                if name is not None:
                    if name in seen:
                        raise ValueError(f"placeholder {{{name}}} appears twice")
                    seen.add(name)
                if multi:
                    if not last:
                        raise ValueError(f"'{part}' must be the last level")
                    rest = name or ""
                else:
                    levels.append(None)
                    names.append(name)
                continue
            if any(c in part for c in "{}+#"):
                raise ValueError(f"level {part!r}: a placeholder must be a whole level, like {{name}}")
            levels.append(part)
            names.append(None)
        return cls(pattern=pattern, levels=tuple(levels), names=tuple(names), rest=rest)

    @property
    def variables(self) -> frozenset[str]:
        out = {n for n in self.names if n}
        if self.rest:
            out.add(self.rest)
        return frozenset(out)

    @property
    def subscription(self) -> str:
        """The MQTT topic filter to subscribe to."""
        parts = ["+" if level is None else level for level in self.levels]
        if self.rest is not None:
            parts.append("#")
        return "/".join(parts)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured variables if ``topic`` matches, else ``None``."""
        parts = topic.split("/")
        n = len(self.levels)
        if len(parts) < n or (self.rest is None and len(parts) != n):
            return None
        found: dict[str, str] = {}
        for part, level, name in zip(parts, self.levels, self.names, strict=False):
            if level is None:
                if name:
                    found[name] = part
            elif part != level:
                return None
        if self.rest is not None:
            tail = parts[n:]
            if self.rest:
                found[self.rest] = "/".join(tail)
        return found


# ------------------------------------------------------------------------------ paths


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A small JSON-path subset: ``$``, ``.member`` and ``[index]`` steps.

    >>> JsonPath.parse("$.vib.axes[1]").get({"vib": {"axes": [0.1, 0.2]}})
    0.2
    """

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        if not isinstance(text, str) or not text.startswith("$"):
            raise ValueError(f"path {text!r} must start with '$', like $.a.b[0]")
        steps: list[str | int] = []
        pos = 1
        while pos < len(text):
            step = _PATH_STEP.match(text, pos)
            if step is None:
                raise ValueError(f"path {text!r}: cannot read {text[pos:]!r} (use .name and [index] steps)")
            steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
            pos = step.end()
        return cls(text=text, steps=tuple(steps))

    def get(self, doc: Any) -> Any:
        """The value at this path; raises ``_Missing`` if a step does not exist."""
        here = doc
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(here, Mapping) or step not in here:
                    raise _Missing(self.text)
                here = here[step]
            else:
                if not isinstance(here, list) or not -len(here) <= step < len(here):
                    raise _Missing(self.text)
                here = here[step]
        return here


# ------------------------------------------------------------------------------ mappings


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """Where one property's value is in the payload, and its unit."""

    name: str
    path: JsonPath
    unit: str | None = None
    to_unit: str | None = None
    optional: bool = False

    def read(self, doc: Any) -> Any:
        value = self.path.get(doc)
        if self.unit is None:
            return value
        if self.to_unit is None:
            # the pipeline converts a value that names its unit to the twin model's unit
            if isinstance(value, int | float) and not isinstance(value, bool):
                return {"value": value, "unit": self.unit}
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{self.path.text} must be a number to convert {self.unit} to {self.to_unit}, "
                          f"got {type(value).__name__}", field=self.name, rule="type")
        return convert(float(value), self.unit, self.to_unit)


def _fail(mapping: str, field: str, message: str) -> Invalid:
    return Invalid(f"mapping {mapping!r}: {field}: {message}", mapping=mapping, field=field, rule="mapping")


def _template_vars(template: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"\{(" + _NAME + r")\}", template)}


def _fill(template: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\{(" + _NAME + r")\}", lambda m: variables[m.group(1)], template)


@dataclass(frozen=True, slots=True)
class PayloadMapping:
    """One declarative mapping from a topic pattern and JSON payload to envelopes."""

    name: str
    topic: TopicPattern
    twin: str  # template over topic variables, e.g. "{machine}"
    twin_path: JsonPath | None
    values: tuple[ValueSpec, ...]
    ts: JsonPath | None = None
    ts_format: str = "auto"
    id: JsonPath | None = None
    quality: JsonPath | None = None
    source: str | None = None  # template over topic variables

    @property
    def subscription(self) -> str:
        return self.topic.subscription

    @property
    def units(self) -> dict[str, str]:
        """The unit each produced value is in (``to_unit`` if converted, else ``unit``)."""
        return {v.name: (v.to_unit or v.unit) for v in self.values if v.to_unit or v.unit}  # type: ignore[misc]

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, index: int = 0) -> PayloadMapping:
        """Validate and build a mapping; raises ``Invalid`` naming the mapping and field."""
        if not isinstance(doc, Mapping):
            raise Invalid(f"mapping #{index}: must be an object", mapping=f"#{index}", rule="mapping")
        name = doc.get("name", f"#{index}")
        if not isinstance(name, str) or not name:
            raise _fail(f"#{index}", "name", "must be a non-empty string")
        extra = sorted(set(doc) - _MAPPING_KEYS)
        if extra:
            raise _fail(name, extra[0], f"unknown key; allowed: {sorted(_MAPPING_KEYS)}")
        try:
            topic = TopicPattern.parse(doc.get("topic"))  # type: ignore[arg-type]
        except ValueError as exc:
            raise _fail(name, "topic", str(exc)) from None
        twin_spec = doc.get("twin")
        if not isinstance(twin_spec, str) or not twin_spec:
            raise _fail(name, "twin", "is required: a template like '{machine}' or a path like '$.device'")
        twin_path = _path(name, "twin", twin_spec) if twin_spec.startswith("$") else None
        if twin_path is None:
            unknown = _template_vars(twin_spec) - topic.variables
            if unknown:
                raise _fail(name, "twin", f"placeholder(s) {sorted(unknown)} are not in the topic pattern")
        source = doc.get("source")
        if source is not None:
            if not isinstance(source, str):
                raise _fail(name, "source", "must be a string template")
            unknown = _template_vars(source) - topic.variables
            if unknown:
                raise _fail(name, "source", f"placeholder(s) {sorted(unknown)} are not in the topic pattern")
        ts_format = doc.get("ts_format", "auto")
        if ts_format not in TS_FORMATS:
            raise _fail(name, "ts_format", f"must be one of {list(TS_FORMATS)}")
        raw_values = doc.get("values")
        if not isinstance(raw_values, Mapping) or not raw_values:
            raise _fail(name, "values", "must be a non-empty object of property → path or {path, unit, to_unit}")
        values = tuple(_value_spec(name, key, spec) for key, spec in raw_values.items())
        return cls(
            name=name, topic=topic, twin=twin_spec, twin_path=twin_path, values=values,
            ts=_opt_path(name, "ts", doc.get("ts")), ts_format=ts_format,
            id=_opt_path(name, "id", doc.get("id")), quality=_opt_path(name, "quality", doc.get("quality")),
            source=source,
        )

    def match(self, topic: str) -> dict[str, str] | None:
        return self.topic.match(topic)

    def translate(self, topic: str, payload: Any, *, received: datetime | None = None,
                  variables: Mapping[str, str] | None = None) -> list[Envelope]:
        """Envelopes from a decoded payload (one per record); raises ``Invalid`` with the reason."""
        if variables is None:
            variables = self.topic.match(topic)
            if variables is None:
                raise Invalid(f"mapping {self.name!r}: topic {topic!r} does not match {self.topic.pattern!r}",
                              mapping=self.name, rule="topic")
        records = payload if isinstance(payload, list) else [payload]
        if not records:
            raise Invalid(f"mapping {self.name!r}: empty list", mapping=self.name, rule="empty")
        return [self._record(r, variables, received, i if isinstance(payload, list) else None)
                for i, r in enumerate(records)]

    def _record(self, doc: Any, variables: Mapping[str, str], received: datetime | None,
                index: int | None) -> Envelope:
        where = f"mapping {self.name!r}" + (f", record [{index}]" if index is not None else "")
        try:
            return self._envelope(doc, variables, received)
        except _Missing as missing:
            raise Invalid(f"{where}: {missing.args[0]} is missing from the payload", mapping=self.name,
                          field=missing.args[0], rule="missing") from None
        except TvillingError as exc:
            fields = {**exc.fields, "mapping": self.name}
            raise Invalid(f"{where}: {exc.message}", **fields) from None

    def _envelope(self, doc: Any, variables: Mapping[str, str], received: datetime | None) -> Envelope:
        if self.twin_path is not None:
            twin = self.twin_path.get(doc)
            if not isinstance(twin, str) or not twin or len(twin) > MAX_TWIN_ID:
                raise Invalid(f"{self.twin_path.text} must be a twin id string", field="twin", rule="type")
        else:
            twin = _fill(self.twin, variables)
            if not twin or len(twin) > MAX_TWIN_ID:
                raise Invalid(f"twin {twin!r} from the topic is not a valid twin id", field="twin", rule="type")
        if self.ts is None:
            ts = received or datetime.now(UTC)
        else:
            ts = _read_ts(self.ts.get(doc), self.ts_format, self.ts.text)
        values: dict[str, Any] = {}
        for spec in self.values:
            try:
                values[spec.name] = spec.read(doc)
            except _Missing:
                if not spec.optional:
                    raise
        if not values:
            raise Invalid("none of the mapped values is in the payload", field="values", rule="missing")
        msg_id = None
        if self.id is not None:
            raw_id = self.id.get(doc)
            if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
                raise Invalid(f"{self.id.text} must be a string or an integer", field="id", rule="type")
            msg_id = str(raw_id)
        quality = None
        if self.quality is not None:
            quality = self.quality.get(doc)
            if quality not in QUALITIES:
                raise Invalid(f"{self.quality.text} must be one of {list(QUALITIES)}", field="quality", rule="enum")
        source = _fill(self.source, variables) if self.source is not None else None
        return Envelope(twin=twin, ts=ts, values=values, id=msg_id, quality=quality, source=source)


def _read_ts(value: Any, fmt: str, path: str) -> datetime:
    if fmt in ("epoch_s", "epoch_ms", "epoch_us"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{path} must be a number ({fmt})", field="ts", rule="ts")
        scale = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 0.001}[fmt]
        return parse_ts(value * scale, field=path)
    if fmt == "iso" and not isinstance(value, str):
        raise Invalid(f"{path} must be an ISO 8601 string", field="ts", rule="ts")
    return parse_ts(value, field=path)


def _path(mapping: str, field: str, text: Any) -> JsonPath:
    try:
        return JsonPath.parse(text)
    except ValueError as exc:
        raise _fail(mapping, field, str(exc)) from None


def _opt_path(mapping: str, field: str, text: Any) -> JsonPath | None:
    return None if text is None else _path(mapping, field, text)


def _value_spec(mapping: str, key: Any, spec: Any) -> ValueSpec:
    field = f"values.{key}"
    if not isinstance(key, str) or not key:
        raise _fail(mapping, "values", "property names must be non-empty strings")
    if isinstance(spec, str):
        return ValueSpec(name=key, path=_path(mapping, field, spec))
    if not isinstance(spec, Mapping):
        raise _fail(mapping, field, "must be a path string or an object {path, unit, to_unit, optional}")
    extra = sorted(set(spec) - _VALUE_KEYS)
    if extra:
        raise _fail(mapping, f"{field}.{extra[0]}", f"unknown key; allowed: {sorted(_VALUE_KEYS)}")
    if "path" not in spec:
        raise _fail(mapping, f"{field}.path", "is required")
    unit, to_unit, optional = spec.get("unit"), spec.get("to_unit"), spec.get("optional", False)
    for name, u in (("unit", unit), ("to_unit", to_unit)):
        if u is not None and (not isinstance(u, str) or u not in UNITS):
            raise _fail(mapping, f"{field}.{name}", f"unknown unit {u!r} (use DTDL unit names like 'degreeCelsius')")
    if to_unit is not None:
        if unit is None:
            raise _fail(mapping, f"{field}.to_unit", "needs 'unit' (the unit the device sends)")
        try:
            convert(0.0, unit, to_unit)
        except Invalid as exc:
            raise _fail(mapping, f"{field}.to_unit", exc.message) from None
    if not isinstance(optional, bool):
        raise _fail(mapping, f"{field}.optional", "must be true or false")
    return ValueSpec(name=key, path=_path(mapping, f"{field}.path", spec["path"]), unit=unit, to_unit=to_unit,
                     optional=optional)


def load_mappings(doc: Any) -> list[PayloadMapping]:
    """Mappings from decoded configuration: a list, or an object with a ``mappings`` list."""
    if isinstance(doc, Mapping):
        extra = sorted(set(doc) - {"mappings"})
        if extra:
            raise Invalid(f"mappings: unknown key(s) {extra}; expected 'mappings'", field=extra[0], rule="mapping")
        doc = doc.get("mappings", [])
    if not isinstance(doc, Sequence) or isinstance(doc, str):
        raise Invalid("mappings: must be a list of mapping objects", field="mappings", rule="mapping")
    out = [PayloadMapping.from_dict(item, index=i) for i, item in enumerate(doc)]
    names = [m.name for m in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Invalid(f"mappings: duplicate name(s) {duplicates}", field="name", rule="mapping")
    return out


def load_mappings_file(path: str | Path) -> list[PayloadMapping]:
    """Mappings from a ``.toml`` file (``[[mappings]]`` tables) or a ``.json`` file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"{path}: cannot read mappings: {exc}", field=str(path), rule="syntax") from None
    return load_mappings(doc)
