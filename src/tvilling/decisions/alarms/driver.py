"""The alarm driver: tails the twins' global event feed into the alarm engine, from a saved cursor.

The cursor (the feed position of the last event evaluated) is saved in the alarm store
after each batch, so a restarted driver resumes where it stopped: nothing is skipped,
and a batch evaluated again after a crash raises nothing twice (open alarms are
de-duplicated and rule states start latched from them). Run one driver per store.

In a server: ``task = asyncio.create_task(driver.run(0.5))`` (cancel it to stop); in a
thread: ``driver.start()`` … ``driver.stop()``; in a test: ``driver.run_once()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tvilling.decisions.alarms.engine import AlarmEngine
from tvilling.decisions.alarms.rules import parse_rules
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.alarms.store import AlarmStore
from tvilling.twins.ports import TwinStore

if TYPE_CHECKING:
    from tvilling.app import Platform

log = logging.getLogger("tvilling.alarms")
CURSOR = "engine"


class AlarmDriver:
    """Feeds :class:`AlarmEngine` from ``TwinStore.feed`` in pages of ``page`` events."""

    def __init__(self, engine: AlarmEngine, twin_store: TwinStore, alarm_store: AlarmStore, *,
                 page: int = 1000, name: str = CURSOR, from_start: bool = True,
                 notify: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.twin_store = twin_store
        self.alarm_store = alarm_store
        self.page = page
        self.name = name
        self.from_start = from_start
        self.notify = notify
        self.position: int | None = None
        self.processed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Evaluate the next page of events; returns how many were read (0: caught up)."""
        with self._lock:
            if self.position is None:
                self.position = self.alarm_store.cursor(self.name)
                if self.position == 0 and not self.from_start:
                    self.position = _head(self.twin_store)
            events = self.twin_store.feed(after=self.position, limit=self.page)
            if not events:
                return 0
            self.engine.process(events)
            self.position = events[-1].position or self.position
            self.alarm_store.set_cursor(self.name, self.position)
            self.processed += len(events)
        if self.notify is not None:
            self.notify()
        return len(events)

    def catch_up(self) -> int:
        """Read until the feed is exhausted; returns the number of events read."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    async def run(self, interval: float = 0.5) -> None:
        """Poll forever (cancel the task to stop); errors are logged and retried after ``interval``."""
        while True:
            try:
                n = await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("the alarm driver failed on a batch; retrying")
                n = 0
            await asyncio.sleep(0 if n >= self.page else interval)

    def start(self, interval: float = 0.5) -> None:
        """Poll in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the alarm driver is running already")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    n = self.run_once()
                except Exception:
                    log.exception("the alarm driver failed on a batch; retrying")
                    n = 0
                if n < self.page:
                    self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="tvilling-alarms", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _head(store: TwinStore) -> int:
    from tvilling.twins.changes import find_head

    return find_head(lambda after, limit: [e.position or 0 for e in store.feed(after=after, limit=limit)])


def build_driver(platform: Platform, *, notify: Callable[[], None] | None = None, **options: object) -> AlarmDriver:
    """The driver of a platform: its twins, the rules of ``settings.alarm_rules``, its ``alarm_store``."""
    docs = platform.alarm_rule_docs() if hasattr(platform, "alarm_rule_docs") else platform.settings.alarm_rules
    rules = parse_rules(docs or [])
    store = platform.alarm_store
    engine = AlarmEngine(platform.twins, rules, AlarmService(store, notify=notify))
    return AlarmDriver(engine, platform.twin_store, store, notify=notify, **options)  # type: ignore[arg-type]
