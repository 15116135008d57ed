"""What a production plan plans around: re-planning events, maintenance work orders, faults, and the settings.

Events (``replan(line, reason, event)``):

* ``maintenance inserted`` — ``{"work_order": id}`` (a work order on a machine of the line or on one of its
  parts, in any state but done or cancelled), or ``{"machine", "start", "end"}``: an ad-hoc window;
* ``machine slowed`` — ``{"machine", "speed_rpm"}``: the machine runs at this speed from now on;
* ``breakdown`` — ``{"machine"}`` and optionally ``repair_h`` (default: the setting) and ``start`` (default
  now): the machine is down from then until the estimated repair.

Approved, scheduled and in-progress work orders on a line's machines (or their parts) are downtimes of every
plan (:func:`maintenance_downtimes`); a machine that reports ``state = fault`` is down until an estimated
repair time; breakdowns and ad-hoc windows of the plan in force carry over while they last.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tvilling.core.errors import Invalid, NotFound
from tvilling.planning.production_orders import parse_time
from tvilling.planning.production_twin import LineView

MAINTENANCE: Final = "maintenance inserted"
SLOWED: Final = "machine slowed"
BREAKDOWN: Final = "breakdown"
EVENT_REASONS: Final = (MAINTENANCE, SLOWED, BREAKDOWN)
INITIAL: Final = "initial"
REPLAN: Final = "re-plan"
#: work order states whose window a plan keeps the machine free for
BLOCKING_STATES: Final = ("approved", "scheduled", "in_progress")
FINAL_STATES: Final = ("done", "cancelled")
MAX_REPAIR_H = 24.0 * 365


@dataclass(frozen=True, slots=True)
class ProductionSettings:
    """Planner settings: default and largest solver time limit (s), solver threads, estimated repair time (h).

    Read once from ``TVILLING_PRODUCTION_TIME_LIMIT_S``, ``TVILLING_PRODUCTION_MAX_TIME_LIMIT_S``,
    ``TVILLING_PRODUCTION_WORKERS`` and ``TVILLING_PRODUCTION_REPAIR_H``."""

    time_limit_s: float = 5.0
    max_time_limit_s: float = 60.0
    workers: int = 1
    repair_h: float = 4.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProductionSettings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, key, low, high in (("time_limit_s", "TIME_LIMIT_S", 0.1, 3600.0),
                                     ("max_time_limit_s", "MAX_TIME_LIMIT_S", 0.1, 3600.0),
                                     ("workers", "WORKERS", 1, 64), ("repair_h", "REPAIR_H", 0.0, MAX_REPAIR_H)):
            text = source.get(f"TVILLING_PRODUCTION_{key}")
            if text is None or text == "":
                continue
            try:
                value = float(text)
            except ValueError:
                raise Invalid(f"TVILLING_PRODUCTION_{key} must be a number, not {text!r}",
                              field=f"TVILLING_PRODUCTION_{key}", rule="type") from None
            if not (math.isfinite(value) and low <= value <= high):
                raise Invalid(f"TVILLING_PRODUCTION_{key} must lie in [{low}, {high}], not {text}",
                              field=f"TVILLING_PRODUCTION_{key}", rule="range")
            values[name] = int(value) if name == "workers" else value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Event:
    """A parsed re-planning event."""

    reason: str
    machine: str | None = None
    work_order: str | None = None
    speed_rpm: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    repair_h: float | None = None


def parse_event(reason: Any, event: Any) -> Event:
    """The event of a re-plan request; :class:`Invalid` names the field that is wrong."""
    if reason not in EVENT_REASONS:
        raise Invalid(f"reason must be one of {list(EVENT_REASONS)}, not {_show(reason)}", field="reason",
                      rule="enum")
    if not isinstance(event, Mapping):
        raise Invalid(f"event must be an object describing the {reason}, not {_show(event)}", field="event",
                      rule="type")
    allowed = {MAINTENANCE: {"work_order", "machine", "start", "end"}, SLOWED: {"machine", "speed_rpm"},
               BREAKDOWN: {"machine", "repair_h", "start"}}[reason]
    unknown = sorted(str(k) for k in event if k not in allowed)
    if unknown:
        raise Invalid(f"event.{unknown[0]} is not a field of a {reason} event (its fields: {sorted(allowed)})",
                      field=f"event.{unknown[0]}", rule="unknown")
    if reason == MAINTENANCE:
        if event.get("work_order") is not None:
            if any(event.get(k) is not None for k in ("machine", "start", "end")):
                raise Invalid("a maintenance event names a work_order or a machine with start and end, not both",
                              field="event", rule="exclusive")
            return Event(reason, work_order=_name(event["work_order"], "event.work_order"))
        machine = _name(event.get("machine"), "event.machine")
        window_start = parse_time(event.get("start"), "event.start")
        window_end = parse_time(event.get("end"), "event.end")
        if window_end <= window_start:
            raise Invalid("event.end must be after event.start", field="event.end", rule="order")
        return Event(reason, machine=machine, start=window_start, end=window_end)
    machine = _name(event.get("machine"), "event.machine")
    if reason == SLOWED:
        speed: Any = event.get("speed_rpm")
        if not _within(speed, 0.0, 100_000.0):
            raise Invalid(f"event.speed_rpm must be a speed in rpm > 0 (a stop is a breakdown), not {_show(speed)}",
                          field="event.speed_rpm", rule="range")
        return Event(reason, machine=machine, speed_rpm=float(speed))
    repair: Any = event.get("repair_h")
    if repair is not None and not _within(repair, 0.0, MAX_REPAIR_H):
        raise Invalid(f"event.repair_h must be hours in (0, {MAX_REPAIR_H:g}], not {_show(repair)}",
                      field="event.repair_h", rule="range")
    start = parse_time(event["start"], "event.start") if event.get("start") is not None else None
    return Event(reason, machine=machine, repair_h=None if repair is None else float(repair), start=start)


def maintenance_downtimes(workorders: Any, view: LineView, now: datetime,
                          also: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Downtimes of the line's machines for the work orders that block them and end after ``now``: approved,
    scheduled and in-progress ones, and those named in ``also`` (a proposal being planned around) unless done or
    cancelled. A work order on a machine's part (a bearing) stops the machine."""
    if workorders is None:
        return []
    orders: dict[str, Any] = {}
    for state in BLOCKING_STATES:
        after: str | None = None
        while True:
            page = workorders.list(state=state, start=now, after=after, limit=1000)
            orders.update((o.id, o) for o in page)
            if len(page) < 1000:
                break
            after = page[-1].id
    for wid in also:
        if wid in orders:
            continue
        try:
            orders[wid] = workorders.get(wid)
        except NotFound:
            continue
    out: list[dict[str, Any]] = []
    for o in orders.values():
        machine = view.machine_of(o.asset)
        if machine is None or o.state in FINAL_STATES:
            continue
        start = o.actual_start if o.state == "in_progress" and o.actual_start is not None else o.planned_start
        end = o.planned_end
        if end <= now or end <= start:
            continue
        out.append({"machine": machine, "start": start, "end": end, "reason": "maintenance", "work_order": o.id,
                    "task": o.task, "state": o.state})
    return sorted(out, key=lambda d: (d["start"], d["machine"]))


