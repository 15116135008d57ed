"""The contract of HistoryStore, run against every adapter (memory, DuckDB, PostgreSQL)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tvilling.core.errors import Invalid, Unavailable
from tvilling.core.readings import BAD, SPIKE, STALE, UNCERTAIN
from tvilling.history import DAY_US, HOUR_US, MINUTE_US, HistoryStore, Point, Readings, RetentionRule

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000


def series(twin: str, prop: str, ts, value, quality=None, flags=None) -> Readings:
    n = len(ts)
    return Readings(np.full(n, twin, dtype=object), np.full(n, prop, dtype=object), np.asarray(ts, dtype=np.int64),
                    np.asarray(value, dtype=np.float64),
                    None if quality is None else np.asarray(quality, dtype=np.uint8),
                    None if flags is None else np.asarray(flags, dtype=np.uint16))


def all_points(store: HistoryStore, twin: str, prop: str, start: int, end: int, limit: int = 1000) -> list[Point]:
    out: list[Point] = []
    after = None
    while True:
        page = store.range(twin, prop, start, end, limit=limit, after_us=after)
        if not page:
            return out
        out += page
        after = page[-1].ts_us


def numpy_buckets(ts: np.ndarray, value: np.ndarray, start: int, end: int, every: int) -> dict[int, dict]:
    """The reference: aggregates computed straight from the raw arrays (arrival order breaks ties of last)."""
    keep = (ts >= start) & (ts < end) & ~np.isnan(value)
    ts, value = ts[keep], value[keep]
    order = np.argsort(ts, kind="stable")
    ts, value = ts[order], value[order]
    out = {}
    for b in np.unique(ts - np.mod(ts, every)):
        v = value[(ts - np.mod(ts, every)) == b]
        out[int(b)] = {"count": len(v), "min": v.min(), "max": v.max(), "sum": v.sum(), "avg": v.mean(),
                       "last": v[-1]}
    return out


def assert_buckets_equal(got, want: dict[int, dict]) -> None:
    assert [b.start_us for b in got] == sorted(want)
    for b in got:
        w = want[b.start_us]
        assert (b.count, b.min, b.max, b.last) == (w["count"], w["min"], w["max"], w["last"])
        assert b.avg == pytest.approx(w["avg"], rel=1e-12, abs=1e-12)  # float sums differ only in order


# ----- append, range, paging -----
def test_append_and_range_in_time_order_half_open(store):
    ts = T0 + np.array([5, 1, 3, 2, 4]) * S
    assert store.append(series("B1", "temp", ts, [50, 10, 30, 20, 40])) == 5
    assert store.append(Readings.empty()) == 0
    pts = store.range("B1", "temp", T0 + 2 * S, T0 + 5 * S)
    assert [(p.ts_us, p.value) for p in pts] == [(T0 + 2 * S, 20), (T0 + 3 * S, 30), (T0 + 4 * S, 40)]
    assert store.range("B1", "temp", T0, T0 + 1 * S) == []
    assert store.range("B1", "nope", T0, T0 + 10 * S) == []
    assert store.range("nobody", "temp", T0, T0 + 10 * S) == []
    assert store.count() == 5


def test_range_limit_and_paging_cover_everything_once(store):
    rng = np.random.default_rng(1)
    ts = T0 + rng.choice(10_000, size=2_500, replace=False).astype(np.int64) * S
    store.append(series("B1", "temp", ts, rng.normal(size=len(ts))))
    page = store.range("B1", "temp", T0, T0 + 10_000 * S, limit=100)
    assert len(page) == 100 and [p.ts_us for p in page] == sorted(ts)[:100]
    got = all_points(store, "B1", "temp", T0, T0 + 10_000 * S, limit=333)
    assert [p.ts_us for p in got] == sorted(ts.tolist())
    with pytest.raises(Invalid):
        store.range("B1", "temp", T0, T0 + S, limit=0)


def test_duplicates_are_kept_in_arrival_order_and_never_split_by_a_page(store):
    store.append(series("B1", "temp", T0 + np.array([1, 2, 3]) * S, [1.0, 2.0, 3.0]))
    store.append(series("B1", "temp", T0 + np.array([2, 2]) * S, [20.0, 21.0]))
    pts = store.range("B1", "temp", T0, T0 + 10 * S)
    assert [(p.ts_us - T0) // S for p in pts] == [1, 2, 2, 2, 3]
    assert [p.value for p in pts] == [1.0, 2.0, 20.0, 21.0, 3.0]
    page = store.range("B1", "temp", T0, T0 + 10 * S, limit=2)
    assert [p.value for p in page] == [1.0, 2.0, 20.0, 21.0]  # the limit would have split ts=2
    assert [p.value for p in all_points(store, "B1", "temp", T0, T0 + 10 * S, limit=2)] == [1, 2, 20, 21, 3]
    assert store.last("B1", "temp").value == 3.0
    store.append(series("B1", "temp", [T0 + 3 * S], [30.0]))
    assert store.last("B1", "temp").value == 30.0  # same ts: the later append wins
    assert store.count() == 6


def test_non_numeric_quality_and_flags_round_trip(store):
    store.append(Readings.from_rows([
        ("V1", "state", T0 + 1, "open", UNCERTAIN, SPIKE | STALE),
        ("V1", "state", T0 + 2, True),
        ("V1", "state", T0 + 3, 2.5, BAD, 0xFFFF),
        ("V1", "state", T0 + 4, {"mode": "auto"}),
    ]))
    pts = store.range("V1", "state", T0, T0 + 10)
    assert [p.text for p in pts] == ['"open"', "true", None, '{"mode": "auto"}']
    assert math.isnan(pts[0].value) and pts[2].value == 2.5
    assert [(p.quality, p.flags) for p in pts] == [(UNCERTAIN, SPIKE | STALE), (0, 0), (BAD, 0xFFFF), (0, 0)]
    assert store.last("V1", "state").same_as(Point(T0 + 4, float("nan"), '{"mode": "auto"}'))
    (b,) = store.aggregate("V1", "state", T0, T0 + 10, 10)
    assert (b.count, b.min, b.max, b.last) == (1, 2.5, 2.5, 2.5)  # text readings are not aggregated


def test_invalid_readings_are_refused(store):
    with pytest.raises(Invalid):
        store.append(series("B1", "temp", [T0], [1.0], quality=[7]))
    with pytest.raises(Invalid):
        store.append(Readings(np.array([""], dtype=object), np.array(["p"], dtype=object),
                              np.array([T0]), np.array([1.0])))
    assert store.count() == 0


# ----- aggregates -----
@pytest.mark.parametrize("every", [7 * S, MINUTE_US, 15 * MINUTE_US, HOUR_US])
def test_aggregate_matches_numpy_with_empty_buckets_omitted_and_aligned(store, every):
    rng = np.random.default_rng(every % 97)
    # two clusters of readings with a gap of several buckets between them, out of order, some duplicates
    ts = np.concatenate([T0 + rng.integers(0, 2 * HOUR_US, 3000), T0 + 5 * HOUR_US + rng.integers(0, HOUR_US, 1000)])
    ts[:50] = ts[50:100]
    value = np.round(rng.normal(20, 5, len(ts)), 3)
    value[rng.random(len(ts)) < 0.02] = np.nan
    for part in np.array_split(np.arange(len(ts)), 7):
        store.append(series("M1", "speed", ts[part], value[part]))
    start, end = T0 + 17 * S + 3, T0 + 6 * HOUR_US - 11
    got = store.aggregate("M1", "speed", start, end, every, aggs=["min", "max", "avg", "last", "count"], tier="raw")
    assert all(b.start_us % every == 0 for b in got)
    assert_buckets_equal(got, numpy_buckets(ts, value, start, end, every))
    if every >= 15 * MINUTE_US:
        assert len(got) < (end - start) // every  # the gap's buckets are not there
    assert_buckets_equal(store.aggregate("M1", "speed", start, end, every), numpy_buckets(ts, value, start, end, every))


def test_aggregate_chooses_fields_and_refuses_nonsense(store):
    store.append(series("M1", "speed", T0 + np.arange(4) * S, [1.0, 2.0, 3.0, 4.0]))
    (b,) = store.aggregate("M1", "speed", T0, T0 + MINUTE_US, MINUTE_US, aggs=["sum", "count"])
    assert (b.sum, b.count, b.min, b.avg) == (10.0, 4, None, None)
    assert store.aggregate("M1", "nope", T0, T0 + MINUTE_US, MINUTE_US) == []
    for bad in (dict(aggs=["median"]), dict(aggs=[]), dict(every_us=0), dict(tier="1d")):
        kw = {"every_us": MINUTE_US, **bad}
        with pytest.raises(Invalid):
            store.aggregate("M1", "speed", T0, T0 + MINUTE_US, **kw)


def test_rollups_answer_long_ranges_as_raw_data_does(opener):
    store = opener()
    rng = np.random.default_rng(7)
    n = 3 * 24 * 3600 // 5  # three days at one reading per 5 s, with jitter and a hole
    ts = T0 + np.arange(n, dtype=np.int64) * 5 * S + rng.integers(0, 5 * S, n)
    keep = (ts < T0 + 30 * HOUR_US) | (ts >= T0 + 33 * HOUR_US)
    ts, value = ts[keep], np.round(rng.normal(50, 10, keep.sum()), 2)
    ts[1000:1010] = ts[1010]  # equal timestamps inside one bucket: the later arrival is "last"
    for part in np.array_split(np.arange(len(ts)), 13):  # several appends: several rollup rows per bucket
        store.append(series("M2", "temp", ts[part], value[part]))
    start, end = T0 + 123 * S + 456, T0 + 3 * DAY_US - 789
    for every in (HOUR_US, 6 * HOUR_US, DAY_US, 15 * MINUTE_US, MINUTE_US):
        want = numpy_buckets(ts, value, start, end, every)
        raw = store.aggregate("M2", "temp", start, end, every, tier="raw")
        assert_buckets_equal(raw, want)
        for tier in (None, "1m", "1h"):
            rolled = store.aggregate("M2", "temp", start, end, every, tier=tier)
            assert [(b.start_us, b.count, b.min, b.max, b.last) for b in rolled] == \
                   [(b.start_us, b.count, b.min, b.max, b.last) for b in raw]
            assert [b.avg for b in rolled] == pytest.approx([b.avg for b in raw], rel=1e-12)
    before = store.aggregate("M2", "temp", start, end, HOUR_US)
    merged = store.compact()
    assert merged > 0 or opener.kind == "memory"  # the memory store also merges its rollup rows when it reads them
    assert store.compact() == 0
    after = store.aggregate("M2", "temp", start, end, HOUR_US)
    assert [(b.start_us, b.count, b.min, b.max, b.last) for b in after] == \
           [(b.start_us, b.count, b.min, b.max, b.last) for b in before]
    assert [b.avg for b in after] == pytest.approx([b.avg for b in before], rel=1e-12)


def test_bucket_alignment_before_the_epoch(store):
    store.append(series("M3", "x", [-90 * S, -30 * S, 10 * S], [1.0, 2.0, 3.0]))
    got = store.aggregate("M3", "x", -HOUR_US, HOUR_US, MINUTE_US, aggs=["count"])
    assert [(b.start_us, b.count) for b in got] == [(-2 * MINUTE_US, 1), (-MINUTE_US, 1), (0, 1)]


# ----- last, properties -----
def test_last_and_last_many(store):
    assert store.last("P1", "temp") is None and store.last_many("P1") == {}
    store.append(Readings.concat([series("P1", "temp", T0 + np.array([3, 1]) * S, [3.0, 1.0], quality=[1, 0]),
                                  series("P1", "rpm", [T0 + 2 * S], [1500.0]),
                                  series("P2", "temp", [T0 + 9 * S], [9.0])]))
    store.append(series("P1", "temp", [T0 + 2 * S], [2.0]))  # older than what is there: not the last
    assert store.last("P1", "temp") == Point(T0 + 3 * S, 3.0, None, 1, 0)
    assert {k: p.value for k, p in store.last_many("P1").items()} == {"rpm": 1500.0, "temp": 3.0}
    assert store.properties("P1") == ["rpm", "temp"] and store.properties("P3") == []


# ----- retention -----
def test_retention_per_model_twin_and_property(store):
    now = T0 + 10 * DAY_US
    days = np.arange(10, dtype=np.int64)
    batch = Readings.concat([series(tw, p, T0 + days * DAY_US, days.astype(float))
                             for tw in ("pumpA", "pumpB", "valveA") for p in ("temp", "rpm")])
    store.append(batch)
    store.set_retention(RetentionRule(raw_us=5 * DAY_US, minute_us=7 * DAY_US))  # everything
    store.set_retention(RetentionRule(raw_us=2 * DAY_US, model="dtmi:x:Pump;1"))
    store.set_retention(RetentionRule(raw_us=8 * DAY_US, model="dtmi:x:Pump;1", prop="rpm"))
    store.set_retention(RetentionRule(raw_us=1 * DAY_US, twin="pumpB", prop="temp"))
    store.set_retention(RetentionRule(raw_us=3 * DAY_US, model="dtmi:x:Pump;1"))  # replaces the model rule
    assert len(store.retention_rules()) == 4
    models = {"pumpA": "dtmi:x:Pump;1", "pumpB": "dtmi:x:Pump;1", "valveA": "dtmi:x:Valve;1"}
    deleted = store.apply_retention(now, models=models)
    kept = {(tw, p): len(store.range(tw, p, 0, now * 2)) for tw in ("pumpA", "pumpB", "valveA")
            for p in ("temp", "rpm")}
    assert kept == {("pumpA", "temp"): 3, ("pumpA", "rpm"): 8, ("pumpB", "temp"): 1, ("pumpB", "rpm"): 8,
                    ("valveA", "temp"): 5, ("valveA", "rpm"): 5}
    assert deleted["raw"] == 60 - sum(kept.values())
    # only the global rule keeps 1-minute rollups (7 days); the others keep them forever
    assert deleted["1m"] == 2 * 3 and deleted["1h"] == 0
    assert [b.count for b in store.aggregate("valveA", "temp", 0, now, DAY_US, tier="1m")] == [1] * 7
    assert len(store.aggregate("pumpA", "temp", 0, now, DAY_US, tier="1h")) == 10
    with pytest.raises(Invalid):
        RetentionRule(raw_us=1, model="m", twin="t")
    assert store.apply_retention(now, models) == {"raw": 0, "1m": 0, "1h": 0}
    # without the twin -> model map, model rules do not apply: the pumps fall under the global rule
    assert store.apply_retention(now)["raw"] == 3 + 3  # the two rpm series: 8 days -> 5


# ----- durability, lifecycle -----
def test_reopen_keeps_everything(opener):
    if opener.kind == "memory":
        pytest.skip("the memory store keeps nothing after close")
    store = opener()
    store.append(Readings.from_rows([("B1", "t", T0 + 1, 1.5), ("B1", "s", T0 + 2, "on")]))
    store.set_retention(RetentionRule(raw_us=DAY_US, prop="t"))
    store.close()
    again = opener()
    assert [p.value for p in again.range("B1", "t", T0, T0 + 10)] == [1.5]
    assert again.last("B1", "s").text == '"on"'
    assert again.retention_rules() == [RetentionRule(raw_us=DAY_US, prop="t")]
    again.append(Readings.from_rows([("B1", "t", T0 + 3, 2.5), ("B2", "t", T0 + 3, 9.0)]))
    assert [p.value for p in again.range("B1", "t", T0, T0 + 10)] == [1.5, 2.5]
    assert again.count() == 4 and again.properties("B2") == ["t"]


def test_closed_store_is_unavailable(store):
    store.close()
    with pytest.raises(Unavailable):
        store.append(Readings.from_rows([("B1", "t", T0, 1.0)]))
    with pytest.raises(Unavailable):
        store.count()


# ----- the message-id journal (exactly-once ingest across restarts) -----
def test_message_ids_are_journaled_with_their_readings_and_survive_reopen(opener):
    store = opener()
    assert store.recent_message_ids(10) == []
    store.append(Readings.from_rows([("B1", "t", T0 + 1, 1.5)]), message_ids=[("B1", "m-1"), ("B2", "m-1")])
    store.append(Readings.from_rows([]), message_ids=[("B1", "m-2")])  # a message whose readings were all rejected
    store.append(Readings.from_rows([("B1", "t", T0 + 2, 2.5)]))
    assert store.recent_message_ids(10) == [("B1", "m-1"), ("B2", "m-1"), ("B1", "m-2")]
    assert store.recent_message_ids(1) == [("B1", "m-2")]
    assert store.count() == 2
    if opener.kind == "memory":
        return
    store.close()
    again = opener()
    assert again.recent_message_ids(10) == [("B1", "m-1"), ("B2", "m-1"), ("B1", "m-2")]


def test_a_failed_append_journals_no_message_id(store):
    store.append(Readings.from_rows([("B1", "t", T0, 1.0)]), message_ids=[("B1", "ok")])
    bad = Readings(np.array(["B1"], dtype=object), np.array(["t"], dtype=object), np.array(["soon"], dtype=object),
                   np.array([1.0]), np.array([0], dtype=np.uint8), np.array([0], dtype=np.uint16))
    with pytest.raises(Invalid):
        store.append(bad, message_ids=[("B1", "bad")])
    assert store.recent_message_ids(10) == [("B1", "ok")]


# ----- the readings feed (positions for consumers such as the analytics) -----
def _rows_of(batch) -> list[tuple]:
    r = batch.readings
    text = r.text if r.text is not None else [None] * len(r)
    return [(str(t), str(p), int(ts), None if math.isnan(v) else float(v), tx, int(q), int(f))
            for t, p, ts, v, tx, q, f in zip(r.twin, r.prop, r.ts, r.value, text, r.quality, r.flags, strict=True)]


def test_feed_gives_each_batch_once_in_append_order_with_increasing_positions(store):
    assert store.head() == 0 and store.batches_after(0) == []
    first = Readings.from_rows([("B2", "t", T0 + 5, 1.0), ("B1", "t", T0 + 1, 2.0), ("B1", "s", T0 + 1, "on")])
    store.append(first)
    store.append(Readings.from_rows([]), message_ids=[("B1", "m")])  # no readings: not in the feed
    store.append(series("B1", "t", [T0 + 9, T0 + 2], [3.0, 4.0], quality=[UNCERTAIN, 0], flags=[SPIKE, 0]))
    store.append(Readings.from_rows([("B1", "anomaly_score", T0 + 1, 0.5)]), derived=True)
    got = store.batches_after(0)
    assert [b.derived for b in got] == [False, False, True]
    positions = [b.position for b in got]
    assert positions == sorted(set(positions)) and positions[0] >= 1 and store.head() == positions[-1]
    assert _rows_of(got[0]) == [("B2", "t", T0 + 5, 1.0, None, 0, 0), ("B1", "t", T0 + 1, 2.0, None, 0, 0),
                                ("B1", "s", T0 + 1, None, '"on"', 0, 0)]
    assert _rows_of(got[1]) == [("B1", "t", T0 + 9, 3.0, None, UNCERTAIN, SPIKE), ("B1", "t", T0 + 2, 4.0, None, 0, 0)]
    assert [b.position for b in store.batches_after(positions[0])] == positions[1:]
    assert store.batches_after(positions[-1]) == []


def test_feed_pages_by_whole_batches_and_refuses_bad_arguments(store):
    for k in range(4):
        store.append(series("B1", "t", T0 + np.arange(3) + 10 * k, np.arange(3.0)))
    pages, after = [], 0
    while page := store.batches_after(after, max_rows=7):
        pages.append([len(b.readings) for b in page])
        after = page[-1].position
    assert pages == [[3, 3], [3, 3]]
    assert [len(b.readings) for b in store.batches_after(0, max_rows=1)] == [3]  # a batch is never split
    with pytest.raises(Invalid, match="after"):
        store.batches_after(-1)
    with pytest.raises(Invalid, match="max_rows"):
        store.batches_after(0, max_rows=0)


def test_deriving_block_marks_this_threads_appends_derived(store):
    import threading

    with store.deriving():
        store.append(Readings.from_rows([("B1", "health", T0, 0.9)]))
        other = threading.Thread(target=lambda: store.append(Readings.from_rows([("B1", "t", T0, 1.0)])))
        other.start()
        other.join()
    store.append(Readings.from_rows([("B1", "t", T0 + 1, 1.0)]))
    got = {str(b.readings.prop[0]) + str(int(b.readings.ts[0]) - T0): b.derived for b in store.batches_after(0)}
    assert got == {"health0": True, "t0": False, "t1": False}


def test_feed_positions_survive_reopen_and_the_feed_is_read_back_from_storage(opener):
    if opener.kind == "memory":
        pytest.skip("the memory store keeps nothing after close")
    store = opener()
    store.append(series("B1", "t", [T0, T0 + 1], [1.0, 2.0]))
    store.append(series("B1", "t", [T0 + 2], [3.0]), derived=True)
    before = [(b.position, b.derived, _rows_of(b)) for b in store.batches_after(0)]
    head = store.head()
    store.close()
    again = opener()
    assert again.head() == head
    assert [(b.position, b.derived, _rows_of(b)) for b in again.batches_after(0)] == before
    again.append(series("B1", "t", [T0 + 3], [4.0]))
    assert again.head() > head and [b.position for b in again.batches_after(head)] == [again.head()]


def test_feed_read_from_storage_matches_the_one_from_memory(store):
    from tvilling.history.base import Recent

    for k in range(5):
        store.append(series(f"B{k % 2}", "t", T0 + np.arange(4) + k, np.arange(4.0) * k))
    live = [(b.position, _rows_of(b)) for b in store.batches_after(0, max_rows=8)]
    if getattr(store, "_recent", None) is not None:  # push the batches out of memory: storage answers
        store._recent = Recent(floor=store.head())
    assert [(b.position, _rows_of(b)) for b in store.batches_after(0, max_rows=8)] == live


def test_retention_keeps_the_feed_positions_increasing(opener):
    store = opener()
    store.append(series("B1", "t", [T0], [1.0]))
    first = store.head()
    store.set_retention(RetentionRule(raw_us=HOUR_US, minute_us=HOUR_US, hour_us=HOUR_US))
    store.apply_retention(T0 + 10 * DAY_US)
    assert store.count() == 0
    if opener.kind != "memory":
        store.close()
        store = opener()
    store.append(series("B1", "t", [T0 + 11 * DAY_US], [2.0]))
    assert store.head() > first
    assert [len(b.readings) for b in store.batches_after(first)] == [1]


def test_a_store_from_before_the_feed_is_migrated_and_its_rows_count_as_read(opener):
    if opener.kind == "memory":
        pytest.skip("the memory store keeps nothing after close")
    store = opener()
    store.append(series("B1", "t", [T0, T0 + 1], [1.0, 2.0]))
    with store._tx("dropping the feed") as c:  # as a store written before the feed existed
        c.execute("DROP TABLE feed")
    store.close()
    again = opener()
    assert again.count() == 2 and again.batches_after(0) == [] and again.head() == 0
    again.append(series("B1", "t", [T0 + 2], [3.0]))
    [batch] = again.batches_after(0)
    assert _rows_of(batch) == [("B1", "t", T0 + 2, 3.0, None, 0, 0)]
    assert [p.value for p in again.range("B1", "t", T0, T0 + 10)] == [1.0, 2.0, 3.0]
