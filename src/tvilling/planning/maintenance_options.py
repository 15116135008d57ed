"""Candidate work options of a maintenance problem, with their expected costs, and the conflicts.

For each asset the options are: no work in the horizon (run to failure), or one preventive work
order at a candidate start with a crew. Candidate starts are a grid of ``step_h`` hours from
``now`` plus each window's start, the latest start that still ends inside each window, each
needed part's arrival and the previous plan's start. An option's expected cost is

    preventive + P(fail before start) × (corrective + unplanned downtime × rate)
    + rate × hours of work outside windows + churn (moving a previous order)

and running to failure costs P(fail within the horizon) × (corrective + downtime × rate), plus
churn when a previous order is dropped. Options no cheaper than running to failure are never
worth taking (running to failure uses no crew nor parts), so they are dropped before the
optimiser sees them; of the rest each asset keeps its ``max_starts`` cheapest starts, each with
up to ``max_crews`` crews of distinct technicians who hold the roles' skills and are on shift for
the whole work and not held by a firm order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tvilling.planning.maintenance_types import (
    Asset,
    ExistingOrder,
    MaintenanceProblem,
    TaskType,
    Window,
    task_for,
)

FloatArray = NDArray[np.float64]
_EPS = 1e-6


@dataclass(frozen=True)
class PlanConflict:
    """Why (part of) the problem cannot be planned as asked.

    Hard kinds (the plan is refused unless partial plans are allowed): ``missing-skill``,
    ``part-unavailable`` (no stock, and an order cannot arrive in the horizon), ``no-crew`` (no
    crew is ever on shift for the work), ``window-in-past``, ``firm-overlap``, ``firm-parts``.
    Soft kinds (the plan is made and lists them): ``part-late`` (the part arrives only when the
    work no longer pays), ``crew-late`` (crews are on shift only when it no longer pays).
    """

    kind: str
    message: str
    asset: str | None = None
    subject: str | None = None


@dataclass
class AssetCase:
    """One asset the optimiser decides on."""

    index: int
    asset: Asset
    task: TaskType
    rate: float
    failure_cost: float
    p_horizon: float
    nowork_cost: float
    nowork_churn: float
    previous: ExistingOrder | None
    windows: list[Window]
    best_relaxed: tuple[float, float] | None = None  # (start, cost) ignoring crews and parts
    blocked: str | None = None  # why work that would pay cannot be planned


@dataclass(frozen=True)
class Option:
    """A preventive work order the optimiser may choose."""

    case: int
    start: float
    end: float
    crew: tuple[str, ...]
    cost: float
    p_fail: float
    preventive: float
    failure: float
    lost: float
    churn: float
    stock_draw: tuple[tuple[str, int], ...]


@dataclass
class Prepared:
    """The options and constraints handed to a solver."""

    problem: MaintenanceProblem
    cases: list[AssetCase]
    options: list[Option]
    tech_cliques: list[list[int]]
    part_limits: list[tuple[str, int, list[tuple[int, int]]]]  # part, stock left, (option, quantity)
    firm: list[ExistingOrder]
    conflicts: list[PlanConflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    candidates: dict[int, list[tuple[float, float, float]]] = field(default_factory=dict)  # case -> (start, cost, p)
    windows: list[Window] = field(default_factory=list)  # the windows ahead, clipped to the horizon


def merge(intervals: list[tuple[float, float]]) -> tuple[FloatArray, FloatArray]:
    """Union of intervals as sorted disjoint ``(starts, ends)`` arrays (touching ones joined)."""
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1] + _EPS:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    arr = np.array(out, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def overlap(starts: FloatArray, duration: float, ws: FloatArray, we: FloatArray) -> FloatArray:
    """Hours of ``[s, s + duration)`` covered by the sorted disjoint intervals ``(ws, we)``, per start."""
    if len(ws) == 0:
        return np.zeros_like(starts)
    before = np.concatenate([[0.0], np.cumsum(we - ws)])

    def covered(t: FloatArray) -> FloatArray:  # window hours before t
        k = np.searchsorted(ws, t, side="right") - 1
        inside = np.clip(t - ws[np.maximum(k, 0)], 0.0, (we - ws)[np.maximum(k, 0)])
        result: FloatArray = np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0.0)
        return result

    return covered(starts + duration) - covered(starts)


def window_of(case: AssetCase, start: float, end: float) -> Window | None:
    """The window covering most of ``[start, end)`` for this asset, if any."""
    best, best_cover = None, 0.0
    for w in case.windows:
        cover = min(end, w.end) - max(start, w.start)
        if cover > best_cover + _EPS:
            best, best_cover = w, cover
    return best


def _duration(problem: MaintenanceProblem, order: ExistingOrder) -> float:
    model = next(a.model for a in problem.assets if a.id == order.asset)
    return next(t.duration_h for t in problem.tasks if t.model == model and t.name == order.task)


def _firm_checks(problem: MaintenanceProblem, firm: list[ExistingOrder]) -> tuple[list[PlanConflict], dict[str, int]]:
    """Overlaps between firm orders, and the stock left after those that draw from it."""
    conflicts: list[PlanConflict] = []
    spans = [(o, o.start, o.start + _duration(problem, o)) for o in firm]
    for (a, sa, ea), (b, sb, eb) in itertools.combinations(spans, 2):
        if sa < eb - _EPS and sb < ea - _EPS:
            shared = sorted(set(a.crew) & set(b.crew))
            if a.asset == b.asset:
                conflicts.append(PlanConflict("firm-overlap", f"firm orders {a.id} and {b.id} both hold asset "
                                              f"{a.asset} between {max(sa, sb):g} h and {min(ea, eb):g} h",
                                              a.asset, f"{a.id},{b.id}"))
            for tech in shared:
                conflicts.append(PlanConflict("firm-overlap", f"firm orders {a.id} ({a.asset}) and {b.id} ({b.asset}) "
                                              f"both need technician {tech} between {max(sa, sb):g} h and "
                                              f"{min(ea, eb):g} h", a.asset, f"{a.id},{b.id}"))
    left = {p.part: p.on_hand for p in problem.parts}
    arrival = {p.part: problem.now + p.lead_time_h for p in problem.parts}
    by_asset = {a.id: a for a in problem.assets}
    for o, s, _ in sorted(spans, key=lambda x: x[1]):
        if s < problem.now:
            continue  # started already: its parts were drawn
        task = next(t for t in problem.tasks if t.model == by_asset[o.asset].model and t.name == o.task)
        for need in task.parts:
            if s < arrival[need.part] - _EPS:
                left[need.part] -= need.quantity
                if left[need.part] < 0:
                    conflicts.append(PlanConflict(
                        "firm-parts", f"firm order {o.id} ({o.asset}) starts at {s:g} h and needs {need.quantity} × "
                        f"{need.part}, but the stock is used up and an order arrives only at {arrival[need.part]:g} h",
                        o.asset, need.part))
    return conflicts, {k: max(v, 0) for k, v in left.items()}


class _Techs:
    """Technicians' merged shifts, firm bookings and skills, for fast availability checks."""

    def __init__(self, problem: MaintenanceProblem, firm: list[ExistingOrder]) -> None:
        self.ids = [t.id for t in problem.technicians]
        self.skills = {t.id: set(t.skills) for t in problem.technicians}
        self.shifts = {t.id: merge([(s.start, s.end) for s in t.shifts]) for t in problem.technicians}
        busy: dict[str, list[tuple[float, float]]] = {t: [] for t in self.ids}
        for o in firm:
            d = _duration(problem, o)
            for c in o.crew:
                busy[c].append((o.start, o.start + d))
        self.busy = {t: merge(v) for t, v in busy.items()}
        self.by_skill: dict[str, list[str]] = {}
        for t in problem.technicians:
            for s in t.skills:
                self.by_skill.setdefault(s, []).append(t.id)

    def available(self, tech: str, starts: FloatArray, duration: float) -> NDArray[np.bool_]:
        """Whether ``tech`` is on one shift for all of ``[s, s + duration)`` and free of firm work."""
        ss, se = self.shifts[tech]
        if len(ss) == 0:
            return np.zeros(len(starts), dtype=bool)
        k = np.searchsorted(ss, starts + _EPS, side="right") - 1
        ok = (k >= 0) & (se[np.maximum(k, 0)] >= starts + duration - _EPS)
        bs, be = self.busy[tech]
        if len(bs):
            clash = (bs[None, :] < starts[:, None] + duration - _EPS) & (be[None, :] > starts[:, None] + _EPS)
            ok &= ~clash.any(axis=1)
        return ok


