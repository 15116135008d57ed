"""Solve a :class:`~tvilling.planning.jobshop.Problem` with OR-Tools CP-SAT interval variables.

The model: one start per operation; an optional fixed-size interval per eligible machine (exactly one
present) sharing that start; no overlap per machine, with the machine's downtimes as fixed intervals in it;
the job chains and any precedences across jobs; releases; and for alternative machines a redundant cumulative
over all machines. Jobs that are exact copies of each other are ordered by their first start (a valid symmetry
break: swapping two such jobs maps a schedule to one as good). The best of several dispatching rules is the
warm start (a complete hint) and the answer should the solver find nothing better in its time. With one
worker the time goes to phases (:func:`_phases`): a complete search, a tabu search, CP-SAT's neighbourhood
searches, and a last search for a better schedule than the best found, which proves it optimal when none exists.

>>> from tvilling.planning.jobshop import Job, Operation, Problem
>>> p = Problem(machines=2, jobs=(Job((Operation.on(0, 3), Operation.on(1, 2))),
...                               Job((Operation.on(1, 2), Operation.on(0, 4)))))
>>> r = solve(p, SolveOptions(time_limit=5))
>>> r.makespan, r.optimal
(7, True)
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Literal

from ortools.sat.python import cp_model
from ortools.sat.python.cp_model_helper import SatParameters

from tvilling.planning import jobshop_tabu as tabu
from tvilling.planning.jobshop import Infeasible, ObjectiveKind, Problem, Schedule, ScheduledOperation
from tvilling.planning.jobshop_check import check_schedule
from tvilling.planning.jobshop_dispatch import (
    Dispatched,
    Timeline,
    best_dispatch,
    heads,
    merge_spans,
    objective_value,
    tails,
    weighted_tardiness,
)


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """How to solve.

    ``time_limit`` (seconds, all phases) and ``workers`` (CP-SAT threads; 1 = one core). ``objective`` is
    ``makespan`` or ``weighted_tardiness`` = ``tardiness_weight * Σ weight·tardiness + makespan_weight *
    makespan``; a ``tardiness_weight`` of ``None`` makes tardiness strictly first and makespan the tie-break.
    ``horizon``: every operation ends by then (default: a bound no schedule needs to exceed)."""

    time_limit: float = 10.0
    workers: int = 1
    objective: ObjectiveKind = "makespan"
    tardiness_weight: int | None = None
    makespan_weight: int = 1
    horizon: int | None = None
    seed: int = 0
    warm_start: bool = True
    log: bool = False
    #: a schedule to start from (the plan in force, when re-planning): used as the warm start when it is
    #: feasible for this problem and no worse than dispatching, so a re-plan moves what it must and keeps the rest
    hint: Schedule | None = None


@dataclass(frozen=True, slots=True)
class SolveResult:
    """A feasible schedule with its figures. ``lower_bound`` bounds the objective (the makespan under the
    makespan objective); ``optimal`` means it is proven; ``status`` is ``optimal``, else where the schedule
    came from: ``solver`` (CP-SAT), ``tabu`` (the tabu search) or ``dispatch`` (the warm start)."""

    schedule: Schedule
    makespan: int
    objective: int
    lower_bound: int
    optimal: bool
    status: str
    seconds: float
    weighted_tardiness: int
    warm_start_objective: int | None


def safe_horizon(problem: Problem) -> int:
    """A time by which some schedule surely ends: after every release and downtime, all work in series."""
    latest = max([j.release for j in problem.jobs] + [d.end for d in problem.downtimes] + [0])
    work = sum(max(o.duration for o in op.options) for job in problem.jobs for op in job.operations)
    return latest + work + sum(p.delay for p in problem.precedences)


def check_fits(problem: Problem, horizon: int) -> None:
    """Raise :class:`Infeasible` for the first operation that cannot run between its earliest start and the
    horizon on any of its machines, around those machines' downtimes."""
    head, tail = heads(problem), tails(problem)
    timelines = [Timeline([(d.start, d.end) for d in problem.downtimes if d.machine == m])
                 for m in range(problem.machines)]
    for j, job in enumerate(problem.jobs):
        for k, op in enumerate(job.operations):
            i = problem.index(j, k)
            latest_end = horizon - tail[i]
            if not any(timelines[o.machine].fit(head[i], o.duration) + o.duration <= latest_end
                       for o in op.options):
                machines = ", ".join(str(o.machine) for o in op.options)
                raise Infeasible(
                    f"job {job.name or j} op {k} cannot run on machine(s) {machines} between its earliest start "
                    f"{head[i]} and {latest_end} (horizon {horizon} less the work after it), around the "
                    "machines' downtimes", job=j, op=k, machines=[o.machine for o in op.options],
                    earliest_start=head[i], latest_end=latest_end, horizon=horizon, rule="no-room")


