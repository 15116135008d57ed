"""Production jobs on the plant's machines: a current job and a small FIFO queue per machine.

A job is one operation of a production order: make ``quantity`` parts. A machine makes
parts at its throughput (``rate_per_h`` × speed / nominal speed) only while it runs, so a
stopped or faulted machine holds its job and the job takes longer. When the quantity is
made the job is completed, the machine's counter goes up, and the next queued job starts
with what the machine made past the end of the previous one.

>>> book = JobBook(2)
>>> book.submit(0, "PO-1", 0, 3, running=True)["position"]
0
>>> book.submit(0, "PO-2", 1, 2, running=True)["position"]   # busy: queued behind PO-1
1
>>> import numpy as np
>>> book.produce(np.array([4.0, 0.0]))                        # four parts' worth of production
>>> book.label(0), book.parts_done(0), int(book.completed[0]), book.last[0]
('PO-2/1', 1, 1, 'PO-1/0')
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from tvilling.core.errors import Conflict, Invalid

#: jobs that may wait behind the running one on a machine
QUEUE_LIMIT = 8
MAX_QUANTITY = 1_000_000
MAX_ORDER = 128
#: completed jobs a machine remembers, to refuse running one twice
REMEMBERED = 256
#: what a machine that never had a job reports
IDLE_JOB: dict[str, Any] = {"job": "", "jobProgress": 0.0, "partsDone": 0, "jobsCompleted": 0, "jobsQueued": 0,
                            "lastJob": ""}


@dataclass(frozen=True, slots=True)
class Job:
    order: str
    op: int
    quantity: int

    @property
    def label(self) -> str:
        """``order/op``, as the machine reports it."""
        return f"{self.order}/{self.op}"


def parse_job(request: Any) -> Job:
    """A ``runJob`` request ``{"order": str, "op": int ≥ 0, "quantity": int ≥ 1}`` → :class:`Job`."""
    if not isinstance(request, Mapping):
        raise Invalid(f"runJob takes an object {{order, op, quantity}}, not {request!r}"[:200], field="request",
                      rule="type")
    unknown = set(request) - {"order", "op", "quantity"}
    if unknown:
        raise Invalid(f"runJob: unknown fields {sorted(unknown)}; it takes order, op and quantity", field="request",
                      rule="unknown_field")
    order, op, quantity = request.get("order"), request.get("op"), request.get("quantity")
    if not isinstance(order, str) or not order.strip() or len(order) > MAX_ORDER:
        raise Invalid(f"order must be a non-empty string of at most {MAX_ORDER} characters, not {order!r}"[:200],
                      field="order", rule="format")
    if not _integer(op) or op < 0:
        raise Invalid(f"op must be an integer ≥ 0 (the operation's index in the routing), not {op!r}", field="op",
                      rule="range")
    if not _integer(quantity) or not 1 <= quantity <= MAX_QUANTITY:
        raise Invalid(f"quantity must be an integer between 1 and {MAX_QUANTITY:,}, not {quantity!r}",
                      field="quantity", rule="range")
    return Job(order, int(op), int(quantity))


def _integer(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return isinstance(value, int)


class JobBook:
    """The jobs of ``n`` machines: arrays for what every step updates, dicts for the few busy machines."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.made = np.zeros(n)  # parts' worth made for the current job (fractional)
        self.quantity = np.zeros(n, dtype=np.int64)  # of the current job; 0 = no job
        self.completed = np.zeros(n, dtype=np.int64)
        self.current: dict[int, Job] = {}
        self.queue: dict[int, deque[Job]] = {}
        self.last: dict[int, str] = {}
        self.done: dict[int, deque[str]] = {}

    # ------------------------------------------------------------------ commands

    def submit(self, i: int, order: str, op: int, quantity: int, *, running: bool) -> dict[str, Any]:
        """Give machine ``i`` a job; returns ``{job, position, jobsCompleted, reason}`` (see ``runJob``).

        The same order and op again while it runs or waits changes nothing (a resent command);
        ``Conflict`` when it was completed already or the queue is full.
        """
        job = Job(order, op, quantity)
        label = job.label
        waiting = self.queue.get(i, deque())
        ahead = [self.current[i], *waiting] if i in self.current else list(waiting)
        for position, other in enumerate(ahead):
            if other.label == label:
                return self._answer(i, label, position, "queued" if position else "")
        if label in self.done.get(i, ()):
            raise Conflict(f"job {label} was completed on this machine already", job=label, reason="done")
        if i not in self.current:
            self.current[i] = job
            self.quantity[i] = quantity
            self.made[i] = 0.0
            return self._answer(i, label, 0, "" if running else "stopped")
        if len(waiting) >= QUEUE_LIMIT:
            raise Conflict(f"the machine's queue is full ({QUEUE_LIMIT} jobs wait behind {self.current[i].label})",
                           job=label, reason="queue_full")
        waiting.append(job)
        self.queue[i] = waiting
        return self._answer(i, label, len(waiting), "queued")

    def _answer(self, i: int, label: str, position: int, reason: str) -> dict[str, Any]:
        out: dict[str, Any] = {"job": label, "position": position, "jobsCompleted": int(self.completed[i])}
        if reason:
            out["reason"] = reason
        return out

    # ------------------------------------------------------------------ time

    def produce(self, parts: np.ndarray) -> None:
        """Add ``parts`` (per machine, fractional) to the current jobs; complete those that are made."""
        busy = self.quantity > 0
        if not busy.any():
            return
        self.made += np.where(busy, parts, 0.0)
        for i in np.flatnonzero(busy & (self.made >= self.quantity)).tolist():
            self._complete(i)

    def _complete(self, i: int) -> None:
        while self.quantity[i] > 0 and self.made[i] >= self.quantity[i]:
            job = self.current.pop(i)
            extra = float(self.made[i] - self.quantity[i])
            self.completed[i] += 1
            self.last[i] = job.label
            self.done.setdefault(i, deque(maxlen=REMEMBERED)).append(job.label)
            waiting = self.queue.get(i)
            if waiting:
                nxt = waiting.popleft()
                if not waiting:
                    del self.queue[i]
                self.current[i] = nxt
                self.quantity[i] = nxt.quantity
                self.made[i] = extra
            else:
                self.quantity[i] = 0
                self.made[i] = 0.0

    # ------------------------------------------------------------------ reading

    def label(self, i: int) -> str:
        job = self.current.get(i)
        return "" if job is None else job.label

    def parts_done(self, i: int) -> int:
        return math.floor(float(self.made[i]) + 1e-9) if self.quantity[i] > 0 else 0

    def progress(self, i: int) -> float:
        q = int(self.quantity[i])
        return round(min(self.parts_done(i) / q, 1.0), 4) if q > 0 else 0.0

    def reported(self, i: int) -> dict[str, Any]:
        """Machine ``i``'s reported job properties (Machine;4)."""
        waiting = self.queue.get(i)
        return {"job": self.label(i), "jobProgress": self.progress(i), "partsDone": self.parts_done(i),
                "jobsCompleted": int(self.completed[i]), "jobsQueued": len(waiting) if waiting else 0,
                "lastJob": self.last.get(i, "")}

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """The reported job properties of every machine that ever had a job (the others report
        :data:`IDLE_JOB`), for a frame."""
        return {i: self.reported(i) for i in set(self.current) | set(self.last)}
