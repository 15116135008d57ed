"""Envelopes → validated columns: each value checked against the twin's model, units converted.

This is the one per-value loop of the pipeline (envelopes are dicts); everything after it
works on NumPy columns. Columnar inputs (HTTP columnar form, replay) skip the envelope
form and enter as :class:`~tvilling.core.readings.Readings` directly.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np

from tvilling.core.envelope import Envelope, format_ts
from tvilling.core.errors import Invalid
from tvilling.core.readings import BAD, CONVERTED, GOOD, UNCERTAIN, Readings
from tvilling.ingest.deadletter import DeadLetter
from tvilling.ingest.ports import RawMessage
from tvilling.ingest.specs import BOOLEAN, INTEGER, NUMBER, STRING, Spec
from tvilling.models.units import convert

QUALITY = {None: GOOD, "good": GOOD, "uncertain": UNCERTAIN, "bad": BAD}
MAX_EXACT_INT = 2**53  # integers beyond are not exact as the float64 history stores them: rejected ("range")
MAX_TEXT = 65_536  # characters of one string (or structured value as JSON): longer ones are rejected ("size")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass
class Columns:
    """Rows being built, plus what was rejected or dropped on the way."""

    twin: list[str] = field(default_factory=list)
    prop: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    source: list[str | None] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # index of the envelope each row came from
    rejects: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    has_text: bool = False

    def truncate(self, n: int) -> None:
        """Drop the rows from ``n`` on (an envelope that failed half-way)."""
        for rows in (self.twin, self.prop, self.ts, self.value, self.text, self.quality, self.flags, self.source,
                     self.origin):
            del rows[n:]

    def readings(self) -> tuple[Readings, np.ndarray]:
        n = len(self.ts)
        text = np.array(self.text, dtype=object) if self.has_text else None
        r = Readings(np.array(self.twin, dtype=object), np.array(self.prop, dtype=object),
                     np.array(self.ts, dtype=np.int64), np.array(self.value, dtype=np.float64),
                     np.array(self.quality, dtype=np.uint8), np.array(self.flags, dtype=np.uint16), text)
        src = np.array(self.source, dtype=object) if n else np.empty(0, dtype=object)
        return r, src


class SeenIds:
    """A bounded memory of (twin, message id) pairs, to drop redelivered messages."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, twin: str, msg_id: str) -> bool:
        key = (twin, msg_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def remember(self, keys: Sequence[tuple[str, str]]) -> None:
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


def to_us(ts: datetime) -> int:
    return (ts - _EPOCH) // _MICRO


def normalise(
    envelopes: Sequence[Envelope],
    *,
    models_of: Mapping[str, str],
    specs_of: Callable[[str], Mapping[str, Spec]],
    validate_other: Callable[[str, str, str, Any], Any],
    seen: SeenIds,
    transport: str,
    received: datetime,
    address: str | None = None,
    origins: Sequence[RawMessage | None] | None = None,
) -> tuple[Columns, list[tuple[str, str]]]:
    """Validate every value; returns the columns and the message ids to remember once stored.

    ``origins`` (one per envelope, where known) are the raw messages the envelopes were read
    from: a rejection keeps that message's payload. An envelope that makes anything raise is
    rejected whole (rule ``internal``, naming the exception), never the batch.
    """
    cols = Columns()
    new_ids: list[tuple[str, str]] = []
    batch_ids: set[tuple[str, str]] = set()
    for index, env in enumerate(envelopes):
        origin = origins[index] if origins is not None else None
        rows, letters = len(cols.ts), len(cols.rejects)
        try:
            _envelope(cols, index, env, origin, models_of, specs_of, validate_other, seen, batch_ids, new_ids,
                      transport, received, address)
        except Exception as exc:  # whatever one message does, it cannot fail the others: it becomes a dead letter
            cols.truncate(rows)
            del cols.rejects[letters:]
            cols.rejects.append(letter(env, origin, f"twin {_short(env.twin)!r}: unexpected {type(exc).__name__} "
                                       f"while reading the message: {_short(str(exc))}", "internal",
                                       transport=transport, received=received, address=address))
        if len(cols.rejects) - letters > 1:
            cols.rejects[letters:] = _merged(cols.rejects[letters:])
    return cols, new_ids


def _merged(letters: list[DeadLetter]) -> list[DeadLetter]:
    """One dead letter per rule for one envelope: a message with 5,000 unknown keys is one rejection, not 5,000
    copies of its payload."""
    by_rule: dict[str, list[DeadLetter]] = {}
    for d in letters:
        by_rule.setdefault(d.rule, []).append(d)
    out = []
    for group in by_rule.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        props = sorted({d.property for d in group if d.property is not None})
        shown = ", ".join(_short(p, 40) for p in props[:5]) + (f" and {len(props) - 5} more" if len(props) > 5 else "")
        out.append(msgspec.structs.replace(
            group[0], property=props[0] if len(props) == 1 else None, count=sum(d.count for d in group),
            reason=f"{group[0].reason} (and the same rule for {len(group) - 1} more value(s): {shown})"))
    return out


def _envelope(cols: Columns, index: int, env: Envelope, origin: RawMessage | None, models_of: Mapping[str, str],
              specs_of: Callable[[str], Mapping[str, Spec]], validate_other: Callable[[str, str, str, Any], Any],
              seen: SeenIds, batch_ids: set[tuple[str, str]], new_ids: list[tuple[str, str]], transport: str,
              received: datetime, address: str | None) -> None:
    model = models_of.get(env.twin)
    if model is None:
        cols.rejects.append(letter(env, origin, f"twin {_short(env.twin)!r} does not exist", "unknown_twin",
                                   transport=transport, received=received, address=address))
        return
    if not env.values:
        cols.rejects.append(letter(env, origin, f"twin {env.twin!r}: the message has no values", "empty",
                                   transport=transport, received=received, address=address))
        return
    if env.id is not None:
        id_key = (env.twin, env.id)
        if id_key in batch_ids or seen.seen(*id_key):
            cols.duplicates += len(env.values)
            return
        batch_ids.add(id_key)
        new_ids.append(id_key)
    specs = specs_of(model)
    ts = to_us(env.ts)
    quality = QUALITY[env.quality]
    for key, raw in env.values.items():
        spec = specs.get(key)
        # the common case inline: a finite float for a numeric property
        if spec is not None and spec.kind == NUMBER and type(raw) is float and raw - raw == 0.0:  # finite
            cols.twin.append(env.twin)
            cols.prop.append(key)
            cols.ts.append(ts)
            cols.value.append(raw)
            cols.text.append(None)
            cols.quality.append(quality)
            cols.flags.append(0)
            cols.source.append(env.source)
            cols.origin.append(index)
            continue
        if spec is None and isinstance(raw, Mapping) and any(f"{key}.{k}" in specs for k in raw):
            for sub, sub_raw in raw.items():  # a component's values, nested
                _one(cols, index, env, origin, f"{key}.{sub}", sub_raw, specs.get(f"{key}.{sub}"), ts, quality,
                     model, validate_other, transport, received, address)
            continue
        _one(cols, index, env, origin, key, raw, spec, ts, quality, model, validate_other, transport, received,
             address)


def _one(cols: Columns, index: int, env: Envelope, origin: RawMessage | None, path: str, raw: Any, spec: Spec | None,
         ts: int, quality: int, model: str, validate_other: Callable[[str, str, str, Any], Any], transport: str,
         received: datetime, address: str | None) -> None:
    def reject(reason: str, rule: str) -> None:
        cols.rejects.append(letter(env, origin, f"twin {env.twin!r}: {_short(path)}: {reason}", rule, prop=path,
                                   transport=transport, received=received, address=address))

    if spec is None:
        reject(f"the model {model} has no property or telemetry {_short(path)!r}", "unknown_property")
        return
    flags = 0
    value: Any = raw
    if isinstance(raw, Mapping) and set(raw) == {"value", "unit"} and spec.kind in (NUMBER, INTEGER):
        if spec.unit is None:
            reject(f"has no unit in the model, but the value carries {raw['unit']!r}", "unit")
            return
        try:
            value = convert(raw["value"], str(raw["unit"]), spec.unit)
        except (Invalid, TypeError, ValueError, OverflowError) as exc:
            reject(f"cannot convert {raw['unit']!r} to {spec.unit!r}: {exc}", "unit")
            return
        flags = CONVERTED
    kind = spec.kind
    if kind in (NUMBER, INTEGER):
        if type(value) is bool or not isinstance(value, int | float):
            reject(f"expected a number, got {_show(value)}", "type")
            return
        if kind == INTEGER and not isinstance(value, int):
            reject(f"expected an integer, got {_show(value)}", "type")
            return
        if isinstance(value, float) and not math.isfinite(value):
            reject(f"{value} is not a finite number", "finite")
            return
        if isinstance(value, int) and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            reject(f"{_show(value)} is out of range (integers are stored exactly up to ±2**53)", "range")
            return
        text = None
    elif kind == BOOLEAN:
        if type(value) is not bool:
            reject(f"expected true or false, got {_show(value)}", "type")
            return
        text = "true" if value else "false"
        value = math.nan
    elif kind == STRING:
        if not isinstance(value, str):
            reject(f"expected a string, got {_show(value)}", "type")
            return
        if len(value) > MAX_TEXT:
            reject(f"a string of {len(value)} characters; at most {MAX_TEXT}", "size")
            return
        text = json.dumps(value)
        value = math.nan
    else:
        try:
            checked = validate_other(env.twin, model, path, value)
        except Invalid as exc:
            reject(exc.message, str(exc.fields.get("rule", "type")))
            return
        if isinstance(checked, int | float) and not isinstance(checked, bool):
            value, text = float(checked), None
        else:
            value, text = math.nan, json.dumps(checked)
            if len(text) > MAX_TEXT:
                reject(f"a value of {len(text)} characters as JSON; at most {MAX_TEXT}", "size")
                return
    if text is not None:
        cols.has_text = True
    cols.twin.append(env.twin)
    cols.prop.append(path)
    cols.ts.append(ts)
    cols.value.append(value)
    cols.text.append(text)
    cols.quality.append(quality)
    cols.flags.append(flags)
    cols.source.append(env.source)
    cols.origin.append(index)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and not -10**60 < value < 10**60:
        return f"an integer of {len(str(abs(value)))} digits"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def letter(env: Envelope, origin: RawMessage | None, reason: str, rule: str, *, transport: str, received: datetime,
           address: str | None, prop: str | None = None, count: int = 1) -> DeadLetter:
    """The dead letter of (part of) an envelope: the raw message it came from, or the envelope as JSON."""
    fields = {"transport": transport, "address": origin.address if origin is not None else address,
              "twin": env.twin, "property": prop, "rule": rule, "reason": reason, "received": received,
              "message_id": env.id, "count": count}
    if origin is None:
        return DeadLetter.of(msgspec.json.encode(env.to_json()), **fields)
    global _last_letter
    last = _last_letter
    if last is not None and last[0] is origin.payload:  # more rejections of one message: hash it once
        return msgspec.structs.replace(last[1], **fields)
    made = DeadLetter.of(origin.payload, **fields)
    _last_letter = (origin.payload, made)
    return made


_last_letter: tuple[bytes, DeadLetter] | None = None  # the payload last made a dead letter of, and that letter


def ts_text(ts_us: int) -> str:
    return format_ts(_EPOCH + _MICRO * int(ts_us))
