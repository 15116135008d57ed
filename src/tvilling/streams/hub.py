"""The change hub: one poller per process reads every source and fans items out to subscribers.

:class:`ChangeHub` reads every source from one asyncio task (``async with hub:``),
polling fast while items arrive and slowing down when idle; :meth:`ChangeHub.notify`
wakes it at once after a local write. Each :class:`~tvilling.streams.subscription.Subscription`
has a bounded queue. :meth:`ChangeHub.advanced` lets a consumer that reads a feed itself
sleep until the hub has seen something new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Malformed, Unavailable
from tvilling.streams.cursor import decode_cursor, encode_cursor
from tvilling.streams.filter import Filter
from tvilling.streams.source import Item, Source, head_of
from tvilling.streams.subscription import Change, Subscription
from tvilling.streams.waiting import wait_set

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger("tvilling.changes")


class ChangeHub:
    """One poller per process for all sources; fans items out to bounded subscriber queues.

    Use::

        async with ChangeHub([EventFeedSource(store)]) as hub:  # tvilling.twins.feed
            async with hub.subscribe(Filter(twins=frozenset({"M1"})), after="events:0") as sub:
                async for cursor, item in sub:
                    ...
    """

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        page: int = 256,
        fanout_chunk: int = 32,
        catchup_page: int = 500,
        busy_interval: float = 0.05,
        idle_interval: float = 0.5,
        default_buffer: int = 1000,
        max_buffer: int = 100_000,
    ) -> None:
        names = [s.name for s in sources]
        if not sources or len(set(names)) != len(names) or not all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names):
            raise ValueError(f"sources need distinct lower-case names, got {names}")
        self.sources = tuple(sources)
        self.page = page
        self.fanout_chunk = fanout_chunk
        self.catchup_page = catchup_page
        self.busy_interval = busy_interval
        self.idle_interval = idle_interval
        self.default_buffer = default_buffer
        self.max_buffer = max_buffer
        self.positions: dict[str, int] = {}
        self.polls = 0
        self.delivered = 0
        self.dropped = 0
        self._subscribers: set[Subscription] = set()
        self._advanced: asyncio.Event | None = None  # set (and replaced) each time a position moves
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def names(self) -> list[str]:
        """The sources' names, in cursor order."""
        return [s.name for s in self.sources]

    @property
    def cursor(self) -> str:
        """The hub's position in every source, as a cursor."""
        return encode_cursor(self.positions)

    @property
    def running(self) -> bool:
        """True between entering and leaving ``async with hub``."""
        return self._task is not None and not self._task.done()

    async def advanced(self, timeout: float) -> bool:
        """Wait until the hub reads a new item from any source; ``False`` after ``timeout`` seconds without.

        For consumers that read a feed themselves (``tvilling.streams.consumer``) and only
        need to know when to look again.
        """
        if self._advanced is None:
            self._advanced = asyncio.Event()
        return await wait_set(self._advanced, timeout)

    def join(self, sub: Subscription) -> None:
        """Start fanning live items out to ``sub`` (called by the subscription when caught up)."""
        self._subscribers.add(sub)

    def leave(self, sub: Subscription) -> None:
        """Stop fanning items out to ``sub``."""
        self._subscribers.discard(sub)

    def known_types(self) -> frozenset[str] | None:
        """Item types and kinds the sources declare; ``None`` if a source declares none."""
        out: set[str] = set()
        for s in self.sources:
            types = getattr(s, "types", None)
            if types is None:
                return None
            out.update(types)
            out.add(getattr(s, "kind", s.name))
        return frozenset(out)

    def stats(self) -> dict[str, Any]:
        """Counters for the health and metrics pages."""
        subs = list(self._subscribers)
        return {"cursor": self.cursor, "subscribers": len(subs), "polls": self.polls,
                "delivered": self.delivered, "dropped": self.dropped,
                "max_backlog": max((s.backlog for s in subs), default=0),
                "queued": sum(s.backlog for s in subs)}

    async def __aenter__(self) -> ChangeHub:
        """Read every source's head and start polling from there."""
        if self.running:
            raise RuntimeError("the change hub is running already")
        heads = await asyncio.gather(*(asyncio.to_thread(head_of, s) for s in self.sources))
        self.positions = {s.name: h for s, h in zip(self.sources, heads, strict=True)}
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="tvilling-change-hub")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subscribers):
            sub._close(StopAsyncIteration("the change hub stopped"))
        self._subscribers.clear()

    def notify(self) -> None:
        """Wake the poller now (after a local write). Safe to call from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(wake.set)

    def subscribe(self, flt: Filter | None = None, *, after: Mapping[str, int] | str | None = None,
                  buffer: int | None = None) -> Subscription:
        """A subscription from ``after`` (a cursor or positions; ``None``: from now on)."""
        if isinstance(after, str):
            after = decode_cursor(after, self.names)
        size = self.default_buffer if buffer is None else buffer
        if not 1 <= size <= self.max_buffer:
            raise Malformed(f"buffer must be between 1 and {self.max_buffer}", field="buffer")
        return Subscription(self, flt or Filter(), after, size)

    def check_running(self) -> None:
        """Raise ``Unavailable`` (503, rule ``hub_stopped``) unless the hub is running."""
        if not self.running:
            raise Unavailable("live changes are not running in this process (the change hub is stopped)",
                              rule="hub_stopped")

    async def _run(self) -> None:
        assert self._wake is not None
        interval = self.busy_interval
        while True:
            self._wake.clear()
            try:
                got, full = await self._poll_once()
            except Exception:
                log.exception("the change hub could not read its sources; retrying")
                got, full = 0, False
                interval = self.idle_interval
            if full:
                await asyncio.sleep(0)
                continue
            interval = self.busy_interval if got else min(interval * 2, self.idle_interval)
            await wait_set(self._wake, interval)

    async def _poll_once(self) -> tuple[int, bool]:
        got, full = 0, False
        for source in self.sources:
            items = await asyncio.to_thread(source.read, self.positions[source.name], self.page)
            self.polls += 1
            for start in range(0, len(items), self.fanout_chunk):
                if start:  # let subscribers take what they were given, so a burst is no overflow
                    await asyncio.sleep(0)
                self._dispatch(source.name, items[start:start + self.fanout_chunk])
            got += len(items)
            full = full or len(items) >= self.page
        return got, full

    def _dispatch(self, name: str, items: Sequence[tuple[int, Item]]) -> None:
        positions = self.positions
        subs = self._subscribers
        if items and items[-1][0] > positions[name] and self._advanced is not None:
            self._advanced.set()  # wake the consumers waiting in advanced()
            self._advanced = None
        for pos, item in items:
            if pos <= positions[name]:
                continue
            positions[name] = pos
            if not subs:
                continue
            change = Change(encode_cursor(positions), item)
            dropped = [s for s in subs if not s._offer(name, pos, change)]
            for s in dropped:
                subs.discard(s)
                self.dropped += 1
                log.warning("closed a change subscriber: %s", s.closed)
            self.delivered += 1
