"""Tabu search on machine sequences and assignments: shortens the makespan of a feasible schedule.

A schedule is read as one sequence of operations per machine (the disjunctive graph). A move either swaps two
adjacent operations at the start or end of a block of the critical path (Nowicki and Smutnicki's N5
neighbourhood, which keeps the graph acyclic), judged by the exact length of the longest path through the two,
or, in a flexible shop, moves a critical operation to another of its machines, placed among the operations
that start before it there, judged by recomputing the schedule. A short memory of reversed moves (the tabu
list) keeps the search from walking back; after a long run without a new best it restarts from the best
sequences with a few random swaps. It applies where there are no downtimes and no precedences across jobs."""

from __future__ import annotations

import random
import time

from tvilling.planning.jobshop import Problem, Schedule, ScheduledOperation

TENURE = (8, 60)  # a reversed move stays tabu for 1 to 2 times (8 + operations // 60) iterations
STALL = (1500, 10)  # restart from the best after 1500 + 10 × operations iterations without a new best
REASSIGN = 2  # critical operations per iteration tried on their other machines (flexible shops)


def applies(problem: Problem) -> bool:
    """Whether :func:`improve` can work on this problem (no downtimes, no precedences across jobs)."""
    return not problem.downtimes and not problem.precedences and problem.operation_count > 1


