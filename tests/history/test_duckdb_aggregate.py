"""The embedded store answers an aggregate from fetched rows merged in NumPy, or, for a raw piece with
more points than it fetches, from DuckDB's own grouping: both give the same buckets."""

from __future__ import annotations

import numpy as np

from tvilling.core.readings import Readings
from tvilling.history import MINUTE_US, duckdb_store
from tvilling.history.duckdb_store import DuckDBHistoryStore

T0 = 1_767_225_600_000_000
S = 1_000_000


def test_raw_pieces_past_the_fetch_limit_are_grouped_by_duckdb_with_the_same_answer(tmp_path, monkeypatch):
    store = DuckDBHistoryStore(tmp_path / "h.duckdb", cache_rows=0)  # from the file: the cache is tested apart
    rng = np.random.default_rng(5)
    ts = T0 + np.sort(rng.integers(0, 20 * MINUTE_US, 3000))
    ts[100:110] = ts[110]  # equal times: the later arrival is the bucket's last
    value = np.round(rng.normal(10, 2, len(ts)), 3)
    for part in np.array_split(np.arange(len(ts)), 5):
        n = len(part)
        store.append(Readings(np.full(n, "B1", dtype=object), np.full(n, "t", dtype=object), ts[part], value[part]))
    start, end = T0 + 7 * S, T0 + 19 * MINUTE_US + 3 * S
    calls: list[str] = []
    grouped = store._partials

    def spy(*args):
        calls.append(args[1])
        return grouped(*args)

    monkeypatch.setattr(store, "_partials", spy)
    fetched = store.aggregate("B1", "t", start, end, MINUTE_US, ["min", "max", "sum", "count", "last"])
    assert calls == []
    monkeypatch.setattr(duckdb_store, "RAW_FETCH", 5)
    small = store.aggregate("B1", "t", start, end, MINUTE_US, ["min", "max", "sum", "count", "last"])
    assert calls == ["raw", "raw"]  # both ends of the range, past the limit
    assert len(fetched) == 20 and [b.start_us for b in small] == [b.start_us for b in fetched]
    for a, b in zip(fetched, small, strict=True):
        assert (a.min, a.max, a.count, a.last) == (b.min, b.max, b.count, b.last)
        assert abs(a.sum - b.sum) < 1e-9
    keep = (ts >= start) & (ts < end)
    assert sum(b.count for b in fetched) == int(keep.sum())
    for b in fetched:  # the latest time in each bucket, the later arrival among equal times
        rows = np.flatnonzero(keep & (ts >= b.start_us) & (ts < b.start_us + MINUTE_US))
        latest = rows[ts[rows] == ts[rows].max()][-1]
        assert b.last == value[latest] and b.count == len(rows)
    store.close()
