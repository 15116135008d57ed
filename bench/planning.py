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

Scheduling (``--schedule-machines`` × ``--schedule-jobs``, default 50 × 500: five operations a job,
each on two or three of the machines, due dates and weights): the first plan (weighted tardiness,
then makespan) in ``--schedule-limit`` seconds, then one event — a machine down for a tenth of the
first plan's makespan from a third of it on — and the re-plan from the first plan repaired around
it (``repair_s``: the time to a feasible re-plan; ``replan_s``: the solve with it as the start): the
objective before and after and the share of operations kept on their machine at their start.
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


def scheduling(machines: int, jobs: int, seed: int, limit: float) -> dict[str, Any]:
    from tvilling.planning.jobshop import Downtime, Job, Operation, Option, Problem
    from tvilling.planning.jobshop_check import check_schedule
    from tvilling.planning.jobshop_dispatch import repair
    from tvilling.planning.jobshop_solver import SolveOptions
    from tvilling.planning.jobshop_solver import solve as solve_schedule

    rng = np.random.default_rng(seed)
    made = []
    for _ in range(jobs):
        ops = []
        for _ in range(5):
            eligible = rng.choice(machines, size=int(rng.integers(2, 4)), replace=False)
            ops.append(Operation(tuple(Option(int(m), int(rng.integers(10, 60))) for m in sorted(eligible))))
        made.append(Job(tuple(ops), due=int(rng.integers(200, 1200)), weight=int(rng.integers(1, 4))))
    problem = Problem(machines=machines, jobs=tuple(made))
    opts = SolveOptions(time_limit=limit, objective="weighted_tardiness")
    began = time.perf_counter()
    first = solve_schedule(problem, opts)
    plan_s = time.perf_counter() - began
    down = Downtime(0, first.makespan // 3, first.makespan // 3 + max(1, first.makespan // 10), "breakdown")
    after = replace(problem, downtimes=(down,))
    began = time.perf_counter()
    preferred = {(o.job, o.op): (o.machine, o.start) for o in first.schedule.operations}
    repaired = repair(after, preferred)
    repair_s = time.perf_counter() - began
    assert not check_schedule(after, repaired)
    began = time.perf_counter()
    second = solve_schedule(after, replace(opts, hint=repaired))
    replan_s = time.perf_counter() - began
    before = {(o.job, o.op): (o.machine, o.start) for o in first.schedule.operations}
    kept = sum(1 for o in second.schedule.operations if before.get((o.job, o.op)) == (o.machine, o.start))
    return {"machines": machines, "jobs": jobs, "operations": problem.operation_count, "plan_s": round(plan_s, 2),
            "first": {"objective": first.objective, "makespan": first.makespan, "status": first.status},
            "event": {"machine": 0, "start": down.start, "end": down.end},
            "repair_s": round(repair_s, 3), "replan_s": round(replan_s, 2),
            "second": {"objective": second.objective, "makespan": second.makespan, "status": second.status},
            "kept_share": round(kept / problem.operation_count, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--solvers", nargs="+", default=["highs", "cpsat", "greedy"])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-stability", action="store_true")
    ap.add_argument("--schedule-machines", type=int, default=50)
    ap.add_argument("--schedule-jobs", type=int, default=500)
    ap.add_argument("--schedule-limit", type=float, default=30.0)
    ap.add_argument("--no-scheduling", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"bench": "planning", "default_solver": DEFAULT_SOLVER, "time_limit_s": args.time_limit,
                           "maintenance": [compare(n, args.days, args.seed, args.solvers, args.time_limit)
                                           for n in args.sizes]}
    if not args.no_stability:
        out["maintenance_stability"] = stability(max(args.sizes), args.days, args.seed, args.time_limit)
    if not args.no_scheduling:
        out["scheduling"] = scheduling(args.schedule_machines, args.schedule_jobs, args.seed, args.schedule_limit)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