def identical_job_groups(problem: Problem) -> list[list[int]]:
    """Groups (of two or more) of jobs equal in every respect and untouched by cross-job precedences."""
    linked = {j for p in problem.precedences for j in (p.before[0], p.after[0])}
    groups: dict[tuple[object, ...], list[int]] = {}
    for j, job in enumerate(problem.jobs):
        if j not in linked and job.operations:
            key = (tuple(op.options for op in job.operations), job.release, job.due, job.weight)
            groups.setdefault(key, []).append(j)
    return [g for g in groups.values() if len(g) > 1]


def _relabel(problem: Problem, schedule: Schedule, groups: list[list[int]]) -> Schedule:
    """The same schedule with identical jobs renumbered so that their first starts are in job order."""
    by_job: dict[int, list[ScheduledOperation]] = {}
    for o in schedule.operations:
        by_job.setdefault(o.job, []).append(o)
    mapping = {j: j for j in range(len(problem.jobs))}
    for group in groups:
        ordered = sorted(group, key=lambda j: (min(o.start for o in by_job[j] if o.op == 0), j))
        for new, old in zip(group, ordered, strict=True):
            mapping[old] = new
    return Schedule(tuple(ScheduledOperation(mapping[o.job], o.op, o.machine, o.start, o.end)
                          for o in schedule.operations))


def solve(problem: Problem, options: SolveOptions | None = None) -> SolveResult:
    """The best schedule found within the time limit; :class:`Infeasible` names the conflict when none exists."""
    opts = options or SolveOptions()
    began = time.perf_counter()
    problem.validate()
    horizon = opts.horizon if opts.horizon is not None else safe_horizon(problem)
    check_fits(problem, horizon)
    mw = opts.makespan_weight
    tw = opts.tardiness_weight if opts.tardiness_weight is not None else (horizon + 1) * max(mw, 1)
    groups = identical_job_groups(problem)

    warm: Dispatched | None = None
    if opts.warm_start:
        warm = best_dispatch(problem, opts.objective, tw, mw, budget_s=min(2.0, 0.03 * opts.time_limit),
                             seed=opts.seed)
        warm = Dispatched(_relabel(problem, warm.schedule, groups), warm.objective, warm.rule)
        if warm.schedule.makespan > horizon:
            warm = None  # a caller's horizon may be tighter than dispatching reaches; the solver may still fit it
    if opts.hint is not None and not check_schedule(problem, opts.hint) and opts.hint.makespan <= horizon:
        given = Dispatched(_relabel(problem, opts.hint, groups), 0, "hint")
        value_given = objective_value(problem, given.schedule, opts.objective, tw, mw)
        if warm is None or value_given <= warm.objective:
            warm = Dispatched(given.schedule, value_given, "hint")

    model = _Model(problem, horizon, opts, tw, groups, warm)
    makespan_objective = opts.objective == "makespan"
    best = warm.schedule if warm is not None else None
    value = warm.objective if warm is not None else 0
    bound = model.trivial_bound if makespan_objective else 0
    proven = best is not None and value <= bound
    source = "dispatch"
    for phase, share in _phases(problem, opts):
        left = opts.time_limit - (time.perf_counter() - began)
        if proven or (left <= 0.05 and best is not None):
            break
        if phase == "tabu":
            if best is not None:
                best = tabu.improve(problem, best, left * share, seed=opts.seed, lower_bound=bound)
                if best.makespan < value:
                    value, source = best.makespan, "tabu"
                proven = value <= bound
            continue
        # the last search asks for better than the best known: "infeasible" then proves that one optimal
        strict = makespan_objective and best is not None and phase == "prove"
        if best is not None:
            model.start_from(best, value - 1 if strict else value if makespan_objective else None)
        solver = cp_model.CpSolver()
        solver.parameters.catch_sigint_signal = False  # Ctrl+C stays the server's (a clean shutdown), not CP-SAT's
        configure(solver.parameters, opts, max(0.05, left * share), phase)
        status = solver.solve(model.model)
        if status == cp_model.MODEL_INVALID:  # pragma: no cover - a defect of this module, not of the input
            raise RuntimeError(f"CP-SAT rejected the model: {model.model.validate()}")
        if status == cp_model.INFEASIBLE:
            if best is None:
                raise Infeasible(f"no schedule ends by the horizon {horizon}", horizon=horizon, rule="horizon")
            proven = strict
            break
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            found = model.read(solver)
            found_value = objective_value(problem, found, opts.objective, tw, mw)
            if best is None or found_value < value:
                best, value, source = found, found_value, "solver"
        if phase != "lns":
            bound = max(bound, math.ceil(solver.best_objective_bound - 1e-6))
            proven = status == cp_model.OPTIMAL  # under the strict cap too: nothing better lies outside it
        proven = proven or (best is not None and value <= bound)
    if best is None:
        raise Infeasible(f"no schedule ending by the horizon {horizon} was found within {opts.time_limit} s "
                         "(none was proven impossible either)", horizon=horizon, rule="time-limit")
    violations = check_schedule(problem, best)
    if violations:  # pragma: no cover - a defect of this module, not of the input
        raise RuntimeError(f"the {source} schedule is infeasible: {violations[:3]}")
    if proven:
        bound = value
    return SolveResult(schedule=best, makespan=best.makespan, objective=value, lower_bound=min(bound, value),
                       optimal=proven, status="optimal" if proven else source,
                       seconds=time.perf_counter() - began, weighted_tardiness=weighted_tardiness(problem, best),
                       warm_start_objective=warm.objective if warm is not None else None)


