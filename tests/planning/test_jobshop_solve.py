"""The CP-SAT scheduler, its warm start, its tabu phase and the independent checker."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from shared_data import datasets_dir
from tvilling.core.errors import Invalid
from tvilling.planning.jobshop import (
    Downtime,
    Infeasible,
    Job,
    Operation,
    Option,
    Precedence,
    Problem,
    Schedule,
    ScheduledOperation,
)
from tvilling.planning.jobshop_check import check_schedule, require_feasible, schedule_from_json
from tvilling.planning.jobshop_dispatch import Timeline, best_dispatch
from tvilling.planning.jobshop_io import read_instance
from tvilling.planning.jobshop_solver import SolveOptions, solve
from tvilling.planning.jobshop_tabu import improve

SCHEDULING = datasets_dir() / "scheduling"
needs_data = pytest.mark.skipif(not SCHEDULING.is_dir(), reason=f"scheduling data set not found at {SCHEDULING}")


def _brute_force(problem: Problem) -> int:
    """The optimal makespan by enumeration: every machine assignment, every order on every machine, each
    operation as early as its order, its job and the downtimes allow (optimal for fixed orders)."""
    ops = [(j, k) for j, job in enumerate(problem.jobs) for k in range(len(job.operations))]
    best = 10**9
    for assignment in itertools.product(*(problem.operation(j, k).options for j, k in ops)):
        chosen = dict(zip(ops, assignment, strict=True))
        per_machine = [[op for op in ops if chosen[op].machine == m] for m in range(problem.machines)]
        for orders in itertools.product(*(itertools.permutations(seq) for seq in per_machine)):
            best = min(best, _semi_active(problem, chosen, orders))
    return best


def _semi_active(problem: Problem, chosen: dict[tuple[int, int], Option],
                 orders: tuple[tuple[tuple[int, int], ...], ...]) -> int:
    end: dict[tuple[int, int], int] = {}
    position = {op: (m, i) for m, seq in enumerate(orders) for i, op in enumerate(seq)}
    timelines = [Timeline([(d.start, d.end) for d in problem.downtimes if d.machine == m])
                 for m in range(problem.machines)]
    pending = list(position)
    while pending:
        progressed = False
        for op in list(pending):
            j, k = op
            m, i = position[op]
            if (k > 0 and (j, k - 1) not in end) or (i > 0 and orders[m][i - 1] not in end):
                continue
            ready = max(problem.jobs[j].release, end.get((j, k - 1), 0), end[orders[m][i - 1]] if i > 0 else 0)
            start = timelines[m].fit(ready, chosen[op].duration)
            end[op] = start + chosen[op].duration
            timelines[m].add(start, end[op])
            pending.remove(op)
            progressed = True
        if not progressed:
            return 10**9  # these orders contradict the job chains
    return max(end.values())


def _random_problem(rng: random.Random, flexible: bool) -> Problem:
    machines = 2
    jobs = []
    for _ in range(3):
        ops = []
        for _ in range(2):
            options = [Option(m, rng.randint(1, 6)) for m in range(machines)
                       if not flexible or rng.random() < 0.7] if flexible else [Option(rng.randrange(machines),
                                                                                       rng.randint(1, 6))]
            ops.append(Operation(tuple(options) or (Option(0, rng.randint(1, 6)),)))
        jobs.append(Job(tuple(ops), release=rng.choice([0, 0, 2])))
    if rng.random() < 0.5:
        jobs[2] = jobs[0]  # identical jobs: the symmetry break must keep the optimum
    downtimes = tuple(Downtime(m, s, s + rng.randint(1, 4)) for m in range(machines)
                      for s in [rng.randint(0, 10)] if rng.random() < 0.6)
    return Problem(machines=machines, jobs=tuple(jobs), downtimes=downtimes)


@pytest.mark.parametrize("seed", range(12))
def test_proven_optimum_matches_enumeration(seed: int) -> None:
    problem = _random_problem(random.Random(seed), flexible=seed % 2 == 1)
    result = solve(problem, SolveOptions(time_limit=10))
    assert result.optimal
    assert result.makespan == _brute_force(problem)
    assert check_schedule(problem, result.schedule) == []


@needs_data
def test_ft06_proven_optimal() -> None:
    problem = read_instance(SCHEDULING / "jobshop" / "ft06.txt")
    result = solve(problem, SolveOptions(time_limit=30))
    assert (result.makespan, result.optimal, result.lower_bound) == (55, True, 55)
    assert check_schedule(problem, result.schedule) == []


@needs_data
def test_mk01_reaches_best_known() -> None:
    problem = read_instance(SCHEDULING / "flexible" / "mk01.txt")
    assert problem.is_flexible
    result = solve(problem, SolveOptions(time_limit=20))
    assert result.makespan == 40  # best known, proven optimal in the literature
    assert check_schedule(problem, result.schedule) == []


@needs_data
def test_tabu_improves_a_dispatch_schedule_and_stays_feasible() -> None:
    problem = read_instance(SCHEDULING / "jobshop" / "ft10.txt")
    start = best_dispatch(problem, budget_s=0.05).schedule
    better = improve(problem, start, seconds=2.0)
    assert check_schedule(problem, better) == []
    assert better.makespan < start.makespan
    assert better.makespan >= 930  # the proven optimum


def _two_jobs() -> Problem:
    return Problem(machines=2, jobs=(Job((Operation.on(0, 3), Operation.on(1, 2))),
                                     Job((Operation.on(1, 2), Operation.on(0, 4)))))


def test_checker_rejects_corrupted_schedules() -> None:
    problem = _two_jobs()
    good = solve(problem, SolveOptions(time_limit=5)).schedule
    assert check_schedule(problem, good) == []
    ops = {(o.job, o.op): o for o in good.operations}

    def corrupt(job: int, op: int, **change: int) -> list[str]:
        changed = dict(ops)
        changed[(job, op)] = replace(ops[(job, op)], **change)
        return check_schedule(problem, Schedule(tuple(changed.values())))

    a = ops[(0, 0)]
    assert any("overlaps" in m for m in corrupt(1, 1, start=a.start, end=a.start + 4))
    b = ops[(0, 1)]
    assert any("before op 0 ends" in m for m in corrupt(0, 1, start=a.start, end=a.start + 2))
    assert any("machine 0 cannot run it" in m for m in corrupt(0, 1, machine=0, start=b.start, end=b.end))
    assert any("needs 3" in m for m in corrupt(0, 0, end=a.end + 1))
    missing = Schedule(tuple(o for o in good.operations if (o.job, o.op) != (1, 0)))
    assert check_schedule(problem, missing) == ["job 1 op 0: not scheduled"]
    with pytest.raises(Invalid, match="infeasible schedule"):
        require_feasible(problem, missing)
    assert check_schedule(problem, schedule_from_json(good.to_json("x"))) == []


def test_downtimes_are_respected() -> None:
    problem = Problem(machines=1, jobs=(Job((Operation.on(0, 3),)), Job((Operation.on(0, 2),))),
                      downtimes=(Downtime(0, 2, 5, "maintenance"),))
    result = solve(problem, SolveOptions(time_limit=5))
    assert (result.makespan, result.optimal) == (8, True)  # the short job before the block, the long one after
    by_job = {o.job: o for o in result.schedule.operations}
    assert (by_job[1].start, by_job[0].start) == (0, 5)
    crossing = Schedule((ScheduledOperation(0, 0, 0, 1, 4), ScheduledOperation(1, 0, 0, 5, 7)))
    assert any("downtime maintenance" in m for m in check_schedule(problem, crossing))


def test_alternative_machine_taken_around_a_breakdown() -> None:
    problem = Problem(machines=2, jobs=(Job((Operation((Option(0, 3), Option(1, 5))),)),),
                      downtimes=(Downtime(0, 0, 100, "breakdown"),))
    result = solve(problem, SolveOptions(time_limit=5))
    assert [(o.machine, o.start, o.end) for o in result.schedule.operations] == [(1, 0, 5)]


def test_releases_are_respected() -> None:
    problem = Problem(machines=1, jobs=(Job((Operation.on(0, 2),), release=4), Job((Operation.on(0, 3),))))
    result = solve(problem, SolveOptions(time_limit=5))
    assert result.makespan == 6 and result.optimal
    assert {o.job: o.start for o in result.schedule.operations}[0] >= 4


@pytest.mark.parametrize("heavy", [0, 1])
def test_weighted_tardiness_puts_the_heavier_late_job_first(heavy: int) -> None:
    jobs = [Job((Operation.on(0, 5),), due=5, weight=1), Job((Operation.on(0, 5),), due=5, weight=1)]
    jobs[heavy] = replace(jobs[heavy], weight=10)
    problem = Problem(machines=1, jobs=tuple(jobs))
    result = solve(problem, SolveOptions(time_limit=5, objective="weighted_tardiness"))
    starts = {o.job: o.start for o in result.schedule.operations}
    assert starts[heavy] == 0 and starts[1 - heavy] == 5
    assert result.weighted_tardiness == 5 and result.optimal


def test_tardiness_comes_before_makespan_by_default() -> None:
    # the urgent job on the slow machine finishes in time; the fast machine alone would end sooner overall
    problem = Problem(machines=2, jobs=(
        Job((Operation((Option(0, 2), Option(1, 4))),), due=4, weight=1),
        Job((Operation.on(0, 3),), due=3, weight=5),
    ))
    result = solve(problem, SolveOptions(time_limit=5, objective="weighted_tardiness"))
    assert result.weighted_tardiness == 0 and result.optimal
    assert {o.job: o.machine for o in result.schedule.operations} == {0: 1, 1: 0}


def test_precedence_across_jobs_and_cycles() -> None:
    base = _two_jobs()
    linked = replace(base, precedences=(Precedence(before=(1, 1), after=(0, 0), delay=1),))
    result = solve(linked, SolveOptions(time_limit=5))
    ops = {(o.job, o.op): o for o in result.schedule.operations}
    assert ops[(0, 0)].start >= ops[(1, 1)].end + 1
    assert check_schedule(linked, result.schedule) == []
    cyclic = replace(base, precedences=(Precedence((0, 1), (1, 0)), Precedence((1, 1), (0, 0))))
    with pytest.raises(Infeasible, match="the routing is cyclic") as info:
        solve(cyclic, SolveOptions(time_limit=5))
    assert info.value.fields["rule"] == "cycle" and len(info.value.fields["cycle"]) >= 3


def test_bad_input_is_named() -> None:
    no_machine = Problem(machines=1, jobs=(Job((Operation(()),)),))
    with pytest.raises(Infeasible, match="job 0, operation 0: no machine can run it"):
        solve(no_machine)
    with pytest.raises(Invalid, match=r"machine 3 is out of range 0\.\.1"):
        solve(Problem(machines=2, jobs=(Job((Operation.on(3, 1),)),)))
    with pytest.raises(Invalid, match="duration -1"):
        solve(Problem(machines=1, jobs=(Job((Operation.on(0, -1),)),)))
    blocked = Problem(machines=1, jobs=(Job((Operation.on(0, 5),), name="order-7"),),
                      downtimes=(Downtime(0, 3, 20),))
    with pytest.raises(Infeasible, match="job order-7 op 0 cannot run on machine\\(s\\) 0") as info:
        solve(blocked, SolveOptions(time_limit=5, horizon=15))
    assert info.value.fields["rule"] == "no-room"
    assert solve(blocked, SolveOptions(time_limit=5)).makespan == 25  # without a horizon: after the block
    tight = Problem(machines=1, jobs=(Job((Operation.on(0, 5),)), Job((Operation.on(0, 5),))))
    with pytest.raises(Infeasible, match="no schedule ends by the horizon 8"):
        solve(tight, SolveOptions(time_limit=5, horizon=8))


def test_dispatch_is_feasible_with_every_feature() -> None:
    rng = random.Random(7)
    jobs = tuple(Job(tuple(Operation(tuple(Option(m, rng.randint(1, 9)) for m in rng.sample(range(4), 2)))
                           for _ in range(4)), release=rng.randint(0, 5), due=rng.randint(10, 40),
                     weight=rng.randint(1, 3)) for _ in range(6))
    problem = Problem(machines=4, jobs=jobs, downtimes=(Downtime(1, 5, 12), Downtime(2, 0, 4)),
                      precedences=(Precedence((0, 3), (5, 0)),))
    for objective in ("makespan", "weighted_tardiness"):
        warm = best_dispatch(problem, objective, budget_s=0.05)  # type: ignore[arg-type]
        assert check_schedule(problem, warm.schedule) == []
        result = solve(problem, SolveOptions(time_limit=3, objective=objective))  # type: ignore[arg-type]
        assert check_schedule(problem, result.schedule) == []
        assert result.warm_start_objective is not None and result.objective <= result.warm_start_objective


def test_tabu_moves_a_critical_operation_to_another_machine() -> None:
    problem = Problem(machines=2, jobs=(Job((Operation((Option(0, 4), Option(1, 5))),)),
                                        Job((Operation.on(0, 4),))))
    queued = Schedule((ScheduledOperation(0, 0, 0, 0, 4), ScheduledOperation(1, 0, 0, 4, 8)))
    assert check_schedule(problem, queued) == []
    better = improve(problem, queued, seconds=1.0)
    assert check_schedule(problem, better) == []
    assert better.makespan == 5 and {o.job: o.machine for o in better.operations} == {0: 1, 1: 0}


def test_a_replan_starts_from_the_plan_in_force_repaired_around_the_event() -> None:
    from tvilling.planning.jobshop import Downtime
    from tvilling.planning.jobshop_check import check_schedule
    from tvilling.planning.jobshop_dispatch import repair, weighted_tardiness
    from tvilling.planning.jobshop_solver import SolveOptions, solve

    jobs = tuple(Job((Operation.on(j % 3, 5 + j), Operation.on((j + 1) % 3, 4 + j % 4)), due=30, weight=1 + j % 2)
                 for j in range(6))
    problem = Problem(machines=3, jobs=jobs)
    first = solve(problem, SolveOptions(time_limit=2, objective="weighted_tardiness"))
    down = Downtime(1, 8, 14, "breakdown")
    after = Problem(machines=3, jobs=jobs, downtimes=(down,))
    assert check_schedule(after, first.schedule)  # the plan in force no longer fits
    preferred = {(o.job, o.op): (o.machine, o.start) for o in first.schedule.operations}
    repaired = repair(after, preferred)
    assert not check_schedule(after, repaired)
    old = {(o.job, o.op): o for o in first.schedule.operations}
    for o in repaired.operations:  # nothing moves earlier; what the breakdown did not touch stays where it was
        assert o.machine == old[(o.job, o.op)].machine and o.start >= old[(o.job, o.op)].start
        if old[(o.job, o.op)].end <= down.start and o.machine != down.machine:
            assert o.start == old[(o.job, o.op)].start
    hinted = solve(after, SolveOptions(time_limit=2, objective="weighted_tardiness", hint=repaired))
    assert not check_schedule(after, hinted.schedule)
    # tardiness first, then makespan: the re-plan is never worse than the repaired plan it started from
    assert (weighted_tardiness(after, hinted.schedule), hinted.makespan) <= (
        weighted_tardiness(after, repaired), repaired.makespan)
