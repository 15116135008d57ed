"""The production-scheduling model: jobs of ordered operations on alternative machines, and their schedules.

Times are integers in one unit the caller chooses (minutes on the plant, abstract units in the benchmarks).
A :class:`Problem` is a pure value; :meth:`Problem.validate` names the first conflict it finds (a machine out
of range, an operation with no machine, a cyclic routing) before any solver runs.

>>> p = Problem(machines=2, jobs=(
...     Job((Operation.on(0, 3), Operation.on(1, 2))),
...     Job((Operation((Option(0, 4), Option(1, 1))),)),
... ))
>>> p.validate()
>>> p.operation_count, p.is_flexible
(3, True)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from tvilling.core.errors import Invalid

ObjectiveKind = Literal["makespan", "weighted_tardiness"]


class Infeasible(Invalid):
    """The problem admits no schedule; ``fields`` name the conflict (job, operation, machine, rule)."""

    title = "Infeasible schedule"


@dataclass(frozen=True, slots=True)
class Option:
    """One way to run an operation: on ``machine``, taking ``duration`` time units."""

    machine: int
    duration: int


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of a job; it runs, without interruption, on exactly one of its alternative machines."""

    options: tuple[Option, ...]
    name: str = ""

    @staticmethod
    def on(machine: int, duration: int, name: str = "") -> Operation:
        """An operation with a single eligible machine."""
        return Operation((Option(machine, duration),), name)

    def duration_on(self, machine: int) -> int | None:
        """The duration on ``machine``, or ``None`` where that machine cannot run it."""
        for option in self.options:
            if option.machine == machine:
                return option.duration
        return None

    @property
    def min_duration(self) -> int:
        return min(o.duration for o in self.options)


@dataclass(frozen=True, slots=True)
class Job:
    """An order: operations run in this sequence; not before ``release``; late past ``due`` at cost ``weight``."""

    operations: tuple[Operation, ...]
    release: int = 0
    due: int | None = None
    weight: int = 1
    name: str = ""


@dataclass(frozen=True, slots=True)
class Downtime:
    """A machine is unavailable in ``[start, end)``: maintenance, a breakdown, a planned stop."""

    machine: int
    start: int
    end: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Precedence:
    """Operation ``after`` (job, op) starts at least ``delay`` after operation ``before`` ends (across jobs)."""

    before: tuple[int, int]
    after: tuple[int, int]
    delay: int = 0


@dataclass(frozen=True, slots=True)
class ScheduledOperation:
    """Where and when one operation runs."""

    job: int
    op: int
    machine: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """A complete schedule: one entry per operation."""

    operations: tuple[ScheduledOperation, ...]

    @property
    def makespan(self) -> int:
        return max((o.end for o in self.operations), default=0)

    def job_ends(self, jobs: int) -> list[int]:
        """The completion time of each job (0 for a job without operations)."""
        ends = [0] * jobs
        for o in self.operations:
            if 0 <= o.job < jobs:
                ends[o.job] = max(ends[o.job], o.end)
        return ends

    def to_json(self, instance: str) -> dict[str, object]:
        """The exchange form ``{"instance", "makespan", "operations": [{job, op, machine, start, end}]}``."""
        ops = sorted(self.operations, key=lambda o: (o.job, o.op))
        return {"instance": instance, "makespan": self.makespan,
                "operations": [{"job": o.job, "op": o.op, "machine": o.machine, "start": o.start, "end": o.end}
                               for o in ops]}


