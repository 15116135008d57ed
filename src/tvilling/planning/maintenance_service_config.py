"""The ``[maintenance]`` settings: tasks per model, technicians, spare parts, windows, downtime costs, decisions.

Read once from the configuration's ``maintenance`` table (``[[maintenance.tasks]]``,
``[[maintenance.technicians]]``, ``[[maintenance.parts]]``, ``[[maintenance.windows]]``,
``[maintenance.downtime_cost_per_h]``, ``[maintenance.decision]``); every key left out takes the
demo plant's default (:data:`DEFAULTS`), so the demo plans with no configuration. A bad key is an
:class:`~tvilling.core.errors.Invalid` naming it (``maintenance.tasks[0].duration_h``).

Times of day (shifts, recurring windows) are on the planning clock: plant hours, ``time_scale``
plant hours per hour of the readings' clock (the demo's plant runs 60 times faster than its
readings' clock; default: the remaining-life analytic's own ``time_scale``, else 1), counted from
``clock_origin`` (default 1970-01-01T00:00Z, so with a scale of 1 they are UTC times of day).

>>> s = parse_maintenance({"horizon_h": 24, "technicians": [{"id": "ana", "skills": ["mechanic"],
...                        "shifts": ["mon-fri 06:00-14:00"]}]})
>>> s.horizon_h, s.technicians[0].shifts[0].days, [t.name for t in s.tasks]
(24.0, (0, 1, 2, 3, 4), ['replace-bearing'])
>>> parse_maintenance({"tasks": [{"model": "m", "name": "x", "duration_h": -1}]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: maintenance.tasks[0].duration_h must be a number > 0...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.planning.maintenance_types import PartNeed

PREFIX = "maintenance"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")

#: The demo plant's maintenance, used for every key the configuration leaves out.
DEFAULTS: dict[str, Any] = {
    "horizon_h": 48.0,
    "step_h": 1.0,
    "churn_penalty": 100.0,
    "coverage": 0.8,
    "tasks": [{"model": "dtmi:tvilling:example:Bearing", "name": "replace-bearing", "duration_h": 2.0,
               "skills": ["mechanic"], "parts": [{"part": "bearing-kit", "quantity": 1}],
               "preventive_cost": 800.0, "corrective_cost": 4000.0, "corrective_downtime_h": 24.0,
               "command": "maintenanceDone", "whatif": "replaceBearing"}],
    "technicians": [{"id": "tech-night", "skills": ["mechanic"], "shifts": ["22:00-06:00"]},
                    {"id": "tech-day", "skills": ["mechanic", "electrician"], "shifts": ["06:00-14:00"]}],
    "parts": [{"part": "bearing-kit", "on_hand": 2, "lead_time_h": 72.0}],
    "windows": [{"id": "nightly-stop", "kind": "nightly-stop", "daily": "22:00-06:00"}],
    "downtime_cost_per_h": {"dtmi:tvilling:example:Machine": 150.0, "dtmi:tvilling:example:ProductionLine": 600.0},
    "decision": {},
}
DECISION_DEFAULTS: dict[str, Any] = {
    "auto": True, "rules": ["bearing-rul", "bearing-anomaly"], "slow_rpm": 900.0, "samples": 40, "step_s": 60.0,
    "seed": 12, "max_windows": 4, "replan_production": True, "solver": "highs", "time_limit_s": 10.0,
}
_TOP = {"horizon_h", "step_h", "churn_penalty", "coverage", "time_scale", "clock_origin", "tasks", "technicians",
        "parts", "windows", "downtime_cost_per_h", "decision"}


@dataclass(frozen=True)
class TaskConfig:
    """A maintenance task of a model: the planner's figures, the command completing it sends, the what-if action."""

    model: str
    name: str
    duration_h: float
    skills: tuple[str, ...]
    parts: tuple[PartNeed, ...]
    preventive_cost: float
    corrective_cost: float
    corrective_downtime_h: float
    command: str = "maintenanceDone"
    whatif: str | None = "replaceBearing"


@dataclass(frozen=True)
class Daily:
    """A recurring span of the day on the planning clock: ``start_h``–``end_h`` (past midnight when end ≤ start),
    starting on the weekdays ``days`` (0 = Monday)."""

    start_h: float
    end_h: float
    days: tuple[int, ...] = tuple(range(7))


@dataclass(frozen=True)
class TechnicianConfig:
    id: str
    skills: tuple[str, ...]
    shifts: tuple[Daily, ...]


