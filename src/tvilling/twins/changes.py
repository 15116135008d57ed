"""Live changes: one poller per process fans new feed items out to many subscribers.

A **source** is any object with a ``name`` and a blocking ``read(after, limit)`` that
returns ``(position, item)`` pairs in position order, ``item`` being a JSON object with a
``kind``. The twin event feed is one (:class:`EventFeedSource`, items ``kind: "event"``);
a command-lifecycle feed can be another. A source may also offer ``head()`` (its last
position), ``kind`` and ``types`` (the item types it yields, used to check filters).

:class:`ChangeHub` reads every source from one asyncio task (``async with hub:``),
polling fast while items arrive and slowing down when idle; :meth:`ChangeHub.notify`
wakes it at once after a local write. Each :class:`Subscription` has a bounded queue:
a subscriber that falls ``buffer`` items behind is closed with :class:`SlowConsumer`,
so the hub never blocks and memory never grows without bound. A subscriber that starts
from an older cursor first reads the sources itself, page by page, and joins the live
fan-out exactly where its reads end: no gap, no duplicate.

A **cursor** names a position in every source, ``events:123,commands:45``; a bare number
is a position in the first source. Sources a cursor leaves out start at their live head.

>>> decode_cursor("events:12,commands:3", ["events", "commands"])
{'events': 12, 'commands': 3}
>>> encode_cursor({"events": 12, "commands": 3})
'events:12,commands:3'
>>> f = Filter(properties=(("motor", "temperature"),))
>>> f.matches({"kind": "event", "payload": {"reported": {"motor": {"temperature": 71.5}}}})
True
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import msgspec

from tvilling.core.errors import Malformed, NotFound, TvillingError, Unavailable
from tvilling.core.events import EVENT_TYPES, TWIN_CREATED, TWIN_MIGRATED, TWIN_REPLACED
from tvilling.core.ids import check_twin_id

if TYPE_CHECKING:
    from types import TracebackType

    from tvilling.app import Platform
    from tvilling.twins.ports import TwinStore

log = logging.getLogger("tvilling.changes")

Item = dict[str, Any]
MAX_CURSOR = 512
MAX_TWINS = 1000
MAX_PROPERTIES = 100
_PROPERTY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?:\.[A-Za-z][A-Za-z0-9_]{0,63}){0,7}")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


@runtime_checkable
class Source(Protocol):
    """A feed of JSON items with increasing positions. ``read`` blocks (it is run in a thread)."""

    name: str

    def read(self, after: int, limit: int) -> list[tuple[int, Item]]:
        """Items with position > ``after``, at most ``limit``, in position order."""


class SlowConsumer(Unavailable):
    """The subscriber fell more than its buffer behind the live feed and was closed."""


# -- cursors -------------------------------------------------------------------------------
def encode_cursor(positions: Mapping[str, int]) -> str:
    return ",".join(f"{name}:{pos}" for name, pos in positions.items())


def decode_cursor(text: str, names: Sequence[str]) -> dict[str, int]:
    """Positions by source name. A bare number is a position in the first source."""
    text = text.strip()
    if len(text) > MAX_CURSOR:
        raise Malformed(f"a cursor is at most {MAX_CURSOR} characters", field="after")
    if text.isdigit():
        return {names[0]: int(text)}
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, pos = part.strip().partition(":")
        if not sep or not pos.isdigit() or name in out:
            raise Malformed(f"cursor {text!r} is not 'source:position,...' (for example "
                            f"'{names[0]}:0'), nor a bare position", field="after")
        if name not in names:
            raise Malformed(f"cursor {text!r} names source {name!r}; known sources: {', '.join(names)}",
                            field="after")
        out[name] = int(pos)
    return out


# -- filters -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Filter:
    """Which items a subscriber wants; ``None`` (or empty) means any. Pure: see :meth:`matches`.

    ``models`` holds model ids already expanded (a model and those extending it);
    ``properties`` dotted paths split into segments; ``types`` item types or kinds.
    """

    twins: frozenset[str] | None = None
    models: frozenset[str] | None = None
    properties: tuple[tuple[str, ...], ...] = ()
    types: frozenset[str] | None = None

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.types is not None and item.get("type") not in self.types and item.get("kind") not in self.types:
            return False
        if self.twins is not None and item.get("twin") not in self.twins:
            return False
        if self.models is not None and item.get("model") not in self.models:
            return False
        if self.properties:
            payload = item.get("payload")
            if not isinstance(payload, Mapping):
                return False
            sections = [s for s in (payload.get("reported"), payload.get("desired")) if isinstance(s, Mapping)]
            return any(_touches(s, path) for s in sections for path in self.properties)
        return True


def _touches(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Does a merge patch of ``values`` set or clear ``path`` (or a property above or below it)?"""
    node: Any = values
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, Mapping):
            return True
    return True


