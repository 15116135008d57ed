"""One consumer abstraction: a named reader of a feed whose position survives a restart.

``async for batch in consumer`` yields pages of new items in feed order; asking for the
next batch acknowledges the previous one, whose position is then saved in the
consumer's :class:`~tvilling.streams.offsets.CursorStore` (at once, or at most every
``save_every_s`` seconds and always on a clean exit). A consumer that stops — a crash, a
restart, an exception out of its loop — resumes after the last acknowledged batch: it may
see a batch again, never skip one. Between batches it sleeps until ``wake`` says the
feed moved (a running hub's :meth:`~tvilling.streams.hub.ChangeHub.advanced`) or
``interval`` seconds passed.

Used by the alarm evaluation and the desired-state reconciler; analytics, audit and
planning can follow a feed the same way::

    async with Consumer("reconciler", twin_events(store), cursors, wake=hub.advanced) as consumer:
        async for batch in consumer:
            for event in batch.items:
                reconciler.notify(event)

The blocking forms :meth:`Consumer.pull` and :meth:`Consumer.commit` serve scripts and
tests (``tvilling alarms evaluate`` reads the feed once to its end).

>>> import asyncio
>>> from tvilling.streams.offsets import MemoryCursors
>>> class Numbers:
...     def read(self, after, limit):
...         return [(p, p * 10) for p in range(after + 1, min(after + limit, 5) + 1)]
>>> cursors = MemoryCursors()
>>> async def first_two():
...     async with Consumer("doc", Numbers(), cursors, page=2) as c:
...         async for batch in c:
...             if batch.position >= 4:
...                 return batch.items
>>> asyncio.run(first_two()), cursors.cursor("doc")
([30, 40], 2)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from tvilling.core.errors import Invalid
from tvilling.streams.offsets import CursorStore, check_name
from tvilling.streams.source import find_head

log = logging.getLogger("tvilling.streams.consumer")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Wake = Callable[[float], Awaitable[bool]]


class Feed(Protocol[T_co]):
    """Anything read forwards by position: ``read(after, limit)`` returns ``(position, item)`` pairs in order."""

    def read(self, after: int, limit: int) -> Sequence[tuple[int, T_co]]:
        """Items with position > ``after``, at most ``limit``, in position order (blocking)."""
        ...


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """One page of items and the feed position of its last one."""

    items: list[T]
    position: int

    def __len__(self) -> int:
        return len(self.items)


class Consumer(Generic[T]):
    """Reads ``feed`` after the position saved under ``name`` in ``cursors``, a page at a time.

    ``start`` says where a consumer that never saved a position begins: ``"beginning"`` (every
    item the feed holds) or ``"head"`` (only what comes after it started).
    """

    def __init__(self, name: str, feed: Feed[T], cursors: CursorStore, *, page: int = 1000,
                 start: Literal["beginning", "head"] = "beginning", wake: Wake | None = None,
                 interval: float = 0.5, save_every_s: float = 0.0) -> None:
        if page < 1:
            raise Invalid(f"page must be at least 1; got {page}", field="page", rule="range")
        if start not in ("beginning", "head"):
            raise Invalid(f"start must be 'beginning' or 'head'; got {start!r}", field="start", rule="enum")
        if interval <= 0 or save_every_s < 0:
            raise Invalid("interval must be > 0 and save_every_s ≥ 0", field="interval", rule="range")
        self.name = check_name(name)
        self.feed = feed
        self.cursors = cursors
        self.page = page
        self.start = start
        self.wake = wake
        self.interval = interval
        self.save_every_s = save_every_s
        self.position: int | None = None  # the last acknowledged position; None until loaded
        self.saved: int | None = None  # the last position written to the cursor store
        self.consumed = 0  # items acknowledged by this instance
        self._handed: Batch[T] | None = None  # handed out by the async iterator, not yet acknowledged
        self._saved_at = 0.0
        self._entered = False

    # -- blocking forms ------------------------------------------------------------------------
    def load(self) -> int:
        """The position to read after: the saved one (or the feed's head, for ``start="head"``)."""
        if self.position is None:
            saved = self.cursors.cursor(self.name)
            self.saved = saved
            self._saved_at = time.monotonic()
            if saved == 0 and self.start == "head":
                saved = find_head(lambda after, limit: [p for p, _ in self.feed.read(after, limit)])
            self.position = saved
        return self.position

    def pull(self) -> Batch[T] | None:
        """The next page after the acknowledged position (``None``: caught up); acknowledges nothing."""
        after = self.load()
        page = self.feed.read(after, self.page)
        if not page:
            return None
        return Batch([item for _, item in page], page[-1][0])

    def commit(self, batch: Batch[T], *, save: bool = True) -> None:
        """Acknowledge ``batch``: the consumer moves past it; ``save`` writes the position now."""
        if self.position is not None and batch.position <= self.position:
            return
        self.position = batch.position
        self.consumed += len(batch)
        if save:
            self.save()

    def save(self) -> None:
        """Write the acknowledged position to the cursor store, unless it is there already."""
        if self.position is not None and self.position != self.saved:
            self.cursors.set_cursor(self.name, self.position)
            self.saved = self.position
            self._saved_at = time.monotonic()

    # -- async iteration ---------------------------------------------------------------------
    async def __aenter__(self) -> Consumer[T]:
        self.position = None  # re-read: another run may have moved it
        await asyncio.to_thread(self.load)
        self._handed = None
        self._entered = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._entered = False
        self._handed = None  # a batch its loop did not finish is read again next time
        try:
            self.save()  # acknowledged batches not yet written (save_every_s); quick, also when cancelled
        except Exception:
            log.exception("consumer %s could not save its position %s", self.name, self.position)

    def __aiter__(self) -> Consumer[T]:
        return self

    async def __anext__(self) -> Batch[T]:
        if not self._entered:
            raise RuntimeError(f"use 'async with' on consumer {self.name!r} before iterating")
        handed, self._handed = self._handed, None
        if handed is not None:
            due = time.monotonic() - self._saved_at >= self.save_every_s
            self.commit(handed, save=False)
            if due:
                await asyncio.to_thread(self.save)
        while True:
            batch = await asyncio.to_thread(self.pull)
            if batch is not None:
                self._handed = batch
                return batch
            if self.position != self.saved:
                await asyncio.to_thread(self.save)  # caught up: write what is pending before sleeping
            if self.wake is None:
                await asyncio.sleep(self.interval)
            else:
                await self.wake(self.interval)