Phase = Literal["search", "lns", "tabu", "prove"]


def _phases(problem: Problem, opts: SolveOptions) -> list[tuple[Phase, float]]:
    """The runs of one solve and the share of the time left that each may use.

    With one worker: a complete search first (small instances end here, proven); then local improvement:
    CP-SAT's neighbourhood searches alone, interleaved in the one thread, and, where it applies (makespan,
    no downtimes, no precedences across jobs), a tabu search on the machine sequences and assignments, which
    in pure Python still makes thousands of moves a second where each CP-SAT neighbourhood costs a presolve,
    then CP-SAT's neighbourhoods from its result; last, a
    complete search for a schedule better than the best found, which proves it optimal when there is none.
    With several workers, CP-SAT's own portfolio runs its searches side by side."""
    if opts.workers > 1:
        return [("search", 1.0)]
    if opts.objective != "makespan" or not tabu.applies(problem):
        return [("search", 0.15), ("lns", 0.8), ("prove", 1.0)]
    return [("search", 0.1), ("tabu", 0.7), ("lns", 0.5), ("prove", 1.0)]


def configure(params: SatParameters, opts: SolveOptions, seconds: float,
              phase: Phase = "search") -> None:
    """CP-SAT's parameters for one phase of a solve."""
    params.max_time_in_seconds = seconds
    params.num_workers = max(1, opts.workers)
    params.random_seed = opts.seed
    params.log_search_progress = opts.log
    if phase == "lns":
        params.use_lns_only = True
        params.interleave_search = True


