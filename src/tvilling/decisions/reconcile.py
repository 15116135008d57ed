"""Desired-state reconciliation: publish what a twin should be until the asset reports it.

For a twin whose ``desired`` differs from ``reported`` (its ``delta``), the reconciler
publishes the desired state (retained, so a device that connects later gets it too),
then checks again: once reported matches it records ``reconciled``; until then it
republishes every ``retry_s`` (growing by ``backoff``, at most ``max_attempts``
publications); after ``timeout_s`` it records ``timed_out`` and leaves the delta on
the twin, visible, until ``desired`` changes again. Every step is a ``"kind":
"desired"`` item in the command store's change feed::

    {"kind": "desired", "twin": "M1", "status": "sent", "properties": {"speedSetpoint": 900.0},
     "attempt": 1, "time": "2024-05-01T00:00:00Z"}

Drive it with :meth:`DesiredReconciler.run_once` (or :meth:`~DesiredReconciler.run`)
and feed it twin events with :meth:`~DesiredReconciler.notify`. Its memory is bounded
by ``max_twins`` (twins being reconciled, twins marked, twins given up on): beyond
that, twins wait for a later pass that pages through all twins, and the oldest
given-up twins may be tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tvilling.core import events as ev
from tvilling.core.errors import NotFound, TvillingError
from tvilling.core.twin import Twin
from tvilling.decisions.lifecycle import iso
from tvilling.decisions.store import CommandStore
from tvilling.decisions.transport import CommandTransport
from tvilling.streams.waiting import wait_set
from tvilling.twins.service import TwinService

log = logging.getLogger("tvilling.decisions.reconcile")

SENT = "sent"
RETRIED = "retried"
RECONCILED = "reconciled"
TIMED_OUT = "timed_out"
_WATCHED = frozenset({ev.TWIN_CREATED, ev.TWIN_REPLACED, ev.TWIN_PATCHED, ev.TWIN_MIGRATED})


@dataclass(slots=True)
class _Track:
    desired: dict[str, Any]  # the desired state published (a change restarts reconciliation)
    properties: dict[str, Any]  # the delta when it started
    started: datetime
    deadline: datetime
    attempt: int
    next_at: datetime


class DesiredReconciler:
    """Reconciles twins' desired state with what their assets report."""

    def __init__(self, twins: TwinService, store: CommandStore, transport: CommandTransport, *,
                 retry_s: float = 5.0, timeout_s: float = 120.0, backoff: float = 2.0, max_retry_s: float = 60.0,
                 max_attempts: int = 5, max_twins: int = 10_000, scan_page: int = 500,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.twins = twins
        self.store = store
        self.transport = transport
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.max_retry_s = max_retry_s
        self.max_attempts = max(1, max_attempts)
        self.max_twins = max_twins
        self.scan_page = scan_page
        self.clock = clock or (lambda: datetime.now(UTC))
        self._tracks: dict[str, _Track] = {}
        self._dirty: set[str] = set()
        self._gave_up: OrderedDict[str, dict[str, Any]] = OrderedDict()  # twin -> desired it timed out on
        self._rescan = False
        self._wake = asyncio.Event()

    # -- inputs -------------------------------------------------------------------------------
    def notify(self, event: Any) -> None:
        """React to a twin event (an :class:`~tvilling.core.events.Event` or its JSON); cheap, never blocks.

        Events that touch ``desired`` or ``reported`` mark the twin for the next pass; a
        deleted twin is forgotten.
        """
        if isinstance(event, Mapping):  # a change-hub item: {"kind": "event", "twin", "type", "payload", ...}
            twin_id, kind, payload = event.get("twin"), event.get("type"), event.get("payload")
        else:
            twin_id, kind, payload = (getattr(event, "twin", None), getattr(event, "type", None),
                                      getattr(event, "payload", None))
        if not isinstance(twin_id, str):
            return
        if kind == ev.TWIN_DELETED:
            self._forget(twin_id)
            return
        if not isinstance(payload, Mapping):
            return
        if kind not in _WATCHED or not ("desired" in payload or "reported" in payload):
            return
        self.mark(twin_id)

    def mark(self, twin_id: str) -> None:
        """Check this twin on the next pass."""
        if twin_id in self._dirty:
            return
        if len(self._dirty) >= self.max_twins:
            self._dirty.clear()  # too many to remember one by one: look at every twin instead
            self._rescan = True
        else:
            self._dirty.add(twin_id)
        self._wake.set()

    def request_scan(self) -> None:
        """Look at every twin on the next pass (at startup, or when too many were marked to remember)."""
        self._rescan = True
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """One pass over the marked twins and those whose retry or deadline is due; returns its items.

        After :meth:`request_scan` (or an overflow) the pass also pages through every twin,
        holding one page at a time.
        """
        now = now or self.clock()
        self._wake.clear()
        due = self._dirty | {t for t, track in self._tracks.items() if track.next_at <= now}
        self._dirty = set()
        rescan, self._rescan = self._rescan, False
        items: list[dict[str, Any]] = []
        for twin_id in sorted(due):
            items.extend(await self._guarded(twin_id, now))
        cursor: str | None = None
        while rescan:
            page = await asyncio.to_thread(self.twins.query, {"limit": self.scan_page, "cursor": cursor})
            for twin in page.items:
                if twin.id not in due and (twin.delta or twin.id in self._tracks):
                    items.extend(await self._guarded(twin.id, now, twin))
            cursor = page.next
            rescan = cursor is not None
        return items

    async def run(self, interval_s: float = 1.0, *, scan_first: bool = True) -> None:
        """Reconcile forever (a server lifespan task; cancel it to stop)."""
        if scan_first:
            self.request_scan()
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("reconciliation pass failed")
            await wait_set(self._wake, interval_s)

    @property
    def tracked(self) -> int:
        """Twins being reconciled right now."""
        return len(self._tracks)

    # -- one twin -----------------------------------------------------------------------------
    async def _guarded(self, twin_id: str, now: datetime, twin: Twin | None = None) -> list[dict[str, Any]]:
        try:
            if twin is None:
                twin = await asyncio.to_thread(self.twins.get, twin_id)
            return await self._check(twin, now)
        except NotFound:
            self._forget(twin_id)
        except TvillingError as exc:  # a store or twin read failed: try again next pass
            log.warning("reconciling %s failed: %s", twin_id, exc.message)
            self.mark(twin_id)
        return []

    async def _check(self, twin: Twin, now: datetime) -> list[dict[str, Any]]:
        twin_id = twin.id
        delta = twin.delta
        track = self._tracks.get(twin_id)
        if not delta:
            self._gave_up.pop(twin_id, None)
            if track is None:
                return []
            del self._tracks[twin_id]
            return [await self._record(twin, RECONCILED, track.properties, track.attempt, now)]
        if track is None or track.desired != twin.desired:
            if track is None and self._gave_up.get(twin_id) == twin.desired:
                return []  # timed out on exactly this desired state; it stays visible as the delta
            self._gave_up.pop(twin_id, None)
            if track is None and len(self._tracks) >= self.max_twins:
                self._rescan = True  # no room now; a later scan finds it again
                return []
            deadline = now + timedelta(seconds=self.timeout_s)
            track = _Track(desired=dict(twin.desired), properties=delta, started=now, deadline=deadline,
                           attempt=0, next_at=now)
            self._tracks[twin_id] = track
            return [await self._publish(twin, track, delta, now, SENT)]
        if now >= track.deadline:
            del self._tracks[twin_id]
            self._remember_gave_up(twin_id, dict(twin.desired))
            return [await self._record(twin, TIMED_OUT, delta, track.attempt, now)]
        if now < track.next_at:
            return []
        if track.attempt >= self.max_attempts:
            track.next_at = track.deadline
            return []
        return [await self._publish(twin, track, delta, now, RETRIED)]

    async def _publish(self, twin: Twin, track: _Track, delta: dict[str, Any], now: datetime,
                       status: str) -> dict[str, Any]:
        track.attempt += 1
        wait = min(self.retry_s * self.backoff ** (track.attempt - 1), self.max_retry_s)
        track.next_at = min(now + timedelta(seconds=wait), track.deadline)
        error = None
        try:
            await self.transport.publish_desired(twin.id, dict(twin.desired))
        except Exception as exc:
            error = exc.message if isinstance(exc, TvillingError) else f"{type(exc).__name__}: {exc}"
            log.warning("publishing the desired state of %s failed: %s", twin.id, error)
        return await self._record(twin, status, delta, track.attempt, now, error=error)

    async def _record(self, twin: Twin, status: str, properties: dict[str, Any], attempt: int, now: datetime,
                      *, error: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"kind": "desired", "twin": twin.id, "model": twin.model, "status": status,
                                "properties": properties, "attempt": attempt, "time": iso(now)}
        if error is not None:
            item["error"] = error
        await asyncio.to_thread(self.store.append_change, item)
        return item

    def _remember_gave_up(self, twin_id: str, desired: dict[str, Any]) -> None:
        self._gave_up[twin_id] = desired
        self._gave_up.move_to_end(twin_id)
        while len(self._gave_up) > self.max_twins:
            self._gave_up.popitem(last=False)

    def _forget(self, twin_id: str) -> None:
        self._tracks.pop(twin_id, None)
        self._dirty.discard(twin_id)
        self._gave_up.pop(twin_id, None)