def parse_filter(
    *,
    twins: str | Iterable[str] | None = None,
    model: str | Iterable[str] | None = None,
    properties: str | Iterable[str] | None = None,
    types: str | Iterable[str] | None = None,
    expand: Callable[[str], frozenset[str]] | None = None,
    known_types: frozenset[str] | None = None,
) -> Filter:
    """Build a filter from comma-separated strings or lists; ``Malformed`` (400) when unreadable.

    ``expand`` turns a model id into the ids that match it (``ModelRegistry.expand``, which
    raises ``Invalid`` for an unknown model); ``known_types`` checks ``types`` when given.
    """
    twin_set = _names(twins, "twins")
    if twin_set is not None:
        if len(twin_set) > MAX_TWINS:
            raise Malformed(f"twins: at most {MAX_TWINS} ids", field="twins")
        for t in twin_set:
            try:
                check_twin_id(t)
            except TvillingError as exc:
                raise Malformed(f"twins: {exc.message}", field="twins") from None
    models: frozenset[str] | None = None
    model_set = _names(model, "model")
    if model_set is not None:
        if expand is None:
            models = frozenset(model_set)
        else:
            models = frozenset().union(*(expand(m) for m in sorted(model_set)))
    props = _names(properties, "properties")
    paths: tuple[tuple[str, ...], ...] = ()
    if props is not None:
        if len(props) > MAX_PROPERTIES:
            raise Malformed(f"properties: at most {MAX_PROPERTIES}", field="properties")
        for p in props:
            if not _PROPERTY.fullmatch(p):
                raise Malformed(f"properties: {p!r} is not a property name or dotted path such as "
                                "'temperature' or 'motor.current'", field="properties")
        paths = tuple(tuple(p.split(".")) for p in sorted(props))
    type_set = _names(types, "types")
    if type_set is not None:
        for t in sorted(type_set):
            if not _TYPE.fullmatch(t) or (known_types is not None and t not in known_types):
                allowed = f"; known: {', '.join(sorted(known_types))}" if known_types is not None else ""
                raise Malformed(f"types: unknown type or kind {t!r}{allowed}", field="types")
    return Filter(twins=twin_set, models=models, properties=paths, types=type_set)


def _names(value: str | Iterable[str] | None, field: str) -> frozenset[str] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(p, str) for p in parts):
        raise Malformed(f"{field}: a comma-separated string or a list of strings", field=field)
    out = frozenset(p.strip() for p in parts if p.strip())
    return out or None


