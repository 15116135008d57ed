"""What the history adapters share: batch preparation, aggregate planning, paging, retention rules.

An adapter subclasses ``StoreBase`` and supplies storage primitives (the ``_`` methods);
the public methods of the ``HistoryStore`` port are implemented here once, so every
adapter answers the same way.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.history.ports import DEFAULT_AGGS, TIERS, Bucket, FeedBatch, Point, RetentionRule
from tvilling.history.rollup import Partials, batch_partials, check_aggs, combine, plan, to_buckets
from tvilling.history.series import SeriesIndex

MAX_LIMIT = 100_000
# Rows carry seq = (batch number << SEQ_BITS) | row index: one total order, the order of arrival.
SEQ_BITS = 24
MAX_BATCH = 1 << SEQ_BITS
MESSAGE_IDS_KEPT = 500_000  # journaled message ids kept by compact(): the newest
TABLES = ("raw", "1m", "1h")
FEED_ROWS = 100_000  # rows the readings feed returns at most, by default (whole batches)
RECENT_ROWS = 200_000  # rows of the newest batches a single-writer store keeps to answer the feed from memory
FEED_PLAN = 1_000  # journal entries read at most to plan one answer of the feed
_deriving = threading.local()  # ids of the stores whose appends in this thread are derived


@dataclass(frozen=True)
class Prepared:
    """A batch made ready for storage: validated columns, series ids per row, rollup partials per tier."""

    readings: Readings
    sid: npt.NDArray[np.int64]
    rollups: dict[str, tuple[npt.NDArray[np.int64], Partials]]  # tier -> (series id per row, partials)
    order: npt.NDArray[np.intp]  # the rows in (series, ts, arrival) order


def checked(readings: Readings) -> Readings:
    """The batch with canonical dtypes; Invalid if a column cannot be stored."""
    try:
        ts = np.asarray(readings.ts)
        if ts.dtype.kind not in "iu":
            raise TypeError("ts must be integer microseconds")
        value = np.asarray(readings.value, dtype=np.float64)
        quality = np.asarray(readings.quality)
        flags = np.asarray(readings.flags)
        if len(quality) and (quality.min() < 0 or quality.max() > 2):
            raise ValueError("quality must be 0 (good), 1 (uncertain) or 2 (bad)")
        if len(flags) and (flags.min() < 0 or flags.max() > 0xFFFF):
            raise ValueError("flags must fit 16 bits")
        return Readings(readings.twin, readings.prop, ts.astype(np.int64, copy=False), value,
                        quality.astype(np.uint8, copy=False), flags.astype(np.uint16, copy=False), readings.text)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Invalid(f"readings cannot be stored: {exc}", rule="readings") from exc


def prepare(readings: Readings, sid: npt.NDArray[np.int64]) -> Prepared:
    """Sort once by (series, ts, arrival) and derive every tier's partials from the numeric rows."""
    order = np.lexsort((readings.ts, sid))
    numeric = order[~np.isnan(readings.value[order])]
    rollups = {name: batch_partials(sid[numeric], readings.ts[numeric], readings.value[numeric], res)
               for name, res in TIERS}
    return Prepared(readings, sid, rollups, order)


class Recent:
    """The newest committed batches of a store that is the only writer of its data, to answer the readings
    feed without reading them back (the analytics read each batch right after it is stored).

    Complete after ``floor``: every batch with a position above it is held, until it is pushed out by
    newer ones (``max_rows`` rows in all, the newest batch always kept), which moves the floor up.

    >>> from tvilling.core.readings import Readings
    >>> recent = Recent(floor=3, max_rows=2)
    >>> for pos in (4, 5):
    ...     recent.add(pos, Readings.from_rows([("a", "x", pos, 1.0)]), derived=pos == 5)
    >>> [(b.position, b.derived) for b in recent.after(3, 10)], recent.after(2, 10)
    ([(4, False), (5, True)], None)
    """

    def __init__(self, floor: int, max_rows: int = RECENT_ROWS) -> None:
        self.floor = floor
        self.max_rows = max_rows
        self._batches: deque[FeedBatch] = deque()
        self._rows = 0

    def add(self, position: int, readings: Readings, derived: bool) -> None:
        """A batch just committed (positions increase)."""
        self._batches.append(FeedBatch(position, readings, derived))
        self._rows += len(readings)
        while self._rows > self.max_rows and len(self._batches) > 1:
            gone = self._batches.popleft()
            self._rows -= len(gone.readings)
            self.floor = gone.position

    def after(self, after: int, max_rows: int) -> list[FeedBatch] | None:
        """The held batches after ``after`` (whole, at most ``max_rows`` rows but at least one); None when
        batches after ``after`` may have been pushed out (read them from storage)."""
        if after < self.floor:
            return None
        out: list[FeedBatch] = []
        rows = 0
        for b in self._batches:
            if b.position <= after:
                continue
            if out and rows + len(b.readings) > max_rows:
                break
            out.append(b)
            rows += len(b.readings)
        return out


