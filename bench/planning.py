"""Planning benchmark: the maintenance optimiser's solvers compared, time to plan, plan stability.

Prints one JSON line.

    python bench/planning.py                                   # 50, 200, 1000 assets × 30 days, 60 s limit
    python bench/planning.py --sizes 1000 --solvers highs --time-limit 30

For each size, a generated plant (``tvilling.planning.maintenance_instances``; same seed, same
plant) is prepared once (candidate options, costs, crews: ``prepare_s``) and solved by each solver
on the same model: wall and CPU seconds (``cpu_s``: this process's CPU time, which
CP-SAT's worker threads add to), status, expected total cost, bound and work orders. ``plan_s`` is
the time of the whole ``plan_maintenance`` call (validation, options, the default solver,
rationale) for the largest size. Stability: the largest plan's orders are split into firm (every
other one) and previous (the rest), every prediction's quantiles are scaled by a factor drawn in
[0.9, 1.1], and the plant is re-planned: the share of firm orders unchanged (must be 1), the
share of previous orders kept at the same start, and the churn paid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvilling.planning.failure import fit_failure  # noqa: E402
from tvilling.planning.maintenance import DEFAULT_SOLVER, plan_maintenance  # noqa: E402
from tvilling.planning.maintenance_instances import generate_problem  # noqa: E402
from tvilling.planning.maintenance_options import prepare  # noqa: E402
from tvilling.planning.maintenance_solvers import solve, violations  # noqa: E402
from tvilling.planning.maintenance_types import ExistingOrder, MaintenanceProblem  # noqa: E402


def compare(n: int, days: int, seed: int, solvers: list[str], limit: float) -> dict[str, Any]:
    problem = generate_problem(n, days, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    prep = prepare(problem)
    row: dict[str, Any] = {"assets": n, "days": days, "prepare_s": round(time.perf_counter() - t0, 3),
                           "prepare_cpu_s": round(time.process_time() - c0, 3),
                           "decided": len(prep.cases), "with_options": len({o.case for o in prep.options}),
                           "options": len(prep.options), "tech_cliques": len(prep.tech_cliques),
                           "conflicts": sorted({c.kind for c in prep.conflicts}), "solvers": {}}
    for name in solvers:
        c0 = time.process_time()
        r = solve(prep, name, limit)
        cpu = time.process_time() - c0
        bad = violations(prep, r.chosen)
        row["solvers"][name] = {"seconds": round(r.seconds, 3), "cpu_s": round(cpu, 3), "status": r.status,
                                "expected_cost": round(r.objective, 1),
                                "bound": None if r.bound is None else round(r.bound, 1),
                                "work_orders": len(r.chosen), "violations": len(bad)}
    return row


def perturbed(problem: MaintenanceProblem, seed: int) -> MaintenanceProblem:
    rng = np.random.default_rng(seed + 1000)
    assets = []
    for a in problem.assets:
        f = a.failure
        if f is None:
            assets.append(a)
            continue
        k = float(rng.uniform(0.9, 1.1))
        q = [f.quantile(0.1) * k, f.quantile(0.5) * k, f.quantile(0.9) * k]
        assets.append(replace(a, failure=fit_failure(q[1], q[0], q[2])))
    return replace(problem, assets=tuple(assets))


def stability(n: int, days: int, seed: int, limit: float) -> dict[str, Any]:
    problem = generate_problem(n, days, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    plan = plan_maintenance(problem, time_limit_s=limit, allow_partial=True)
    plan_s, plan_cpu = time.perf_counter() - t0, time.process_time() - c0
    existing = tuple(ExistingOrder(f"wo-{k}", w.asset, w.task, w.start, w.crew, firm=k % 2 == 0)
                     for k, w in enumerate(plan.work_orders))
    again = replace(perturbed(problem, seed), existing=existing)
    t0, c0 = time.perf_counter(), time.process_time()
    second = plan_maintenance(again, time_limit_s=limit, allow_partial=True)
    replan_s, replan_cpu = time.perf_counter() - t0, time.process_time() - c0
    by_id = {w.order_id: w for w in second.work_orders if w.order_id}
    firm = [o for o in existing if o.firm]
    prev = [o for o in existing if not o.firm]
    firm_same = sum(1 for o in firm if o.id in by_id and by_id[o.id].start == o.start and by_id[o.id].crew == o.crew)
    prev_same = sum(1 for o in prev if o.id in by_id and by_id[o.id].start == o.start)
    return {"assets": n, "days": days, "solver": plan.solver, "plan_s": round(plan_s, 3),
            "plan_cpu_s": round(plan_cpu, 3), "status": plan.status,
            "work_orders": len(plan.work_orders), "expected_cost": round(plan.total_expected_cost, 1),
            "all_run_to_failure_cost": round(plan.all_run_to_failure_cost, 1),
            "replan_s": round(replan_s, 3), "replan_cpu_s": round(replan_cpu, 3), "firm": len(firm),
            "firm_unchanged": firm_same / len(firm) if firm else 1.0, "previous": len(prev),
            "previous_kept": prev_same / len(prev) if prev else 1.0, "churn_cost": round(second.churn_cost, 1),
            "new_orders": sum(1 for w in second.work_orders if w.order_id is None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--solvers", nargs="+", default=["highs", "cpsat", "greedy"])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-stability", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"bench": "planning", "default_solver": DEFAULT_SOLVER, "time_limit_s": args.time_limit,
                           "maintenance": [compare(n, args.days, args.seed, args.solvers, args.time_limit)
                                           for n in args.sizes]}
    if not args.no_stability:
        out["maintenance_stability"] = stability(max(args.sizes), args.days, args.seed, args.time_limit)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