class _Model:
    """The CP-SAT model of one problem and the way back from a solution to a :class:`Schedule`."""

    def __init__(self, problem: Problem, horizon: int, opts: SolveOptions, tardiness_weight: int,
                 groups: list[list[int]], warm: Dispatched | None) -> None:
        self.problem = problem
        m = self.model = cp_model.CpModel()
        head, tail = heads(problem), tails(problem)
        preds = problem.predecessors()
        n = problem.operation_count
        self.starts: list[cp_model.IntVar] = []
        self.ends: list[cp_model.LinearExprT] = []
        self.choice: list[list[tuple[int, int, cp_model.IntVar | None]]] = []  # (machine, duration, literal)
        self.durations: list[cp_model.IntVar | None] = []
        per_machine: list[list[cp_model.IntervalVar]] = [[] for _ in range(problem.machines)]
        masters: list[cp_model.IntervalVar] = []
        for j, job in enumerate(problem.jobs):
            for k, op in enumerate(job.operations):
                i = problem.index(j, k)
                lo, hi_end = head[i], horizon - tail[i]
                s = m.new_int_var(lo, max(lo, hi_end - op.min_duration), f"s{j}_{k}")
                self.starts.append(s)
                if len(op.options) == 1:
                    o = op.options[0]
                    iv = m.new_fixed_size_interval_var(s, o.duration, f"i{j}_{k}")
                    self.ends.append(s + o.duration)
                    self.choice.append([(o.machine, o.duration, None)])
                    self.durations.append(None)
                    if o.duration > 0:
                        per_machine[o.machine].append(iv)
                    masters.append(iv)
                    continue
                durations = sorted({o.duration for o in op.options})
                d = m.new_int_var_from_domain(cp_model.Domain.from_values(durations), f"d{j}_{k}")
                e = m.new_int_var(lo + durations[0], max(lo + durations[0], hi_end), f"e{j}_{k}")
                masters.append(m.new_interval_var(s, d, e, f"i{j}_{k}"))
                self.durations.append(d)
                self.ends.append(e)
                row: list[tuple[int, int, cp_model.IntVar | None]] = []
                for o in op.options:
                    lit = m.new_bool_var(f"x{j}_{k}_{o.machine}")
                    m.add(d == o.duration).only_enforce_if(lit)
                    if o.duration > 0:
                        per_machine[o.machine].append(
                            m.new_optional_fixed_size_interval_var(s, o.duration, lit, f"i{j}_{k}_{o.machine}"))
                    row.append((o.machine, o.duration, lit))
                m.add_exactly_one(lit for _, _, lit in row if lit is not None)
                self.choice.append(row)
        downtime_intervals = []
        for machine in range(problem.machines):
            spans = merge_spans([(max(0, dt.start), min(horizon, dt.end)) for dt in problem.downtimes
                                 if dt.machine == machine])
            for start, end in spans:
                iv = m.new_fixed_size_interval_var(start, end - start, f"down{machine}_{start}")
                per_machine[machine].append(iv)
                downtime_intervals.append(iv)
        for intervals in per_machine:
            if len(intervals) > 1:
                m.add_no_overlap(intervals)
        if problem.is_flexible and problem.machines > 1:
            all_iv = masters + downtime_intervals
            m.add_cumulative(all_iv, [1] * len(all_iv), problem.machines)
        for i in range(n):
            for p, delay in preds[i]:
                m.add(self.starts[i] >= self.ends[p] + delay)
        for group in groups:
            for a, b in itertools.pairwise(group):
                m.add(self.starts[problem.index(a, 0)] <= self.starts[problem.index(b, 0)])

        has_succ = [False] * n
        for plist in preds:
            for p, _ in plist:
                has_succ[p] = True
        min_dur = [op.min_duration for job in problem.jobs for op in job.operations]
        lower = max([head[i] + min_dur[i] + tail[i] for i in range(n)] + [0])
        for machine in range(problem.machines):
            fixed_load = sum(op.options[0].duration for job in problem.jobs for op in job.operations
                             if len(op.options) == 1 and op.options[0].machine == machine)
            lower = max(lower, fixed_load)
        self.trivial_bound = lower
        upper = horizon
        if warm is not None and opts.objective == "makespan":
            upper = min(upper, warm.schedule.makespan)
        self.makespan = m.new_int_var(min(lower, upper), upper, "makespan")
        for i in range(n):
            if not has_succ[i]:
                m.add(self.makespan >= self.ends[i])
        tardy: list[tuple[int, cp_model.IntVar, int]] = []
        if opts.objective == "makespan":
            m.minimize(self.makespan)
        else:
            for j, job in enumerate(problem.jobs):
                if job.due is not None and job.weight > 0 and job.operations:
                    t = m.new_int_var(0, max(0, horizon - job.due), f"tardy{j}")
                    m.add(t >= self.ends[problem.index(j, len(job.operations) - 1)] - job.due)
                    tardy.append((j, t, job.weight))
            m.minimize(tardiness_weight * sum(w * t for _, t, w in tardy) + opts.makespan_weight * self.makespan)
        self.tardy = tardy

    def start_from(self, schedule: Schedule, cap: int | None) -> None:
        """Hint ``schedule`` and, given ``cap``, allow no makespan above it."""
        self.model.clear_hints()  # type: ignore[no-untyped-call]
        self._hint(schedule, self.tardy)
        if cap is not None:
            domain = self.model.proto.variables[self.makespan.index].domain
            domain[1] = max(cap, domain[0])

    def _hint(self, schedule: Schedule, tardy: list[tuple[int, cp_model.IntVar, int]]) -> None:
        m = self.model
        for o in schedule.operations:
            i = self.problem.index(o.job, o.op)
            m.add_hint(self.starts[i], o.start)
            row = self.choice[i]
            if len(row) > 1:
                for machine, _, lit in row:
                    if lit is not None:
                        m.add_hint(lit, machine == o.machine)
                end, duration = self.ends[i], self.durations[i]
                if isinstance(end, cp_model.IntVar) and duration is not None:
                    m.add_hint(end, o.end)
                    m.add_hint(duration, o.end - o.start)
        m.add_hint(self.makespan, schedule.makespan)
        ends = schedule.job_ends(len(self.problem.jobs))
        for j, t, _ in tardy:
            due = self.problem.jobs[j].due
            m.add_hint(t, max(0, ends[j] - (due if due is not None else ends[j])))

    def read(self, solver: cp_model.CpSolver) -> Schedule:
        out: list[ScheduledOperation] = []
        for j, job in enumerate(self.problem.jobs):
            for k in range(len(job.operations)):
                i = self.problem.index(j, k)
                start = int(solver.value(self.starts[i]))
                row = self.choice[i]
                machine, duration = row[0][0], row[0][1]
                for mach, dur, lit in row:
                    if lit is not None and solver.boolean_value(lit):
                        machine, duration = mach, dur
                        break
                out.append(ScheduledOperation(j, k, machine, start, start + duration))
        return Schedule(tuple(out))
