"""The production planner: orders, plans of a line, re-plans on events, comparisons.

``plan(line)`` reads the line from the twins (machines, speeds, rates by the twin's machine model, plant
time), the open orders of the line, the downtimes (work orders, faults, carried breakdowns), freezes the
operations of the plan in force that have started, solves the rest with CP-SAT (weighted tardiness first,
makespan second, within a time limit) and stores the result as the line's plan in force.
``replan(line, reason, event)`` does the same with one event applied and answers the new plan with the
change in each KPI and the operations that moved. The planner never sends commands: the plant side reads
the plan in force (:func:`tvilling.planning.production.current_plan`).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tvilling.core.errors import Invalid, NotFound, PreconditionFailed
from tvilling.core.principal import Principal
from tvilling.planning.jobshop import Schedule
from tvilling.planning.jobshop_dispatch import repair
from tvilling.planning.jobshop_solver import SolveOptions, solve
from tvilling.planning.production import PlannedOperation, ProductionPlan
from tvilling.planning.production_build import (
    Built,
    MachineRate,
    build_problem,
    duration_min,
    freeze,
    to_operations,
)
from tvilling.planning.production_events import (
    FINAL_STATES,
    INITIAL,
    REPLAN,
    SLOWED,
    Event,
    ProductionSettings,
    carried_downtimes,
    event_downtime,
    fault_downtimes,
    maintenance_downtimes,
    parse_event,
)
from tvilling.planning.production_kpis import compare, lost_production, plan_kpis
from tvilling.planning.production_orders import OPEN, ProductionOrder, cancel, complete, parse_order
from tvilling.planning.production_twin import LineView, read_line, throughput_per_h
from tvilling.security.audit_events import record as audit

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Replanned:
    """A re-plan's answer: the new plan and its comparison with the plan it replaced (``None`` if none)."""

    plan: ProductionPlan
    comparison: dict[str, Any] | None
    solver: dict[str, Any] = field(default_factory=dict)