def _crews(roles: tuple[str, ...], eligible: list[list[str]], first: tuple[str, ...] | None,
           limit: int, rotate: int) -> list[tuple[str, ...]]:
    """Up to ``limit`` crews of distinct technicians, one per role; ``first`` (if valid) leads."""
    lists = [lst[rotate % len(lst):] + lst[:rotate % len(lst)] if lst else lst for lst in eligible]
    out: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    if first is not None and len(first) == len(roles) and len(set(first)) == len(first) \
            and all(c in lst for c, lst in zip(first, eligible, strict=True)):
        out.append(first)
        seen.add(tuple(sorted(first)))
    for combo in itertools.product(*lists):
        if len(out) >= limit:
            break
        if len(set(combo)) < len(combo):
            continue
        key = tuple(sorted(combo))
        if key in seen:
            continue
        seen.add(key)
        out.append(tuple(combo))
    return out


def _starts(problem: MaintenanceProblem, case: AssetCase, arrivals: list[float]) -> FloatArray:
    d = case.task.duration_h
    lo, hi = problem.now, problem.end - d
    if hi < lo - _EPS:
        return np.zeros(0)
    grid = lo + problem.step_h * np.arange(int(np.floor((hi - lo) / problem.step_h + _EPS)) + 1)
    extra = [max(w.start, lo) for w in case.windows] + [w.end - d for w in case.windows if w.end - d >= w.start]
    extra += arrivals
    if case.previous is not None:
        extra.append(case.previous.start)
    cand = np.concatenate([grid, np.array(extra, dtype=np.float64)])
    cand = cand[(cand >= lo - _EPS) & (cand <= hi + _EPS)]
    return np.unique(np.round(np.clip(cand, lo, hi), 6))