@dataclass(frozen=True)
class PartConfig:
    part: str
    on_hand: int
    lead_time_h: float


@dataclass(frozen=True)
class WindowConfig:
    """A planned stop (``start``/``end``) or a recurring one (``daily``); ``scope``: the twins it stops (all: empty)."""

    id: str
    kind: str
    scope: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    daily: Daily | None = None


@dataclass(frozen=True)
class DecisionConfig:
    """How an alarm becomes a decision (see :mod:`tvilling.planning.decision`)."""

    auto: bool
    rules: tuple[str, ...]
    slow_rpm: float
    samples: int
    step_s: float
    seed: int | None
    max_windows: int
    replan_production: bool
    solver: str
    time_limit_s: float


@dataclass(frozen=True)
class MaintenanceSettings:
    """The effective ``[maintenance]`` settings."""

    horizon_h: float
    step_h: float
    churn_penalty: float
    coverage: float
    time_scale: float | None
    clock_origin: datetime
    tasks: tuple[TaskConfig, ...]
    technicians: tuple[TechnicianConfig, ...]
    parts: tuple[PartConfig, ...]
    windows: tuple[WindowConfig, ...]
    downtime_cost_per_h: Mapping[str, float]
    decision: DecisionConfig
    defaulted: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The effective settings as JSON (``GET /api/maintenance/config``)."""
        return {
            "horizon_h": self.horizon_h, "step_h": self.step_h, "churn_penalty": self.churn_penalty,
            "coverage": self.coverage, "time_scale": self.time_scale, "clock_origin": self.clock_origin.isoformat(),
            "tasks": [{"model": t.model, "name": t.name, "duration_h": t.duration_h, "skills": list(t.skills),
                       "parts": [{"part": p.part, "quantity": p.quantity} for p in t.parts],
                       "preventive_cost": t.preventive_cost, "corrective_cost": t.corrective_cost,
                       "corrective_downtime_h": t.corrective_downtime_h, "command": t.command, "whatif": t.whatif}
                      for t in self.tasks],
            "technicians": [{"id": t.id, "skills": list(t.skills), "shifts": [_daily_text(s) for s in t.shifts]}
                            for t in self.technicians],
            "parts": [{"part": p.part, "on_hand": p.on_hand, "lead_time_h": p.lead_time_h} for p in self.parts],
            "windows": [{"id": w.id, "kind": w.kind, "scope": list(w.scope),
                         **({"daily": _daily_text(w.daily)} if w.daily is not None else {}),
                         **({"start": w.start.isoformat(), "end": w.end.isoformat()}
                            if w.start is not None and w.end is not None else {})} for w in self.windows],
            "downtime_cost_per_h": dict(self.downtime_cost_per_h),
            "decision": {"auto": self.decision.auto, "rules": list(self.decision.rules),
                         "slow_rpm": self.decision.slow_rpm, "samples": self.decision.samples,
                         "step_s": self.decision.step_s, "seed": self.decision.seed,
                         "max_windows": self.decision.max_windows,
                         "replan_production": self.decision.replan_production, "solver": self.decision.solver,
                         "time_limit_s": self.decision.time_limit_s},
            "defaulted": list(self.defaulted),
        }


def _bad(where: str, message: str, rule: str = "type") -> Invalid:
    return Invalid(f"{where} {message}", field=where, rule=rule)


def _number(doc: Mapping[str, Any], key: str, where: str, *, positive: bool = False, default: Any = None) -> float:
    value = doc.get(key, default)
    name = f"{where}.{key}"
    if value is None:
        raise _bad(name, "is required", "required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, f"must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise _bad(name, f"must be a number > 0, not {value!r}", "range")
    if value < 0:
        raise _bad(name, f"must be a number ≥ 0, not {value!r}", "range")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise _bad(where, f"must be a name of letters, digits and . _ : - (at most 128), not {value!r}")
    return value


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise _bad(f"{where}.{key}", f"must be a list, not {value!r}")
    return value


def _table(value: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(where, f"must be a table, not {value!r}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", f"is not a setting here; the keys are {sorted(keys)}", "unknown")
    return value


def _clock(text: str, where: str) -> float:
    m = _CLOCK.fullmatch(text.strip())
    if m is None or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (int(m.group(1)) == 24 and int(m.group(2))):
        raise _bad(where, f"must be a time of day HH:MM (00:00 to 24:00), not {text!r}", "format")
    return int(m.group(1)) + int(m.group(2)) / 60.0


def _days(text: str, where: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.lower().split(","):
        lo, _, hi = part.strip().partition("-")
        if lo not in DAY_NAMES or (hi and hi not in DAY_NAMES):
            raise _bad(where, f"names days as mon..sun, ranges (mon-fri) or lists (sat,sun), not {text!r}", "format")
        a, b = DAY_NAMES.index(lo), DAY_NAMES.index(hi or lo)
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(set(out)))


def parse_daily(value: Any, where: str) -> Daily:
    """``"22:00-06:00"`` (every day) or ``"mon-fri 06:00-14:00"``; ``"always"`` is every hour of every day."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, f"must be a span of the day such as '06:00-14:00' or 'mon-fri 06:00-14:00', not {value!r}")
    text = value.strip()
    if text == "always":
        return Daily(0.0, 24.0)
    days: tuple[int, ...] = tuple(range(7))
    if " " in text:
        head, text = text.split(None, 1)
        days = _days(head, where)
    start, sep, end = text.partition("-")
    if not sep:
        raise _bad(where, f"must be a span HH:MM-HH:MM, not {value!r}", "format")
    s, e = _clock(start, where), _clock(end, where)
    if s == e and not (s == 0.0 and end.strip().startswith("24")):
        raise _bad(where, f"is an empty span ({value!r})", "range")
    return Daily(s, e if e > s else e + 24.0, days)


