"""A what-if request as the API and CLI take it (JSON), read into the scenario core's terms.

The request: ``twin``, optional ``simulation`` and ``at`` (ISO time), ``horizon`` and ``step``
(durations: ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or seconds as a number), ``samples``,
``seed`` and ``options``: ``[{"name", "interventions": [...]}]``. Each intervention is one of

* ``{"at": "0m", "command": "setSpeed", "value": 900}`` — a command (:class:`Command`);
* ``{"at": "4h", "maintenance": "replaceBearing", "part": "de", "duration": "1h"}`` (:class:`Maintenance`);
* ``{"at": "2h", "fault": "de:bearingDefect", "size": 0.2}`` — an injected fault (:class:`Fault`);
* ``{"at": "1h", "parameters": {"defectRate": 0.3}}`` — parameter changes (:class:`ParameterChange`), or
  one: ``{"at": "1h", "parameter": "defectRate", "value": 0.3}``;
* ``{"profile": "spindle:load", "at": ["0m", "2h"], "values": [75, 90]}`` — an input profile (:class:`Profile`).

Every error is an :class:`~tvilling.core.errors.Invalid` (422) whose ``field`` names the entry,
e.g. ``options[1].interventions[0].command``; a limit (horizon, samples) is one too, not a 413.

>>> parse_duration("15m", "horizon"), parse_duration(90, "step"), parse_duration("7d", "horizon")
(900.0, 90.0, 604800.0)
>>> r = parse_request({"twin": "m1", "horizon": "8h", "options": [
...     {"name": "slow", "interventions": [{"at": "0m", "command": "setSpeed", "value": 900}]}]})
>>> r.twin, r.horizon, r.options[0].interventions[0]
('m1', 28800.0, Command(at=0.0, command='setSpeed', value=900.0, machine=None))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.simulation.scenario import MAX_HORIZON_S, MAX_SAMPLES, Option
from tvilling.simulation.scenario_interventions import (
    Command,
    Fault,
    Intervention,
    Maintenance,
    ParameterChange,
    Profile,
)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0, None: 1.0}
_KEYS = {"twin", "simulation", "at", "horizon", "step", "samples", "seed", "options"}
#: the samples a request may ask for by default, and the default number
DEFAULT_SAMPLES = 100


def _fail(message: str, where: str, rule: str = "type", **extra: Any) -> Invalid:
    return Invalid(f"scenario request: {message}", field=where, rule=rule, **extra)


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` (also ``ms``, ``w``) or a number of seconds."""
    if isinstance(value, bool):
        raise _fail(f"{where} must be a duration such as '15m' or '24h', not {value!r}", where)
    if isinstance(value, int | float):
        seconds = _finite(value, where)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise _fail(f"{where} must be a duration such as '90s', '15m', '24h' or '7d', not {value!r}", where)
    if not math.isfinite(seconds) or seconds < 0:
        raise _fail(f"{where} must be a duration ≥ 0, not {value!r}", where, "range")
    return seconds


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{where} must be a finite number, not {value!r}", where)
    return _finite(value, where)