def prepare(problem: MaintenanceProblem, *, max_starts: int = 24, max_crews: int = 8) -> Prepared:
    """Build every asset's options, the technicians' cliques and the parts' limits."""
    now, end = problem.now, problem.end
    firm = [o for o in problem.existing if o.firm]
    previous = {o.asset: o for o in problem.existing if not o.firm}
    conflicts, stock_left = _firm_checks(problem, firm)
    windows: list[Window] = []
    for w in problem.windows:
        if w.end <= now + _EPS:
            conflicts.append(PlanConflict("window-in-past", f"window {w.id} ({w.kind}, {w.start:g}–{w.end:g} h) "
                                          f"ended before now ({now:g} h)", None, w.id))
        elif w.start < end:
            windows.append(Window(w.id, max(w.start, now), min(w.end, end), w.kind, w.scope))
    techs = _Techs(problem, firm)
    parts = {p.part: p for p in problem.parts}
    firm_assets = {o.asset for o in firm}
    by_id = {a.id: a for a in problem.assets}
    window_sets: dict[frozenset[str], list[Window]] = {}
    cases: list[AssetCase] = []
    options: list[Option] = []
    candidates: dict[int, list[tuple[float, float, float]]] = {}
    for asset in problem.assets:
        prev = previous.get(asset.id)
        if asset.id in firm_assets or (asset.failure is None and prev is None):
            continue
        task = task_for(problem, asset)
        scope = _closure(by_id, asset.id)
        rate = _rate(problem, by_id, scope)
        fail_cost = task.corrective_cost + task.corrective_downtime_h * rate
        p_h = asset.failure.prob_fail_before(end, now=now) if asset.failure is not None else 0.0
        churn = problem.churn_penalty if prev is not None else 0.0
        key = frozenset(w.id for w in windows if not w.scope or scope & set(w.scope))
        mine = window_sets.setdefault(key, [w for w in windows if w.id in key])
        case = AssetCase(len(cases), asset, task, rate, fail_cost, p_h, p_h * fail_cost + churn, churn, prev, mine)
        cases.append(case)
        arrivals = [now + parts[n.part].lead_time_h for n in task.parts if parts[n.part].lead_time_h > 0]
        starts = _starts(problem, case, arrivals)
        if len(starts) == 0:
            continue
        d = task.duration_h
        cost, p, lost, churn_v = costs_at(problem, case, starts)
        order = np.argsort(cost, kind="stable")
        candidates[case.index] = _best_per_window(mine, starts, d, cost, p)
        best = int(order[0])
        case.best_relaxed = (float(starts[best]), float(cost[best]))
        pays = cost < case.nowork_cost - 1e-9
        if not pays.any():
            continue
        # parts: a start before a part's arrival needs that part in stock
        feasible = pays.copy()
        draws: list[tuple[str, int, float]] = []
        for need in task.parts:
            arrival = now + parts[need.part].lead_time_h
            if arrival <= now + _EPS:
                continue
            if stock_left[need.part] < need.quantity:
                feasible &= starts >= arrival - _EPS
            else:
                draws.append((need.part, need.quantity, arrival))
        missing = sorted({s for s in task.skills if s not in techs.by_skill})
        if not missing:
            counts = {s: task.skills.count(s) for s in set(task.skills)}
            missing = sorted(s for s, n in counts.items() if len(techs.by_skill[s]) < n)
        if missing:
            case.blocked = (f"task {task.name} needs skill(s) {', '.join(missing)}, "
                            "which no (or too few) technician(s) hold")
            conflicts.append(PlanConflict("missing-skill", f"asset {asset.id}: {case.blocked}", asset.id,
                                          ",".join(missing)))
            continue
        if not feasible.any():
            short = [n.part for n in task.parts if stock_left[n.part] < n.quantity]
            arr = max(now + parts[s].lead_time_h for s in short)
            if arr > end - d + _EPS:
                case.blocked = (f"part(s) {', '.join(short)} not in stock and an order arrives only at {arr:g} h, too "
                                f"late for {task.name} ({d:g} h) before the horizon ends at {end:g} h")
                conflicts.append(PlanConflict("part-unavailable", f"asset {asset.id}: {case.blocked}", asset.id,
                                              ",".join(short)))
            else:
                case.blocked = (f"part(s) {', '.join(short)} not in stock; an order arrives at {arr:g} h, when "
                                "preventive work no longer pays")
                conflicts.append(PlanConflict("part-late", f"asset {asset.id}: {case.blocked}", asset.id,
                                              ",".join(short)))
            continue
        relevant = sorted({t for s in task.skills for t in techs.by_skill[s]})
        idx = _diverse(np.nonzero(feasible)[0], starts, cost, d, mine, [a for _, _, a in draws] + arrivals,
                       max_starts)
        avail = {t: techs.available(t, starts[idx], d) for t in relevant}
        kept = 0
        for j, i in enumerate(idx):
            if kept >= max_starts:
                break
            eligible = [[t for t in techs.by_skill[role] if avail[t][j]] for role in task.skills]
            if any(not e for e in eligible):
                continue
            s = float(starts[i])
            first = prev.crew if prev is not None and abs(prev.start - s) <= _EPS else None
            crews = _crews(task.skills, eligible, first, max_crews, case.index)
            if not crews:
                continue
            kept += 1
            stock_draw = tuple((part, q) for part, q, arrival in draws if s < arrival - _EPS)
            for crew in crews:
                options.append(Option(case.index, s, s + d, crew, float(cost[i]), float(p[i]), task.preventive_cost,
                                      float(p[i]) * fail_cost, float(lost[i]), float(churn_v[i]), stock_draw))
        if kept == 0:
            anywhere = [techs.available(t, starts, d) for t in relevant]
            kind = "crew-late" if any(
                all(any(anywhere[relevant.index(t)][j] for t in techs.by_skill[role]) for role in task.skills)
                for j in range(len(starts))) else "no-crew"
            when = "at any start that pays" if kind == "crew-late" else "at any time"
            case.blocked = (f"no crew for {task.name} ({', '.join(task.skills)}; {d:g} h) is on shift and free of firm "
                            f"work {when} before {end:g} h")
            conflicts.append(PlanConflict(kind, f"asset {asset.id}: {case.blocked}", asset.id,
                                          ",".join(sorted(set(task.skills)))))
    prepared = Prepared(problem, cases, options, _cliques(options), _part_limits(options, stock_left), firm,
                        conflicts, candidates=candidates, windows=windows)
    for task in problem.tasks:
        for skill in task.skills:
            if skill not in techs.by_skill and not any(c.kind == "missing-skill" and c.subject
                                                       and skill in c.subject.split(",") for c in conflicts):
                prepared.warnings.append(f"task {task.model}/{task.name} needs skill {skill}, "
                                         "which no technician holds")
    return prepared


