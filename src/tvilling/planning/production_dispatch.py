"""The dispatcher: the plan in force is carried out on the line, one ``runJob`` command at a time.

Every tick it reads the line's plan in force (:func:`~tvilling.planning.production.current_plan`) and
the machines' twins, and sends ``runJob`` through the platform's command service — the path of
``POST /api/twins/{id}/commands/runJob``: validated against the model, stored, answered, timed out
and attributed to its actor — never to the plant directly. An operation is sent when

* plant time (the newest reading of the line's machines, or the clock given) reaches its planned start,
* the operation before it in its order's routing is done, and
* every operation planned before it on the same machine has been sent (the plan's sequence holds).

Each planned operation moves ``pending → dispatched → running → done``, read from the twin the
machine reports to (``job``, ``lastJob``, ``jobsCompleted``: see ``dtmi:tvilling:example:Machine;4``);
a refused command (machine in fault, queue full, transport down) puts it back to ``pending`` with the
reason, to be sent again ``retry_s`` of plant time later; a request the model rejects makes it ``failed``. A new
plan replaces the old one for what was not sent yet; what was sent stays on its machine and keeps
the times of the plan it was sent under. :meth:`ProductionDispatcher.status` is what a Gantt chart
or an API route shows: each operation with its planned and actual times and its lateness.

    dispatcher = ProductionDispatcher(platform.twins, runtime.commands, platform, "line-1")
    async with DispatchUnit(dispatcher, interval_s=1.0):
        ...
        dispatcher.status()["operations"]
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tvilling.core.errors import Invalid, NotFound, TvillingError, Unavailable
from tvilling.decisions.commands import CommandService
from tvilling.decisions.lifecycle import FAILED, FINAL, SUCCEEDED, CommandRecord
from tvilling.planning.production import PlannedOperation, ProductionPlan, current_plan
from tvilling.runtime.units import BackgroundTask, StackUnit
from tvilling.twins.service import TwinService

log = logging.getLogger("tvilling.planning.dispatch")

PENDING: Final = "pending"
DISPATCHED: Final = "dispatched"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED_OP: Final = "failed"
STATES: Final = (PENDING, DISPATCHED, RUNNING, DONE, FAILED_OP)
ACTOR: Final = "dispatcher:production"

Key = tuple[str, int]
PlanSource = Callable[[str], ProductionPlan | None]


@dataclass
class Tracked:
    """Where one planned operation stands (mutable; the dispatcher's own bookkeeping)."""

    planned: PlannedOperation
    plan: str  # the plan its times come from
    status: str = PENDING
    command: str | None = None  # the runJob command in flight or answered
    dispatched: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    position: int | None = None  # jobs ahead of it when the machine took it
    base: int | None = None  # the machine's jobsCompleted when it took it
    seen_running: bool = False
    progress: float = 0.0
    parts_done: int = 0
    attempts: int = 0
    error: str | None = None
    retry_at: datetime | None = None  # plant time: not sent again before

    @property
    def label(self) -> str:
        return f"{self.planned.order}/{self.planned.op}"


@dataclass(frozen=True, slots=True)
class Change:
    """One move of a planned operation, for a narrator or a log."""

    at: datetime
    order: str
    op: int
    machine: str
    previous: str
    status: str
    detail: str = ""


@dataclass
class _Machine:
    job: str = ""
    last: str = ""
    completed: int | None = None
    progress: float = 0.0
    parts: int = 0
    job_time: datetime | None = None
    completed_time: datetime | None = None
    time: datetime | None = None


class ProductionDispatcher:
    """Carries out ``line``'s plan in force on its machines through ``commands``.

    ``plans`` is a callable ``line → plan``, a production plan store, or anything
    :func:`~tvilling.planning.production.current_plan` reads (a platform, a backend). ``clock`` is
    plant time (UTC); by default the newest reading of the plan's machines, as their twins hold it.
    """

    def __init__(self, twins: TwinService, commands: CommandService, plans: Any, line: str, *,
                 clock: Callable[[], datetime] | None = None, retry_s: float = 5.0, lead_s: float = 0.0,
                 actor: str = ACTOR, history: int = 1000) -> None:
        if not line:
            raise Invalid("the dispatcher needs a line id", field="line", rule="required")
        if not retry_s >= 0 or not lead_s >= 0:
            raise Invalid("retry_s and lead_s must be ≥ 0 seconds", field="retry_s" if not retry_s >= 0 else "lead_s",
                          rule="range")
        self.twins = twins
        self.commands = commands
        self.line = line
        self.clock = clock
        self.retry_s = retry_s
        self.lead = timedelta(seconds=lead_s)
        self.actor = actor
        self.ops: dict[Key, Tracked] = {}
        self.plan: ProductionPlan | None = None
        self.changes: deque[Change] = deque(maxlen=history)
        self.listeners: list[Callable[[Change], None]] = []
        self.now: datetime | None = None
        self._plans: PlanSource = plans if callable(plans) and not hasattr(plans, "current") else (
            lambda line: current_plan(plans, line))
        self._lock = threading.Lock()
        self._moved: list[Change] = []

    # ------------------------------------------------------------------ the loop

    async def run(self, interval_s: float = 1.0) -> None:
        """Tick forever (a background task; cancel it to stop)."""
        while True:
            try:
                await self.tick()
            except TvillingError as exc:
                log.warning("production dispatch on %s: %s", self.line, exc.message)
            except Exception:
                log.exception("production dispatch on %s failed; trying again", self.line)
            await asyncio.sleep(interval_s)

    async def tick(self) -> list[Change]:
        """One pass: follow the plan in force, read the machines, settle answers, send what is due.
        Returns the moves it made."""
        plan = await asyncio.to_thread(self._plans, self.line)
        self._moved = []
        planned = {o.machine for o in plan.operations} if plan is not None else set()
        machines = sorted(planned | {t.planned.machine for t in self.ops.values() if t.status in (DISPATCHED, RUNNING)})
        seen = await asyncio.to_thread(self._read_machines, machines)
        now = self.clock() if self.clock is not None else _newest(seen.values())
        if now is None:
            return []  # no plant time yet: nothing has been reported
        self.now = now
        with self._lock:
            if plan is not None and (self.plan is None or plan.id != self.plan.id):
                self._adopt(plan, now)
            self._observe(seen, now)
        await self._settle(now)
        for tracked in self._due(now):
            await self._send(tracked, now)
        return self._moved

    # ------------------------------------------------------------------ plans

    def _adopt(self, plan: ProductionPlan, now: datetime) -> None:
        """The new plan governs what was not sent yet; what was sent keeps its own times."""
        wanted = {(o.order, o.op): o for o in plan.operations}
        for key, old in list(self.ops.items()):
            if old.status == PENDING and old.command is None and key not in wanted:
                del self.ops[key]
                self._move(old, "dropped", now, f"not in plan {plan.id}")
        for key, planned in wanted.items():
            tracked = self.ops.get(key)
            if tracked is None:
                self.ops[key] = Tracked(planned, plan.id)
            elif tracked.status == PENDING and tracked.command is None:
                tracked.planned, tracked.plan = planned, plan.id
        log.info("production dispatch on %s follows plan %s (%s)", self.line, plan.id, plan.reason or "no reason")
        self.plan = plan

    # ------------------------------------------------------------------ what the twins say

    def _read_machines(self, machines: list[str]) -> dict[str, _Machine]:
        out: dict[str, _Machine] = {}
        for machine in machines:
            try:
                twin = self.twins.get(machine)
            except NotFound:
                continue
            rep, meta = twin.reported, twin.metadata.get("reported", {})
            completed = rep.get("jobsCompleted")
            out[machine] = _Machine(
                job=str(rep.get("job") or ""), last=str(rep.get("lastJob") or ""),
                completed=completed if isinstance(completed, int) and not isinstance(completed, bool) else None,
                progress=float(rep.get("jobProgress") or 0.0), parts=int(rep.get("partsDone") or 0),
                job_time=_time_of(meta, "job"), completed_time=_time_of(meta, "jobsCompleted"),
                time=max((t for t in (_time_of(meta, "state"), _time_of(meta, "job")) if t is not None), default=None))
        return out

    def _observe(self, seen: Mapping[str, _Machine], now: datetime) -> None:
        for tracked in self.ops.values():
            if tracked.status not in (DISPATCHED, RUNNING):
                continue
            m = seen.get(tracked.planned.machine)
            if m is None:
                continue
            label = tracked.label
            done = (m.last == label
                    or (tracked.base is not None and tracked.position is not None and m.completed is not None
                        and m.completed >= tracked.base + tracked.position + 1)
                    or (tracked.seen_running and m.job != label))
            if done or m.job == label:
                tracked.error = None  # the machine took it, whatever an earlier attempt was told
            if done:
                tracked.finished = m.completed_time or now
                if tracked.started is None:
                    tracked.started = tracked.dispatched
                tracked.progress, tracked.parts_done = 1.0, tracked.planned.quantity
                self._move(tracked, DONE, tracked.finished)
            elif m.job == label:
                tracked.seen_running = True
                tracked.progress, tracked.parts_done = m.progress, m.parts
                if tracked.status == DISPATCHED:
                    tracked.started = m.job_time or now
                    self._move(tracked, RUNNING, tracked.started)

    # ------------------------------------------------------------------ commands

    async def _settle(self, now: datetime) -> None:
        """Apply the answers to the commands in flight."""
        for tracked in [t for t in self.ops.values() if t.command is not None and t.position is None
                        and t.status in (DISPATCHED, RUNNING)]:
            record = await asyncio.to_thread(self.commands.get, tracked.command or "")
            if record.status in FINAL:
                with self._lock:
                    self._answered(tracked, record, now)

    def _answered(self, tracked: Tracked, record: CommandRecord, now: datetime) -> None:
        response = record.response if isinstance(record.response, Mapping) else {}
        if record.status == SUCCEEDED:
            position, base = response.get("position"), response.get("jobsCompleted")
            tracked.position = position if isinstance(position, int) else -1
            tracked.base = base if isinstance(base, int) else None
            tracked.error = None
            if tracked.position < 0:  # an answer without the queue position (e.g. over OPC UA): the twin decides
                tracked.base = None
            return
        reason = response.get("reason")
        error = record.error or record.status
        if record.status == FAILED and reason == "done":  # completed before (a resend after a restart)
            tracked.finished, tracked.progress, tracked.parts_done = now, 1.0, tracked.planned.quantity
            self._move(tracked, DONE, now, "the machine had completed it already")
        elif record.status == FAILED and reason == "invalid":
            tracked.error = error
            self._move(tracked, FAILED_OP, now, error)
        else:
            self._refused(tracked, now, error)

    def _refused(self, tracked: Tracked, now: datetime, error: str) -> None:
        tracked.error = error
        tracked.command = None
        tracked.dispatched = None
        tracked.retry_at = now + timedelta(seconds=self.retry_s)
        planned = {(o.order, o.op): o for o in self.plan.operations} if self.plan else {}
        fresh = planned.get((tracked.planned.order, tracked.planned.op))
        if fresh is not None and self.plan is not None:
            tracked.planned, tracked.plan = fresh, self.plan.id
        self._move(tracked, PENDING, now, error)

    def _due(self, now: datetime) -> list[Tracked]:
        """The pending operations to send now, in plan order."""
        order = sorted(self.ops.values(), key=lambda t: (t.planned.start, t.planned.machine, t.planned.order,
                                                         t.planned.op))
        blocked: set[str] = set()  # machines with an earlier planned operation not sent yet
        out: list[Tracked] = []
        for tracked in order:
            p = tracked.planned
            if tracked.status != PENDING:
                continue
            ready = (p.start - self.lead <= now and (tracked.retry_at is None or tracked.retry_at <= now)
                     and p.machine not in blocked)
            before = self.ops.get((p.order, p.op - 1))
            if p.op > 0 and before is not None and before.status != DONE:
                ready = False
            if ready:
                out.append(tracked)
            else:
                blocked.add(p.machine)
        return out

    async def _send(self, tracked: Tracked, now: datetime) -> None:
        p = tracked.planned
        request = {"order": p.order, "op": p.op, "quantity": p.quantity}
        tracked.attempts += 1
        try:
            record = await self.commands.invoke(p.machine, "runJob", request, actor=self.actor)
        except (Invalid, NotFound) as exc:  # the model or the twin says no: sending again will not help
            with self._lock:
                tracked.error = exc.message
                self._move(tracked, FAILED_OP, now, exc.message)
            return
        except TvillingError as exc:
            with self._lock:
                self._refused(tracked, now, exc.message)
            return
        with self._lock:
            tracked.command, tracked.dispatched = record.id, now
            tracked.position = tracked.base = None
            self._move(tracked, DISPATCHED, now, f"command {record.id}")
            if record.status in FINAL:
                self._answered(tracked, record, now)

    # ------------------------------------------------------------------ reading

    def _move(self, tracked: Tracked, status: str, at: datetime, detail: str = "") -> None:
        previous, p = tracked.status, tracked.planned
        if status in STATES:
            tracked.status = status
        change = Change(at, p.order, p.op, p.machine, previous, status, detail)
        self.changes.append(change)
        self._moved.append(change)
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:
                log.exception("a listener of the production dispatch failed on %s", change)

    def status(self) -> dict[str, Any]:
        """The plan in force and every operation with its status, planned and actual times (ISO 8601 UTC) and
        lateness in seconds (done: finished − planned end; otherwise the expected end − planned end)."""
        with self._lock:
            now = self.now
            items = [self._item(t, now) for t in sorted(self.ops.values(), key=lambda t: (t.planned.start,
                                                                                        t.planned.machine))]
            plan = self.plan
        counts = {s: sum(1 for i in items if i["status"] == s) for s in STATES}
        return {"line": self.line, "plan": None if plan is None else plan.id,
                "reason": None if plan is None else plan.reason, "now": _iso(now), "counts": counts,
                "operations": items}

    def _item(self, t: Tracked, now: datetime | None) -> dict[str, Any]:
        p = t.planned
        expected = self._expected_end(t, now)
        start_ref = t.started or (now if now is not None and now > p.start and t.status in (PENDING, DISPATCHED)
                                  else None)
        return {
            "order": p.order, "op": p.op, "machine": p.machine, "quantity": p.quantity, "plan": t.plan,
            "status": t.status, "planned_start": _iso(p.start), "planned_end": _iso(p.end),
            "dispatched": _iso(t.dispatched), "started": _iso(t.started), "finished": _iso(t.finished),
            "expected_end": _iso(expected), "progress": round(t.progress, 4), "parts_done": t.parts_done,
            "start_delay_s": None if start_ref is None else (start_ref - p.start).total_seconds(),
            "lateness_s": None if expected is None else (expected - p.end).total_seconds(),
            "command": t.command, "attempts": t.attempts, "error": t.error,
        }

    @staticmethod
    def _expected_end(t: Tracked, now: datetime | None) -> datetime | None:
        p = t.planned
        if t.status == DONE:
            return t.finished
        if t.status == FAILED_OP or now is None:
            return None
        duration = p.end - p.start
        if t.status != RUNNING:
            return max(now, p.start) + duration
        if t.started is not None and t.progress > 0:
            return max(t.started + (now - t.started) / t.progress, now)
        return now + duration


@dataclass
class DispatchUnit(StackUnit):
    """The dispatcher as a runtime unit: ticks every ``interval_s`` while entered."""

    dispatcher: ProductionDispatcher
    interval_s: float = 1.0
    name: str = field(default="production-dispatch")

    async def _open(self, stack: AsyncExitStack) -> None:
        dispatcher, interval = self.dispatcher, self.interval_s
        await stack.enter_async_context(BackgroundTask(self.name, lambda: dispatcher.run(interval)))


def dispatcher_for(runtime: Any, line: str, **options: Any) -> ProductionDispatcher:
    """A dispatcher over a runtime's platform and command service, reading the platform's plans.

    ``Unavailable`` when the runtime reaches no device (no broker, no OPC UA, no command service given)."""
    if getattr(runtime, "commands", None) is None:
        raise Unavailable("dispatching production needs a way to reach the machines: start with --broker (or --opcua)",
                          rule="not_configured")
    platform = runtime.platform
    return ProductionDispatcher(platform.twins, runtime.commands, options.pop("plans", platform), line, **options)


def dispatch_status(dispatcher: ProductionDispatcher) -> dict[str, Any]:
    """What the API or the Gantt chart shows of a line's dispatch (see :meth:`ProductionDispatcher.status`)."""
    return dispatcher.status()


def _time_of(meta: Mapping[str, Any], prop: str) -> datetime | None:
    entry = meta.get(prop)
    value = entry.get("time") if isinstance(entry, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _newest(machines: Any) -> datetime | None:
    times = [m.time for m in machines if m.time is not None]
    return max(times) if times else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "ACTOR",
    "DISPATCHED",
    "DONE",
    "FAILED_OP",
    "PENDING",
    "RUNNING",
    "STATES",
    "Change",
    "DispatchUnit",
    "ProductionDispatcher",
    "Tracked",
    "dispatch_status",
    "dispatcher_for",
]