def _daily_text(d: Daily) -> str:
    def hm(h: float) -> str:
        h = h % 24.0 if h > 24.0 else h
        return f"{int(h):02d}:{round((h - int(h)) * 60):02d}"

    days = "" if d.days == tuple(range(7)) else ",".join(DAY_NAMES[k] for k in d.days) + " "
    return f"{days}{hm(d.start_h)}-{hm(d.end_h)}"


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(where, f"must be an ISO 8601 time such as 2026-03-03T06:00:00Z, not {value!r}",
                       "format") from None
    else:
        raise _bad(where, f"must be an ISO 8601 time such as 2026-03-03T06:00:00Z, not {value!r}")
    if parsed.tzinfo is None:
        raise _bad(where, f"needs a time zone (e.g. Z), not {value!r}", "zone")
    return parsed.astimezone(UTC)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _bad(where, f"must be a non-empty list of names, not {value!r}")
    return tuple(_text(v, f"{where}[{i}]") for i, v in enumerate(value))


def _task(doc: Any, where: str) -> TaskConfig:
    doc = _table(doc, where, {"model", "name", "duration_h", "skills", "parts", "preventive_cost", "corrective_cost",
                              "corrective_downtime_h", "command", "whatif"})
    model = doc.get("model")
    if not isinstance(model, str) or (not model.startswith("dtmi:") and not _ID.fullmatch(model)):
        raise _bad(f"{where}.model", f"must be a model id (dtmi:…, with or without its version), not {model!r}")
    parts: list[PartNeed] = []
    for k, p in enumerate(doc.get("parts", [])) if isinstance(doc.get("parts", []), list) else ():
        at = f"{where}.parts[{k}]"
        if isinstance(p, str):
            parts.append(PartNeed(_text(p, at)))
            continue
        p = _table(p, at, {"part", "quantity"})
        q = p.get("quantity", 1)
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise _bad(f"{at}.quantity", f"must be a whole number ≥ 1, not {q!r}", "range")
        parts.append(PartNeed(_text(p.get("part"), f"{at}.part"), q))
    if not isinstance(doc.get("parts", []), list):
        raise _bad(f"{where}.parts", f"must be a list, not {doc.get('parts')!r}")
    whatif = doc.get("whatif", "replaceBearing")
    return TaskConfig(
        model=model, name=_text(doc.get("name"), f"{where}.name"),
        duration_h=_number(doc, "duration_h", where, positive=True),
        skills=_names(doc.get("skills"), f"{where}.skills"),
        parts=tuple(parts), preventive_cost=_number(doc, "preventive_cost", where, default=0.0),
        corrective_cost=_number(doc, "corrective_cost", where, default=0.0),
        corrective_downtime_h=_number(doc, "corrective_downtime_h", where, default=0.0),
        command=_text(doc.get("command", "maintenanceDone"), f"{where}.command"),
        whatif=None if whatif is None or whatif == "" else _text(whatif, f"{where}.whatif"))