def _finite(value: int | float, where: str) -> float:
    """``value`` as a finite float; an integer too large for one (or inf, NaN) is refused, not a crash."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = f"{str(value)[:20]}…" if len(str(value)) > 20 else repr(value)
        raise _fail(f"{where} must be a finite number, not {shown}", where, "range")
    return number


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{where} must be a non-empty string, not {value!r}", where)
    return value


@dataclass(frozen=True)
class Request:
    """A what-if request, read (see the module text); ``at`` None: now."""

    twin: str
    horizon: float
    step: float = 60.0
    samples: int = DEFAULT_SAMPLES
    seed: int | None = None
    simulation: str | None = None
    at: datetime | None = None
    options: Sequence[Option] = field(default_factory=tuple)


def parse_intervention(doc: Any, where: str) -> Intervention:
    """One intervention from its JSON form (see the module text); an error names its field under ``where``."""
    try:
        return _intervention(doc, where)
    except Invalid as exc:
        field_name = str(exc.fields.get("field", ""))
        if field_name and not field_name.startswith(where):
            exc.fields["field"] = f"{where}.{field_name}"
        raise


def _intervention(doc: Any, where: str) -> Intervention:
    if not isinstance(doc, Mapping):
        raise _fail(f"{where} must be an object", where)
    if "parameter" in doc and "parameters" not in doc:  # one parameter: {"parameter": name, "value": v}
        name = _text(doc["parameter"], f"{where}.parameter")
        doc = {k: v for k, v in doc.items() if k not in ("parameter", "value")} | {
            "parameters": {name: doc.get("value")}}
    kinds = [k for k in ("command", "maintenance", "fault", "parameters", "profile") if k in doc]
    if len(kinds) != 1:
        raise _fail(f"{where} must name exactly one of command, maintenance, fault, parameter(s), profile; "
                    f"it has {kinds or 'none'}", where, "required")
    kind = kinds[0]
    if kind == "profile":
        times = doc.get("at")
        values = doc.get("values")
        if not isinstance(times, list) or not isinstance(values, list):
            raise _fail(f"{where}: a profile needs lists 'at' and 'values'", f"{where}.at", "required")
        return Profile(input=_text(doc["profile"], f"{where}.profile"),
                       at=[parse_duration(t, f"{where}.at[{i}]") for i, t in enumerate(times)],
                       values=[_number(v, f"{where}.values[{i}]") for i, v in enumerate(values)])
    at = parse_duration(doc.get("at", 0), f"{where}.at")
    if kind == "command":
        value = doc.get("value")
        return Command(at=at, command=_text(doc["command"], f"{where}.command"),
                       value=None if value is None else _number(value, f"{where}.value"))
    if kind == "maintenance":
        part = doc.get("part")
        return Maintenance(at=at, action=_text(doc["maintenance"], f"{where}.maintenance"),
                           part=None if part is None else _text(part, f"{where}.part"),
                           duration=parse_duration(doc.get("duration", 0), f"{where}.duration"))
    if kind == "fault":
        if "size" not in doc:
            raise _fail(f"{where}: a fault needs a 'size'", f"{where}.size", "required")
        return Fault(at=at, fault=_text(doc["fault"], f"{where}.fault"), size=_number(doc["size"], f"{where}.size"))
    values = doc["parameters"]
    if not isinstance(values, Mapping) or not values:
        raise _fail(f"{where}.parameters must be an object of parameter values", f"{where}.parameters")
    return ParameterChange(at=at, values={str(k): _number(v, f"{where}.parameters.{k}") for k, v in values.items()})


def parse_request(doc: Any) -> Request:
    """A :class:`Request` from the JSON body; :class:`Invalid` names the first bad field."""
    if not isinstance(doc, Mapping):
        raise _fail("the body must be a JSON object", "body")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise _fail(f"unknown field {unknown[0]!r}; the fields are {sorted(_KEYS)}", unknown[0], "unknown")
    if "horizon" not in doc:
        raise _fail("'horizon' is required (e.g. '24h')", "horizon", "required")
    horizon = parse_duration(doc["horizon"], "horizon")
    if horizon <= 0:
        raise _fail("horizon must be > 0", "horizon", "range")
    if horizon > MAX_HORIZON_S:
        raise _fail(f"horizon {horizon:g} s is beyond the limit of {MAX_HORIZON_S:g} s", "horizon", "limit",
                    limit=MAX_HORIZON_S)
    samples = doc.get("samples", DEFAULT_SAMPLES)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise _fail(f"samples must be an integer ≥ 1, not {samples!r}", "samples", "range")
    if samples > MAX_SAMPLES:
        raise _fail(f"{samples} samples are beyond the limit of {MAX_SAMPLES}", "samples", "limit", limit=MAX_SAMPLES)
    seed = doc.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise _fail(f"seed must be an integer from 0 to 2**64 - 1, not {str(seed)[:24]}", "seed", "range")
    at = doc.get("at")
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(_text(at, "at").replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"at must be an ISO 8601 time, not {at!r}", "at") from None
        if when.tzinfo is None:
            raise _fail(f"at must carry a time zone (…Z or +01:00), not {at!r}", "at", "aware")
    options_doc = doc.get("options", [])
    if not isinstance(options_doc, list):
        raise _fail("options must be a list of {name, interventions}", "options")
    options = []
    for i, o in enumerate(options_doc):
        if not isinstance(o, Mapping):
            raise _fail(f"options[{i}] must be an object", f"options[{i}]")
        items = o.get("interventions", [])
        if not isinstance(items, list):
            raise _fail(f"options[{i}].interventions must be a list", f"options[{i}].interventions")
        options.append(Option(_text(o.get("name"), f"options[{i}].name"),
                              tuple(parse_intervention(x, f"options[{i}].interventions[{j}]")
                                    for j, x in enumerate(items))))
    simulation = doc.get("simulation")
    return Request(twin=_text(doc.get("twin"), "twin"), horizon=horizon,
                   step=parse_duration(doc.get("step", 60.0), "step"), samples=samples, seed=seed,
                   simulation=None if simulation is None else _text(simulation, "simulation"), at=when,
                   options=tuple(options))


__all__ = ["DEFAULT_SAMPLES", "Request", "parse_duration", "parse_intervention", "parse_request"]
