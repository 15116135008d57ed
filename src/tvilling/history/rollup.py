"""Rollup arithmetic shared by every history adapter: pure NumPy, no I/O.

A *partial* is (bucket, min, max, sum, count, last, last_ts) over the numeric readings of
one series in one bucket. Partials of the same bucket merge exactly (min of mins, sum of
sums, the last of the latest), so a bucket can be built from rollup rows written by many
appends plus raw points at the ends of a range.

>>> p = partials_of(np.array([0, 30, 61, 62]), np.array([1.0, 3.0, 5.0, np.nan]), 60)
>>> p.bucket.tolist(), p.sum.tolist(), p.last.tolist(), p.count.tolist()
([0, 60], [4.0, 5.0], [3.0, 5.0], [2, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.history.ports import AGGS, Bucket

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def floor_to(ts: I64, every: int) -> I64:
    """Start of the bucket of each timestamp (floor, also before the epoch)."""
    return ts - np.mod(ts, every)


@dataclass(frozen=True)
class Partials:
    """Columns of partial aggregates; within one bucket, a later row was appended later."""

    bucket: I64
    min: F64
    max: F64
    sum: F64
    count: I64
    last: F64
    last_ts: I64

    def __len__(self) -> int:
        return len(self.bucket)

    @staticmethod
    def empty() -> Partials:
        f, i = np.empty(0), np.empty(0, dtype=np.int64)
        return Partials(i, f, f, f, i, f, i)

    @staticmethod
    def from_columns(cols: Sequence[npt.ArrayLike]) -> Partials:
        b, mn, mx, sm, ct, la, lt = cols
        return Partials(np.asarray(b, dtype=np.int64), np.asarray(mn, dtype=np.float64),
                        np.asarray(mx, dtype=np.float64), np.asarray(sm, dtype=np.float64),
                        np.asarray(ct, dtype=np.int64), np.asarray(la, dtype=np.float64),
                        np.asarray(lt, dtype=np.int64))

    def take(self, index: npt.NDArray[np.intp]) -> Partials:
        return Partials(self.bucket[index], self.min[index], self.max[index], self.sum[index],
                        self.count[index], self.last[index], self.last_ts[index])


def _group_starts(*keys: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Indices where any of the (sorted) keys changes, starting with 0."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _reduce(starts: npt.NDArray[np.intp], n: int, bucket: I64, mn: F64, mx: F64, sm: F64, ct: I64,
            last: F64, last_ts: I64) -> Partials:
    ends = np.append(starts[1:], n) - 1
    return Partials(bucket[starts], np.minimum.reduceat(mn, starts), np.maximum.reduceat(mx, starts),
                    np.add.reduceat(sm, starts), np.add.reduceat(ct, starts), last[ends], last_ts[ends])


def partials_of(ts: I64, value: F64, every: int) -> Partials:
    """Partials of one series' raw points (in append order); NaN (non-numeric) values are left out."""
    keep = ~np.isnan(value)
    ts, value = ts[keep], value[keep]
    if not len(ts):
        return Partials.empty()
    order = np.argsort(ts, kind="stable")
    ts, value = ts[order], value[order]
    bucket = floor_to(ts, every)
    starts = _group_starts(bucket)
    return _reduce(starts, len(ts), bucket, value, value, value, np.ones(len(ts), dtype=np.int64), value, ts)


def batch_partials(sid: I64, ts: I64, value: F64, every: int) -> tuple[I64, Partials]:
    """Per-(series, bucket) partials of a batch already sorted by (series, ts, append order), numeric rows only."""
    if not len(ts):
        return np.empty(0, dtype=np.int64), Partials.empty()
    bucket = floor_to(ts, every)
    starts = _group_starts(sid, bucket)
    p = _reduce(starts, len(ts), bucket, value, value, value, np.ones(len(ts), dtype=np.int64), value, ts)
    return sid[starts], p


def combine(parts: Sequence[Partials], every: int) -> Partials:
    """Merge partials (possibly of finer buckets) into buckets of ``every``; later rows win ties of ``last``."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Partials.empty()
    cat = [np.concatenate([getattr(p, f) for p in parts]) for f in
           ("bucket", "min", "max", "sum", "count", "last", "last_ts")]
    bucket = floor_to(cat[0], every)
    order = np.lexsort((cat[6], bucket))  # stable: equal last_ts keep their (append) order
    bucket = bucket[order]
    cols = [c[order] for c in cat[1:]]
    starts = _group_starts(bucket)
    return _reduce(starts, len(bucket), bucket, *cols)


def to_columns(p: Partials, aggs: Sequence[str]) -> dict[str, list[Any]]:
    """The asked-for aggregates as columns (``start_us`` first), plain Python numbers."""
    cols: dict[str, list[Any]] = {"start_us": p.bucket.tolist()}
    for name in ("count", "min", "max", "sum", "avg", "last"):
        if name in aggs:
            cols[name] = (p.sum / p.count).tolist() if name == "avg" else getattr(p, name).tolist()
    return cols


def to_buckets(p: Partials, aggs: Sequence[str]) -> list[Bucket]:
    """Buckets with the asked-for aggregates (one Python object per bucket, not per reading)."""
    cols = to_columns(p, aggs)
    return [Bucket(*row) for row in zip(*(cols.get(f, repeat(None)) for f in _BUCKET_FIELDS))]  # noqa: B905  # type: ignore[misc]


_BUCKET_FIELDS = tuple(f.name for f in fields(Bucket))


def check_aggs(aggs: Sequence[str], every_us: int, start_us: int, end_us: int) -> None:
    if isinstance(aggs, str) or not aggs or any(a not in AGGS for a in aggs):
        raise Invalid(f"aggs must be a non-empty list of {', '.join(AGGS)}", field="aggs", rule="aggregate")
    if not isinstance(every_us, int) or every_us <= 0:
        raise Invalid("every_us must be a positive number of microseconds", field="every_us", rule="aggregate")
    if end_us < start_us:
        raise Invalid("end_us is before start_us", field="end_us", rule="range")


def plan(start: int, end: int, every: int, tiers: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Split ``[start, end)`` into pieces answered by a tier: the coarsest usable tier takes the aligned
    middle, finer tiers (and finally raw points) the ends. Only tiers whose resolution divides ``every``
    are used, so a rollup bucket never straddles two answer buckets. Empty pieces are left out.

    >>> plan(30, 7230, 3600, [("1h", 3600), ("1m", 60)])
    [('raw', 30, 60), ('1m', 60, 3600), ('1h', 3600, 7200), ('raw', 7200, 7230)]
    """
    usable = [(name, res) for name, res in tiers if every % res == 0]
    pieces: list[tuple[str, int, int]] = []

    def split(lo: int, hi: int, rest: list[tuple[str, int]]) -> None:
        if lo >= hi:
            return
        if not rest:
            pieces.append(("raw", lo, hi))
            return
        name, res = rest[0]
        a, b = -(-lo // res) * res, (hi // res) * res
        if a >= b:
            split(lo, hi, rest[1:])
            return
        split(lo, a, rest[1:])
        pieces.append((name, a, b))
        split(b, hi, rest[1:])

    split(start, end, usable)
    return pieces
