"""The twins' event feed as a stream source, and the capability's registration with ``streams``.

:class:`EventFeedSource` turns ``TwinStore.feed`` into hub items ``{"kind": "event",
"model": ..., **event}``; :class:`TwinEvents` is the same feed as plain
:class:`~tvilling.core.events.Event` values, for consumers that want them
(``tvilling.streams.consumer``). :func:`register` adds the source to a
:class:`~tvilling.streams.registry.SourceRegistry` under the name ``events``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import NotFound
from tvilling.core.events import EVENT_TYPES, TWIN_CREATED, TWIN_MIGRATED, TWIN_REPLACED, Event
from tvilling.streams.source import Item, find_head
from tvilling.twins.ports import TwinStore

if TYPE_CHECKING:
    from tvilling.streams.registry import SourceRegistry


def register(registry: SourceRegistry[Any]) -> None:
    """Register the twin event feed as the source ``events``, built from a context's ``twin_store``.

    Register it first: a bare cursor (``1200``) names a position in the first source.
    """
    registry.register("events", lambda context: EventFeedSource(context.twin_store))


class TwinEvents:
    """``TwinStore.feed`` as ``(position, Event)`` pairs: a :class:`~tvilling.streams.consumer.Feed`."""

    def __init__(self, store: TwinStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """Events after ``after``, at most ``limit``, in feed order."""
        return [(e.position or 0, e) for e in self.store.feed(after=after, limit=limit)]


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
        """Hub items after ``after``, at most ``limit``, each with its twin's model."""
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
        """The feed's last position."""
        return find_head(self.read_positions)

    def read_positions(self, after: int, limit: int) -> list[int]:
        """Positions only (no model look-ups): what :meth:`head` probes."""
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