def _technician(doc: Any, where: str) -> TechnicianConfig:
    doc = _table(doc, where, {"id", "skills", "shifts"})
    shifts = doc.get("shifts", ["always"])
    if not isinstance(shifts, list) or not shifts:
        raise _bad(f"{where}.shifts", f"must be a non-empty list of spans such as '06:00-14:00', not {shifts!r}")
    return TechnicianConfig(_text(doc.get("id"), f"{where}.id"), _names(doc.get("skills"), f"{where}.skills"),
                            tuple(parse_daily(s, f"{where}.shifts[{k}]") for k, s in enumerate(shifts)))


def _part(doc: Any, where: str) -> PartConfig:
    doc = _table(doc, where, {"part", "on_hand", "lead_time_h"})
    on_hand = doc.get("on_hand", 0)
    if isinstance(on_hand, bool) or not isinstance(on_hand, int) or on_hand < 0:
        raise _bad(f"{where}.on_hand", f"must be a whole number ≥ 0, not {on_hand!r}", "range")
    return PartConfig(_text(doc.get("part"), f"{where}.part"), on_hand, _number(doc, "lead_time_h", where))


def _window(doc: Any, where: str) -> WindowConfig:
    doc = _table(doc, where, {"id", "kind", "scope", "start", "end", "daily"})
    wid = _text(doc.get("id"), f"{where}.id")
    kind = _text(doc.get("kind", "planned-stop"), f"{where}.kind")
    scope = doc.get("scope", [])
    if not isinstance(scope, list):
        raise _bad(f"{where}.scope", f"must be a list of twin ids, not {scope!r}")
    ids = tuple(_text(s, f"{where}.scope[{k}]") for k, s in enumerate(scope))
    if "daily" in doc:
        if "start" in doc or "end" in doc:
            raise _bad(where, "is either recurring (daily) or one planned stop (start, end), not both", "exclusive")
        return WindowConfig(wid, kind, ids, daily=parse_daily(doc["daily"], f"{where}.daily"))
    if "start" not in doc or "end" not in doc:
        raise _bad(where, "needs 'daily' (e.g. '22:00-06:00') or both 'start' and 'end' (ISO times)", "required")
    start, end = _time(doc["start"], f"{where}.start"), _time(doc["end"], f"{where}.end")
    if end <= start:
        raise _bad(f"{where}.end", f"({end.isoformat()}) must be after the start ({start.isoformat()})", "order")
    return WindowConfig(wid, kind, ids, start=start, end=end)


def _decision(doc: Any, where: str) -> DecisionConfig:
    doc = _table(doc, where, set(DECISION_DEFAULTS))
    d = {**DECISION_DEFAULTS, **doc}
    if not isinstance(d["auto"], bool):
        raise _bad(f"{where}.auto", f"must be true or false, not {d['auto']!r}")
    if not isinstance(d["replan_production"], bool):
        raise _bad(f"{where}.replan_production", f"must be true or false, not {d['replan_production']!r}")
    rules = d["rules"]
    if not isinstance(rules, list):
        raise _bad(f"{where}.rules", f"must be a list of alarm rule names, not {rules!r}")
    samples, windows, seed = d["samples"], d["max_windows"], d["seed"]
    if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 1000:
        raise _bad(f"{where}.samples", f"must be a whole number in [2, 1000], not {samples!r}", "range")
    if isinstance(windows, bool) or not isinstance(windows, int) or not 0 <= windows <= 20:
        raise _bad(f"{where}.max_windows", f"must be a whole number in [0, 20], not {windows!r}", "range")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _bad(f"{where}.seed", f"must be a whole number ≥ 0, not {seed!r}", "range")
    if d["solver"] not in ("highs", "cpsat"):
        raise _bad(f"{where}.solver", f"must be 'highs' or 'cpsat', not {d['solver']!r}", "enum")
    return DecisionConfig(auto=d["auto"], rules=tuple(_text(r, f"{where}.rules[{k}]") for k, r in enumerate(rules)),
                          slow_rpm=_number(d, "slow_rpm", where, positive=True), samples=samples,
                          step_s=_number(d, "step_s", where, positive=True), seed=seed, max_windows=windows,
                          replan_production=d["replan_production"], solver=d["solver"],
                          time_limit_s=_number(d, "time_limit_s", where, positive=True))


