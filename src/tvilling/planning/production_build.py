"""From orders, machine rates and downtimes to a job-shop problem in minutes, and from its schedule back to
planned operations. Pure: no I/O.

Time ``0`` is the plan's instant (``now``); an operation takes ``ceil(quantity / parts per minute)`` minutes on
a machine (at least one), so halving a machine's rate doubles its durations. Operations that started before
``now`` are firm (:func:`freeze`): they keep their machine and start; the rest of their work is pushed past
any downtime of their machine and stretched when the machine's rate changed; the machine is busy with them
until then, and the order's next step may not start before they end.

>>> duration_min(120, 120.0), duration_min(120, 60.0), duration_min(1, 120.0), duration_min(5, 0.0) is None
(60, 120, 1, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tvilling.planning.jobshop import Downtime, Infeasible, Job, Operation, Option, Problem, Schedule
from tvilling.planning.production import PlannedOperation
from tvilling.planning.production_orders import ProductionOrder

IN_PROGRESS = "in progress"


@dataclass(frozen=True, slots=True)
class MachineRate:
    """A machine's speed in the plan and the parts per hour it makes at that speed."""

    machine: str
    speed_rpm: float
    parts_per_h: float


@dataclass(frozen=True, slots=True)
class JobRef:
    """Which order a job of the problem is, and the routing index of its first operation there."""

    order: str
    first_op: int


@dataclass(frozen=True, slots=True)
class Built:
    """The problem, its jobs' orders, and the machines by index."""

    problem: Problem
    jobs: tuple[JobRef, ...]
    machines: tuple[str, ...]


def duration_min(quantity: int, parts_per_h: float) -> int | None:
    """Whole minutes to make ``quantity`` parts at ``parts_per_h`` (``None`` when the machine makes none)."""
    if not parts_per_h > 0 or not math.isfinite(parts_per_h):
        return None
    return max(1, math.ceil(quantity * 60.0 / parts_per_h - 1e-9))


def minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60.0


def busy_until(start: datetime, work: timedelta, downs: Sequence[tuple[datetime, datetime]]) -> datetime:
    """When ``work`` begun at ``start`` ends on a machine that stops for ``downs`` (resuming after each)."""
    t, left = start, work
    for d_start, d_end in sorted(downs):
        if d_end <= t:
            continue
        if d_start >= t + left:
            break
        left -= max(timedelta(0), d_start - t)
        t = max(t, d_end)
    return t + left


def freeze(operations: Sequence[PlannedOperation], now: datetime, downtimes: Sequence[Mapping[str, Any]],
           rates: Mapping[str, MachineRate], rate_at: Callable[[str, float], float]) -> list[PlannedOperation]:
    """The operations started before ``now``: done ones as they were, running ones with their end moved.

    A running operation's remaining work (``end - now``) is stretched by the ratio of its machine's rate at the
    speed it assumed to the rate now, then pushed past the machine's downtimes that begin before it ends.
    """
    out: list[PlannedOperation] = []
    for o in operations:
        if o.start >= now:
            continue
        if o.end <= now:
            out.append(o)
            continue
        remaining = o.end - now
        current = rates.get(o.machine)
        if current is not None and current.speed_rpm != o.speed_rpm:
            before, after = rate_at(o.machine, o.speed_rpm), current.parts_per_h
            if not after > 0:
                raise Infeasible(f"operation {o.op} of order {o.order} is running on {o.machine}, which now makes "
                                 f"no parts (speed {current.speed_rpm:g} rpm)", order=o.order, op=o.op,
                                 machine=o.machine, rule="stalled")
            if before > 0:
                remaining = remaining * (before / after)
        downs = [(d["start"], d["end"]) for d in downtimes if d["machine"] == o.machine]
        end = busy_until(now, remaining, downs)
        speed = current.speed_rpm if current is not None else o.speed_rpm
        out.append(PlannedOperation(o.order, o.op, o.machine, o.start, end, o.quantity, speed))
    return out