class _Sequences:
    """Machine sequences over global operation indices, with the heads and tails of the disjunctive graph."""

    def __init__(self, problem: Problem, schedule: Schedule) -> None:
        n = problem.operation_count
        self.n = n
        self.p = [0] * n
        self.machine = [0] * n
        self.release = [0] * n
        self.jp = [-1] * n
        self.js = [-1] * n
        self.locate = [(0, 0)] * n
        self.options: list[dict[int, int]] = [{}] * n
        for j, job in enumerate(problem.jobs):
            for k, op in enumerate(job.operations):
                i = problem.index(j, k)
                self.locate[i] = (j, k)
                self.options[i] = {o.machine: o.duration for o in op.options}
                if k == 0:
                    self.release[i] = job.release
                else:
                    self.jp[i] = i - 1
                    self.js[i - 1] = i
        start = [0] * n
        for o in schedule.operations:
            i = problem.index(o.job, o.op)
            self.p[i], self.machine[i], start[i] = o.end - o.start, o.machine, o.start
        self.seqs: list[list[int]] = [[] for _ in range(problem.machines)]
        for i in sorted(range(n), key=lambda x: (start[x], self.p[x] > 0, x)):
            self.seqs[self.machine[i]].append(i)
        self.mp = [-1] * n
        self.ms = [-1] * n
        self.pos = [0] * n
        for seq in self.seqs:
            self._link(seq)
        self.r = [0] * n
        self.q = [0] * n

    def _link(self, seq: list[int]) -> None:
        prev = -1
        for k, i in enumerate(seq):
            self.pos[i] = k
            self.mp[i] = prev
            if prev >= 0:
                self.ms[prev] = i
            prev = i
        if prev >= 0:
            self.ms[prev] = -1

    def evaluate(self) -> int:
        """Heads ``r`` and tails ``q`` (work after, without the operation itself); the makespan, -1 if cyclic."""
        n, p, jp, mp, js, ms = self.n, self.p, self.jp, self.mp, self.js, self.ms
        indeg = [(jp[i] >= 0) + (mp[i] >= 0) for i in range(n)]
        r = list(self.release)
        stack = [i for i in range(n) if indeg[i] == 0]
        order: list[int] = []
        while stack:
            i = stack.pop()
            order.append(i)
            e = r[i] + p[i]
            s = js[i]
            if s >= 0:
                if r[s] < e:
                    r[s] = e
                indeg[s] -= 1
                if indeg[s] == 0:
                    stack.append(s)
            s = ms[i]
            if s >= 0:
                if r[s] < e:
                    r[s] = e
                indeg[s] -= 1
                if indeg[s] == 0:
                    stack.append(s)
        if len(order) < n:
            return -1
        q = [0] * n
        for i in reversed(order):
            best = 0
            s = js[i]
            if s >= 0:
                best = q[s] + p[s]
            s = ms[i]
            if s >= 0 and q[s] + p[s] > best:
                best = q[s] + p[s]
            q[i] = best
        self.r, self.q = r, q
        return max(r[i] + p[i] for i in range(n))

    def critical_blocks(self, makespan: int, rng: random.Random) -> list[list[int]]:
        """The blocks (runs on one machine) of one critical path, first to last."""
        r, p, q, jp, mp = self.r, self.p, self.q, self.jp, self.mp
        ends = [i for i in range(self.n) if r[i] + p[i] == makespan]
        cur = rng.choice(ends)
        path = [cur]
        while True:
            a, b = mp[cur], jp[cur]
            on_a = a >= 0 and r[a] + p[a] == r[cur] and r[a] + p[a] + q[a] == makespan
            on_b = b >= 0 and r[b] + p[b] == r[cur] and r[b] + p[b] + q[b] == makespan
            if on_a and on_b:
                cur = a if rng.random() < 0.5 else b
            elif on_a:
                cur = a
            elif on_b:
                cur = b
            else:
                break
            path.append(cur)
        path.reverse()
        blocks: list[list[int]] = [[path[0]]]
        for i in path[1:]:
            if mp[i] == blocks[-1][-1]:
                blocks[-1].append(i)
            else:
                blocks.append([i])
        return blocks

    def swap_estimate(self, u: int, v: int) -> int:
        """The longest path through ``u`` and ``v`` once ``v`` runs before ``u`` (they are adjacent, u first)."""
        r, p, q, jp, js = self.r, self.p, self.q, self.jp, self.js
        a, b = self.mp[u], self.ms[v]
        rv = max(r[jp[v]] + p[jp[v]] if jp[v] >= 0 else self.release[v], r[a] + p[a] if a >= 0 else 0)
        ru = max(r[jp[u]] + p[jp[u]] if jp[u] >= 0 else self.release[u], rv + p[v])
        qu = max(q[js[u]] + p[js[u]] if js[u] >= 0 else 0, q[b] + p[b] if b >= 0 else 0)
        qv = max(q[js[v]] + p[js[v]] if js[v] >= 0 else 0, qu + p[u])
        return max(rv + p[v] + qv, ru + p[u] + qu)

    def swap(self, u: int, v: int) -> None:
        seq = self.seqs[self.machine[u]]
        k = self.pos[u]
        seq[k], seq[k + 1] = v, u
        a, b = self.mp[u], self.ms[v]
        self.mp[v], self.ms[v], self.mp[u], self.ms[u] = a, u, v, b
        if a >= 0:
            self.ms[a] = v
        if b >= 0:
            self.mp[b] = u
        self.pos[v], self.pos[u] = k, k + 1

    def reassign(self, i: int, machine: int, position: int) -> tuple[int, int]:
        """Move ``i`` to ``position`` in ``machine``'s sequence; the machine and position it left."""
        old_machine, old_position = self.machine[i], self.pos[i]
        old = self.seqs[old_machine]
        del old[old_position]
        self._link(old)
        new = self.seqs[machine]
        new.insert(position, i)
        self.machine[i], self.p[i] = machine, self.options[i][machine]
        self._link(new)
        return old_machine, old_position

    def insertion_point(self, i: int, machine: int) -> int:
        """Where ``i`` goes in ``machine``'s sequence: after the operations that start before it."""
        r, ri = self.r, self.r[i]
        return sum(1 for x in self.seqs[machine] if r[x] < ri)

    def snapshot(self) -> list[list[int]]:
        return [list(s) for s in self.seqs]

    def restore(self, seqs: list[list[int]]) -> None:
        self.seqs = [list(s) for s in seqs]
        for machine, seq in enumerate(self.seqs):
            for i in seq:
                self.machine[i], self.p[i] = machine, self.options[i][machine]
            self._link(seq)

    def schedule(self) -> Schedule:
        self.evaluate()
        return Schedule(tuple(ScheduledOperation(*self.locate[i], self.machine[i], self.r[i], self.r[i] + self.p[i])
                              for i in range(self.n)))