class ProductionService:
    """Production orders and plans of a platform's lines (one planner per process: plans are serialised)."""

    def __init__(self, platform: Any, store: Any = None, settings: ProductionSettings | None = None,
                 clock: Callable[[], datetime] | None = None, time_scale: float = 1.0) -> None:
        if isinstance(time_scale, bool) or not isinstance(time_scale, int | float) or not math.isfinite(time_scale) \
                or time_scale <= 0:
            raise Invalid(f"time_scale must be a number > 0 (plant hours per hour of the readings' clock), not "
                          f"{time_scale!r}", field="time_scale", rule="range")
        # an accelerated plant (the demo's 60x): rates count per hour of the readings' clock, which plans stay on
        self.time_scale = float(time_scale)
        self.platform = platform
        self.store = store if store is not None else platform.backend.production
        self.settings = settings or ProductionSettings.from_env()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ orders

    def create_order(self, body: Any, by: str, *, now: datetime | None = None) -> ProductionOrder:
        """Check and store a new order; its line and machines are checked against the twin graph."""
        if isinstance(body, Mapping) and isinstance(body.get("line"), str) and body.get("line"):
            view = read_line(self.platform, body["line"], wall=self._clock())
        else:
            view = None
        at = now or (view.now if view is not None and view.now is not None else self._clock())
        order = parse_order(body, now=at, by=by)
        view = view if view is not None else read_line(self.platform, order.line, wall=self._clock())
        rates = self._rates(view, None)
        names = [m.id for m in view.machines]
        for k, step in enumerate(order.routing):
            for m in step:
                if m not in rates:
                    raise Invalid(f"routing[{k}]: machine {m!r} is not on line {order.line} (its machines: "
                                  f"{', '.join(names)})", field=f"routing[{k}]", machine=m, line=order.line,
                                  rule="unknown-machine")
            eligible = step or tuple(names)
            if all(duration_min(order.quantity, rates[m].parts_per_h) is None for m in eligible):
                raise Invalid(f"routing[{k}]: no feasible machine: {', '.join(eligible)} make no parts at their "
                              "present speed", field=f"routing[{k}]", machines=list(eligible), rule="no-machine")
        self.store.add_order(order)
        audit(self.platform, by, "production.order.create", f"order:{order.id}",
              {"line": order.line, "quantity": order.quantity})
        return order

    def get_order(self, order_id: str) -> ProductionOrder:
        order: ProductionOrder = self.store.get_order(order_id)
        return order

    def list_orders(self, *, line: str | None = None, state: str | None = None, after: str | None = None,
                    limit: int = 100) -> list[ProductionOrder]:
        orders: list[ProductionOrder] = self.store.list_orders(line=line, state=state, after=after, limit=limit)
        return orders

    def cancel_order(self, order_id: str, *, now: datetime | None = None, by: Principal | str | None = None
                     ) -> ProductionOrder:
        """Cancel an open order (the next plan drops it); ``by``: who (default: the request's caller)."""
        order = self.get_order(order_id)
        done = cancel(order, now=now or self._clock())
        self.store.update_order(done, expected_version=order.version)
        audit(self.platform, by, "production.order.cancel", f"order:{order.id}", {"line": order.line})
        return done

    # ------------------------------------------------------------------ plans

    def current(self, line: str) -> ProductionPlan | None:
        plan: ProductionPlan | None = self.store.current(line)
        return plan

    def get_plan(self, plan_id: str) -> ProductionPlan:
        plan: ProductionPlan = self.store.get_plan(plan_id)
        return plan

    def plan(self, line: str, *, time_limit: float | None = None, now: datetime | None = None) -> Replanned:
        """Plan ``line`` now (``initial``, or ``re-plan`` over the plan in force, whose started work stays)."""
        return self._make(line, None, time_limit, now)

    def replan(self, line: str, reason: Any, event: Any, *, time_limit: float | None = None,
               now: datetime | None = None) -> Replanned:
        """Re-plan ``line`` after an event (see :mod:`tvilling.planning.production_events`)."""
        return self._make(line, parse_event(reason, event), time_limit, now)

    def compare(self, before_id: str, after_id: str) -> dict[str, Any]:
        """The KPI deltas and moved operations between two stored plans (the later one's instant as origin)."""
        before, after = self.get_plan(before_id), self.get_plan(after_id)
        ids = {o.order for o in before.operations} | {o.order for o in after.operations}
        orders = {}
        for oid in ids:
            try:
                orders[oid] = self.get_order(oid)
            except NotFound:
                continue
        return compare(before, after, orders)

    # ------------------------------------------------------------------ the work

    def _time_limit(self, value: float | None) -> float:
        if value is None:
            return min(self.settings.time_limit_s, self.settings.max_time_limit_s)
        top = self.settings.max_time_limit_s
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= top:
            raise Invalid(f"time_limit must be seconds in (0, {top:g}], not {value!r}", field="time_limit",
                          rule="range")
        return float(value)

    def _rates(self, view: LineView, event: Event | None) -> dict[str, MachineRate]:
        speeds = [event.speed_rpm if event is not None and event.reason == SLOWED and event.machine == m.id
                  and event.speed_rpm is not None else m.speed_rpm for m in view.machines]
        per_h = throughput_per_h([m.parameters for m in view.machines], speeds)
        return {m.id: MachineRate(m.id, s, r * self.time_scale)
                for m, s, r in zip(view.machines, speeds, per_h, strict=True)}

    def _open_orders(self, line: str) -> list[ProductionOrder]:
        out: list[ProductionOrder] = []
        after: str | None = None
        while True:
            page = self.list_orders(line=line, state=OPEN, after=after, limit=PAGE)
            out.extend(page)
            if len(page) < PAGE:
                return out
            after = page[-1].id

    def _make(self, line: str, event: Event | None, time_limit: float | None, now: datetime | None) -> Replanned:
        limit = self._time_limit(time_limit)
        with self._lock:
            view = read_line(self.platform, line, wall=self._clock())
            previous = self.current(line)
            at = now or view.now or self._clock()
            if previous is not None and now is None and at < previous.created:
                at = previous.created
            if event is not None and event.machine is not None:
                event_downtime(event, view, at, self.settings.repair_h)  # checks the machine is on the line
            rates = self._rates(view, event)
            downtimes = self._downtimes(view, previous, event, at)
            orders = self._open_orders(line)
            by_id = {o.id: o for o in orders}
            prior = [o for o in previous.operations if o.order in by_id] if previous is not None else []
            firm = freeze(prior, at, downtimes, rates, self._rate_at(view))
            finished = _finished(orders, firm, at)
            live = [o for o in orders if o.id not in finished]
            firm = [o for o in firm if o.order not in finished]
            built = build_problem(live, [m.id for m in view.machines], rates, downtimes, firm, at, name=line)
            solver: dict[str, Any] = {"status": "empty", "seconds": 0.0, "optimal": True}
            planned: list[PlannedOperation] = []
            if built.problem.jobs:
                hint = _hint_from(built, previous.operations, at) if previous is not None else None
                result = solve(built.problem, SolveOptions(time_limit=limit, workers=self.settings.workers,
                                                           objective="weighted_tardiness", hint=hint))
                solver = {"status": result.status, "seconds": round(result.seconds, 3), "optimal": result.optimal,
                          "objective": result.objective}
                planned = to_operations(built, result.schedule, at, by_id, rates)
            operations = tuple(sorted([*firm, *planned], key=lambda o: (o.start, o.machine, o.order, o.op)))
            kept = tuple(d for d in downtimes if d["end"] > at)
            kpis = plan_kpis(operations, kept, {o.id: o for o in live}, at)
            if previous is not None:
                kpis["lost_production"] = lost_production(previous.operations, operations,
                                                          {o.id: o for o in live})
            kpis["solve_seconds"] = float(solver["seconds"])
            reason = event.reason if event is not None else (REPLAN if previous is not None else INITIAL)
            plan = ProductionPlan(id=f"plan-{uuid.uuid4().hex[:12]}", created=at, line=line, operations=operations,
                                  downtimes=kept, kpis=kpis, previous=None if previous is None else previous.id,
                                  reason=reason)
            self.store.save_plan(plan, expected_current=None if previous is None else previous.id)
            for oid, end in finished.items():
                order = by_id[oid]
                try:
                    self.store.update_order(complete(order, now=at, at=end), expected_version=order.version)
                except PreconditionFailed:
                    continue  # changed meanwhile (cancelled): the next plan reads it again
            comparison = compare(previous, plan, by_id) if previous is not None else None
            audit(self.platform, None, "production.plan", f"line:{line}",
                  {"plan": plan.id, "previous": plan.previous, "reason": str(reason)[:200],
                   "operations": len(operations), "solver": solver.get("status")})
            return Replanned(plan, comparison, solver)

    def _rate_at(self, view: LineView) -> Callable[[str, float], float]:
        params = {m.id: m.parameters for m in view.machines}

        def rate_at(machine: str, speed: float) -> float:
            return throughput_per_h([params.get(machine, {})], [speed])[0] * self.time_scale

        return rate_at

    def _downtimes(self, view: LineView, previous: ProductionPlan | None, event: Event | None,
                   at: datetime) -> list[dict[str, Any]]:
        earlier = list(previous.downtimes) if previous is not None else []
        carried = carried_downtimes(earlier, view, at)
        also = [str(d["work_order"]) for d in earlier if d.get("work_order")]
        store = getattr(self.platform.backend, "workorders", None)
        if event is not None and event.work_order is not None:
            if store is None:
                raise Invalid("this backend keeps no work orders", field="event.work_order", rule="unavailable")
            wo = store.get(event.work_order)
            if view.machine_of(wo.asset) is None:
                raise Invalid(f"work order {wo.id} is on {wo.asset}, which is not a machine (or part of one) of line "
                              f"{view.line}", field="event.work_order", workorder=wo.id, rule="not-on-line")
            if wo.state in FINAL_STATES:
                raise Invalid(f"work order {wo.id} is {wo.state}: there is nothing to plan around", rule="final",
                              field="event.work_order", workorder=wo.id)
            if wo.planned_end <= at:
                raise Invalid(f"work order {wo.id} ends ({wo.planned_end.isoformat()}) before the plan's instant",
                              field="event.work_order", workorder=wo.id, rule="past")
            also.append(wo.id)
        downs = maintenance_downtimes(store, view, at, also)
        downs += carried
        if event is not None:
            extra = event_downtime(event, view, at, self.settings.repair_h)
            if extra is not None:
                downs.append(extra)
        downs += fault_downtimes(view, at, self.settings.repair_h, downs)
        return sorted(downs, key=lambda d: (d["start"], d["machine"], str(d.get("reason"))))


