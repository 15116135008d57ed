"""Greedy dispatching: a feasible schedule in milliseconds, the solver's warm start and its fallback.

The generation scheme is Giffler and Thompson's, extended to alternative machines, precedences across jobs,
release times and machine downtimes: at each step the candidate finishing first fixes a machine; among the
operations that could start on that machine before then, a priority rule picks one, placed in the earliest gap
that holds it (before, between or after what is already there, never across a downtime).
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tvilling.planning.jobshop import ObjectiveKind, Problem, Schedule, ScheduledOperation


class Timeline:
    """The busy spans of one machine, disjoint and sorted; finds the earliest gap that holds an operation."""

    __slots__ = ("ends", "starts")

    def __init__(self, blocks: Sequence[tuple[int, int]] = ()) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, end in merge_spans(blocks):
            self.starts.append(start)
            self.ends.append(end)

    def fit(self, ready: int, duration: int) -> int:
        """The earliest start at or after ``ready`` where ``duration`` fits without touching a busy span."""
        if duration <= 0:
            return ready
        i = bisect_right(self.ends, ready)
        t = ready
        starts, ends = self.starts, self.ends
        while i < len(starts):
            if t + duration <= starts[i]:
                return t
            if ends[i] > t:
                t = ends[i]
            i += 1
        return t

    def add(self, start: int, end: int) -> None:
        if end > start:
            i = bisect_right(self.starts, start)
            self.starts.insert(i, start)
            self.ends.insert(i, end)


def merge_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans merged into disjoint ones, sorted."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True, slots=True)
class Dispatched:
    """A dispatching schedule, its objective value and the rule that built it."""

    schedule: Schedule
    objective: int
    rule: str


def objective_value(problem: Problem, schedule: Schedule, objective: ObjectiveKind, tardiness_weight: int,
                    makespan_weight: int = 1) -> int:
    """``makespan`` or ``tardiness_weight * Σ weight·tardiness + makespan_weight * makespan``."""
    makespan = schedule.makespan
    if objective == "makespan":
        return makespan
    return tardiness_weight * weighted_tardiness(problem, schedule) + makespan_weight * makespan


def weighted_tardiness(problem: Problem, schedule: Schedule) -> int:
    """Σ over jobs with a due date of weight × max(0, completion − due)."""
    ends = schedule.job_ends(len(problem.jobs))
    return sum(job.weight * max(0, ends[j] - job.due) for j, job in enumerate(problem.jobs) if job.due is not None)


def tails(problem: Problem) -> list[int]:
    """Per global operation: the least work that must still follow it (its successors' shortest durations)."""
    order = problem.topological_order()
    if order is None:
        raise ValueError("cyclic precedences")  # validate() names the cycle first
    preds = problem.predecessors()
    dur = [op.min_duration for job in problem.jobs for op in job.operations]
    tail = [0] * len(dur)
    for i in reversed(order):
        for p, delay in preds[i]:
            tail[p] = max(tail[p], tail[i] + dur[i] + delay)
    return tail


def heads(problem: Problem) -> list[int]:
    """Per global operation: the earliest it can start, from releases and its predecessors' shortest durations."""
    order = problem.topological_order()
    if order is None:
        raise ValueError("cyclic precedences")
    preds = problem.predecessors()
    dur = [op.min_duration for job in problem.jobs for op in job.operations]
    release = [job.release for job in problem.jobs for _ in job.operations]
    head = list(release)
    for i in order:
        for p, delay in preds[i]:
            head[i] = max(head[i], head[p] + dur[p] + delay)
    return head


Priority = Callable[[int, int, int, int], float]
"""``(operation, job, start, duration) -> key``; the smallest key is dispatched first."""


def dispatch(problem: Problem, priority: Priority) -> Schedule:
    """One schedule built with ``priority`` choosing among the operations competing for a machine."""
    n = problem.operation_count
    preds = problem.predecessors()
    succs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, plist in enumerate(preds):
        for p, delay in plist:
            succs[p].append((i, delay))
    locate = [(j, k) for j, job in enumerate(problem.jobs) for k in range(len(job.operations))]
    options = [problem.operation(j, k).options for j, k in locate]
    missing = [len(p) for p in preds]
    ready_at = [problem.jobs[j].release for j, _ in locate]
    timelines = [Timeline([(d.start, d.end) for d in problem.downtimes if d.machine == m])
                 for m in range(problem.machines)]
    # candidates[i]: per option (start, end, machine), for every ready operation i
    candidates: dict[int, list[tuple[int, int, int]]] = {}

    def evaluate(i: int) -> list[tuple[int, int, int]]:
        out = []
        for o in options[i]:
            s = timelines[o.machine].fit(ready_at[i], o.duration)
            out.append((s, s + o.duration, o.machine))
        return out

    for i in range(n):
        if missing[i] == 0:
            candidates[i] = evaluate(i)
    placed: list[ScheduledOperation] = []
    while candidates:
        best_end, best_machine = math.inf, -1
        for cands in candidates.values():
            for _s, e, m in cands:
                if e < best_end or (e == best_end and m < best_machine):
                    best_end, best_machine = e, m
        chosen, chosen_key, chosen_slot = -1, math.inf, (0, 0)
        for i, cands in candidates.items():
            for s, e, m in cands:
                if m == best_machine and (s < best_end or e == best_end):
                    key = priority(i, locate[i][0], s, e - s)
                    if key < chosen_key or (key == chosen_key and (s, i) < (chosen_slot[0], chosen)):
                        chosen, chosen_key, chosen_slot = i, key, (s, e)
        start, end = chosen_slot
        del candidates[chosen]
        timelines[best_machine].add(start, end)
        job, op = locate[chosen]
        placed.append(ScheduledOperation(job, op, best_machine, start, end))
        for i, cands in candidates.items():
            if any(m == best_machine for _, _, m in cands):
                candidates[i] = evaluate(i)
        for succ, delay in succs[chosen]:
            ready_at[succ] = max(ready_at[succ], end + delay)
            missing[succ] -= 1
            if missing[succ] == 0:
                candidates[succ] = evaluate(succ)
    return Schedule(tuple(placed))


def best_dispatch(problem: Problem, objective: ObjectiveKind = "makespan", tardiness_weight: int = 1,
                  makespan_weight: int = 1, budget_s: float = 0.5, seed: int = 0,
                  min_runs: int = 1) -> Dispatched:
    """The best of several rules (most work remaining, most operations remaining, shortest processing time,
    and for tardiness the least weighted slack), then randomised variants until ``budget_s`` is spent."""
    tail = tails(problem)
    locate_job = [j for j, job in enumerate(problem.jobs) for _ in job.operations]
    remaining_ops = [len(job.operations) - k for job in problem.jobs for k in range(len(job.operations))]
    horizon = sum(op.min_duration for job in problem.jobs for op in job.operations) + max(
        (job.release for job in problem.jobs), default=0)

    def slack(i: int, s: int, d: int) -> float:
        job = problem.jobs[locate_job[i]]
        due = job.due if job.due is not None else 2 * horizon
        return (due - s - d - tail[i]) / max(job.weight, 1e-3)

    rules: list[tuple[str, Priority]] = []
    if objective == "weighted_tardiness":
        rules.append(("weighted-slack", lambda i, j, s, d: slack(i, s, d)))
    rules += [
        ("most-work-remaining", lambda i, j, s, d: -(tail[i] + d)),
        ("most-operations-remaining", lambda i, j, s, d: -remaining_ops[i] * 1e6 - tail[i]),
        ("earliest-start-then-work", lambda i, j, s, d: s * 1e6 - tail[i] - d),
        ("shortest-processing-time", lambda i, j, s, d: d * 1e6 - tail[i]),
    ]
    rng = random.Random(seed)
    deadline = time.perf_counter() + budget_s
    best: Dispatched | None = None
    runs = 0
    while True:
        if runs < len(rules):
            name, rule = rules[runs]
        else:
            base = rules[0][1]
            noise = [rng.uniform(0.0, 0.5) for _ in tail]
            scale = max(horizon, 1)

            def rule(i: int, j: int, s: int, d: int, base: Priority = base, noise: list[float] = noise,
                     scale: int = scale) -> float:
                return base(i, j, s, d) + noise[i] * scale * 0.2
            name = f"randomised-{runs - len(rules) + 1}"
        schedule = dispatch(problem, rule)
        value = objective_value(problem, schedule, objective, tardiness_weight, makespan_weight)
        if best is None or value < best.objective:
            best = Dispatched(schedule, value, name)
        runs += 1
        if runs >= min_runs and time.perf_counter() >= deadline:
            return best


def repair(problem: Problem, preferred: Mapping[tuple[int, int], tuple[int, int]]) -> Schedule:
    """A feasible schedule that keeps an earlier plan as far as it can: each operation ``(job, op)`` on the
    machine ``preferred`` gives it (when still eligible) and in the order of its preferred start; operations
    placed where their predecessors, the machine and its downtimes let them, no earlier than their preferred
    start (so what was on time stays where it was, and what an event pushed moves right as little as it must).
    Operations without a preference (new orders) go after, each on its quickest machine, in job order.

    >>> from tvilling.planning.jobshop import Downtime, Job, Operation, Problem
    >>> p = Problem(machines=1, jobs=(Job((Operation.on(0, 3),)), Job((Operation.on(0, 2),))),
    ...             downtimes=(Downtime(0, 2, 4),))
    >>> [(o.job, o.start, o.end) for o in repair(p, {(0, 0): (0, 0), (1, 0): (0, 3)}).operations]
    [(0, 4, 7), (1, 7, 9)]
    """
    preds = problem.predecessors()
    locate = [(j, k) for j, job in enumerate(problem.jobs) for k in range(len(job.operations))]
    big = 1 << 60
    key: list[tuple[int, int, int]] = []
    for i, (j, k) in enumerate(locate):
        want = preferred.get((j, k))
        key.append((want[1], 0, i) if want is not None else (big, j, k))
    ends: dict[int, int] = {}
    timelines = [Timeline([(d.start, d.end) for d in problem.downtimes if d.machine == m])
                 for m in range(problem.machines)]
    placed: list[ScheduledOperation] = []
    pending = sorted(range(len(locate)), key=lambda i: key[i])
    while pending:  # an operation waits for its predecessors; each round places every operation that can go
        waiting: list[int] = []
        for i in pending:
            if any(p not in ends for p, _ in preds[i]):
                waiting.append(i)
                continue
            j, k = locate[i]
            op = problem.operation(j, k)
            want = preferred.get((j, k))
            choice = next((o for o in op.options if want is not None and o.machine == want[0]), None)
            if choice is None:
                choice = min(op.options, key=lambda o: (o.duration, o.machine))
            ready = max([problem.jobs[j].release, *(ends[p] + d for p, d in preds[i])])
            if want is not None:
                ready = max(ready, want[1])
            start = timelines[choice.machine].fit(ready, choice.duration)
            timelines[choice.machine].add(start, start + choice.duration)
            ends[i] = start + choice.duration
            placed.append(ScheduledOperation(j, k, choice.machine, start, start + choice.duration))
        if len(waiting) == len(pending):  # a cycle: validate() refuses those before any schedule is made
            raise ValueError("repair: the precedences form a cycle")
        pending = waiting
    return Schedule(tuple(placed))