# -- the twin event feed as a source -------------------------------------------------------
class EventFeedSource:
    """The twins' event feed (``TwinStore.feed``) as items ``{"kind": "event", "model": ..., **event}``.

    ``model`` is the twin's model: from the event when it carries one (created, replaced,
    migrated), else from a small LRU cache filled from the store (``get_many``; a deleted
    twin's from its history). Works across processes: it only reads the store.
    """

    name = "events"
    kind = "event"
    types = EVENT_TYPES

    def __init__(self, store: TwinStore, *, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._models: OrderedDict[str, tuple[str | None, int]] = OrderedDict()  # twin -> (model, as of)
        self._lock = threading.Lock()

    def read(self, after: int, limit: int) -> list[tuple[int, Item]]:
        events = self.store.feed(after=after, limit=limit)
        if not events:
            return []
        as_of = events[-1].position or 0
        models: dict[str, str | None] = {}  # this page's view; the LRU only remembers across pages
        missing: set[str] = set()
        for e in events:
            if e.twin in models or e.twin in missing or _payload_model(e.type, e.payload) is not None:
                models.setdefault(e.twin, None)
                continue
            hit = self._cached(e.twin)
            if hit is None:
                missing.add(e.twin)
            else:
                models[e.twin] = hit[0]
        if missing:
            found = self.store.get_many(sorted(missing))
            for twin in missing:
                models[twin] = found[twin].model if twin in found else self._model_from_history(twin)
                self._learn(twin, models[twin], as_of)
        out: list[tuple[int, Item]] = []
        for e in events:
            pos = e.position or 0
            model = _payload_model(e.type, e.payload)
            if model is not None:
                models[e.twin] = model
                self._learn(e.twin, model, pos)
            item = e.to_json()
            item["kind"] = self.kind
            item["model"] = models.get(e.twin)
            out.append((pos, item))
        return out

    def head(self) -> int:
        return find_head(self.read_positions)

    def read_positions(self, after: int, limit: int) -> list[int]:
        return [e.position or 0 for e in self.store.feed(after=after, limit=limit)]

    def _cached(self, twin: str) -> tuple[str | None, int] | None:
        with self._lock:
            hit = self._models.get(twin)
            if hit is not None:
                self._models.move_to_end(twin)
            return hit

    def _learn(self, twin: str, model: str | None, as_of: int) -> None:
        with self._lock:
            hit = self._models.get(twin)
            if hit is None or as_of >= hit[1]:
                self._models[twin] = (model, as_of)
            self._models.move_to_end(twin)
            while len(self._models) > self.cache_size:
                self._models.popitem(last=False)

    def _model_from_history(self, twin: str) -> str | None:
        """The model of a twin that is gone: the last one its events named."""
        model: str | None = None
        after = 0
        try:
            while True:
                page = self.store.history(twin, after=after, limit=1000)
                for e in page:
                    model = _payload_model(e.type, e.payload) or model
                if len(page) < 1000:
                    return model
                after = page[-1].revision
        except NotFound:
            return model


def _payload_model(event_type: str, payload: Mapping[str, Any]) -> str | None:
    if event_type in (TWIN_CREATED, TWIN_REPLACED):
        m = payload.get("model")
    elif event_type == TWIN_MIGRATED:
        m = payload.get("to")
    else:
        return None
    return m if isinstance(m, str) else None


def find_head(read_positions: Callable[[int, int], Sequence[int]]) -> int:
    """The last position of a feed that can only be read forwards, in O(log n) reads of one item."""

    def probe(after: int) -> int | None:
        got = read_positions(after, 1)
        return got[0] if got else None

    lo, hi = 0, 1
    while (p := probe(hi)) is not None:
        lo, hi = p, max(p, hi) * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p = probe(mid)
        if p is None:
            hi = mid
        else:
            lo = p
    if lo < hi and probe(lo) is not None:
        return hi
    return lo


def _head_of(source: Source) -> int:
    head = getattr(source, "head", None)
    if callable(head):
        return int(head())
    return find_head(lambda after, limit: [p for p, _ in source.read(after, limit)])


# -- subscriptions ---------------------------------------------------------------------------
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
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
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
        self.hub._subscribers.add(self)

    def _detach(self) -> None:
        self.hub._subscribers.discard(self)
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


# -- the hub -------------------------------------------------------------------------------
class ChangeHub:
    """One poller per process for all sources; fans items out to bounded subscriber queues.

    Use::

        async with ChangeHub([EventFeedSource(store)]) as hub:
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
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    @property
    def cursor(self) -> str:
        return encode_cursor(self.positions)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

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
        subs = list(self._subscribers)
        return {"cursor": self.cursor, "subscribers": len(subs), "polls": self.polls,
                "delivered": self.delivered, "dropped": self.dropped,
                "max_backlog": max((s.backlog for s in subs), default=0),
                "queued": sum(s.backlog for s in subs)}

    async def __aenter__(self) -> ChangeHub:
        if self.running:
            raise RuntimeError("the change hub is running already")
        heads = await asyncio.gather(*(asyncio.to_thread(_head_of, s) for s in self.sources))
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

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


def hub_for(platform: Platform, **options: Any) -> ChangeHub:
    """The hub of a platform: its twin event feed, its command lifecycle feed and its alarm feed."""
    from tvilling.decisions.alarms.feed import AlarmFeedSource
    from tvilling.decisions.feed import CommandFeedSource

    return ChangeHub([EventFeedSource(platform.twin_store), CommandFeedSource(platform.command_store),
                      AlarmFeedSource(platform.alarm_store)], **options)
