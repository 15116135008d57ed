"""The automatic trigger: predictive alarms raised start a decision each, on a worker thread.

:class:`DecisionWatch` (an ``async with`` unit, run by the API app while it serves) follows the alarm
store's change feed from its head (alarms raised before it started are history), woken by the change
hub. Each ``alarm.raised`` of a configured rule on the twin where it originated (not the copies
propagated to its machine and line, nor a shelved one) is handed to one worker thread, which runs
:meth:`~tvilling.planning.decision.DecisionService.decide`: the ingest path and the event loop never
wait for a simulation. At most one decision per asset: an asset with a decision in flight here is
skipped, and the decision service answers an asset's open decision instead of making a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvilling.planning.decision import DecisionService

log = logging.getLogger("tvilling.planning.decision_watch")
POLL_S = 1.0
PAGE = 200


class DecisionWatch:
    """Decides on the predictive alarms ``rules`` of ``platform`` (see the module text)."""

    def __init__(self, platform: Any, service: Callable[[], DecisionService], rules: Sequence[str], *,
                 wake: Callable[[float], Awaitable[bool]] | None = None) -> None:
        self.platform = platform
        self.service = service
        self.rules = frozenset(rules)
        self.wake = wake
        self.position = 0
        self.decided: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._busy: set[str] = set()
        self._guard = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._futures: list[Future[None]] = []

    async def __aenter__(self) -> DecisionWatch:
        store = self.platform.alarm_store
        while batch := await asyncio.to_thread(store.changes, self.position, 1000):
            self.position = batch[-1][0]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision")
        self._task = asyncio.create_task(self._run(), name="tvilling-decision-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.poll)
            except Exception:  # a bad item must not stop the watch; the log says why
                log.exception("decision watch: reading the alarm changes")
            if self.wake is not None:
                await self.wake(POLL_S)
            else:
                await asyncio.sleep(POLL_S)

    def poll(self) -> int:
        """Read the new alarm changes; start a decision for each new predictive alarm. The number started."""
        started = 0
        for position, item in self.platform.alarm_store.changes(self.position, PAGE):
            self.position = position
            if item.get("type") != "alarm.raised":
                continue
            alarm = item.get("alarm") or {}
            if alarm.get("rule") not in self.rules or alarm.get("shelved"):
                continue
            if alarm.get("origin") not in (None, alarm.get("twin")):
                continue  # the same alarm propagated to a holder: decided once, on its origin
            started += self.submit(alarm)
        return started

    def submit(self, alarm: dict[str, Any]) -> bool:
        """Decide on ``alarm`` on the worker unless a decision for its twin is in flight here."""
        twin = str(alarm.get("origin") or alarm.get("twin"))
        with self._guard:
            if twin in self._busy or self._pool is None:
                return False
            self._busy.add(twin)
        self._futures.append(self._pool.submit(self._decide, twin, alarm))
        return True

    def _decide(self, twin: str, alarm: dict[str, Any]) -> None:
        try:
            record = self.service().decide(alarm)
            self.decided.append(record)
        except Exception as exc:  # recorded in the decision as failed; the watch goes on
            self.errors.append(f"{twin}: {getattr(exc, 'message', exc)}")
            log.warning("decision for %s failed: %s", twin, getattr(exc, "message", exc))
        finally:
            with self._guard:
                self._busy.discard(twin)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the decisions started so far (tests)."""
        for future in list(self._futures):
            with contextlib.suppress(Exception):
                future.result(timeout)


__all__ = ["DecisionWatch"]
