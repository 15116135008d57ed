"""A second, isolated world: an in-memory backend seeded from another one's state and history.

What a what-if run needs: the models, the twins as they were at a time (their event logs up
to it, replayed, so revisions and time travel match the origin) and the telemetry of a time
range. Writes to the fork never reach the origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.core.events import RELATIONSHIP_SET, Event
from tvilling.core.readings import Readings

if TYPE_CHECKING:
    from tvilling.backend.factory import Backend

PAGE = 5000


def fork(origin: Backend, *, at: datetime | None = None,
         history: tuple[int, int] | tuple[datetime, datetime] | None = None,
         twins: Sequence[str] | None = None) -> Backend:
    """An in-memory :class:`Backend` seeded from ``origin``.

    * every model;
    * the twins as of ``at`` (default: now): each twin's events up to its first one later than
      ``at``, committed in the origin's order. ``twins`` limits it to those ids and the twins
      their relationships point at (so every relationship keeps its target); None takes all;
    * the raw telemetry of the forked twins in ``history`` = ``(start, end)``, end excluded
      (datetimes, or microseconds since the epoch); None copies none.
    """
    from tvilling.backend.factory import open_backend

    if at is not None and at.tzinfo is None:
        raise Invalid("fork: 'at' must carry a time zone", field="at", rule="aware")
    span = None if history is None else _span(history)
    target = open_backend("memory", schema=origin.schema)
    try:
        models = origin.model_store.list_models()
        if models:
            target.model_store.add_models(models)
        events = _all_events(origin, at) if twins is None else _events_of(origin, twins, at)
        for i in range(0, len(events), PAGE):
            target.twin_store.commit(events[i:i + PAGE])
        if span is not None:
            ids = list(dict.fromkeys(e.twin for e in events))
            _copy_history(origin, target, ids, *span)
    except BaseException:
        target.close()
        raise
    return target


def _span(history: tuple[int, int] | tuple[datetime, datetime]) -> tuple[int, int]:
    start, end = history
    lo, hi = (_us(start), _us(end))
    if hi < lo:
        raise Invalid("fork: the history range ends before it starts", field="history", rule="range")
    return lo, hi


def _us(value: int | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise Invalid("fork: history times must carry a time zone", field="history", rule="aware")
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // _MICRO
    return int(value)


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def _fresh(events: Iterable[Event]) -> list[Event]:
    """The events without their origin positions (the fork hands out its own)."""
    return [Event(twin=e.twin, revision=e.revision, time=e.time, actor=e.actor, type=e.type, payload=e.payload)
            for e in events]


def _all_events(origin: Backend, at: datetime | None) -> list[Event]:
    out: list[Event] = []
    stopped: set[str] = set()
    after = 0
    while True:
        page = origin.twin_store.feed(after=after, limit=PAGE)
        for e in page:
            if e.twin in stopped:
                continue
            if at is not None and e.time > at:
                stopped.add(e.twin)
                continue
            out.append(e)
        if len(page) < PAGE:
            return _fresh(out)
        after = page[-1].position or after + len(page)


def _events_of(origin: Backend, twins: Sequence[str], at: datetime | None) -> list[Event]:
    logs: dict[str, list[Event]] = {}
    todo = list(dict.fromkeys(twins))
    while todo:
        twin = todo.pop()
        if twin in logs:
            continue
        log = _log(origin, twin, at)
        if not log:
            raise Invalid(f"fork: twin {twin!r} has no events up to {at or 'now'}", field="twins", rule="exists",
                          twin=twin)
        logs[twin] = log
        todo.extend(str(e.payload["target"]) for e in log if e.type == RELATIONSHIP_SET)
    merged = sorted((e for log in logs.values() for e in log), key=lambda e: e.position or 0)
    return _fresh(merged)


def _log(origin: Backend, twin: str, at: datetime | None) -> list[Event]:
    out: list[Event] = []
    after = 0
    while True:
        page = origin.twin_store.history(twin, after=after, limit=PAGE, until_time=at)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].revision


def _copy_history(origin: Backend, target: Backend, twins: Sequence[str], lo: int, hi: int) -> None:
    source, sink = origin.history, target.history
    for twin in twins:
        for prop in source.properties(twin):
            after: int | None = None
            while True:
                points = source.range(twin, prop, lo, hi, limit=PAGE, after_us=after)
                if not points:
                    break
                n = len(points)
                texts = [p.text for p in points]
                sink.append(Readings(
                    np.full(n, twin, dtype=object), np.full(n, prop, dtype=object),
                    np.fromiter((p.ts_us for p in points), dtype=np.int64, count=n),
                    np.fromiter((p.value for p in points), dtype=np.float64, count=n),
                    np.fromiter((p.quality for p in points), dtype=np.uint8, count=n),
                    np.fromiter((p.flags for p in points), dtype=np.uint16, count=n),
                    None if all(t is None for t in texts) else np.array(texts, dtype=object)))
                after = points[-1].ts_us