def build_problem(orders: Sequence[ProductionOrder], machines: Sequence[str], rates: Mapping[str, MachineRate],
                  downtimes: Sequence[Mapping[str, Any]], firm: Sequence[PlannedOperation], now: datetime,
                  name: str = "") -> Built:
    """The job-shop problem of the orders' steps not yet started; :class:`Infeasible` names an order step that
    no machine can run (a machine not on the line, or every eligible machine making no parts)."""
    index = {m: i for i, m in enumerate(machines)}
    firm_by_order: dict[str, list[PlannedOperation]] = {}
    for o in firm:
        firm_by_order.setdefault(o.order, []).append(o)
    jobs: list[Job] = []
    refs: list[JobRef] = []
    for order in orders:
        started = firm_by_order.get(order.id, [])
        first = max((o.op for o in started), default=-1) + 1
        if first >= len(order.routing):
            continue
        ready = max([order.release, *(o.end for o in started)])
        release = max(0, math.ceil(minutes(ready - now) - 1e-9))
        due = math.floor(minutes(order.due - now) + 1e-9)
        ops: list[Operation] = []
        for k in range(first, len(order.routing)):
            eligible = order.routing[k] or tuple(machines)
            options: list[Option] = []
            for m in eligible:
                if m not in index:
                    raise Infeasible(f"order {order.id} step {k}: machine {m!r} is not on line {order.line} "
                                     f"(its machines: {', '.join(machines)})", order=order.id, step=k, machine=m,
                                     rule="unknown-machine")
                d = duration_min(order.quantity, rates[m].parts_per_h)
                if d is not None:
                    options.append(Option(index[m], d))
            if not options:
                stopped = ", ".join(f"{m} at {rates[m].speed_rpm:g} rpm" for m in eligible)
                raise Infeasible(f"order {order.id} step {k}: no machine can run it ({stopped} makes no parts)",
                                 order=order.id, step=k, machines=list(eligible), rule="no-machine")
            ops.append(Operation(tuple(options), name=f"{order.id}/{k}"))
        jobs.append(Job(tuple(ops), release=release, due=due, weight=order.priority, name=order.id))
        refs.append(JobRef(order.id, first))
    downs: list[Downtime] = []
    for down in downtimes:
        at = index.get(down["machine"])
        if at is None:
            continue
        d_start = max(0, math.floor(minutes(down["start"] - now) + 1e-9))
        d_end = math.ceil(minutes(down["end"] - now) - 1e-9)
        if d_end > d_start:
            downs.append(Downtime(at, d_start, d_end, str(down.get("reason", ""))))
    for o in firm:
        at = index.get(o.machine)
        d_end = math.ceil(minutes(o.end - now) - 1e-9)
        if at is not None and d_end > 0:
            downs.append(Downtime(at, 0, d_end, IN_PROGRESS))
    return Built(Problem(machines=max(1, len(machines)), jobs=tuple(jobs), downtimes=tuple(downs), name=name),
                 tuple(refs), tuple(machines))


def to_operations(built: Built, schedule: Schedule, now: datetime, orders: Mapping[str, ProductionOrder],
                  rates: Mapping[str, MachineRate]) -> list[PlannedOperation]:
    """The schedule's operations as planned operations: absolute times, machine ids, routing indices."""
    out: list[PlannedOperation] = []
    for s in schedule.operations:
        ref = built.jobs[s.job]
        machine = built.machines[s.machine]
        order = orders[ref.order]
        out.append(PlannedOperation(ref.order, ref.first_op + s.op, machine, now + timedelta(minutes=s.start),
                                    now + timedelta(minutes=s.end), order.quantity, rates[machine].speed_rpm))
    return out


__all__ = ["IN_PROGRESS", "Built", "JobRef", "MachineRate", "build_problem", "busy_until", "duration_min", "freeze",
           "to_operations"]
