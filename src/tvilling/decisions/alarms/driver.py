"""The alarm evaluation: a stream consumer of the twins' event feed that feeds the alarm engine.

Its position (the feed position of the last event evaluated) is saved in the alarm
store after each batch, so a restarted driver resumes where it stopped: nothing is
skipped, and a batch evaluated again after a crash raises nothing twice (open alarms
are de-duplicated and rule states start latched from them). Run one driver per store.

In a runtime: ``await driver.run(0.25)`` as a task on its loop (cancel it to stop),
woken by the change hub (``wake=hub.advanced``); in a script or a test:
``driver.run_once()`` or ``driver.catch_up()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from tvilling.core.events import Event
from tvilling.decisions.alarms.engine import AlarmEngine
from tvilling.decisions.alarms.rules import parse_rules
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.alarms.store import AlarmStore
from tvilling.streams.consumer import Batch, Consumer, Wake
from tvilling.twins.feed import TwinEvents
from tvilling.twins.ports import TwinStore

if TYPE_CHECKING:
    from tvilling.app import Platform

log = logging.getLogger("tvilling.alarms")
CURSOR = "engine"


class AlarmDriver:
    """Feeds :class:`AlarmEngine` from ``TwinStore.feed`` in pages of ``page`` events, through a
    :class:`~tvilling.streams.consumer.Consumer` whose position the alarm store keeps."""

    def __init__(self, engine: AlarmEngine, twin_store: TwinStore, alarm_store: AlarmStore, *,
                 page: int = 1000, name: str = CURSOR, from_start: bool = True,
                 notify: Callable[[], None] | None = None, wake: Wake | None = None) -> None:
        self.engine = engine
        self.twin_store = twin_store
        self.alarm_store = alarm_store
        self.page = page
        self.name = name
        self.notify = notify
        self.consumer: Consumer[Event] = Consumer(name, TwinEvents(twin_store), alarm_store, page=page,
                                                  start="beginning" if from_start else "head", wake=wake)

    @property
    def position(self) -> int | None:
        """The feed position of the last event evaluated (``None`` before the first read)."""
        return self.consumer.position

    @property
    def processed(self) -> int:
        """Events evaluated by this driver."""
        return self.consumer.consumed

    def run_once(self) -> int:
        """Evaluate the next page of events; returns how many were read (0: caught up)."""
        batch = self.consumer.pull()
        if batch is None:
            return 0
        self._evaluate(batch)
        self.consumer.commit(batch)
        self._notify()
        return len(batch)

    def catch_up(self) -> int:
        """Read until the feed is exhausted; returns the number of events read."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    async def run(self, interval: float = 0.5) -> None:
        """Evaluate forever (cancel the task to stop), looking for new events at least every ``interval``
        seconds; a failed batch is logged and evaluated again after ``interval``."""
        self.consumer.interval = interval
        while True:
            try:
                async with self.consumer:
                    async for batch in self.consumer:
                        await asyncio.to_thread(self._evaluate, batch)
                        self._notify()
            except Exception:
                log.exception("the alarm driver failed on a batch; retrying")
                await asyncio.sleep(interval)

    def _evaluate(self, batch: Batch[Event]) -> None:
        self.engine.process(batch.items)

    def _notify(self) -> None:
        if self.notify is not None:
            self.notify()


def build_driver(platform: Platform, *, notify: Callable[[], None] | None = None, wake: Wake | None = None,
                 **options: object) -> AlarmDriver:
    """The driver of a platform: its twins, the rules of ``settings.alarm_rules``, its ``alarm_store``."""
    docs = platform.alarm_rule_docs() if hasattr(platform, "alarm_rule_docs") else platform.settings.alarm_rules
    rules = parse_rules(docs or [])
    store = platform.alarm_store
    engine = AlarmEngine(platform.twins, rules, AlarmService(store, notify=notify))
    return AlarmDriver(engine, platform.twin_store, store, notify=notify, wake=wake,
                       **options)  # type: ignore[arg-type]