def fault_downtimes(view: LineView, now: datetime, repair_h: float,
                    carried: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A machine reporting ``fault`` is down from ``now`` to ``now + repair_h``, unless a carried breakdown or
    fault downtime of it already covers ``now``."""
    covered = {d["machine"] for d in carried if d["start"] <= now < d["end"]}
    return [{"machine": m.id, "start": now, "end": now + timedelta(hours=repair_h), "reason": "fault"}
            for m in view.machines if m.state == "fault" and m.id not in covered and repair_h > 0]


def carried_downtimes(previous: Iterable[Mapping[str, Any]], view: LineView, now: datetime) -> list[dict[str, Any]]:
    """The previous plan's breakdowns, faults and ad-hoc windows that have not ended; a breakdown or fault of a
    machine that reports running again is over."""
    states = {m.id: m.state for m in view.machines}
    out: list[dict[str, Any]] = []
    for d in previous:
        if d.get("work_order") or d["end"] <= now or d["machine"] not in states:
            continue
        if d.get("reason") in ("breakdown", "fault") and states[d["machine"]] == "running" and d["start"] <= now:
            continue
        out.append(dict(d))
    return out


def event_downtime(event: Event, view: LineView, now: datetime, repair_h: float) -> dict[str, Any] | None:
    """The downtime a breakdown or an ad-hoc maintenance window adds (``None`` for other events)."""
    if event.machine is not None and event.machine not in view.index():
        raise Invalid(f"machine {event.machine!r} is not on line {view.line} (its machines: "
                      f"{', '.join(m.id for m in view.machines)})", machine=event.machine, line=view.line,
                      field="event.machine", rule="unknown-machine")
    if event.reason == BREAKDOWN and event.machine is not None:
        start = event.start or now
        return {"machine": event.machine, "start": start,
                "end": start + timedelta(hours=event.repair_h if event.repair_h is not None else repair_h),
                "reason": "breakdown"}
    if event.reason == MAINTENANCE and event.machine is not None and event.start and event.end:
        return {"machine": event.machine, "start": event.start, "end": event.end, "reason": "maintenance"}
    return None


def _within(value: Any, low: float, high: float) -> bool:
    """Whether ``value`` is a number in ``(low, high]`` (an integer of any size included, never NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return low < value <= high


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or "\x00" in value:
        raise Invalid(f"{field} must be a twin or work order id, not {_show(value)}", field=field, rule="type")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["BREAKDOWN", "EVENT_REASONS", "INITIAL", "MAINTENANCE", "REPLAN", "SLOWED", "Event", "ProductionSettings",
           "carried_downtimes", "event_downtime", "fault_downtimes", "maintenance_downtimes", "parse_event"]