@dataclass(frozen=True, slots=True)
class Problem:
    """Machines ``0 .. machines-1``, the jobs, the machines' downtimes and any precedences across jobs."""

    machines: int
    jobs: tuple[Job, ...]
    downtimes: tuple[Downtime, ...] = ()
    precedences: tuple[Precedence, ...] = ()
    name: str = ""
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets, total = [], 0
        for job in self.jobs:
            offsets.append(total)
            total += len(job.operations)
        offsets.append(total)
        object.__setattr__(self, "_offsets", tuple(offsets))

    @property
    def operation_count(self) -> int:
        return self._offsets[-1]

    @property
    def is_flexible(self) -> bool:
        return any(len(op.options) > 1 for job in self.jobs for op in job.operations)

    def index(self, job: int, op: int) -> int:
        """The global index of operation ``op`` of ``job`` (jobs in order, operations in order)."""
        return self._offsets[job] + op

    def operation(self, job: int, op: int) -> Operation:
        return self.jobs[job].operations[op]

    def predecessors(self) -> list[list[tuple[int, int]]]:
        """Per global operation index: ``(predecessor index, delay)`` pairs, the job chain and the precedences."""
        preds: list[list[tuple[int, int]]] = [[] for _ in range(self.operation_count)]
        for j, job in enumerate(self.jobs):
            for k in range(1, len(job.operations)):
                preds[self.index(j, k)].append((self.index(j, k - 1), 0))
        for p in self.precedences:
            preds[self.index(*p.after)].append((self.index(*p.before), p.delay))
        return preds

    def validate(self) -> None:
        """Raise :class:`~tvilling.core.errors.Invalid` or :class:`Infeasible` naming the first conflict."""
        if self.machines < 1:
            raise Invalid(f"a problem needs at least one machine, got {self.machines}", rule="machines")
        for j, job in enumerate(self.jobs):
            where = job.name or f"job {j}"
            if job.release < 0:
                raise Invalid(f"{where}: release {job.release} is negative", job=j, rule="release")
            if job.weight < 0:
                raise Invalid(f"{where}: weight {job.weight} is negative", job=j, rule="weight")
            for k, op in enumerate(job.operations):
                if not op.options:
                    raise Infeasible(f"{where}, operation {k}: no machine can run it", job=j, op=k,
                                     rule="no-machine")
                seen: set[int] = set()
                for option in op.options:
                    if not 0 <= option.machine < self.machines:
                        raise Invalid(f"{where}, operation {k}: machine {option.machine} is out of range "
                                      f"0..{self.machines - 1}", job=j, op=k, machine=option.machine,
                                      rule="machine-range")
                    if option.duration < 0:
                        raise Invalid(f"{where}, operation {k}: duration {option.duration} on machine "
                                      f"{option.machine} is negative", job=j, op=k, machine=option.machine,
                                      rule="duration")
                    if option.machine in seen:
                        raise Invalid(f"{where}, operation {k}: machine {option.machine} is listed twice",
                                      job=j, op=k, machine=option.machine, rule="duplicate-machine")
                    seen.add(option.machine)
        for d in self.downtimes:
            if not 0 <= d.machine < self.machines:
                raise Invalid(f"downtime on machine {d.machine}: out of range 0..{self.machines - 1}",
                              machine=d.machine, rule="machine-range")
            if d.end <= d.start:
                raise Invalid(f"downtime on machine {d.machine}: end {d.end} is not after start {d.start}",
                              machine=d.machine, rule="downtime")
        for p in self.precedences:
            for j, k in (p.before, p.after):
                if not (0 <= j < len(self.jobs) and 0 <= k < len(self.jobs[j].operations)):
                    raise Invalid(f"precedence {p.before} -> {p.after}: no operation {k} of job {j}",
                                  job=j, op=k, rule="precedence")
            if p.delay < 0:
                raise Invalid(f"precedence {p.before} -> {p.after}: delay {p.delay} is negative", rule="precedence")
        cycle = self.find_cycle()
        if cycle:
            names = " -> ".join(f"job {j} op {k}" for j, k in cycle)
            raise Infeasible(f"the routing is cyclic: {names}", cycle=[list(c) for c in cycle], rule="cycle")

    def topological_order(self) -> list[int] | None:
        """Global operation indices in an order that respects every precedence; ``None`` if cyclic."""
        preds = self.predecessors()
        succs: list[list[int]] = [[] for _ in preds]
        indegree = [len(p) for p in preds]
        for i, plist in enumerate(preds):
            for q, _ in plist:
                succs[q].append(i)
        queue = deque(i for i, d in enumerate(indegree) if d == 0)
        order: list[int] = []
        while queue:
            i = queue.popleft()
            order.append(i)
            for s in succs[i]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    queue.append(s)
        return order if len(order) == len(preds) else None

    def find_cycle(self) -> list[tuple[int, int]]:
        """One cycle of precedences as ``(job, op)`` pairs, first repeated last; empty when there is none."""
        if not self.precedences or self.topological_order() is not None:
            return []
        preds = self.predecessors()
        locate = [(j, k) for j, job in enumerate(self.jobs) for k in range(len(job.operations))]
        state = [0] * len(preds)  # 0 new, 1 on the stack, 2 done
        for root in range(len(preds)):
            if state[root]:
                continue
            stack: list[tuple[int, int]] = [(root, 0)]
            path: list[int] = [root]
            state[root] = 1
            while stack:
                node, i = stack[-1]
                if i < len(preds[node]):
                    stack[-1] = (node, i + 1)
                    nxt = preds[node][i][0]
                    if state[nxt] == 1:
                        loop = [*path[path.index(nxt):], nxt]
                        return [locate[x] for x in reversed(loop)]
                    if state[nxt] == 0:
                        state[nxt] = 1
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    state[node] = 2
                    stack.pop()
                    path.pop()
        return []  # pragma: no cover - topological_order found a cycle, so the search does too
