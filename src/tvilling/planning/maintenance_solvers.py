"""Solvers for the option-selection model built by :mod:`maintenance_options`.

The model: a binary per option; at most one option per asset; for each technician, at most one
option among those overlapping at any instant (the cliques of an interval graph, taken at the
options' start times, which is exact); for each part, the options that start before an order
could arrive draw at most the stock left. The objective is the sum over assets of the
run-to-failure cost plus, for each chosen option, its cost minus that (always negative).

* ``cpsat``: OR-Tools CP-SAT, costs scaled to integer cents, a greedy plan as the hint.
* ``highs``: HiGHS through SciPy's ``milp`` (SciPy is the ``sim`` extra); when the time limit
  stops it, the better of its incumbent and the greedy plan is returned.
* ``greedy``: assets by largest saving first, each its cheapest option that still fits.

CP-SAT and HiGHS stop at a relative gap of 1e-5 on the expected total cost (reported as
``optimal``) or at the time limit, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tvilling.core.errors import Invalid, Unavailable
from tvilling.planning.maintenance_options import Option, Prepared

REL_GAP = 1e-5


@dataclass(frozen=True)
class SolveResult:
    """The chosen options and how the solver ended."""

    chosen: tuple[int, ...]
    status: str  # "optimal" | "feasible"
    solver: str
    seconds: float
    objective: float
    bound: float | None


def _base(prep: Prepared) -> float:
    return sum(c.nowork_cost for c in prep.cases)


def _delta(prep: Prepared) -> np.ndarray:
    return np.array([o.cost - prep.cases[o.case].nowork_cost for o in prep.options], dtype=np.float64)


def objective(prep: Prepared, chosen: tuple[int, ...] | list[int]) -> float:
    """Expected total cost of the decided assets when ``chosen`` options are taken."""
    delta = _delta(prep)
    return _base(prep) + float(sum(delta[k] for k in chosen))


def violations(prep: Prepared, chosen: tuple[int, ...] | list[int]) -> list[str]:
    """Every constraint that ``chosen`` breaks (empty when the selection is feasible)."""
    out: list[str] = []
    picked = set(chosen)
    per_case: dict[int, int] = {}
    for k in chosen:
        per_case[prep.options[k].case] = per_case.get(prep.options[k].case, 0) + 1
    out += [f"asset {prep.cases[c].asset.id} has {n} orders" for c, n in per_case.items() if n > 1]
    for clique in prep.tech_cliques:
        n = sum(1 for k in clique if k in picked)
        if n > 1:
            out.append(f"technician double-booked among options {sorted(k for k in clique if k in picked)}")
    for part, left, terms in prep.part_limits:
        used = sum(q for k, q in terms if k in picked)
        if used > left:
            out.append(f"part {part}: {used} drawn before an order can arrive, {left} in stock")
    return out


def solve_greedy(prep: Prepared, time_limit_s: float = 0.0) -> SolveResult:
    """Largest saving first; each asset takes its cheapest option that still fits."""
    t0 = time.perf_counter()
    delta = _delta(prep)
    by_case: dict[int, list[int]] = {}
    for k, o in enumerate(prep.options):
        by_case.setdefault(o.case, []).append(k)
    for ks in by_case.values():
        ks.sort(key=lambda k: delta[k])
    booked: dict[str, list[tuple[float, float]]] = {}
    left = {part: stock for part, stock, _ in prep.part_limits}
    limited = {part for part in left}
    chosen: list[int] = []
    for case in sorted(by_case, key=lambda c: delta[by_case[c][0]]):
        for k in by_case[case]:
            o = prep.options[k]
            if any(s < o.end - 1e-6 and o.start < e - 1e-6 for t in o.crew for s, e in booked.get(t, ())):
                continue
            if any(part in limited and left[part] < q for part, q in o.stock_draw):
                continue
            for t in o.crew:
                booked.setdefault(t, []).append((o.start, o.end))
            for part, q in o.stock_draw:
                if part in limited:
                    left[part] -= q
            chosen.append(k)
            break
    chosen.sort()
    return SolveResult(tuple(chosen), "feasible", "greedy", time.perf_counter() - t0, objective(prep, chosen), None)


def solve_cpsat(prep: Prepared, time_limit_s: float = 10.0, workers: int = 2) -> SolveResult:
    """OR-Tools CP-SAT on the option model (integer cents)."""
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    delta = _delta(prep)
    if len(prep.options) == 0:
        return SolveResult((), "optimal", "cpsat", time.perf_counter() - t0, _base(prep), _base(prep))
    scale = 100.0
    biggest = float(np.abs(delta).max()) * len(delta) + abs(_base(prep))
    while biggest * scale > 1e15 and scale > 1e-6:
        scale /= 10.0
    coef = np.round(delta * scale).astype(np.int64)
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"o{k}") for k in range(len(prep.options))]
    by_case: dict[int, list[int]] = {}
    for k, o in enumerate(prep.options):
        by_case.setdefault(o.case, []).append(k)
    for ks in by_case.values():
        if len(ks) > 1:
            model.add_at_most_one(x[k] for k in ks)
    for clique in prep.tech_cliques:
        model.add_at_most_one(x[k] for k in clique)
    for _, left, terms in prep.part_limits:
        model.add(sum(q * x[k] for k, q in terms) <= left)
    offset = round(_base(prep) * scale)  # so that the relative gap is taken on the expected total cost
    model.minimize(sum(int(coef[k]) * x[k] for k in range(len(x)) if coef[k] != 0) + offset)
    hint = set(solve_greedy(prep).chosen)
    for k in range(len(x)):
        model.add_hint(x[k], k in hint)
    solver = cp_model.CpSolver()
    solver.parameters.catch_sigint_signal = False  # Ctrl+C stays the server's (a clean shutdown), not CP-SAT's
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.relative_gap_limit = REL_GAP
    code = solver.solve(model)
    if code == cp_model.UNKNOWN:  # the time ran out before CP-SAT held a solution: the greedy hint is one
        return SolveResult(tuple(sorted(hint)), "feasible", "cpsat", time.perf_counter() - t0,
                           objective(prep, sorted(hint)), None)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise Unavailable(f"CP-SAT ended with {solver.status_name(code)} on a model that always has a solution",
                          solver="cpsat")
    chosen = tuple(k for k in range(len(x)) if solver.boolean_value(x[k]))
    status = "optimal" if code == cp_model.OPTIMAL else "feasible"
    bound = solver.best_objective_bound / scale + (_base(prep) - offset / scale)
    return SolveResult(chosen, status, "cpsat", time.perf_counter() - t0, objective(prep, chosen), bound)


def solve_highs(prep: Prepared, time_limit_s: float = 10.0) -> SolveResult:
    """HiGHS (SciPy ``milp``) on the option model."""
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_matrix
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Unavailable("the highs solver needs SciPy (pip install 'tvilling[sim]')", solver="highs") from exc
    t0 = time.perf_counter()
    n = len(prep.options)
    if n == 0:
        return SolveResult((), "optimal", "highs", time.perf_counter() - t0, _base(prep), _base(prep))
    delta = _delta(prep)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    upper: list[float] = []
    by_case: dict[int, list[int]] = {}
    for k, o in enumerate(prep.options):
        by_case.setdefault(o.case, []).append(k)
    groups = [ks for ks in by_case.values() if len(ks) > 1] + prep.tech_cliques
    for ks in groups:
        r = len(upper)
        rows += [r] * len(ks)
        cols += ks
        vals += [1.0] * len(ks)
        upper.append(1.0)
    for _, left, terms in prep.part_limits:
        r = len(upper)
        rows += [r] * len(terms)
        cols += [k for k, _ in terms]
        vals += [float(q) for _, q in terms]
        upper.append(float(left))
    # one more variable, fixed at 1, carries the run-to-failure base: the objective is then the
    # expected total cost, and the relative gap is taken on that (SciPy passes no objective offset)
    base = _base(prep)
    delta = np.append(delta, base)
    n_all = n + 1
    constraints = []
    if upper:
        a = coo_matrix((vals, (rows, cols)), shape=(len(upper), n_all)).tocsr()
        constraints.append(LinearConstraint(a, -np.inf, np.array(upper)))
    lower = np.zeros(n_all)
    lower[n] = 1.0
    res = milp(delta, integrality=np.ones(n_all), bounds=Bounds(lower, np.ones(n_all)), constraints=constraints,
               options={"time_limit": float(time_limit_s), "mip_rel_gap": REL_GAP, "disp": False})
    if res.x is None:  # the time ran out before HiGHS held a solution: the greedy plan is one
        fallback = solve_greedy(prep)
        return SolveResult(fallback.chosen, "feasible", "highs", time.perf_counter() - t0, fallback.objective, None)
    chosen = tuple(int(k) for k in np.nonzero(res.x[:n] > 0.5)[0])
    status = "optimal" if res.status == 0 else "feasible"
    if status != "optimal":  # stopped by the time limit: never return worse than the greedy plan
        fallback = solve_greedy(prep)
        if fallback.objective < objective(prep, chosen):
            chosen = fallback.chosen
    dual = getattr(res, "mip_dual_bound", None)
    bound = float(dual) if dual is not None and np.isfinite(dual) else None
    return SolveResult(chosen, status, "highs", time.perf_counter() - t0, objective(prep, chosen), bound)


SOLVERS: dict[str, Callable[[Prepared, float], SolveResult]] = {
    "cpsat": solve_cpsat,
    "highs": solve_highs,
    "greedy": solve_greedy,
}


def solve(prep: Prepared, solver: str, time_limit_s: float) -> SolveResult:
    """Run the named solver; raise :class:`Invalid` for an unknown name."""
    if solver not in SOLVERS:
        raise Invalid(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}", field="solver", rule="enum")
    if not (isinstance(time_limit_s, int | float) and time_limit_s > 0):
        raise Invalid(f"time_limit_s must be > 0, got {time_limit_s!r}", field="time_limit_s", rule="positive")
    return SOLVERS[solver](prep, float(time_limit_s))


def option_label(o: Option) -> str:
    """A short text for an option, for messages."""
    return f"{o.start:g}–{o.end:g} h by {', '.join(o.crew)}"
