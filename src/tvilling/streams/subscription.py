"""Subscriptions: a subscriber's bounded view of the change hub, from a cursor or from now.

A subscriber that starts from an older cursor first reads the sources itself, page by
page, and joins the hub's live fan-out exactly where its reads end: no gap, no
duplicate. A subscriber that falls ``buffer`` items behind is closed with
:class:`SlowConsumer`, so the hub never blocks and memory never grows without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from tvilling.core.errors import Unavailable
from tvilling.streams.cursor import encode_cursor
from tvilling.streams.filter import Filter
from tvilling.streams.source import Item
from tvilling.streams.waiting import wait_set

if TYPE_CHECKING:
    from tvilling.streams.hub import ChangeHub


class SlowConsumer(Unavailable):
    """The subscriber fell more than its buffer behind the live feed and was closed."""


class _Change(NamedTuple):
    cursor: str
    item: Item


class Change(_Change):
    """One delivered item and the cursor to resume after it; unpacks as ``(cursor, item)``.

    ``json`` is the item encoded once, shared by every subscriber that receives it.
    """

    @cached_property
    def json(self) -> bytes:
        return msgspec.json.encode(self.item)


class Subscription:
    """A subscriber's view of the hub: ``async with hub.subscribe(...) as sub: async for cursor, item in sub``.

    Raises :class:`SlowConsumer` from iteration when it fell ``buffer`` items behind;
    iteration ends when the hub stops.
    """

    def __init__(self, hub: ChangeHub, flt: Filter, after: Mapping[str, int] | None, buffer: int) -> None:
        self.hub = hub
        self.filter = flt
        self.buffer = buffer
        self._after = dict(after) if after is not None else None
        self._at: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._pending: deque[Change] = deque()  # catch-up page, read by this subscriber itself
        self._queue: deque[Change] = deque()  # live items, pushed by the hub
        self._wake = asyncio.Event()
        self._live = False
        self._entered = False
        self.closed: BaseException | None = None
        self.cursor: str | None = None  # cursor of the last item handed out
        self._origin = ""  # cursor where it started

    async def __aenter__(self) -> Subscription:
        self.hub.check_running()
        self._entered = True
        heads = self.hub.positions
        if self._after is None:
            self._at = dict(heads)
            self._attach()
        else:
            self._at = {name: self._after.get(name, head) for name, head in heads.items()}
            self._floor = {n: p for n, p in self._at.items() if p > heads[n]}
        self._origin = encode_cursor(self._at)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._detach()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        change = await self.get()
        if change is None:  # pragma: no cover - get() without timeout never times out
            raise StopAsyncIteration
        return change

    @property
    def live(self) -> bool:
        """True once caught up and fed by the hub."""
        return self._live

    @property
    def backlog(self) -> int:
        """Live items queued and not yet taken."""
        return len(self._queue)

    def ready(self, limit: int) -> list[Change]:
        """Up to ``limit`` items that can be had without waiting (to batch writes)."""
        out: list[Change] = []
        while len(out) < limit and (self._pending or (self._live and self._queue)):
            source = self._pending if self._pending else self._queue
            out.append(self._hand_out(source.popleft()))
        return out

    async def get(self, timeout: float | None = None) -> Change | None:
        """The next matching item, or ``None`` after ``timeout`` seconds without one.

        Raises :class:`SlowConsumer` once closed for falling behind, and
        ``StopAsyncIteration`` once the hub has stopped.
        """
        if not self._entered:
            raise RuntimeError("use 'async with hub.subscribe(...)' before reading")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._pending:
                return self._hand_out(self._pending.popleft())
            if self.closed is not None:
                if isinstance(self.closed, SlowConsumer):
                    raise self.closed
                raise StopAsyncIteration
            if not self._live:
                await self._catch_up_step()
                continue
            if self._queue:
                return self._hand_out(self._queue.popleft())
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                return None
            if not await wait_set(self._wake, left):
                return None

    def resume_cursor(self) -> str | None:
        """A cursor covering everything this subscriber was offered, matching or not.

        When it is live and has taken every queued item, that is the hub's own position
        (so a quiet filtered stream still moves forward); else the last item's cursor.
        """
        if self._live and not self._queue and not self._pending and self.closed is None:
            return encode_cursor({n: max(p, self._floor.get(n, 0)) for n, p in self.hub.positions.items()})
        return self.cursor

    # -- internals ---------------------------------------------------------------------
    def _hand_out(self, change: Change) -> Change:
        self.cursor = change.cursor
        return change

    async def _catch_up_step(self) -> None:
        hub = self.hub
        for source in hub.sources:
            name = source.name
            if self._at[name] >= hub.positions[name]:
                continue
            page = await asyncio.to_thread(source.read, self._at[name], hub.catchup_page)
            head = hub.positions[name]  # only grows; items up to it were fanned out before we attach
            beyond = False
            for pos, item in page:
                if pos <= self._at[name]:
                    continue
                if pos > head:
                    beyond = True
                    break
                self._at[name] = pos
                if self.filter.matches(item):
                    self._pending.append(Change(encode_cursor(self._at), item))
            if beyond:  # the page covered everything up to the hub's head
                self._at[name] = max(self._at[name], head)
            return
        # Every source is read up to the hub's position, and nothing was awaited since the
        # check: the hub fans out only what comes after. Join it now.
        self._attach()

    def _attach(self) -> None:
        self._live = True
        self.hub.join(self)

    def _detach(self) -> None:
        self.hub.leave(self)
        self._queue.clear()

    def _offer(self, source: str, pos: int, change: Change) -> bool:
        """Called by the hub for each new item; ``False`` when this subscriber had to be closed."""
        if self._floor and pos <= self._floor.get(source, 0):
            return True
        if not self.filter.matches(change.item):
            return True
        if len(self._queue) >= self.buffer:
            resume = self.cursor or self._origin
            self._close(SlowConsumer(
                f"slow consumer: {len(self._queue) + 1} items behind, buffer {self.buffer}; resume after {resume}",
                behind=len(self._queue) + 1, buffer=self.buffer, resume=resume, rule="slow_consumer"))
            return False
        self._queue.append(change)
        self._wake.set()
        return True

    def _close(self, reason: BaseException) -> None:
        if self.closed is None:
            self.closed = reason
        self._queue.clear()  # free memory now; the subscriber resumes from its cursor
        self._wake.set()
