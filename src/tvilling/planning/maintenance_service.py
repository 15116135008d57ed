"""Maintenance planning on the live platform: the problem read from the twins, the plan stored as work orders.

:meth:`MaintenanceService.build` reads the planning problem from the platform:

* **assets**: the twins of every model a ``[[maintenance.tasks]]`` entry names that report a remaining
  life (``rul``, ``rul_p10``, ``rul_p90``, written by a ``rul-*`` analytic; its unit and the coverage
  of its p10–p90 band from its backtest, else ``maintenance.coverage``), fitted to a failure-time
  distribution (:func:`~tvilling.planning.failure.fit_failure`) as of the reading's time;
* **criticality** from the twin graph: an asset stops the twins that hold it (incoming relationships,
  transitively: a bearing its machine, a machine its line), each costing its
  ``downtime_cost_per_h`` (by twin id, else by model);
* **tasks, technicians' shifts, parts, windows** from the settings, shifts and recurring windows
  expanded over the horizon;
* **existing work orders**: approved, scheduled and in-progress ones (or any marked firm) are firm
  and kept; a proposed one is the previous plan (moving it costs ``churn_penalty``).

:meth:`MaintenanceService.plan` runs the optimiser (:func:`~tvilling.planning.maintenance.plan_maintenance`)
and stores each new work order as ``proposed`` through the work-order service, on the twin that
receives the task's command (the asset, or the nearest twin holding it whose model declares the
command: a bearing's machine), cancelling the earlier proposals for the same asset with the reason.
The answer lists the orders proposed, the assets left to run to failure and why, the totals and
how the solver ended. Planning hours are plant hours (``time_scale`` per hour of the readings'
clock, see :mod:`.maintenance_service_config`); hour 0 is ``now``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Invalid, NotFound, TvillingError
from tvilling.planning.failure import FailureDistribution, fit_failure
from tvilling.planning.maintenance import DEFAULT_TIME_LIMIT_S, MaintenancePlan, plan_maintenance
from tvilling.planning.maintenance_service_config import (
    MaintenanceSettings,
    TaskConfig,
    expand_daily,
    model_key,
    parse_maintenance,
    rate_for,
)
from tvilling.planning.maintenance_types import (
    Asset,
    ExistingOrder,
    Interval,
    MaintenanceProblem,
    PartStock,
    TaskType,
    Technician,
    Window,
)
from tvilling.planning.workorders import APPROVED, IN_PROGRESS, PROPOSED, SCHEDULED, WorkOrder

if TYPE_CHECKING:
    from tvilling.planning.workorders_service import WorkOrderService

PLANNER = "maintenance-planner"
OPEN_STATES = (PROPOSED, APPROVED, SCHEDULED, IN_PROGRESS)
FIRM_STATES = frozenset({APPROVED, SCHEDULED, IN_PROGRESS})
SOLVERS = ("highs", "cpsat")
MAX_ASSETS = 10_000
MAX_DEPTH = 6
_UNITS = {"hour": 1.0, "hours": 1.0, "h": 1.0, "minute": 1 / 60, "minutes": 1 / 60, "min": 1 / 60,
          "second": 1 / 3600, "seconds": 1 / 3600, "s": 1 / 3600, "day": 24.0, "days": 24.0, "d": 24.0}


@dataclass(frozen=True)
class PlanningClock:
    """Planning hours (plant hours, 0 = ``now``) against the readings' clock (``scale`` plant hours per hour)."""

    now: datetime
    scale: float
    origin: datetime

    def hours(self, at: datetime) -> float:
        """Planning hours of ``at``."""
        return (at - self.now).total_seconds() / 3600.0 * self.scale

    def at(self, hours: float) -> datetime:
        """The instant of planning hour ``hours``."""
        return self.now + timedelta(hours=hours / self.scale)

    @property
    def base_h(self) -> float:
        """Plant hours from the clock's origin to now (time-of-day arithmetic)."""
        return (self.now - self.origin).total_seconds() / 3600.0 * self.scale


