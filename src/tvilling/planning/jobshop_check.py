"""An independent feasibility check of a schedule against its problem, written without the solver.

>>> from tvilling.planning.jobshop import Job, Operation, Problem, Schedule, ScheduledOperation
>>> p = Problem(machines=1, jobs=(Job((Operation.on(0, 2),)), Job((Operation.on(0, 3),))))
>>> s = Schedule((ScheduledOperation(0, 0, 0, 0, 2), ScheduledOperation(1, 0, 0, 1, 4)))
>>> check_schedule(p, s)
['machine 0: job 0 op 0 [0, 2) overlaps job 1 op 0 [1, 4)']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.planning.jobshop import Problem, Schedule, ScheduledOperation


def check_schedule(problem: Problem, schedule: Schedule | Iterable[ScheduledOperation]) -> list[str]:
    """Every violation found: missing or repeated operations, an ineligible machine, a wrong duration,
    a start before the job's release, a broken precedence, two operations or an operation and a downtime
    overlapping on a machine. An empty list means the schedule is feasible."""
    ops = list(schedule.operations if isinstance(schedule, Schedule) else schedule)
    problems: list[str] = []
    placed: dict[tuple[int, int], ScheduledOperation] = {}
    for o in ops:
        tag = f"job {o.job} op {o.op}"
        if not (0 <= o.job < len(problem.jobs) and 0 <= o.op < len(problem.jobs[o.job].operations)):
            problems.append(f"{tag}: no such operation")
            continue
        if (o.job, o.op) in placed:
            problems.append(f"{tag}: scheduled more than once")
            continue
        placed[(o.job, o.op)] = o
        duration = problem.operation(o.job, o.op).duration_on(o.machine)
        if duration is None:
            problems.append(f"{tag}: machine {o.machine} cannot run it")
        elif o.end - o.start != duration:
            problems.append(f"{tag}: runs {o.end - o.start} on machine {o.machine}, needs {duration}")
        if o.start < 0:
            problems.append(f"{tag}: starts at {o.start} < 0")
        if o.start < problem.jobs[o.job].release:
            problems.append(f"{tag}: starts at {o.start}, before the job's release {problem.jobs[o.job].release}")
    for j, job in enumerate(problem.jobs):
        for k in range(len(job.operations)):
            if (j, k) not in placed:
                problems.append(f"job {j} op {k}: not scheduled")
    for j, job in enumerate(problem.jobs):
        for k in range(1, len(job.operations)):
            a, b = placed.get((j, k - 1)), placed.get((j, k))
            if a is not None and b is not None and b.start < a.end:
                problems.append(f"job {j}: op {k} starts at {b.start} before op {k - 1} ends at {a.end}")
    for p in problem.precedences:
        a, b = placed.get(p.before), placed.get(p.after)
        if a is not None and b is not None and b.start < a.end + p.delay:
            problems.append(f"job {p.after[0]} op {p.after[1]} starts at {b.start}, before job {p.before[0]} "
                            f"op {p.before[1]} ends at {a.end} + delay {p.delay}")
    by_machine: dict[int, list[tuple[int, int, str]]] = {}
    for o in placed.values():
        if o.end > o.start:
            by_machine.setdefault(o.machine, []).append((o.start, o.end, f"job {o.job} op {o.op}"))
    for d in problem.downtimes:
        by_machine.setdefault(d.machine, []).append((d.start, d.end, f"downtime{' ' + d.reason if d.reason else ''}"))
    for machine in sorted(by_machine):
        spans = sorted(by_machine[machine])
        reach = spans[0]
        for span in spans[1:]:
            if span[0] < reach[1] and not (span[2].startswith("downtime") and reach[2].startswith("downtime")):
                problems.append(f"machine {machine}: {reach[2]} [{reach[0]}, {reach[1]}) overlaps "
                                f"{span[2]} [{span[0]}, {span[1]})")
            if span[1] > reach[1]:
                reach = span
    return problems


def require_feasible(problem: Problem, schedule: Schedule) -> None:
    """Raise :class:`~tvilling.core.errors.Invalid` listing the violations when the schedule is not feasible."""
    found = check_schedule(problem, schedule)
    if found:
        raise Invalid(f"infeasible schedule for {problem.name or 'the problem'}: {found[0]}"
                      + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""),
                      errors=[{"message": m} for m in found], rule="schedule")


def schedule_from_json(data: Mapping[str, Any]) -> Schedule:
    """Read the exchange form written by :meth:`Schedule.to_json`; bad entries are :class:`Invalid`."""
    rows = data.get("operations")
    if not isinstance(rows, list):
        raise Invalid("a schedule needs an 'operations' list", rule="schedule")
    out: list[ScheduledOperation] = []
    for i, row in enumerate(rows):
        try:
            out.append(ScheduledOperation(*(int(row[key]) for key in ("job", "op", "machine", "start", "end"))))
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(f"schedule operation {i}: needs integer job, op, machine, start, end ({exc})",
                          index=i, rule="schedule") from None
    return Schedule(tuple(out))
