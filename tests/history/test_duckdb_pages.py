"""The embedded store's page cache: aggregates from memory equal, bit for bit, the ones read from the file,
while appends (late, out of order, repeated times, text), compaction and retention change what is stored."""

from __future__ import annotations

import numpy as np
import pytest

from tvilling.core.readings import Readings
from tvilling.history import HOUR_US, MINUTE_US, RetentionRule
from tvilling.history.duckdb_store import DuckDBHistoryStore
from tvilling.history.pages import PageCache

T0 = 1_767_225_600_000_000  # 2026-01-01, on an hour
S = 1_000_000
AGGS = ("min", "max", "sum", "avg", "last", "count")


def _readings(twin, prop, ts, value, text=None):
    n = len(ts)
    return Readings(np.full(n, twin, dtype=object), np.full(n, prop, dtype=object), np.asarray(ts, dtype=np.int64),
                    np.asarray(value, dtype=np.float64), text=text)


def _same(a, b):
    assert [x.start_us for x in a] == [x.start_us for x in b]
    for x, y in zip(a, b, strict=True):
        for agg in AGGS:
            u, v = getattr(x, agg), getattr(y, agg)
            assert u == v or (u != u and v != v), (x.start_us, agg, u, v)  # identical, NaN for NaN


QUERIES = [  # (start, end, every): ranges that end inside minutes, on them, across hours; several bucket sizes
    (T0, T0 + 2000 * S, MINUTE_US),
    (T0 + 7 * S, T0 + 19 * MINUTE_US + 3 * S, MINUTE_US),
    (T0 + 30 * S, T0 + 3 * HOUR_US + 30 * S, 5 * MINUTE_US),
    (T0 - HOUR_US, T0 + 5 * HOUR_US, HOUR_US),
    (T0 + 10 * S, T0 + 50 * S, MINUTE_US),  # inside one minute: one raw piece
    (T0 + 90 * S, T0 + 20 * MINUTE_US, 30 * S),  # not a multiple of a minute: raw only (the file answers)
]


@pytest.fixture
def pair(tmp_path):
    cached = DuckDBHistoryStore(tmp_path / "cached.duckdb")
    plain = DuckDBHistoryStore(tmp_path / "plain.duckdb", cache_rows=0)
    yield cached, plain
    cached.close()
    plain.close()


def _both(pair, readings):
    for store in pair:
        store.append(readings)


def _check(pair, twin="B1", prop="t"):
    cached, plain = pair
    for start, end, every in QUERIES:
        _same(cached.aggregate(twin, prop, start, end, every, AGGS),
              plain.aggregate(twin, prop, start, end, every, AGGS))


def test_cached_answers_equal_the_files_through_late_out_of_order_and_repeated_appends(pair):
    rng = np.random.default_rng(7)
    cached, _ = pair
    ts = T0 + np.arange(0, 4 * 3600, 1) * S
    value = np.round(50 + rng.standard_normal(len(ts)), 2)
    for lo in range(0, 3600, 400):  # the first hour, in order
        _both(pair, _readings("B1", "t", ts[lo:lo + 400], value[lo:lo + 400]))
    _check(pair)  # pages read into the cache
    assert len(cached._cache) > 0
    for lo in range(3600, len(ts), 900):  # more, while pages are held: they take the new rows
        _both(pair, _readings("B1", "t", ts[lo:lo + 900], value[lo:lo + 900]))
        _check(pair)
    late = rng.choice(len(ts), 500, replace=False)  # late and out of order, inside held pages
    _both(pair, _readings("B1", "t", ts[late], value[late] + 0.5))
    _check(pair)
    # repeated times, some the latest of a piece: the later arrival is the bucket's last
    same = np.repeat(ts[[15, 1142, 1999, 3700]], 3)
    _both(pair, _readings("B1", "t", same, np.arange(len(same), dtype=float)))
    _check(pair)
    text = np.full(4, '"on"', dtype=object)  # text readings are left out of aggregates
    _both(pair, _readings("B1", "t", ts[[10, 20, 30, 40]], np.full(4, np.nan), text=text))
    _both(pair, _readings("B1", "t", ts[[11, 12]], [np.nan, 1e6]))  # a numeric NaN reading too
    _check(pair)
    _both(pair, _readings("B2", "t", ts[:100], value[:100]))  # another series: its own pages
    _check(pair, "B2")
    _check(pair)


def test_compaction_and_retention_clear_the_cache_and_answers_still_agree(pair):
    rng = np.random.default_rng(3)
    cached, _ = pair
    ts = T0 + np.arange(0, 3 * 3600, 2) * S
    value = rng.normal(10, 3, len(ts))
    for part in np.array_split(np.arange(len(ts)), 12):
        _both(pair, _readings("B1", "t", ts[part], value[part]))
    _check(pair)
    assert cached._cache.rows > 0
    for store in pair:
        store.compact()
    assert cached._cache.rows == 0
    _check(pair)
    for store in pair:
        store.set_retention(RetentionRule(raw_us=HOUR_US, minute_us=2 * HOUR_US))
        store.apply_retention(T0 + 3 * HOUR_US)
    assert cached._cache.rows == 0
    _check(pair)


def test_a_raw_page_past_the_fetch_limit_and_a_tiny_budget_fall_back_to_the_file(tmp_path):
    plain = DuckDBHistoryStore(tmp_path / "plain.duckdb", cache_rows=0)
    small = DuckDBHistoryStore(tmp_path / "small.duckdb", cache_rows=50)
    ts = T0 + np.arange(0, 3 * 3600 * 10) * (S // 10)  # 10 Hz: 600 points a minute
    value = np.sin(np.arange(len(ts)) / 50)
    for store in (plain, small):
        for part in np.array_split(np.arange(len(ts)), 4):
            store.append(_readings("B1", "t", ts[part], value[part]))
    for start, end, every in QUERIES:
        _same(small.aggregate("B1", "t", start, end, every, AGGS), plain.aggregate("B1", "t", start, end, every, AGGS))
    assert small._cache.rows <= 50
    plain.close()
    small.close()


def test_the_cache_keeps_at_most_its_budget_and_drops_the_least_recently_used_first():
    cache = PageCache(max_rows=10)
    ones, seq = np.ones(4), np.arange(4, dtype=np.int64)
    rows = [(seq * MINUTE_US + k * HOUR_US, ones, ones, ones, np.ones(4, dtype=np.int64), ones, seq, seq)
            for k in range(3)]

    def load(sid, ranges):
        return [rows[lo // HOUR_US] for _, lo, _ in ranges]

    for k in range(3):
        got = cache.partials(1, [("1m", k * HOUR_US, (k + 1) * HOUR_US)], load)
        assert got is not None and got[0].count.sum() == 4
    assert cache.rows <= 10 and len(cache) == 2
    assert ("1m", 1, 0) not in cache._pages  # the first page read went first
    assert cache.needed(1, [("raw", 0, 2 * MINUTE_US)]) is None  # a raw piece over a minute: not from pages
