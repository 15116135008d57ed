"""The analytics unit: a consumer of history's readings feed, so that no stored batch goes unanalysed.

The ingest pipeline hands each stored batch to the analytics engine at once (its observer), but a
process can die after a batch is durable and before its analytics ran. While this unit runs, the
engine follows the readings feed from its saved position (the cursor ``analytics``): on start the
unit's :class:`~tvilling.streams.consumer.Consumer` reads every batch stored after that position
(what a crash left unanalysed) and hands it to the engine, then follows the feed, waking when the
change hub advances. The observer and the consumer meet in :meth:`AnalyticsEngine.take`, which
analyses a batch only once, in feed order, whichever of the two gets it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tvilling.analytics.binding.engine import CURSOR, FEED_ROWS, AnalyticsEngine
from tvilling.history.ports import FeedBatch
from tvilling.runtime.units import BackgroundTask, follow
from tvilling.streams.consumer import Batch, Consumer

if TYPE_CHECKING:
    from tvilling.app import Platform

Wake = Callable[[float], Awaitable[bool]]


class ReadingsFeed:
    """History's readings feed as a consumer's :class:`~tvilling.streams.consumer.Feed`, read after the
    engine's own position (the observer may have taken batches meanwhile); a page holds whole batches,
    at most ``max_rows`` rows (and at most the consumer's page of batches)."""

    def __init__(self, engine: AnalyticsEngine, store: Any, max_rows: int = FEED_ROWS) -> None:
        self.engine = engine
        self.store = store
        self.max_rows = max_rows

    def read(self, after: int, limit: int) -> list[tuple[int, FeedBatch]]:
        """Batches after ``after`` and after the engine's position, in feed order."""
        after = max(after, self.engine.position or 0)
        return [(b.position, b) for b in self.store.batches_after(after, self.max_rows)[:limit]]

    def head(self) -> int:
        """The feed's newest position."""
        return int(self.store.head())


class EnginePosition:
    """The consumer's saved position is the engine's: the engine saves it after each batch it takes (the
    observer's too), so the consumer only reads it and never writes an older one."""

    def __init__(self, engine: AnalyticsEngine) -> None:
        self.engine = engine

    def cursor(self, name: str) -> int:
        """The feed position of the engine's last analysed batch."""
        return self.engine.position or 0

    def set_cursor(self, name: str, position: int) -> None:
        """Nothing to do: the engine saved the position when it took the batch."""


class AnalyticsUnit:
    """``async with``: make the platform's analytics follow the readings feed, and run the consumer that
    catches up after a restart and then follows the feed (a background task of the runtime)."""

    def __init__(self, platform: Platform, *, wake: Wake | None = None, interval: float = 1.0,
                 page: int = 64) -> None:
        self.platform = platform
        self.wake = wake
        self.interval = interval
        self.page = page
        self.consumer: Consumer[FeedBatch] | None = None
        self._task: BackgroundTask | None = None

    @property
    def engine(self) -> AnalyticsEngine:
        """The platform's analytics engine."""
        return self.platform.analytics

    async def __aenter__(self) -> AnalyticsUnit:
        engine = self.engine
        if not engine.following:
            await asyncio.to_thread(engine.follow, self.platform.backend.cursors, twins=self.platform.twin_store)
        store = await asyncio.to_thread(lambda: self.platform.history)
        self.consumer = Consumer(CURSOR, ReadingsFeed(engine, store), EnginePosition(engine), page=self.page,
                                 wake=self.wake, interval=self.interval)
        consumer = self.consumer
        self._task = BackgroundTask("analytics", lambda: follow(consumer, self._handle))
        await self._task.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task.__aexit__(exc_type, exc, tb)

    async def _handle(self, batch: Batch[FeedBatch]) -> None:
        await asyncio.to_thread(self._take, batch.items)

    def _take(self, items: list[FeedBatch]) -> None:
        engine = self.engine
        for item in items:
            engine.take(item)