def _moves(blocks: list[list[int]], js: list[int]) -> list[tuple[int, int]]:
    """N5: swap the first two or the last two operations of each block (not the start of the first block,
    nor the end of the last), unless they are consecutive steps of one job (on one machine)."""
    out: list[tuple[int, int]] = []
    last = len(blocks) - 1
    for b, block in enumerate(blocks):
        if len(block) < 2:
            continue
        if b > 0:
            out.append((block[0], block[1]))
        if b < last and (len(block) > 2 or b == 0):
            out.append((block[-2], block[-1]))
    return [(u, v) for u, v in dict.fromkeys(out) if js[u] != v]


def improve(problem: Problem, schedule: Schedule, seconds: float, seed: int = 0,
            lower_bound: int = 0) -> Schedule:
    """A schedule at least as short as ``schedule``, found within ``seconds`` (or once ``lower_bound`` is met)."""
    if not applies(problem) or seconds <= 0:
        return schedule
    rng = random.Random(seed)
    state = _Sequences(problem, schedule)
    current = state.evaluate()
    if current < 0:  # pragma: no cover - a feasible schedule gives acyclic sequences
        return schedule
    best, best_seqs = current, state.snapshot()
    tabu: dict[tuple[int, int], int] = {}
    deadline = time.perf_counter() + seconds
    base_tenure = TENURE[0] + state.n // TENURE[1]
    stall_limit = STALL[0] + STALL[1] * state.n
    it, last_best = 0, 0
    flexible = problem.is_flexible
    while best > lower_bound:
        it += 1
        if it & 31 == 0 and time.perf_counter() >= deadline:
            break
        blocks = state.critical_blocks(current, rng)
        moves = _moves(blocks, state.js)
        chosen, chosen_value = None, None
        for u, v in moves:
            value = state.swap_estimate(u, v)
            if tabu.get((u, v), 0) > it and value >= best:
                continue
            if chosen_value is None or value < chosen_value:
                chosen, chosen_value = (u, v), value
        if flexible:
            r, q = state.r, state.q
            critical = [i for block in blocks for i in block if len(state.options[i]) > 1]
            for i in rng.sample(critical, min(REASSIGN, len(critical))):
                for machine in state.options[i]:
                    if machine == state.machine[i]:
                        continue
                    back = state.reassign(i, machine, state.insertion_point(i, machine))
                    value = state.evaluate()
                    state.reassign(i, *back)
                    state.r, state.q = r, q
                    if value < 0 or (tabu.get((i, -1 - machine), 0) > it and value >= best):
                        continue
                    if chosen_value is None or value < chosen_value:
                        chosen, chosen_value = (i, -1 - machine), value
        if chosen is None:
            if not moves:
                if current <= best:
                    break  # one block: the makespan is one machine's load, nothing to gain
                state.restore(best_seqs)
                current = state.evaluate()
                continue
            chosen = rng.choice(moves)
        if chosen[1] < 0:
            i, machine = chosen[0], -1 - chosen[1]
            left, _ = state.reassign(i, machine, state.insertion_point(i, machine))
            tabu[(i, -1 - left)] = it + base_tenure + rng.randint(0, base_tenure)
            current = state.evaluate()
            if current < best:
                best, best_seqs, last_best = current, state.snapshot(), it
            continue
        u, v = chosen
        state.swap(u, v)
        tabu[(v, u)] = it + base_tenure + rng.randint(0, base_tenure)
        current = state.evaluate()
        if current < 0:  # only where zero durations tie paths: undo, and do not try it again soon
            state.swap(v, u)
            tabu[(u, v)] = it + base_tenure
            current = state.evaluate()
            continue
        if current < best:
            best, best_seqs, last_best = current, state.snapshot(), it
        elif it - last_best > stall_limit:
            state.restore(best_seqs)
            current = state.evaluate()
            for _ in range(rng.randint(2, 6)):
                kicks = _moves(state.critical_blocks(current, rng), state.js)
                if kicks:
                    u, v = rng.choice(kicks)
                    state.swap(u, v)
                    current = state.evaluate()
                    if current < 0:
                        state.swap(v, u)
                        current = state.evaluate()
            tabu.clear()
            last_best = it
    state.restore(best_seqs)
    return state.schedule()
