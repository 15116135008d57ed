"""Rows for analytics: align a twin's property series on their timestamps, causally filled forward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.readings import Readings

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PAGE = 100_000


def ffill(X: FloatArray, last: FloatArray | None = None) -> FloatArray:
    """Fill NaNs down each column with the last value above (``last`` seeds the first row's gaps)."""
    if last is not None:
        X = np.vstack([last[None, :], X])
    n = X.shape[0]
    idx = np.where(np.isnan(X), 0, np.arange(n)[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = X[idx, np.arange(X.shape[1])[None, :]]
    return out[1:] if last is not None else out


def rows_of(readings: Readings, mask: npt.NDArray[np.bool_], inputs: Sequence[str]) -> tuple[IntArray, FloatArray]:
    """One row per distinct timestamp of the masked readings; columns follow ``inputs`` (NaN where absent)."""
    sel = np.flatnonzero(mask)
    ts_all = readings.ts[sel]
    ts, where = np.unique(ts_all, return_inverse=True)
    col_of = {p: j for j, p in enumerate(inputs)}
    cols = np.array([col_of.get(p, -1) for p in readings.prop[sel].tolist()], dtype=np.int64)
    X = np.full((ts.size, len(inputs)), np.nan)
    ok = cols >= 0
    X[where[ok], cols[ok]] = readings.value[sel][ok]
    return ts.astype(np.int64), X


def new_rows(ts: IntArray, X: FloatArray, last: FloatArray | None,
             seen: int | None) -> tuple[IntArray, FloatArray, FloatArray | None]:
    """The rows after ``seen`` (the newest timestamp already scored), filled forward from ``last``.

    State moves forward only: rows at or before ``seen`` arrived late and are left out. Returns the
    rows and the new last (filled) row; that is None, and no row is returned, when none is newer.
    """
    if seen is not None:
        newer = ts > seen
        ts, X = ts[newer], X[newer]
    if not ts.size:
        return ts, X, None
    X = ffill(X, last)
    return ts, X, X[-1].copy()


def history_rows(history: Any, twin: str, inputs: Sequence[str], start_us: int, end_us: int) -> tuple[IntArray,
                                                                                                      FloatArray]:
    """A twin's stored readings of ``inputs`` in ``[start_us, end_us)`` as filled-forward rows."""
    series: list[tuple[IntArray, FloatArray]] = []
    for prop in inputs:
        ts: list[int] = []
        vals: list[float] = []
        after: int | None = None
        while True:
            page = history.range(twin, prop, start_us, end_us, limit=PAGE, after_us=after)
            ts.extend(p.ts_us for p in page)
            vals.extend(p.value for p in page)
            if len(page) < PAGE:
                break
            after = page[-1].ts_us
        series.append((np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)))
    every = np.unique(np.concatenate([s[0] for s in series])) if series else np.zeros(0, dtype=np.int64)
    X = np.full((every.size, len(inputs)), np.nan)
    for j, (ts_j, v_j) in enumerate(series):
        X[np.searchsorted(every, ts_j), j] = v_j
    X = ffill(X)
    complete = ~np.isnan(X).any(axis=1)
    return every[complete], X[complete]


def newest_points(history: Any, twin: str, prop: str, n: int) -> list[Any]:
    """The newest ``n`` raw points of a series, oldest first: a window back from the last point, widened
    while it holds too few and narrowed while a page cannot hold it."""
    last = history.last(twin, prop)
    if last is None:
        return []
    end = last.ts_us + 1
    span = 3_600_000_000
    for _ in range(64):
        lo = max(end - span, 0)
        pts = history.range(twin, prop, lo, end, limit=PAGE)
        if len(pts) >= PAGE and span > 1:  # the page holds only the oldest of the window: narrow it
            span = max(span // 4, 1)
            continue
        if len(pts) >= n or lo == 0:
            return list(pts[-n:])
        span *= 8
    return list(pts[-n:])
