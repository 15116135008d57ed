"""The KPIs of a production plan and the comparison of two plans. Pure: no I/O.

KPIs are measured from an origin (the plan's instant, or for a comparison the later plan's instant, so that
both plans are measured alike): ``makespan_h`` (origin to the last end), ``total_tardiness_h`` and
``weighted_tardiness_h`` (by priority) over the orders' completions against their due times, ``late_orders``,
``parts`` (the orders' quantities), ``throughput_per_h`` (parts per hour over the makespan), ``downtime_h``
(machine-hours of downtime between the origin and the last end) and ``lost_production``: the parts the
earlier plan would have finished by its own last end that the later one does not (finished goods, the last
step of each order, pro rata within a running operation; 0 for a plan that replaced none). A comparison also
reports ``downtime_avoided_h``: the work the earlier plan had inside the later plan's new downtimes that the
later plan moved out of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from tvilling.planning.production import PlannedOperation, ProductionPlan
from tvilling.planning.production_json import iso
from tvilling.planning.production_orders import ProductionOrder

KPI_NAMES = ("makespan_h", "total_tardiness_h", "weighted_tardiness_h", "late_orders", "orders", "parts",
             "throughput_per_h", "downtime_h", "lost_production")
#: an operation whose start or machine changed by at least this much has moved
MOVE_TOLERANCE = timedelta(seconds=60)
_H = 3600.0


def plan_kpis(operations: Sequence[PlannedOperation], downtimes: Iterable[Mapping[str, Any]],
              orders: Mapping[str, ProductionOrder], origin: datetime) -> dict[str, float]:
    """The KPIs (see the module) of the operations of ``orders`` measured from ``origin``."""
    ops = [o for o in operations if o.order in orders]
    last = max((o.end for o in ops), default=origin)
    makespan_h = max(0.0, (last - origin).total_seconds() / _H)
    completion: dict[str, datetime] = {}
    for o in ops:
        completion[o.order] = max(completion.get(o.order, o.end), o.end)
    total = weighted = 0.0
    late = 0
    for oid, done in completion.items():
        tardy = max(0.0, (done - orders[oid].due).total_seconds() / _H)
        total += tardy
        weighted += tardy * orders[oid].priority
        late += tardy > 0
    parts = float(sum(orders[oid].quantity for oid in completion))
    return {"makespan_h": makespan_h, "total_tardiness_h": total, "weighted_tardiness_h": weighted,
            "late_orders": float(late), "orders": float(len(completion)), "parts": parts,
            "throughput_per_h": parts / makespan_h if makespan_h > 0 else 0.0,
            "downtime_h": downtime_hours(downtimes, origin, last), "lost_production": 0.0}


def downtime_hours(downtimes: Iterable[Mapping[str, Any]], start: datetime, end: datetime) -> float:
    """Machine-hours of downtime inside ``[start, end)``, overlapping downtimes of a machine counted once."""
    by_machine: dict[str, list[tuple[datetime, datetime]]] = {}
    for d in downtimes:
        a, b = max(d["start"], start), min(d["end"], end)
        if b > a:
            by_machine.setdefault(str(d["machine"]), []).append((a, b))
    total = 0.0
    for spans in by_machine.values():
        spans.sort()
        cur_a, cur_b = spans[0]
        for a, b in spans[1:]:
            if a > cur_b:
                total += (cur_b - cur_a).total_seconds()
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        total += (cur_b - cur_a).total_seconds()
    return total / _H


def parts_done_by(operations: Sequence[PlannedOperation], orders: Mapping[str, ProductionOrder],
                  when: datetime) -> float:
    """Finished parts by ``when``: each order's last step, pro rata while it runs."""
    done = 0.0
    for o in operations:
        order = orders.get(o.order)
        if order is None or o.op != len(order.routing) - 1:
            continue
        span = (o.end - o.start).total_seconds()
        if span <= 0:
            done += o.quantity if o.end <= when else 0.0
            continue
        done += o.quantity * min(1.0, max(0.0, (when - o.start).total_seconds() / span))
    return done


def lost_production(before: Sequence[PlannedOperation], after: Sequence[PlannedOperation],
                    orders: Mapping[str, ProductionOrder]) -> float:
    """Parts ``before`` finishes by its last end that ``after`` does not (never negative)."""
    ops = [o for o in before if o.order in orders]
    if not ops:
        return 0.0
    horizon = max(o.end for o in ops)
    return max(0.0, parts_done_by(ops, orders, horizon) - parts_done_by(after, orders, horizon))


def downtime_avoided(before: ProductionPlan, after: ProductionPlan) -> float:
    """Machine-hours of work the earlier plan had inside the downtimes new in the later one, less what the later
    one still has there (running work they interrupt): the production stop the re-plan avoided."""
    known = {(d["machine"], d["start"], d["end"]) for d in before.downtimes}
    fresh = [d for d in after.downtimes if (d["machine"], d["start"], d["end"]) not in known]

    def inside(ops: Sequence[PlannedOperation]) -> float:
        total = 0.0
        for d in fresh:
            for o in ops:
                if o.machine == d["machine"]:
                    total += max(0.0, (min(o.end, d["end"]) - max(o.start, d["start"])).total_seconds())
        return total / _H

    return max(0.0, inside(before.operations) - inside(after.operations))


def compare(before: ProductionPlan, after: ProductionPlan, orders: Mapping[str, ProductionOrder],
            origin: datetime | None = None) -> dict[str, Any]:
    """KPIs of both plans over the orders they share, from ``origin`` (default: the later plan's instant), with
    their deltas; the operations that moved (machine, or start by a minute or more), were added or removed."""
    at = origin if origin is not None else after.created
    common = {oid: orders[oid] for oid in {o.order for o in before.operations} & {o.order for o in after.operations}
              if oid in orders}
    a = plan_kpis(before.operations, before.downtimes, common, at)
    b = plan_kpis(after.operations, after.downtimes, common, at)
    b["lost_production"] = lost_production(before.operations, after.operations, common)
    kpis = {k: {"before": a[k], "after": b[k], "delta": b[k] - a[k]} for k in KPI_NAMES}
    old = {(o.order, o.op): o for o in before.operations}
    new = {(o.order, o.op): o for o in after.operations}
    moved: list[dict[str, Any]] = []
    for key in sorted(old.keys() & new.keys()):
        x, y = old[key], new[key]
        if x.machine != y.machine or abs(y.start - x.start) >= MOVE_TOLERANCE:
            moved.append({"order": key[0], "op": key[1], "machine_before": x.machine, "machine_after": y.machine,
                          "start_before": iso(x.start), "start_after": iso(y.start),
                          "shift_min": round((y.start - x.start).total_seconds() / 60.0, 3)})
    shared = len(old.keys() & new.keys())
    return {"before": before.id, "after": after.id, "origin": iso(at), "kpis": kpis,
            "downtime_avoided_h": downtime_avoided(before, after), "moved": moved,
            "added": [{"order": k[0], "op": k[1]} for k in sorted(new.keys() - old.keys())],
            "removed": [{"order": k[0], "op": k[1]} for k in sorted(old.keys() - new.keys())],
            "unchanged": shared - len(moved), "stability": (shared - len(moved)) / shared if shared else 1.0}


__all__ = ["KPI_NAMES", "compare", "downtime_avoided", "downtime_hours", "lost_production", "parts_done_by",
           "plan_kpis"]