def _items(doc: Mapping[str, Any], key: str, parse: Any) -> tuple[Any, ...]:
    items = tuple(parse(v, f"{PREFIX}.{key}[{k}]") for k, v in enumerate(_list(doc, key, PREFIX)))
    ids = [getattr(i, "id", None) or getattr(i, "part", None) or f"{i.model}/{i.name}" for i in items]
    for k, i in enumerate(ids):
        if i in ids[:k]:
            raise _bad(f"{PREFIX}.{key}[{k}]", f"repeats {i!r}", "unique")
    return items


def parse_maintenance(doc: Mapping[str, Any] | None) -> MaintenanceSettings:
    """The effective settings from the ``maintenance`` table (``None`` or ``{}``: the demo plant's defaults)."""
    raw = _table(doc or {}, PREFIX, _TOP)
    defaulted = tuple(k for k in ("tasks", "technicians", "parts", "windows", "downtime_cost_per_h") if k not in raw)
    d = {**DEFAULTS, **raw}
    rates = _table(d["downtime_cost_per_h"], f"{PREFIX}.downtime_cost_per_h", set(d["downtime_cost_per_h"]))
    costs = {str(k): _number(rates, str(k), f"{PREFIX}.downtime_cost_per_h") for k in rates}
    scale = d.get("time_scale")
    coverage = d["coverage"]
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 < coverage < 1:
        raise _bad(f"{PREFIX}.coverage", f"must lie in (0, 1), not {coverage!r}", "range")
    settings = MaintenanceSettings(
        horizon_h=_number(d, "horizon_h", PREFIX, positive=True), step_h=_number(d, "step_h", PREFIX, positive=True),
        churn_penalty=_number(d, "churn_penalty", PREFIX), coverage=float(coverage),
        time_scale=None if scale is None else _number(d, "time_scale", PREFIX, positive=True),
        clock_origin=_time(d.get("clock_origin", "1970-01-01T00:00:00Z"), f"{PREFIX}.clock_origin"),
        tasks=_items(d, "tasks", _task), technicians=_items(d, "technicians", _technician),
        parts=_items(d, "parts", _part), windows=_items(d, "windows", _window), downtime_cost_per_h=costs,
        decision=_decision(d["decision"], f"{PREFIX}.decision"), defaulted=defaulted)
    stock = {p.part for p in settings.parts}
    for k, t in enumerate(settings.tasks):
        for j, need in enumerate(t.parts):
            if need.part not in stock:
                raise _bad(f"{PREFIX}.tasks[{k}].parts[{j}]", f"names part {need.part!r}, which [[maintenance.parts]] "
                           f"does not list (its parts: {sorted(stock)})", "reference")
    if settings.horizon_h > 24 * 366:
        raise _bad(f"{PREFIX}.horizon_h", f"must be at most a year ({24 * 366} h), not {settings.horizon_h:g}", "range")
    return settings


def model_key(model: str) -> str:
    """A model id without its version (``dtmi:a:B;3`` → ``dtmi:a:B``)."""
    return model.split(";", 1)[0]


def rate_for(costs: Mapping[str, float], twin: str, model: str) -> float:
    """The downtime cost per hour of ``twin``: by its id, else its model (with or without version), else 0."""
    for key in (twin, model, model_key(model)):
        if key in costs:
            return float(costs[key])
    return 0.0


def expand_daily(spans: Sequence[Daily], base_h: float, origin_weekday: int, horizon_h: float
                 ) -> list[tuple[float, float]]:
    """The occurrences of ``spans`` overlapping ``[0, horizon_h)`` of a clock whose hour 0 is plant hour ``base_h``
    (plant hour 0 falling on weekday ``origin_weekday``), as planning hours (the first may start before 0)."""
    out: list[tuple[float, float]] = []
    first = math.floor(base_h / 24.0) - 1
    last = math.floor((base_h + horizon_h) / 24.0) + 1
    for day in range(first, last + 1):
        weekday = (origin_weekday + day) % 7
        for s in spans:
            if weekday not in s.days:
                continue
            a, b = day * 24.0 + s.start_h - base_h, day * 24.0 + s.end_h - base_h
            if b > 0.0 and a < horizon_h:
                out.append((a, b))
    return sorted(out)


__all__ = ["DEFAULTS", "Daily", "DecisionConfig", "MaintenanceSettings", "PartConfig", "TaskConfig",
           "TechnicianConfig", "WindowConfig", "expand_daily", "model_key", "parse_daily", "parse_maintenance",
           "rate_for"]
