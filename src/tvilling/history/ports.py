"""The history port: what every time-series store offers, and the values it returns.

A series is one property of one twin. Raw points are kept as appended; 1-minute and
1-hour rollups (min, max, sum, count, last) are written in the same transaction as the
raw rows, so an aggregate over a long range can be answered from them exactly as from
raw data. Retention rules delete raw points and rollups older than a horizon.

Duplicates: history stores what it is given. The same ``(twin, prop, ts)`` appended
twice is kept twice; ``range`` returns both (in append order), aggregates count both and
``last`` returns the one appended later. Exact-duplicate redelivery is removed upstream,
by the ingest stage.

Times are ``int`` microseconds since the Unix epoch (UTC); ranges are half-open
``[start_us, end_us)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings

MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

# name, resolution: coarsest first (the order in which ``aggregate`` tries them)
TIERS: tuple[tuple[str, int], ...] = (("1h", HOUR_US), ("1m", MINUTE_US))
AGGS = ("min", "max", "sum", "avg", "last", "count")
DEFAULT_AGGS = ("min", "max", "avg", "last", "count")


@dataclass(frozen=True, slots=True)
class Point:
    """One raw reading: ``value`` is NaN and ``text`` holds JSON for a non-numeric reading."""

    ts_us: int
    value: float
    text: str | None = None
    quality: int = 0
    flags: int = 0

    def same_as(self, other: Point) -> bool:
        """Equal, counting NaN values as equal (``==`` does not)."""
        both_nan = math.isnan(self.value) and math.isnan(other.value)
        return (self.ts_us, self.text, self.quality, self.flags) == (
            other.ts_us, other.text, other.quality, other.flags) and (both_nan or self.value == other.value)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregates of the numeric readings in ``[start_us, start_us + every)``; None where not asked for."""

    start_us: int
    count: int | None = None
    min: float | None = None
    max: float | None = None
    sum: float | None = None
    avg: float | None = None
    last: float | None = None


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """How long to keep raw points and each rollup, for a scope; None keeps forever.

    The scope is everything (no ``model``/``twin``), a model, or one twin, optionally narrowed
    to one property. The most specific rule matching a series wins, as a whole:
    twin+prop > twin > model+prop > model > prop > everything.

    >>> RetentionRule(raw_us=30 * DAY_US, minute_us=365 * DAY_US, model="dtmi:x:Pump;1").scope
    ('model', 'dtmi:x:Pump;1', None)
    """

    raw_us: int | None = None
    minute_us: int | None = None
    hour_us: int | None = None
    model: str | None = None
    twin: str | None = None
    prop: str | None = None

    def __post_init__(self) -> None:
        if self.model is not None and self.twin is not None:
            raise Invalid("a retention rule names a model or a twin, not both", field="scope", rule="retention")
        for name in ("raw_us", "minute_us", "hour_us"):
            keep = getattr(self, name)
            if keep is not None and (not isinstance(keep, int) or keep <= 0):
                raise Invalid(f"retention {name} must be a positive number of microseconds or None",
                              field=name, rule="retention")

    @property
    def scope(self) -> tuple[str, str | None, str | None]:
        if self.twin is not None:
            return ("twin", self.twin, self.prop)
        if self.model is not None:
            return ("model", self.model, self.prop)
        return ("all", None, self.prop)

    def keeps(self) -> dict[str, int | None]:
        """Horizon per table: ``{"raw": …, "1m": …, "1h": …}``."""
        return {"raw": self.raw_us, "1m": self.minute_us, "1h": self.hour_us}


@dataclass(frozen=True, eq=False)
class FeedBatch:
    """One appended batch as the readings feed gives it back: its position, its rows in arrival order, and
    whether the platform derived them (analytic outputs, which the analytics must not read again).

    Positions increase with every append, in the order the batches committed; they may skip numbers.
    A batch whose rows retention deleted comes back empty.
    """

    position: int
    readings: Readings
    derived: bool = False


@runtime_checkable
class HistoryStore(Protocol):
    """A time-series store for twin telemetry. Methods are synchronous; async callers use a thread."""

    def append(self, readings: Readings, *, message_ids: Sequence[tuple[str, str]] = (),
               derived: bool = False) -> int:
        """Store a batch (raw rows and rollups, one transaction); durable when it returns. Returns rows stored.

        ``message_ids``: the (twin, message id) pairs of the messages the readings came from,
        journaled in the same transaction (see :meth:`recent_message_ids`). The batch takes the next
        position of the readings feed (:meth:`batches_after`), marked ``derived`` when asked (or when
        appended inside the store's ``deriving()`` block).
        """
        ...

    def batches_after(self, after: int, max_rows: int = 100_000) -> list[FeedBatch]:
        """The readings feed: the batches appended after position ``after``, oldest first, whole batches
        holding at most ``max_rows`` rows together (always at least one batch when there is one).

        Batches appended before the store had a feed (older files and schemas) are not in it.
        """
        ...

    def head(self) -> int:
        """The position of the newest committed batch of the feed (0: none yet)."""
        ...

    def recent_message_ids(self, limit: int) -> list[tuple[str, str]]:
        """The newest journaled (twin, message id) pairs, oldest first: what a restarted ingest must not store
        again when the broker redelivers it."""
        ...

    def range(self, twin: str, prop: str, start_us: int, end_us: int, *,
              limit: int = 1000, after_us: int | None = None) -> list[Point]:
        """Raw points in ``[start_us, end_us)`` (and after ``after_us``) in time order, then append order.

        A page never splits the points of one timestamp: it may hold more than ``limit``
        points when duplicates share its last timestamp. The next page: ``after_us=page[-1].ts_us``.
        """
        ...

    def aggregate(self, twin: str, prop: str, start_us: int, end_us: int, every_us: int,
                  aggs: Sequence[str] = DEFAULT_AGGS, *, tier: str | None = None) -> list[Bucket]:
        """Numeric readings in ``[start_us, end_us)`` bucketed by ``every_us`` (bucket starts are multiples
        of ``every_us`` since the epoch; the first and last bucket may be partial); empty buckets are omitted.

        ``tier`` None picks the coarsest rollup whose resolution divides ``every_us`` for the aligned middle
        of the range and finer data at its ends; "raw", "1m" or "1h" force the coarsest tier used.
        """
        ...

    def last(self, twin: str, prop: str) -> Point | None: ...

    def last_many(self, twin: str) -> dict[str, Point]: ...

    def properties(self, twin: str) -> list[str]:
        """The properties of a twin that have ever had a reading, sorted."""
        ...

    def count(self) -> int:
        """Raw points stored."""
        ...

    def compact(self) -> int:
        """Merge rollup rows written by separate appends (upkeep; answers never change). Returns rows merged away."""
        ...

    def set_retention(self, rule: RetentionRule) -> None:
        """Add a rule, replacing the one with the same scope."""
        ...

    def retention_rules(self) -> list[RetentionRule]: ...

    def apply_retention(self, now_us: int, models: Mapping[str, str] | None = None) -> dict[str, int]:
        """Delete what the rules say is too old. ``models`` maps twin → model for model-scoped rules.

        Returns rows deleted per table: ``{"raw": n, "1m": n, "1h": n}``.
        """
        ...

    def close(self) -> None: ...