def plan_feed(entries: Sequence[tuple[int, int, bool]], max_rows: int) -> list[tuple[int, int, bool]]:
    """The first journal entries (position, rows, derived) that hold at most ``max_rows`` rows (at least one).

    >>> plan_feed([(1, 5, False), (2, 5, False), (3, 5, True)], 10)
    [(1, 5, False), (2, 5, False)]
    """
    out: list[tuple[int, int, bool]] = []
    rows = 0
    for entry in entries:
        if out and rows + entry[1] > max_rows:
            break
        out.append(entry)
        rows += entry[1]
    return out


def check_feed_args(after: int, max_rows: int) -> None:
    """Invalid unless ``after`` is a position (≥ 0) and ``max_rows`` a positive number of rows."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise Invalid(f"after must be a feed position (a whole number ≥ 0); got {after!r}", field="after",
                      rule="feed")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise Invalid(f"max_rows must be a whole number ≥ 1; got {max_rows!r}", field="max_rows", rule="feed")


class Staged:
    """An append begun and not yet durable: ``commit`` makes it so (returns how many readings, or raises what
    storing raised); ``abort`` drops it. Exactly one of the two is called, once.

    >>> done = []
    >>> staged = Staged(lambda: done.append(1) or 1)
    >>> staged.commit(), done
    (1, [1])
    """

    def __init__(self, commit: Callable[[], int], abort: Callable[[], None] | None = None) -> None:
        self._commit = commit
        self._abort = abort

    def commit(self) -> int:
        """Make the append durable; returns how many readings it stored."""
        return self._commit()

    def abort(self) -> None:
        """Store nothing of it."""
        if self._abort is not None:
            self._abort()


class StoreBase(ABC):
    """The port's methods over an adapter's storage primitives."""

    series: SeriesIndex

    # ----- adapter primitives -----
    @abstractmethod
    def _register(self, pairs: list[tuple[str, str]]) -> None: ...

    def _series_id(self, twin: str, prop: str) -> int | None:
        return self.series.get(twin, prop)

    def _twin_series(self, twin: str) -> dict[str, int]:
        return self.series.of_twin(twin)

    def _all_series(self) -> list[tuple[int, str, str]]:
        return self.series.items()

    @abstractmethod
    def _store(self, batch: Prepared | None, message_ids: Sequence[tuple[str, str]] = (),
               derived: bool = False) -> None:
        """Readings (if any), their feed journal entry (marked ``derived``) and the message-id journal in one
        transaction; then ``_fed`` for the batch, in commit order."""

    @abstractmethod
    def _head(self) -> int:
        """The feed position of the newest committed batch with readings (0: none)."""

    @abstractmethod
    def _feed_rows(self, after: int, max_rows: int) -> list[FeedBatch]:
        """``batches_after`` read from storage."""

    @abstractmethod
    def _recent_ids(self, limit: int) -> list[tuple[str, str]]:
        """Journaled (twin, message id) pairs, newest first."""

    @abstractmethod
    def _range_rows(self, sid: int, lo: int, hi: int, limit: int) -> list[Point]: ...

    @abstractmethod
    def _points_at(self, sid: int, ts: int) -> list[Point]: ...

    @abstractmethod
    def _partials(self, sid: int, source: str, lo: int, hi: int, every: int) -> Partials:
        """Partials per ``every`` bucket of ``source`` ("raw", "1m", "1h") over ``[lo, hi)``."""
        ...

    @abstractmethod
    def _last(self, sids: Sequence[int]) -> dict[int, Point]: ...

    @abstractmethod
    def _save_rules(self, rules: list[RetentionRule]) -> None: ...

    @abstractmethod
    def _load_rules(self) -> list[RetentionRule]: ...

    @abstractmethod
    def _delete_older(self, table: str, sids: npt.NDArray[np.int64], cutoffs: npt.NDArray[np.int64]) -> int: ...

    _recent: Recent | None = None  # single-writer adapters: the newest batches, for the feed

    def _fed(self, position: int, batch: Prepared | None, derived: bool) -> None:
        """A batch committed at ``position`` (called by the adapter in commit order)."""
        if batch is not None and self._recent is not None:
            self._recent.add(position, batch.readings, derived)

    # ----- the port -----
    def append(self, readings: Readings, *, message_ids: Sequence[tuple[str, str]] = (),
               derived: bool = False) -> int:
        """Store the readings; ``message_ids`` ((twin, id) of the messages they came from) are journaled in the
        same transaction, so that after a crash a redelivered message is known exactly when its readings are.
        ``derived`` (or an append inside :meth:`deriving`) marks the batch derived in the readings feed."""
        derived = derived or self.is_deriving()
        if len(readings) > MAX_BATCH:
            return sum(self.append(readings.take(np.arange(i, min(i + MAX_BATCH, len(readings)))),
                                   message_ids=message_ids if i == 0 else (), derived=derived)
                       for i in range(0, len(readings), MAX_BATCH))
        batch = self._batch_of(readings)
        if batch is not None or message_ids:
            self._store(batch, message_ids, derived)
        return len(readings)

    def stage(self, readings: Readings, *, message_ids: Sequence[tuple[str, str]] = (),
              derived: bool = False) -> Staged:
        """An append to finish later: begun now (an adapter may write the rows while the caller does other
        work), durable only once :meth:`Staged.commit` returns; :meth:`Staged.abort` leaves nothing stored.
        This default does all of it in ``commit``."""
        derived = derived or self.is_deriving()
        return Staged(lambda: self.append(readings, message_ids=message_ids, derived=derived))

    @contextmanager
    def deriving(self) -> Iterator[None]:
        """Within the block, this thread's appends to this store are marked derived in the readings feed
        (the analytics write their outputs so, through writers that do not know the store)."""
        held: set[int] = getattr(_deriving, "stores", set())
        _deriving.stores = held
        mine = id(self) not in held
        held.add(id(self))
        try:
            yield
        finally:
            if mine:
                held.discard(id(self))

    def is_deriving(self) -> bool:
        """True inside :meth:`deriving`, in this thread."""
        return id(self) in getattr(_deriving, "stores", ())

    def batches_after(self, after: int, max_rows: int = FEED_ROWS) -> list[FeedBatch]:
        """The batches appended after feed position ``after``, oldest first (see the port)."""
        check_feed_args(after, max_rows)
        recent = self._recent
        if recent is not None:
            got = recent.after(after, max_rows)
            if got is not None:
                return got
        return self._feed_rows(after, max_rows)

    def head(self) -> int:
        """The feed position of the newest committed batch with readings (0: none yet)."""
        return self._head()

    def _batch_of(self, readings: Readings) -> Prepared | None:
        """The batch checked, its series registered, sorted and rolled up (None for no readings)."""
        if not len(readings):
            return None
        readings = checked(readings)
        ids, new = self.series.lookup(readings.twin, readings.prop)
        if new:
            self._register(new)
            ids = self.series.encode(readings.twin, readings.prop)
        return prepare(readings, ids)

    def recent_message_ids(self, limit: int) -> list[tuple[str, str]]:
        """The (twin, message id) pairs journaled last, oldest first, at most ``limit``."""
        return self._recent_ids(limit)[::-1] if limit > 0 else []

    def range(self, twin: str, prop: str, start_us: int, end_us: int, *,
              limit: int = 1000, after_us: int | None = None) -> list[Point]:
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be 1 to {MAX_LIMIT}", field="limit", rule="range")
        sid = self._series_id(twin, prop)
        lo = start_us if after_us is None else max(start_us, after_us + 1)
        if sid is None or lo >= end_us:
            return []
        rows = self._range_rows(sid, lo, end_us, limit)
        if len(rows) == limit:  # never split one timestamp's points across pages
            edge = rows[-1].ts_us
            rows = [p for p in rows if p.ts_us < edge] + self._points_at(sid, edge)
        return rows

    def aggregate(self, twin: str, prop: str, start_us: int, end_us: int, every_us: int,
                  aggs: Sequence[str] = DEFAULT_AGGS, *, tier: str | None = None) -> list[Bucket]:
        planned = self._plan(twin, prop, start_us, end_us, every_us, aggs, tier)
        if planned is None:
            return []
        parts = self._pieces(*planned, every_us)
        return to_buckets(combine(parts, every_us), aggs)

    def aggregate_now(self, twin: str, prop: str, start_us: int, end_us: int, every_us: int,
                      aggs: Sequence[str] = DEFAULT_AGGS) -> dict[str, list[Any]] | None:
        """What :meth:`aggregate` answers, as columns (``start_us`` and each of ``aggs``), when the adapter
        holds it in memory and can give it at once (no lock to wait for, nothing to read: safe to call on
        an event loop); otherwise None (call ``aggregate``)."""
        return None

    def _plan(self, twin: str, prop: str, start_us: int, end_us: int, every_us: int, aggs: Sequence[str],
              tier: str | None = None) -> tuple[int, list[tuple[str, int, int]]] | None:
        """The series id and the planned pieces of an aggregate (None: no such series); Invalid for bad input."""
        check_aggs(aggs, every_us, start_us, end_us)
        tiers = {None: TIERS, "1h": TIERS, "1m": TIERS[1:], "raw": ()}.get(tier)
        if tiers is None:
            raise Invalid("tier must be None, 'raw', '1m' or '1h'", field="tier", rule="aggregate")
        sid = self._series_id(twin, prop)
        if sid is None:
            return None
        return sid, plan(start_us, end_us, every_us, tiers)

    def _pieces(self, sid: int, pieces: Sequence[tuple[str, int, int]], every: int) -> list[Partials]:
        """Partials of each planned piece (source, start, end), in the order of arrival within a bucket;
        an adapter may override this to answer every piece in one round trip."""
        return [self._partials(sid, source, lo, hi, every) for source, lo, hi in pieces]

    def last(self, twin: str, prop: str) -> Point | None:
        sid = self._series_id(twin, prop)
        return None if sid is None else self._last([sid]).get(sid)

    def last_many(self, twin: str) -> dict[str, Point]:
        props = self._twin_series(twin)
        found = self._last(list(props.values()))
        return {p: found[s] for p, s in sorted(props.items()) if s in found}

    def properties(self, twin: str) -> list[str]:
        return sorted(self._twin_series(twin))

    def set_retention(self, rule: RetentionRule) -> None:
        rules = {r.scope: r for r in self._load_rules()}
        rules[rule.scope] = rule
        self._save_rules(list(rules.values()))

    def retention_rules(self) -> list[RetentionRule]:
        return self._load_rules()

    def apply_retention(self, now_us: int, models: Mapping[str, str] | None = None) -> dict[str, int]:
        cut = cutoffs(self._all_series(), self._load_rules(), now_us, models or {})
        for table, res in TIERS:  # a rollup row goes when its whole bucket is older than the horizon
            sids, before = cut[table]
            cut[table] = (sids, before - res + 1)
        return {table: self._delete_older(table, *cut[table]) if len(cut[table][0]) else 0 for table in TABLES}


class SqlStoreBase(StoreBase, ABC):
    """Reads shared by the SQL adapters: they differ only in the parameter marker and how a
    connection is taken (``_rows``)."""

    PARAM = "?"

    @abstractmethod
    def _rows(self, what: str, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]: ...

    def _range_rows(self, sid: int, lo: int, hi: int, limit: int) -> list[Point]:
        p = self.PARAM
        return _points(self._rows("reading history",
                                  f"SELECT ts, value, text, quality, flags FROM raw WHERE series = {p} AND ts >= {p} "
                                  f"AND ts < {p} ORDER BY ts, seq LIMIT {p}", [sid, lo, hi, limit]))

    def _points_at(self, sid: int, ts: int) -> list[Point]:
        p = self.PARAM
        return _points(self._rows("reading history",
                                  f"SELECT ts, value, text, quality, flags FROM raw WHERE series = {p} AND ts = {p} "
                                  "ORDER BY seq", [sid, ts]))


    def _feed_rows(self, after: int, max_rows: int) -> list[FeedBatch]:
        p = self.PARAM
        entries = [(int(b), int(n), bool(d)) for b, n, d in self._rows(
            "reading the readings feed", f"SELECT batch, rows, derived FROM feed WHERE batch > {p} "
            f"ORDER BY batch LIMIT {FEED_PLAN}", [after])]
        planned = plan_feed(entries, max_rows)
        if not planned:
            return []
        rows = self._rows("reading the readings feed",
                          "SELECT r.seq, s.twin, s.prop, r.ts, r.value, r.text, r.quality, r.flags FROM raw r "
                          f"JOIN series s ON s.id = r.series WHERE r.seq >= {p} AND r.seq < {p} ORDER BY r.seq",
                          [planned[0][0] << SEQ_BITS, (planned[-1][0] + 1) << SEQ_BITS])
        return feed_batches(planned, rows)


def feed_batches(planned: Sequence[tuple[int, int, bool]], rows: Sequence[tuple[Any, ...]]) -> list[FeedBatch]:
    """Rows ``(seq, twin, prop, ts, value, text, quality, flags)`` in seq order, cut into the planned batches."""
    seq = np.array([r[0] for r in rows], dtype=np.int64)
    batch_of = seq >> SEQ_BITS
    out = []
    for position, _n, derived in planned:
        lo, hi = np.searchsorted(batch_of, [position, position + 1])
        part = rows[int(lo):int(hi)]
        text = np.array([r[5] for r in part], dtype=object)
        readings = Readings(np.array([r[1] for r in part], dtype=object), np.array([r[2] for r in part], dtype=object),
                            np.array([r[3] for r in part], dtype=np.int64),
                            np.array([r[4] for r in part], dtype=np.float64),
                            np.array([r[6] for r in part], dtype=np.uint8),
                            np.array([r[7] for r in part], dtype=np.uint16),
                            text if any(t is not None for t in text) else None)
        out.append(FeedBatch(position, readings, derived))
    return out


def _points(rows: Sequence[tuple[Any, ...]]) -> list[Point]:
    return [Point(ts, value, text, quality, flags) for ts, value, text, quality, flags in rows]


def resolve(rules: Mapping[tuple[str, str | None, str | None], RetentionRule],
            twin: str, prop: str, model: str | None) -> RetentionRule | None:
    """The most specific rule for one series."""
    keys: list[tuple[str, str | None, str | None]] = [("twin", twin, prop), ("twin", twin, None)]
    if model is not None:
        keys += [("model", model, prop), ("model", model, None)]
    keys += [("all", None, prop), ("all", None, None)]
    for key in keys:
        if key in rules:
            return rules[key]
    return None


def cutoffs(series: Sequence[tuple[int, str, str]], rules: Sequence[RetentionRule], now_us: int,
            models: Mapping[str, str]) -> dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Per table, the series that have a horizon and the time before which their rows go (one entry per series)."""
    by_scope = {r.scope: r for r in rules}
    out: dict[str, tuple[list[int], list[int]]] = {t: ([], []) for t in TABLES}
    if by_scope:
        for sid, twin, prop in series:
            rule = resolve(by_scope, twin, prop, models.get(twin))
            if rule is None:
                continue
            for table, keep in rule.keeps().items():
                if keep is not None:
                    out[table][0].append(sid)
                    out[table][1].append(now_us - keep)
    return {t: (np.array(s, dtype=np.int64), np.array(c, dtype=np.int64)) for t, (s, c) in out.items()}


def rule_to_row(rule: RetentionRule) -> tuple[str, str, str, int | None, int | None, int | None]:
    kind, scope, prop = rule.scope
    return kind, scope or "", prop or "", rule.raw_us, rule.minute_us, rule.hour_us


def rule_from_row(row: Sequence[object]) -> RetentionRule:
    kind, scope, prop, raw, minute, hour = row
    def opt(v: object) -> int | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)  # type: ignore[call-overload]
    return RetentionRule(raw_us=opt(raw), minute_us=opt(minute), hour_us=opt(hour),
                         model=str(scope) if kind == "model" else None,
                         twin=str(scope) if kind == "twin" else None, prop=str(prop) or None)