@dataclass(frozen=True)
class AssetInfo:
    """What the platform says of one planned asset: its twin, task, where work orders go, its prediction."""

    twin: str
    model: str
    task: TaskConfig
    target: str  # the twin the work order is on (receives the task's command)
    parents: tuple[str, ...]
    rul: dict[str, Any] | None = None


@dataclass
class Built:
    """A planning problem read from the platform, with what is needed to store its plan."""

    problem: MaintenanceProblem
    clock: PlanningClock
    settings: MaintenanceSettings
    assets: dict[str, AssetInfo]
    orders: dict[str, WorkOrder]  # open work orders by id
    previous: dict[str, list[WorkOrder]]  # planned asset → its non-firm (proposed) orders
    skipped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def planned_asset(order: WorkOrder) -> str:
    """The asset a work order was planned for (the rationale's ``planned_asset``, else the order's twin)."""
    value = order.rationale.get("planned_asset") if isinstance(order.rationale, Mapping) else None
    return value if isinstance(value, str) and value else order.asset


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class MaintenanceService:
    """Plans maintenance for the twins of ``platform`` and stores the proposals through ``workorders``."""

    def __init__(self, platform: Any, workorders: WorkOrderService, *, settings: MaintenanceSettings | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.platform = platform
        self.workorders = workorders
        self.settings = settings if settings is not None else parse_maintenance(platform.settings.maintenance)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()  # one plan at a time: proposals and cancellations must not interleave

    # -- reading the platform ----------------------------------------------------------------------------------
    def rul_specs(self) -> list[Any]:
        """The configured remaining-life analytics."""
        from tvilling.analytics.binding import parse_specs

        return [s for s in parse_specs(self.platform.settings.analytics) if "rul" in s.outputs and s.enabled]

    def time_scale(self) -> float:
        """Plant hours per hour of the readings' clock: the setting, else the RUL analytic's, else 1."""
        if self.settings.time_scale is not None:
            return self.settings.time_scale
        for spec in self.rul_specs():
            scale = _number(spec.params.get("time_scale"))
            if scale is not None and scale > 0:
                return scale
        return 1.0

    def planning_clock(self, now: datetime | None = None) -> PlanningClock:
        """The planning clock with hour 0 at ``now`` (default: the clock)."""
        at = now or self.clock()
        if at.tzinfo is None:
            raise Invalid("now needs a time zone", field="now", rule="zone")
        return PlanningClock(at.astimezone(UTC), self.time_scale(), self.settings.clock_origin)

    def _task_models(self) -> list[tuple[TaskConfig, frozenset[str]]]:
        out = []
        for task in self.settings.tasks:
            try:
                models = self.platform.models.expand(task.model)
            except TvillingError:
                models = frozenset()  # a model not registered (yet): no twin has it
            out.append((task, models))
        return out

    def task_of(self, model: str) -> TaskConfig | None:
        """The first configured task whose model is ``model`` or one it extends."""
        for task, models in self._task_models():
            if model in models or model_key(model) == model_key(task.model):
                return task
        return None

    def _twins_of(self, models: frozenset[str]) -> list[Any]:
        out: list[Any] = []
        for model in sorted(models):
            cursor: str | None = None
            while len(out) < MAX_ASSETS:
                doc: dict[str, Any] = {"model": model, "exact": True, "limit": 1000}
                if cursor is not None:
                    doc["cursor"] = cursor
                page = self.platform.twins.query(doc)
                out.extend(page.items)
                if page.next is None:
                    break
                cursor = page.next
        return out

    def parents(self, twin_id: str) -> tuple[str, ...]:
        """The twins holding ``twin_id`` (incoming relationships)."""
        try:
            return tuple(sorted({source for source, _ in self.platform.twins.incoming(twin_id)}))
        except NotFound:
            return ()

    def target_of(self, twin: Any, command: str) -> str:
        """Where a work order on ``twin`` goes: the nearest twin (itself, then its holders) declaring ``command``."""
        seen: set[str] = set()
        level = [twin.id]
        for _ in range(MAX_DEPTH):
            nxt: list[str] = []
            for tid in level:
                if tid in seen:
                    continue
                seen.add(tid)
                try:
                    current = twin if tid == twin.id else self.platform.twins.get(tid)
                    if command in self.platform.models.resolve(current.model).commands:
                        return str(tid)
                except TvillingError:
                    continue
                nxt.extend(self.parents(tid))
            level = nxt
        return str(twin.id)

    def coverage(self, twin: str) -> float:
        """The p10–p90 coverage of the twin's remaining-life analytic (its backtest), else the setting."""
        from tvilling.analytics.binding.spec import FLEET

        registry = self.platform.analytics_registry
        for spec in self.rul_specs():
            for scope in (twin, FLEET):
                try:
                    version = registry.promoted(spec.name, scope)
                except TvillingError:
                    version = None
                found = _number((version.backtest or {}).get("p10_p90_coverage")) if version is not None else None
                if found is not None and 0.05 <= found <= 0.98:
                    return found
        return self.settings.coverage

    def _unit(self) -> float:
        for spec in self.rul_specs():
            unit = spec.params.get("unit")
            if isinstance(unit, str) and unit in _UNITS:
                return _UNITS[unit]
        return 1.0

    def failure_of(self, twin: Any, clock: PlanningClock) -> tuple[FailureDistribution | None, dict[str, Any], str]:
        """The twin's failure distribution from its reported remaining life; the prediction; why none."""
        rep = twin.reported
        rul, p10, p90 = (_number(rep.get(k)) for k in ("rul", "rul_p10", "rul_p90"))
        if rul is None:
            return None, {}, "no remaining-life prediction (rul) reported: healthy, or its analytic is still learning"
        if p10 is None or p90 is None:
            return None, {}, "rul is reported without its band (rul_p10, rul_p90)"
        unit = self._unit()
        meta = ((twin.metadata or {}).get("reported") or {}).get("rul") or {}
        stamped = _when(meta.get("time")) if isinstance(meta, Mapping) else None
        predicted_at = min(clock.hours(stamped), 0.0) if stamped is not None else 0.0
        coverage = self.coverage(twin.id)
        doc = {"rul_h": rul * unit, "rul_p10_h": p10 * unit, "rul_p90_h": p90 * unit, "coverage": coverage,
               "predicted_at": stamped.isoformat() if stamped is not None else None}
        try:
            dist = fit_failure(rul * unit, p10 * unit, p90 * unit, coverage=coverage, predicted_at=predicted_at)
        except Invalid as exc:
            return None, doc, f"its prediction cannot be read as a distribution: {exc.message}"
        return dist, {**doc, "family": dist.family, "fit": dist.why}, ""

    # -- the problem -------------------------------------------------------------------------------------------
    def build(self, *, now: datetime | None = None, horizon_h: float | None = None, assets: Sequence[str] | None = None,
              failures: Mapping[str, FailureDistribution | None] | None = None,
              extra_windows: Sequence[Window] = ()) -> Built:
        """The planning problem as the platform has it (see the module text).

        ``assets`` restricts the plan to those twins (each must have a task; others' orders are left
        alone); ``failures`` replaces the failure distributions of some of them (the decision's what-if);
        ``extra_windows`` are added to the configured ones (idle time in the production plan).
        """
        s = self.settings
        horizon = s.horizon_h if horizon_h is None else horizon_h
        clock = self.planning_clock(now)
        infos: dict[str, AssetInfo] = {}
        failure_by: dict[str, FailureDistribution | None] = {}
        skipped: list[dict[str, Any]] = []
        warnings: list[str] = []
        wanted = None if assets is None else list(dict.fromkeys(assets))
        candidates: list[tuple[Any, TaskConfig]] = []
        if wanted is not None:
            for k, tid in enumerate(wanted):
                try:
                    twin = self.platform.twins.get(tid)
                except NotFound:
                    raise NotFound(f"assets[{k}]: no twin {tid!r}", field=f"assets[{k}]", twin=tid) from None
                task = self.task_of(twin.model)
                if task is None:
                    raise Invalid(f"assets[{k}]: twin {tid!r} (model {twin.model}) has no maintenance task: "
                                  "[[maintenance.tasks]] names no model of it", field=f"assets[{k}]",
                                  rule="no_task", twin=tid)
                candidates.append((twin, task))
        else:
            for task, models in self._task_models():
                candidates += [(t, task) for t in self._twins_of(models) if all(t.id != c.id for c, _ in candidates)]
        for twin, task in candidates:
            dist, rul, why = self.failure_of(twin, clock)
            if failures is not None and twin.id in failures:
                dist, why = failures[twin.id], "no failure predicted within the horizon by the what-if"
                rul = {**rul, "source": "what-if"}
            parents = self.parents(twin.id)
            infos[twin.id] = AssetInfo(twin.id, twin.model, task, self.target_of(twin, task.command), parents,
                                       rul or None)
            failure_by[twin.id] = dist
            if dist is None:
                skipped.append({"asset": twin.id, "why": why})
        orders = self._open_orders(clock)
        problem_assets, stop_costs = self._graph(infos, failure_by)
        known = {a.id for a in problem_assets}
        techs = self._technicians(clock, horizon)
        existing, previous, busy = self._existing(orders, infos, known, clock, wanted, {t.id for t in techs}, warnings)
        technicians = tuple(self._without(t, busy.get(t.id, [])) for t in techs)
        problem = MaintenanceProblem(
            now=0.0, horizon_h=horizon, assets=tuple(problem_assets),
            tasks=tuple(TaskType(t.name, t.model, t.duration_h, t.skills, t.preventive_cost, t.corrective_cost,
                                 t.corrective_downtime_h, t.parts) for t in s.tasks),
            technicians=technicians,
            parts=tuple(PartStock(p.part, p.on_hand, p.lead_time_h) for p in s.parts),
            windows=(*self._windows(clock, horizon), *extra_windows), stop_costs=stop_costs,
            existing=tuple(existing), churn_penalty=s.churn_penalty, step_h=s.step_h)
        return Built(problem, clock, s, infos, orders, previous, skipped, warnings)

    def _graph(self, infos: Mapping[str, AssetInfo], failures: Mapping[str, FailureDistribution | None]
               ) -> tuple[list[Asset], dict[str, float]]:
        """The planned assets and every twin above them, each stopping the twins that hold it."""
        out: list[Asset] = []
        costs: dict[str, float] = {}
        for info in infos.values():
            out.append(Asset(info.twin, info.task.model, failures.get(info.twin), info.parents,
                             rate_for(self.settings.downtime_cost_per_h, info.twin, info.model), info.task.name))
        seen = set(infos)
        level = [p for info in infos.values() for p in info.parents]
        for _ in range(MAX_DEPTH):
            nxt: list[str] = []
            for tid in level:
                if tid in seen:
                    continue
                seen.add(tid)
                try:
                    twin = self.platform.twins.get(tid)
                except NotFound:
                    continue
                holders = self.parents(tid)
                out.append(Asset(tid, twin.model, None, holders,
                                 rate_for(self.settings.downtime_cost_per_h, tid, twin.model)))
                nxt.extend(holders)
            level = nxt
        ids = {a.id for a in out}
        fixed = [replace(a, stops=tuple(s for s in a.stops if s in ids)) for a in out]
        return fixed, costs

    def _technicians(self, clock: PlanningClock, horizon: float) -> list[Technician]:
        weekday = self.settings.clock_origin.weekday()
        out = []
        for t in self.settings.technicians:
            spans = expand_daily(t.shifts, clock.base_h, weekday, horizon)
            out.append(Technician(t.id, t.skills, tuple(Interval(a, b) for a, b in _merged(spans))))
        return out

    @staticmethod
    def _without(tech: Technician, busy: list[tuple[float, float]]) -> Technician:
        """``tech`` with ``busy`` spans taken out of the shifts."""
        if not busy:
            return tech
        shifts: list[Interval] = []
        for sh in tech.shifts:
            pieces = [(sh.start, sh.end)]
            for b0, b1 in busy:
                nxt = []
                for a, b in pieces:
                    if b1 <= a or b0 >= b:
                        nxt.append((a, b))
                        continue
                    if b0 > a:
                        nxt.append((a, b0))
                    if b1 < b:
                        nxt.append((b1, b))
                pieces = nxt
            shifts += [Interval(a, b) for a, b in pieces if b - a > 1e-6]
        return Technician(tech.id, tech.skills, tuple(shifts))

    def _windows(self, clock: PlanningClock, horizon: float) -> list[Window]:
        weekday = self.settings.clock_origin.weekday()
        out: list[Window] = []
        for w in self.settings.windows:
            if w.daily is not None:
                for k, (a, b) in enumerate(expand_daily([w.daily], clock.base_h, weekday, horizon)):
                    if b > 1e-6:
                        out.append(Window(f"{w.id}#{k + 1}", a, b, w.kind, w.scope))
            elif w.start is not None and w.end is not None:
                a, b = clock.hours(w.start), clock.hours(w.end)
                if b > 1e-6 and a < horizon:  # a stop that ended is history, not a window to plan in
                    out.append(Window(w.id, a, b, w.kind, w.scope))
        return out

    def _open_orders(self, clock: PlanningClock) -> dict[str, WorkOrder]:
        out: dict[str, WorkOrder] = {}
        for state in OPEN_STATES:
            after: str | None = None
            while True:
                page = self.workorders.list(state=state, after=after, limit=1000)
                out.update((o.id, o) for o in page)
                if len(page) < 1000:
                    break
                after = page[-1].id
        return out

    def _existing(self, orders: Mapping[str, WorkOrder], infos: Mapping[str, AssetInfo], known: set[str],
                  clock: PlanningClock, wanted: list[str] | None, techs: set[str], warnings: list[str]
                  ) -> tuple[list[ExistingOrder], dict[str, list[WorkOrder]], dict[str, list[tuple[float, float]]]]:
        """Firm orders kept, the previous plan's proposals (per asset) and the crews' time other orders hold."""
        existing: list[ExistingOrder] = []
        previous: dict[str, list[WorkOrder]] = {}
        busy: dict[str, list[tuple[float, float]]] = {}
        for order in sorted(orders.values(), key=lambda o: (o.created, o.id)):
            asset = planned_asset(order)
            firm = order.firm or order.state in FIRM_STATES
            start = clock.hours(order.actual_start if order.state == IN_PROGRESS and order.actual_start
                                else order.planned_start)
            end = clock.hours(order.planned_end)
            crew = tuple(c for c in order.crew if c in techs)
            info = infos.get(asset)
            mapped = (info is not None and asset in known and order.task == info.task.name)
            if not firm and (wanted is None or asset in wanted):
                previous.setdefault(asset, []).append(order)
                continue
            if end <= 0.0:
                continue
            if firm and mapped and (wanted is None or asset in wanted):
                existing.append(ExistingOrder(order.id, asset, order.task, start, crew, True))
            else:  # another asset's order, or one the planner cannot model: its crew is taken all the same
                for c in crew:
                    busy.setdefault(c, []).append((start, end))
                if firm and not mapped and order.crew:
                    warnings.append(f"work order {order.id} ({order.task} on {order.asset}) is kept as its crew's "
                                    "busy time: no configured task matches it")
        for asset, items in previous.items():
            info = infos.get(asset)
            last = items[-1]
            if info is None or asset not in known or last.task != info.task.name:
                continue
            start = clock.hours(last.planned_start)
            if start >= 0.0:
                existing.append(ExistingOrder(last.id, asset, last.task, start,
                                              tuple(c for c in last.crew if c in techs), False))
        return existing, previous, busy

    # -- planning ----------------------------------------------------------------------------------------------
    def plan(self, *, now: datetime | None = None, horizon_h: float | None = None, solver: str = "highs",
             time_limit_s: float = DEFAULT_TIME_LIMIT_S, assets: Sequence[str] | None = None, by: str = PLANNER,
             failures: Mapping[str, FailureDistribution | None] | None = None, extra_windows: Sequence[Window] = (),
             store: bool = True, note: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Plan, store the proposals as work orders (unless ``store`` is false) and answer the plan (JSON).

        ``MaintenanceInfeasible`` (409) lists the conflicts when the plan cannot be made; ``note`` is merged
        into each proposal's rationale (the decision puts its options there).
        """
        check_plan_args(solver, time_limit_s, horizon_h)
        with self._lock:
            built = self.build(now=now, horizon_h=horizon_h, assets=assets, failures=failures,
                               extra_windows=extra_windows)
            plan = plan_maintenance(built.problem, solver=solver, time_limit_s=time_limit_s)
            proposed, kept, cancelled = self._store(built, plan, by, note) if store else ([], [], [])
            return plan_doc(built, plan, proposed, kept, cancelled)

    def _store(self, built: Built, plan: MaintenancePlan, by: str, note: Mapping[str, Any] | None
               ) -> tuple[list[dict[str, Any]], list[str], list[dict[str, str]]]:
        proposed: list[dict[str, Any]] = []
        kept: list[str] = []
        cancelled: list[dict[str, str]] = []
        clock = built.clock
        for wo in plan.work_orders:
            if wo.firm:
                continue
            info = built.assets[wo.asset]
            previous = built.previous.get(wo.asset, [])
            same = next((o for o in sorted(previous, key=lambda o: o.id != wo.order_id)
                         if abs(clock.hours(o.planned_start) - wo.start) < 1e-3 and set(o.crew) == set(wo.crew)
                         and o.task == wo.task), None)
            if same is not None:
                kept.append(same.id)
                reason = f"re-plan by {by}: superseded by {same.id}, which the plan keeps"
                cancelled += self._cancel([o for o in previous if o.id != same.id], reason, by)
                continue
            body = {
                "task": wo.task, "asset": info.target,
                "planned_start": clock.at(wo.start).isoformat(), "planned_end": clock.at(wo.end).isoformat(),
                "crew": list(wo.crew), "parts": _parts(wo.parts), "expected_cost": round(max(wo.expected_cost, 0.0), 2),
                "failure_probability": round(min(max(wo.prob_fail_before, 0.0), 1.0), 6),
                "maintenance_command": info.task.command,
                "rationale": {**rationale_doc(wo, info, clock), **(dict(note) if note else {})},
            }
            order = self.workorders.propose(body, by)
            proposed.append(order.to_json())
            cancelled += self._cancel(previous, f"re-plan by {by}: superseded by {order.id} "
                                                f"({wo.task} from {body['planned_start']})", by)
        for idle in plan.run_to_failure:
            previous = built.previous.get(idle.asset, [])
            cancelled += self._cancel(previous, f"re-plan by {by}: no preventive work now — "
                                                f"{idle.rationale.summary}", by)
        return proposed, kept, cancelled

    def _cancel(self, orders: Sequence[WorkOrder], reason: str, by: str) -> list[dict[str, str]]:
        out = []
        for order in orders:
            try:
                current = self.workorders.get(order.id)
                if current.state != PROPOSED:
                    continue
                self.workorders.move(order.id, "cancel", by, body={"note": reason[:3900]})
            except TvillingError:
                continue  # moved by someone meanwhile: theirs stands
            out.append({"id": order.id, "reason": reason})
        return out


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1e-9:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _parts(lines: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line.part] = out.get(line.part, 0) + int(line.quantity)
    return out


def check_plan_args(solver: Any, time_limit_s: Any, horizon_h: Any) -> None:
    """``Invalid`` naming the argument of a plan request that is wrong."""
    if solver not in SOLVERS:
        raise Invalid(f"solver must be one of {list(SOLVERS)}, not {solver!r}", field="solver", rule="enum")
    # range checks before anything that converts to float: a 400-digit integer is out of range, not a 500;
    # NaN and infinity fail the comparisons too
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, int | float) or not 0 < time_limit_s <= 600:
        raise Invalid(f"time_limit_s must be seconds in (0, 600], not {time_limit_s!r}", field="time_limit_s",
                      rule="range")
    if horizon_h is not None and (isinstance(horizon_h, bool) or not isinstance(horizon_h, int | float)
                                  or not 0 < horizon_h <= 24 * 366):
        raise Invalid(f"horizon_h must be hours in (0, {24 * 366}], not {horizon_h!r}", field="horizon_h",
                      rule="range")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _options(rationale: Any, clock: PlanningClock) -> list[dict[str, Any]]:
    return [{"label": o.label, "start": None if o.start is None else clock.at(o.start).isoformat(),
             "end": None if o.end is None else clock.at(o.end).isoformat(), "window": o.window,
             "expected_cost": _round(o.expected_cost), "prob_fail_before": _round(o.prob_fail_before, 4),
             "lost_production": _round(o.lost_production), "chosen": o.chosen, "note": o.note}
            for o in rationale.options]


def rationale_doc(wo: Any, info: AssetInfo, clock: PlanningClock) -> dict[str, Any]:
    """A proposal's rationale: the asset planned for, the prediction, the summary and the options weighed."""
    return {"planner": PLANNER, "planned_asset": info.twin, "summary": wo.rationale.summary,
            "window": wo.window, "prediction": info.rul, "options": _options(wo.rationale, clock),
            "costs": {"preventive": _round(wo.preventive_cost), "expected_failure": _round(wo.expected_failure_cost),
                      "lost_production": _round(wo.lost_production), "churn": _round(wo.churn_cost)},
            "time_scale": clock.scale}


def plan_doc(built: Built, plan: MaintenancePlan, proposed: list[dict[str, Any]], kept: list[str],
             cancelled: list[dict[str, str]]) -> dict[str, Any]:
    """The answer of a plan: orders proposed (or kept), assets left to run to failure and why, totals, solver."""
    clock = built.clock
    orders = []
    for wo in plan.work_orders:
        info = built.assets.get(wo.asset)
        orders.append({"asset": wo.asset, "target": info.target if info else wo.asset, "task": wo.task,
                       "start": clock.at(wo.start).isoformat(), "end": clock.at(wo.end).isoformat(),
                       "start_h": round(wo.start, 4), "crew": list(wo.crew), "parts": _parts(wo.parts),
                       "window": wo.window, "firm": wo.firm, "previous_order": wo.order_id,
                       "expected_cost": _round(wo.expected_cost), "prob_fail_before": _round(wo.prob_fail_before, 4),
                       "summary": wo.rationale.summary})
    return {
        "now": clock.now.isoformat(), "horizon_h": built.problem.horizon_h, "time_scale": clock.scale,
        "horizon_end": clock.at(built.problem.horizon_h).isoformat(),
        "work_orders": orders, "proposed": proposed, "kept": kept, "cancelled": cancelled,
        "run_to_failure": [{"asset": r.asset, "task": r.task, "expected_cost": _round(r.expected_cost),
                            "prob_fail_in_horizon": _round(r.prob_fail_in_horizon, 4), "blocked": r.blocked,
                            "why": r.rationale.summary, "options": _options(r.rationale, clock)}
                           for r in plan.run_to_failure],
        "not_planned": built.skipped,
        "totals": {"expected_cost": _round(plan.total_expected_cost),
                   "all_run_to_failure_cost": _round(plan.all_run_to_failure_cost),
                   "preventive_cost": _round(plan.preventive_cost),
                   "expected_failure_cost": _round(plan.expected_failure_cost),
                   "lost_production": _round(plan.lost_production), "churn_cost": _round(plan.churn_cost)},
        "solver": {"name": plan.solver, "status": plan.status, "seconds": round(plan.solve_seconds, 3),
                   "bound": _round(plan.bound), "options": plan.options},
        "conflicts": [{"kind": c.kind, "message": c.message, "asset": c.asset, "subject": c.subject}
                      for c in plan.conflicts],
        "warnings": [*plan.warnings, *built.warnings],
    }


def maintenance_service_for(platform: Any, workorders: WorkOrderService) -> MaintenanceService:
    """The maintenance service of a platform over its work-order service."""
    return MaintenanceService(platform, workorders)


__all__ = ["AssetInfo", "Built", "MaintenanceService", "PlanningClock", "check_plan_args", "maintenance_service_for",
           "plan_doc", "planned_asset", "rationale_doc"]