def _finished(orders: Sequence[ProductionOrder], firm: Sequence[PlannedOperation], at: datetime) -> dict[str, datetime]:
    """Orders whose every step ended (per the plan in force) by ``at``: id → when the last one ended."""
    done: dict[str, list[PlannedOperation]] = {}
    for o in firm:
        done.setdefault(o.order, []).append(o)
    out: dict[str, datetime] = {}
    for order in orders:
        ops = done.get(order.id, [])
        steps = {o.op for o in ops if o.end <= at}
        if len(order.routing) and steps >= set(range(len(order.routing))):
            out[order.id] = max(o.end for o in ops)
    return out


def service_for(platform: Any) -> ProductionService:
    """A production service over a platform's backend."""
    return ProductionService(platform)


__all__ = ["ProductionService", "Replanned", "service_for"]


def _hint_from(built: Built, operations: Sequence[PlannedOperation], at: datetime) -> Schedule | None:
    """The plan in force as a feasible start for the re-plan (:func:`~.jobshop_dispatch.repair`): each operation
    still to plan on its machine, no earlier than it was planned; None when it names none of them."""
    first = {ref.order: (j, ref.first_op) for j, ref in enumerate(built.jobs)}
    machines = {m: i for i, m in enumerate(built.machines)}
    preferred: dict[tuple[int, int], tuple[int, int]] = {}
    for o in operations:
        place = first.get(o.order)
        if place is None or o.machine not in machines or o.op < place[1]:
            continue
        j, first_op = place
        if o.op - first_op < len(built.problem.jobs[j].operations):
            start = max(0, round((o.start - at).total_seconds() / 60.0))
            preferred[(j, o.op - first_op)] = (machines[o.machine], start)
    return repair(built.problem, preferred) if preferred else None

