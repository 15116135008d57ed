"""A source: a feed of JSON items with increasing positions, read forwards a page at a time.

The twin event feed is one (``tvilling.twins.feed.EventFeedSource``, items ``kind:
"event"``); the command lifecycle and the alarm changes are others. A source may also
offer ``head()`` (its last position), ``kind`` and ``types`` (the item types it yields,
used to check filters).

>>> find_head(lambda after, limit: [p for p in (3, 7, 9) if p > after][:limit])
9
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

Item = dict[str, Any]


@runtime_checkable
class Source(Protocol):
    """A feed of JSON items with increasing positions. ``read`` blocks (it is run in a thread)."""

    name: str

    def read(self, after: int, limit: int) -> list[tuple[int, Item]]:
        """Items with position > ``after``, at most ``limit``, in position order."""


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


def head_of(source: Source) -> int:
    """The source's last position: its own ``head()`` when it has one, else found by probing."""
    head = getattr(source, "head", None)
    if callable(head):
        return int(head())
    return find_head(lambda after, limit: [p for p, _ in source.read(after, limit)])