def costs_at(problem: MaintenanceProblem, case: AssetCase, starts: FloatArray
             ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Expected cost of preventive work at each start: (total, P(fail before), lost production, churn)."""
    d = case.task.duration_h
    failure = case.asset.failure
    p = failure.prob_fail_before_many(starts, now=problem.now) if failure is not None else np.zeros(len(starts))
    ws, we = merge([(w.start, w.end) for w in case.windows]) if case.windows else (np.zeros(0), np.zeros(0))
    lost = case.rate * (d - overlap(starts, d, ws, we))
    prev = case.previous
    churn = (np.where(np.abs(starts - prev.start) > _EPS, problem.churn_penalty, 0.0) if prev is not None
             else np.zeros(len(starts)))
    cost = case.task.preventive_cost + p * case.failure_cost + lost + churn
    return cost, p, lost, churn


def _best_per_window(windows: list[Window], starts: FloatArray, duration: float, cost: FloatArray,
                     p: FloatArray, keep: int = 8, scan: int = 200) -> list[tuple[float, float, float]]:
    """The cheapest start in each window (and outside all), cheapest first: what the rationale shows.

    Only the ``scan`` cheapest starts are looked at, which holds the best of the first windows.
    """
    top = np.argsort(cost, kind="stable")[:scan]
    if windows:
        ws = np.array([w.start for w in windows])
        we = np.array([w.end for w in windows])
        st = starts[top][:, None]
        cover = np.minimum(st + duration, we[None, :]) - np.maximum(st, ws[None, :])
        label = np.where(cover.max(axis=1) > _EPS, cover.argmax(axis=1), -1)
    else:
        label = np.full(len(top), -1)
    _, first = np.unique(label, return_index=True)  # top is sorted by cost: first of a label is its best
    best = sorted(int(top[i]) for i in first)
    out = sorted(((float(starts[i]), float(cost[i]), float(p[i])) for i in best), key=lambda x: x[1])
    return out[:keep]


def _diverse(idx: NDArray[np.intp], starts: FloatArray, cost: FloatArray, duration: float, windows: list[Window],
             arrivals: list[float], max_starts: int) -> NDArray[np.intp]:
    """The feasible starts in the order they are tried: the cheapest half of ``max_starts`` first, then
    the cheapest start after each part's arrival, then the best start of each window (cheapest window
    first), then the rest by cost. Cheap starts alone would crowd into one window and leave the
    optimiser nothing to fall back on when a technician or a part is taken."""
    idx = idx[np.argsort(cost[idx], kind="stable")]
    head = [int(i) for i in idx[: max(1, max_starts // 2)]]
    for a in arrivals:
        after = idx[starts[idx] >= a - _EPS]
        if len(after):
            head.append(int(after[0]))
    if windows and len(idx):
        ws = np.array([w.start for w in windows])
        we = np.array([w.end for w in windows])
        st = starts[idx][:, None]
        cover = np.minimum(st + duration, we[None, :]) - np.maximum(st, ws[None, :])
        label = np.where(cover.max(axis=1) > _EPS, cover.argmax(axis=1), -1)
        _, first = np.unique(label, return_index=True)
        head += [int(idx[k]) for k in sorted(first)]
    ordered = list(dict.fromkeys(head + [int(i) for i in idx]))
    return np.array(ordered, dtype=np.intp)


def _closure(by_id: dict[str, Asset], asset_id: str) -> frozenset[str]:
    """The asset and everything that stops with it, transitively."""
    seen: set[str] = set()
    stack = [asset_id]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            if node in by_id:
                stack.extend(by_id[node].stops)
    return frozenset(seen)


def _rate(problem: MaintenanceProblem, by_id: dict[str, Asset], scope: frozenset[str]) -> float:
    return sum(float(problem.stop_costs.get(n, 0.0)) + (by_id[n].downtime_cost_per_h if n in by_id else 0.0)
               for n in scope)


def _cliques(options: list[Option]) -> list[list[int]]:
    """Per technician, the sets of options that overlap at some instant (maximal at start points)."""
    per_tech: dict[str, list[int]] = {}
    for k, o in enumerate(options):
        for t in o.crew:
            per_tech.setdefault(t, []).append(k)
    cliques: list[list[int]] = []
    for members in per_tech.values():
        idx = np.array(members)
        s = np.array([options[k].start for k in members])
        e = np.array([options[k].end for k in members])
        cases = np.array([options[k].case for k in members])
        seen: set[tuple[int, ...]] = set()
        for tau in np.unique(s):
            inside = (s <= tau + _EPS) & (e > tau + _EPS)
            if len(np.unique(cases[inside])) < 2:
                continue  # options of one asset exclude each other already
            key = tuple(int(k) for k in idx[inside])
            if key not in seen:
                seen.add(key)
                cliques.append(list(key))
    return cliques


def _part_limits(options: list[Option], stock_left: dict[str, int]) -> list[tuple[str, int, list[tuple[int, int]]]]:
    limits: list[tuple[str, int, list[tuple[int, int]]]] = []
    per_part: dict[str, list[tuple[int, int]]] = {}
    for k, o in enumerate(options):
        for part, q in o.stock_draw:
            per_part.setdefault(part, []).append((k, q))
    for part, terms in per_part.items():
        worst: dict[int, int] = {}
        for k, q in terms:
            worst[options[k].case] = max(worst.get(options[k].case, 0), q)
        if sum(worst.values()) > stock_left[part]:
            limits.append((part, stock_left[part], terms))
    return limits
