"""Maintenance planning: which assets get preventive work, when, by whom, with which parts.

:func:`plan_maintenance` weighs, for every asset with a failure prediction, running to failure
against one preventive work order at each candidate start (see :mod:`maintenance_options` for
the candidates and the cost model), and lets an optimiser (HiGHS by default, or CP-SAT, both
with a time limit; see :mod:`maintenance_solvers`) choose the set of work orders of least
expected total cost that respects technicians' skills, shifts and bookings, spare-part stock
and lead times, and firm orders. Each work order carries its rationale: the options considered
with their expected costs, and why the chosen one won. Conflicts that make a requested plan
impossible (a skill nobody has, a part that cannot arrive within the horizon, a window in the
past, firm orders that clash) raise :class:`MaintenanceInfeasible` listing every one of them;
with ``allow_partial=True`` the plan is made without the blocked work and lists the conflicts.

>>> from tvilling.planning.failure import fit_failure
>>> from tvilling.planning.maintenance_types import (Asset, Interval, MaintenanceProblem, TaskType,
...     Technician, Window)
>>> problem = MaintenanceProblem(
...     now=0.0, horizon_h=72.0,
...     assets=(Asset("pump-1", "pump", fit_failure(40.0, 20.0, 70.0), downtime_cost_per_h=500.0),),
...     tasks=(TaskType("bearing", "pump", 4.0, ("mech",), 800.0, 3000.0, 24.0),),
...     technicians=(Technician("ana", ("mech",), (Interval(0.0, 72.0),)),),
...     windows=(Window("night-1", 20.0, 28.0),))
>>> plan = plan_maintenance(problem)
>>> [(w.asset, w.start, w.crew, w.window) for w in plan.work_orders]
[('pump-1', 20.0, ('ana',), 'night-1')]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from tvilling.core.errors import Conflict
from tvilling.planning.maintenance_options import (
    AssetCase,
    Option,
    PlanConflict,
    Prepared,
    costs_at,
    merge,
    overlap,
    prepare,
    window_of,
)
from tvilling.planning.maintenance_solvers import SolveResult, solve
from tvilling.planning.maintenance_types import (
    ExistingOrder,
    MaintenanceProblem,
    Window,
    downtime_rate,
    stopped_ids,
    validate,
)

DEFAULT_SOLVER = "highs"
#: Conflicts that leave an asset to run to failure with the reason given, without refusing the plan.
SOFT_CONFLICTS = frozenset({"part-late", "crew-late"})
DEFAULT_TIME_LIMIT_S = 30.0
_EPS = 1e-6


class MaintenanceInfeasible(Conflict):
    """The plan cannot be made as asked; ``fields["conflicts"]`` names each conflict."""

    title = "Maintenance plan infeasible"


@dataclass(frozen=True)
class PartLine:
    """A part a work order uses: from stock, or ordered now and available at ``available_at``."""

    part: str
    quantity: int
    source: Literal["stock", "order"]
    available_at: float


@dataclass(frozen=True)
class OptionSummary:
    """One option considered for an asset, with its expected cost and what became of it."""

    label: str
    start: float | None
    end: float | None
    window: str | None
    expected_cost: float
    prob_fail_before: float
    lost_production: float
    churn: float
    chosen: bool
    note: str


@dataclass(frozen=True)
class Rationale:
    """Why a decision was taken: a sentence and the options weighed."""

    summary: str
    options: tuple[OptionSummary, ...]


@dataclass(frozen=True)
class PlannedWorkOrder:
    """A proposed (or firm, kept) preventive work order."""

    asset: str
    task: str
    start: float
    end: float
    crew: tuple[str, ...]
    parts: tuple[PartLine, ...]
    expected_cost: float
    prob_fail_before: float
    preventive_cost: float
    expected_failure_cost: float
    lost_production: float
    churn_cost: float
    window: str | None
    firm: bool
    order_id: str | None
    rationale: Rationale


@dataclass(frozen=True)
class RunToFailure:
    """An asset left without work in the horizon, and why."""

    asset: str
    task: str
    expected_cost: float
    prob_fail_in_horizon: float
    blocked: str | None
    rationale: Rationale


@dataclass(frozen=True)
class MaintenancePlan:
    """The plan: work orders, assets left to run, totals and how the solver ended."""

    now: float
    horizon_end: float
    work_orders: tuple[PlannedWorkOrder, ...]
    run_to_failure: tuple[RunToFailure, ...]
    total_expected_cost: float
    all_run_to_failure_cost: float
    preventive_cost: float
    expected_failure_cost: float
    lost_production: float
    churn_cost: float
    status: str
    solver: str
    solve_seconds: float
    bound: float | None
    options: int
    conflicts: tuple[PlanConflict, ...]
    warnings: tuple[str, ...]
    epoch_iso: str | None = None


def _conflict_error(conflicts: list[PlanConflict]) -> MaintenanceInfeasible:
    lines = "; ".join(c.message for c in conflicts)
    return MaintenanceInfeasible(f"the maintenance plan cannot be made: {lines}",
                                 conflicts=[asdict(c) for c in conflicts])


def plan_maintenance(problem: MaintenanceProblem, *, solver: str = DEFAULT_SOLVER,
                     time_limit_s: float = DEFAULT_TIME_LIMIT_S, allow_partial: bool = False,
                     max_starts: int = 24, max_crews: int = 8) -> MaintenancePlan:
    """Plan preventive maintenance for ``problem`` (see the module docstring)."""
    validate(problem)
    prep = prepare(problem, max_starts=max_starts, max_crews=max_crews)
    hard = [c for c in prep.conflicts
            if c.kind in ("firm-overlap", "firm-parts") or (c.kind not in SOFT_CONFLICTS and not allow_partial)]
    if hard:
        raise _conflict_error(hard)
    result = solve(prep, solver, time_limit_s)
    return _assemble(prep, result)


def _window_label(w: Window | None) -> str:
    return f"window {w.id} ({w.kind})" if w is not None else "outside any window"


def _blockers(prep: Prepared, case: AssetCase, start: float, chosen: list[Option],
              by_case: dict[int, list[Option]]) -> str:
    """Why no option of ``case`` at ``start`` could be taken alongside ``chosen``."""
    mine = [o for o in by_case.get(case.index, []) if abs(o.start - start) <= _EPS]
    if not mine:
        if case.blocked:
            return case.blocked
        return ("no crew with the skills on shift and free of firm work then, a part not there yet, or not among "
                "the cheapest starts handed to the optimiser")
    reasons: list[str] = []
    for o in mine:
        for other in chosen:
            if other.case == o.case:
                continue
            busy = sorted(set(o.crew) & set(other.crew))
            if busy and other.start < o.end - _EPS and o.start < other.end - _EPS:
                who = prep.cases[other.case].asset.id
                reasons += [f"{t} busy on {who} ({other.start:g}–{other.end:g} h)" for t in busy]
    limited = {part: left for part, left, _ in prep.part_limits}
    for part in sorted({p for o in mine for p, _ in o.stock_draw if p in limited}):
        users = sorted({prep.cases[o.case].asset.id for o in chosen for p, _ in o.stock_draw if p == part})
        if users:
            reasons.append(f"the {limited[part]} {part} in stock go to {', '.join(users)}")
    return "; ".join(dict.fromkeys(reasons)) or "a cheaper combination for the whole plan needed it elsewhere"


def _rationale(prep: Prepared, case: AssetCase, pick: Option | None, chosen: list[Option],
               by_case: dict[int, list[Option]]) -> Rationale:
    p_h = case.p_horizon
    rtf = OptionSummary("run to failure", None, None, None, case.nowork_cost, p_h, 0.0, case.nowork_churn,
                        pick is None, "")
    cands = prep.candidates.get(case.index, [])
    starts: list[tuple[float, float, float]] = list(cands[:4])  # the best start of each of the best windows
    if pick is not None and all(abs(s - pick.start) > _EPS for s, _, _ in starts):
        starts.append((pick.start, pick.cost, pick.p_fail))
    prev = case.previous
    if prev is not None and prev.start >= prep.problem.now and all(abs(s - prev.start) > _EPS for s, _, _ in starts):
        prev_cost, prev_p, _, _ = costs_at(prep.problem, case, np.array([prev.start]))
        starts.append((prev.start, float(prev_cost[0]), float(prev_p[0])))
    d = case.task.duration_h
    summaries: list[OptionSummary] = []
    cheaper_blocked: list[str] = []
    for s, c, p in sorted(starts):
        w = window_of(case, s, s + d)
        is_pick = pick is not None and abs(s - pick.start) <= _EPS
        _, _, lost_v, churn_v = costs_at(prep.problem, case, np.array([s]))
        lost, churn = float(lost_v[0]), float(churn_v[0])
        if is_pick:
            note = "chosen"
        elif c >= case.nowork_cost - 1e-9:
            note = f"costs {c - case.nowork_cost:,.0f} more than running to failure"
        elif pick is not None and c >= pick.cost - 1e-9:
            note = f"costs {c - pick.cost:,.0f} more than the chosen start"
        else:
            why = _blockers(prep, case, s, chosen, by_case)
            note = f"cheaper but not possible: {why}"
            cheaper_blocked.append(f"{s:g} h ({why})")
        label = f"start {s:g} h, {_window_label(w)}"
        summaries.append(OptionSummary(label, s, s + d, w.id if w else None, c, p, lost, churn, is_pick, note))
    if pick is None:
        best = min((x for x in summaries), key=lambda x: x.expected_cost, default=None)
        if case.blocked:
            summary = (f"Run to failure: preventive work would pay but cannot be planned ({case.blocked}); "
                       f"expected failure cost {case.nowork_cost:,.0f} (P(fail within horizon) {p_h:.1%}).")
        elif best is None or best.expected_cost >= case.nowork_cost - 1e-9:
            alt = f"; the cheapest work ({best.label}) would cost {best.expected_cost:,.0f}" if best else ""
            summary = (f"Run to failure: P(fail within horizon) {p_h:.1%} makes its expected cost "
                       f"{case.nowork_cost:,.0f}, no more than preventive work{alt}.")
        else:
            summary = (f"Run to failure: the work that would pay could not be fitted ({'; '.join(cheaper_blocked)}); "
                       f"expected cost {case.nowork_cost:,.0f}.")
        rtf = OptionSummary(rtf.label, None, None, None, rtf.expected_cost, p_h, 0.0, rtf.churn, True, "chosen")
    else:
        w = window_of(case, pick.start, pick.end)
        where = _window_label(w) if w else f"outside any window (lost production {pick.lost:,.0f})"
        summary = (f"Preventive {case.task.name} at {pick.start:g} h, {where}: expected cost {pick.cost:,.0f} "
                   f"(P(fail before) {pick.p_fail:.1%}) against {case.nowork_cost:,.0f} for running to failure "
                   f"(P(fail within horizon) {p_h:.1%}), saving {case.nowork_cost - pick.cost:,.0f}.")
        if cheaper_blocked:
            summary += f" Cheaper starts could not be taken: {'; '.join(cheaper_blocked)}."
        else:
            summary += " It is the cheapest option considered."
        if case.previous is not None:
            summary += (" Keeps the previous plan's start." if abs(pick.start - case.previous.start) <= _EPS else
                        f" Moved from {case.previous.start:g} h: the gain outweighs the churn penalty "
                        f"{prep.problem.churn_penalty:,.0f}.")
        rtf = OptionSummary(rtf.label, None, None, None, rtf.expected_cost, p_h, 0.0, rtf.churn, False,
                            f"costs {case.nowork_cost - pick.cost:,.0f} more than the chosen work")
    return Rationale(summary, (rtf, *summaries))


def _part_lines(prep: Prepared, orders: list[tuple[float, str, list[tuple[str, int]]]]
                ) -> dict[tuple[float, str], tuple[PartLine, ...]]:
    """Stock goes to the earliest work; later work orders what is missing, in time."""
    problem = prep.problem
    stock = {p.part: p for p in problem.parts}
    left = {p.part: p.on_hand for p in problem.parts}
    out: dict[tuple[float, str], tuple[PartLine, ...]] = {}
    for start, asset, needs in sorted(orders):
        lines: list[PartLine] = []
        for part, q in needs:
            arrival = problem.now + stock[part].lead_time_h
            if start < problem.now:
                lines.append(PartLine(part, q, "stock", problem.now))
            elif left[part] >= q:
                left[part] -= q
                lines.append(PartLine(part, q, "stock", problem.now))
            else:
                lines.append(PartLine(part, q, "order", arrival))
        out[(start, asset)] = tuple(lines)
    return out


def _firm_order(prep: Prepared, order: ExistingOrder, parts: tuple[PartLine, ...]) -> PlannedWorkOrder:
    problem = prep.problem
    asset = next(a for a in problem.assets if a.id == order.asset)
    task = next(t for t in problem.tasks if t.model == asset.model and t.name == order.task)
    rate = downtime_rate(problem, asset.id)
    scope = stopped_ids(problem, asset.id)
    mine = [w for w in prep.windows if not w.scope or scope & set(w.scope)]
    d = task.duration_h
    cover = 0.0
    if mine:
        ws, we = merge([(w.start, w.end) for w in mine])
        cover = float(overlap(np.array([order.start]), d, ws, we)[0])
    p = asset.failure.prob_fail_before(order.start, now=problem.now) if asset.failure is not None else 0.0
    fail = p * (task.corrective_cost + task.corrective_downtime_h * rate)
    lost = rate * (d - cover)
    best_w = max(mine, key=lambda w: min(order.start + d, w.end) - max(order.start, w.start), default=None)
    if best_w is not None and min(order.start + d, best_w.end) - max(order.start, best_w.start) <= _EPS:
        best_w = None
    cost = task.preventive_cost + fail + lost
    why = Rationale(f"Firm order {order.id} kept as it stands (expected cost {cost:,.0f}).", ())
    return PlannedWorkOrder(asset.id, task.name, order.start, order.start + d, order.crew, parts, cost, p,
                            task.preventive_cost, fail, lost, 0.0, best_w.id if best_w else None, True, order.id, why)


def _assemble(prep: Prepared, result: SolveResult) -> MaintenancePlan:
    problem = prep.problem
    chosen = [prep.options[k] for k in result.chosen]
    pick_by_case = {o.case: o for o in chosen}
    by_case: dict[int, list[Option]] = {}
    for o in prep.options:
        by_case.setdefault(o.case, []).append(o)
    needs = {}
    for o in chosen:
        case = prep.cases[o.case]
        needs[(o.start, case.asset.id)] = [(n.part, n.quantity) for n in case.task.parts]
    by_asset = {a.id: a for a in problem.assets}
    for f in prep.firm:
        task = next(t for t in problem.tasks if t.model == by_asset[f.asset].model and t.name == f.task)
        needs[(f.start, f.asset)] = [(n.part, n.quantity) for n in task.parts]
    lines = _part_lines(prep, [(s, a, n) for (s, a), n in needs.items()])
    orders: list[PlannedWorkOrder] = [_firm_order(prep, f, lines[(f.start, f.asset)]) for f in prep.firm]
    idle: list[RunToFailure] = []
    for case in prep.cases:
        pick = pick_by_case.get(case.index)
        why = _rationale(prep, case, pick, chosen, by_case)
        if pick is None:
            idle.append(RunToFailure(case.asset.id, case.task.name, case.nowork_cost, case.p_horizon, case.blocked,
                                     why))
            continue
        w = window_of(case, pick.start, pick.end)
        prev = case.previous
        orders.append(PlannedWorkOrder(
            case.asset.id, case.task.name, pick.start, pick.end, pick.crew, lines[(pick.start, case.asset.id)],
            pick.cost, pick.p_fail, pick.preventive, pick.failure, pick.lost, pick.churn, w.id if w else None, False,
            prev.id if prev is not None else None, why))
    orders.sort(key=lambda o: (o.start, o.asset))
    total = result.objective + sum(o.expected_cost for o in orders if o.firm)
    rtf_all = sum(c.p_horizon * c.failure_cost for c in prep.cases)
    return MaintenancePlan(
        problem.now, problem.end, tuple(orders), tuple(idle), total, rtf_all,
        sum(o.preventive_cost for o in orders),
        sum(o.expected_failure_cost for o in orders) + sum(c.p_horizon * c.failure_cost for c in prep.cases
                                                            if c.index not in pick_by_case),
        sum(o.lost_production for o in orders),
        sum(o.churn_cost for o in orders) + sum(c.nowork_churn for c in prep.cases if c.index not in pick_by_case),
        result.status, result.solver, result.seconds, result.bound, len(prep.options), tuple(prep.conflicts),
        tuple(prep.warnings), problem.epoch.isoformat() if problem.epoch is not None else None)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_proposals(plan: MaintenancePlan, problem: MaintenanceProblem | None = None) -> list[dict[str, Any]]:
    """The plan's new (non-firm) work orders as plain, JSON-ready dicts for a work-order store.

    Each dict has every field of :class:`PlannedWorkOrder` (the rationale nested, parts as a
    list) plus ``status: "proposed"``, ``duration_h`` and, when the problem has an ``epoch``,
    ``start_at``/``end_at`` as ISO 8601 datetimes.
    """
    epoch = problem.epoch if problem is not None else (
        datetime.fromisoformat(plan.epoch_iso) if plan.epoch_iso is not None else None)
    out: list[dict[str, Any]] = []
    for wo in plan.work_orders:
        if wo.firm:
            continue
        d: dict[str, Any] = _clean(asdict(wo))
        d["status"] = "proposed"
        d["duration_h"] = wo.end - wo.start
        if epoch is not None:
            d["start_at"] = (epoch + timedelta(hours=wo.start)).isoformat()
            d["end_at"] = (epoch + timedelta(hours=wo.end)).isoformat()
        out.append(d)
    return out
