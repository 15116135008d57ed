"""A twin's maintenance record, folded from its work orders and its reported state. Pure: no I/O.

What a CMMS shows on an asset's page: how many work orders were done, the last one, the parts
replaced (part number → quantity, and when last), the operating hours since the last
maintenance, the open orders, and — where the twin's model (or the models of the parts it
relates to) declares them — install dates and part numbers.

Operating hours: the value the twin reports for a property or telemetry its model declares
under one of :data:`OPERATING_HOURS` (the demo plant's ``operatingHours``, running time since
the last maintenance), when that reading is no older than the last completed order; otherwise
the hours since that order ended; ``None`` when neither is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tvilling.core.twin import Twin
from tvilling.planning.workorders import DONE, WorkOrder, iso, iso_or_none

#: Names of a property or telemetry holding the running hours since the last maintenance.
OPERATING_HOURS: tuple[str, ...] = ("operatingHours",)
#: Names of a property holding the date a part was installed.
INSTALL_DATE: tuple[str, ...] = ("installDate", "installationDate", "installedOn")
#: Names of a property holding a part number.
PART_NUMBER: tuple[str, ...] = ("partNumber", "partNo")
MAX_HISTORY = 100


def maintenance_record(twin: Twin, declared: Iterable[str], orders: Sequence[WorkOrder], *, now: datetime,
                       parts: Sequence[tuple[str | None, Twin, Iterable[str]]] = ()) -> dict[str, Any]:
    """The maintenance record of ``twin``.

    ``declared`` are the property and telemetry names its model declares; ``orders`` are its work
    orders (any state); ``parts`` are ``(relationship name, twin, declared names)`` of the twins it
    relates to (its parts), for their install dates and part numbers.
    """
    names = set(declared)
    done = sorted((o for o in orders if o.state == DONE and o.actual_end is not None),
                  key=lambda o: (o.actual_end, o.id), reverse=True)
    replaced: dict[str, int] = {}
    last_replaced: dict[str, str] = {}
    for order in reversed(done):  # oldest first: the newest date wins
        for part, qty in order.parts.items():
            replaced[part] = replaced.get(part, 0) + qty
            last_replaced[part] = iso(order.actual_end) if order.actual_end is not None else ""
    last = done[0] if done else None
    hours, source = _operating_hours(twin, names, last, now)
    open_orders = sorted((o for o in orders if not o.final), key=lambda o: (o.planned_start, o.id))
    installed = [item for item in (_installed(None, twin, names),
                                   *(_installed(rel, part, set(n)) for rel, part, n in parts)) if item is not None]
    return {
        "twin": twin.id,
        "model": twin.model,
        "workorders_done": len(done),
        "last_maintenance": None if last is None else _done_item(last),
        "operating_hours_since_maintenance": hours,
        "operating_hours_source": source,
        "parts_replaced": [{"part": p, "quantity": q, "last_replaced": last_replaced[p]}
                           for p, q in sorted(replaced.items())],
        "installed": installed,
        "open_workorders": [{"id": o.id, "task": o.task, "state": o.state, "planned_start": iso(o.planned_start),
                             "planned_end": iso(o.planned_end), "firm": o.firm} for o in open_orders],
        "history": [_done_item(o) for o in done[:MAX_HISTORY]],
    }


def _done_item(order: WorkOrder) -> dict[str, Any]:
    completion = order.completion or {}
    return {"id": order.id, "task": order.task, "done": iso_or_none(order.actual_end),
            "started": iso_or_none(order.actual_start), "parts": dict(order.parts), "crew": list(order.crew),
            "operating_hours_at_done": completion.get("operating_hours"), "command": completion.get("command")}


def _operating_hours(twin: Twin, names: set[str], last: WorkOrder | None,
                     now: datetime) -> tuple[float | None, str | None]:
    last_end = None if last is None else last.actual_end
    for name in OPERATING_HOURS:
        value = twin.reported.get(name)
        if name not in names or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        when = reading_time(twin, name)
        if last_end is None or (when is not None and when >= last_end):
            return float(value), f"reported:{name}"
    if last_end is not None:
        return round(max((now - last_end).total_seconds(), 0.0) / 3600.0, 6), "time_since_last_done"
    return None, None


def reading_time(twin: Twin, name: str) -> datetime | None:
    """When the twin's reported value ``name`` was written (from its metadata), or None."""
    meta = twin.metadata.get("reported", {})
    entry = meta.get(name) if isinstance(meta, Mapping) else None
    when = entry.get("time") if isinstance(entry, Mapping) else None
    if isinstance(when, datetime):
        return when
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def operating_hours(twin: Twin, declared: Iterable[str]) -> float | None:
    """The running hours the twin reports now (see :data:`OPERATING_HOURS`), or None."""
    names = set(declared)
    for name in OPERATING_HOURS:
        value = twin.reported.get(name)
        if name in names and not isinstance(value, bool) and isinstance(value, int | float):
            return float(value)
    return None


def _installed(relationship: str | None, twin: Twin, names: set[str]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for key, candidates in (("install_date", INSTALL_DATE), ("part_number", PART_NUMBER)):
        for name in candidates:
            if name in names:
                value = twin.reported.get(name, twin.desired.get(name))
                out[key] = value
                break
    if not out:
        return None
    return {"twin": twin.id, "model": twin.model, "relationship": relationship, **out}
