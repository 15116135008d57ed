"""Property-based tests (Hypothesis) of the data-quality stage, ``ingest/clean.py``, and what the pipeline adds.

The promises tested are the ones ``clean`` makes: every reading is accepted, rejected or
counted as an exact duplicate; the output is sorted by series then time and holds no exact
duplicate; re-ordering is undone within the window and refused beyond it; a spike needs a
history and non-numbers never join the statistics; the series state changes only on
``commit_state``; and an in-order stream stores the same readings however it is split into
batches. The pipeline adds: no NaN or infinity is ever stored as a number.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fixtures import make_pipeline

from tvilling.core.envelope import Envelope
from tvilling.core.readings import LATE, SPIKE, STALE, UNCERTAIN, Readings
from tvilling.ingest.clean import MIN_TS_US, NO_TS, Cleaned, CleanSettings, SeriesState, clean

S = 1_000_000  # µs per second
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
NOW = T0 + 120 * S
SERIES = [("A", "x"), ("A", "y"), ("B", "x"), ("B", "s")]  # B.s carries text values
EXAMPLES = int(os.environ.get("TVILLING_PROPERTY_EXAMPLES", "150"))

PROFILE = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Row = tuple[str, str, int, Any]

# few values and few times, often: readings equal in time, or in time and value, must be common
numbers = st.one_of(st.sampled_from([1.0, 2.0]), st.sampled_from([3.0, -0.0, 0.0]),
                    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
                    st.sampled_from([math.nan, math.inf, -math.inf, 1e200, -1e300]))
texts = st.sampled_from(["on", "off", True, False])
offsets = st.one_of(st.integers(0, 2), st.integers(-5, 60), st.sampled_from([10_000, -(10**9)]))


@st.composite
def rows(draw: st.DrawFn, max_size: int = 40) -> list[Row]:
    """A batch: a few series, many equal times and values, some far-future and pre-2000 times, text and NaN."""
    out: list[Row] = []
    for _ in range(draw(st.integers(0, max_size))):
        twin, prop = draw(st.sampled_from(SERIES))
        offset = draw(offsets)
        ts = T0 + offset * S if offset > -(10**9) else MIN_TS_US - S
        out.append((twin, prop, ts, draw(texts if prop == "s" else numbers)))
    return out


@st.composite
def in_order_streams(draw: st.DrawFn) -> list[Row]:
    """Interleaved series, each strictly later reading by reading, except exact redeliveries of its last one."""
    per_series: dict[tuple[str, str], list[Row]] = {}
    for twin, prop in SERIES:
        series: list[Row] = []
        ts = T0
        for _ in range(draw(st.integers(0, 12))):
            if series and draw(st.booleans()) and draw(st.booleans()):
                series.append(series[-1])  # the device sent its last reading again
                continue
            ts += draw(st.integers(1, 30)) * S
            series.append((twin, prop, ts, draw(texts if prop == "s" else numbers)))
        per_series[twin, prop] = series
    order = draw(st.permutations([key for key, series in per_series.items() for _ in series]))
    cursor = dict.fromkeys(per_series, 0)
    out: list[Row] = []
    for key in order:
        out.append(per_series[key][cursor[key]])
        cursor[key] += 1
    return out


def run_clean(batch: Sequence[Row], state: SeriesState, cfg: CleanSettings | None = None,
              now: int = NOW) -> tuple[Readings, Cleaned]:
    r = Readings.from_rows(batch)
    sid = state.ids(r.twin, r.prop)
    return r, clean(r, sid, state, now, cfg or CleanSettings())


def key(r: Readings, i: int) -> tuple[str, str, int, Any, Any]:
    """A reading's identity; NaN counts as equal to NaN, as ``clean`` counts it."""
    v = float(r.value[i])
    return (r.twin[i], r.prop[i], int(r.ts[i]), "nan" if math.isnan(v) else v,
            None if r.text is None else r.text[i])


def keys(r: Readings) -> Counter[tuple[str, str, int, Any, Any]]:
    return Counter(key(r, i) for i in range(len(r)))


def rejected_rows(c: Cleaned) -> list[int]:
    return [int(i) for rows_, _, _ in c.rejected for i in rows_]


def snapshot(state: SeriesState) -> list[Any]:
    return [dict(state.index)] + [getattr(state, n).copy() for n in
                                  ("last_ts", "last_val", "last_text", "n", "mean", "m2", "gap", "confirmed")]


def same_snapshot(a: list[Any], b: list[Any]) -> bool:
    if a[0] != b[0]:
        return False
    for x, y in zip(a[1:], b[1:], strict=True):
        if x.dtype == object:
            if x.tolist() != y.tolist():
                return False
        elif not np.array_equal(x, y, equal_nan=True):
            return False
    return True


# -- accounting ----------------------------------------------------------------------------------------------


@PROFILE
@given(rows())
def test_every_reading_is_accepted_rejected_or_a_duplicate(batch: list[Row]) -> None:
    r, c = run_clean(batch, SeriesState())
    kept, rejected = c.keep.tolist(), rejected_rows(c)
    assert len(set(kept)) == len(kept) and len(set(rejected)) == len(rejected)
    assert not set(kept) & set(rejected)
    assert len(kept) + len(rejected) + c.duplicates == len(batch)
    assert keys(c.readings) == keys(r.take(c.keep))  # the output is the kept input rows
    assert c.flagged == int(((c.readings.flags & (LATE | STALE | SPIKE)) != 0).sum())
    # what was dropped as a duplicate really repeats something that is kept
    accepted = keys(c.readings)
    dropped = set(range(len(batch))) - set(kept) - set(rejected)
    assert all(key(r, i) in accepted for i in dropped)


@PROFILE
@given(rows())
def test_impossible_times_are_rejected_with_their_rule_and_only_they(batch: list[Row]) -> None:
    r, c = run_clean(batch, SeriesState())
    limit = NOW + int(CleanSettings().max_future_s * S)
    by_rule = {rule: set(rows_.tolist()) for rows_, _, rule in c.rejected}
    assert by_rule.get("far_future", set()) == {i for i in range(len(r)) if r.ts[i] > limit}
    assert by_rule.get("bad_ts", set()) == {i for i in range(len(r)) if r.ts[i] < MIN_TS_US}
    assert set(by_rule) <= {"far_future", "bad_ts"}  # a fresh series has nothing to be too late for
    assert all(MIN_TS_US <= t <= limit for t in c.readings.ts.tolist())


# -- order and duplicates ------------------------------------------------------------------------------------


@PROFILE
@given(rows())
def test_the_output_is_sorted_by_series_then_time_and_holds_no_exact_duplicate(batch: list[Row]) -> None:
    _, c = run_clean(batch, SeriesState())
    out = c.readings
    assert all(count == 1 for count in keys(out).values())
    assert np.all(np.diff(c.sid) >= 0)
    same_series = c.sid[1:] == c.sid[:-1]
    assert np.all(np.diff(out.ts)[same_series] >= 0)


@PROFILE
@given(rows(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_what_is_stored(batch: list[Row], rnd: Any) -> None:
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    _, a = run_clean(batch, SeriesState())
    _, b = run_clean(shuffled, SeriesState())
    assert keys(a.readings) == keys(b.readings)
    assert a.duplicates == b.duplicates
    assert {rule: len(x) for x, _, rule in a.rejected} == {rule: len(x) for x, _, rule in b.rejected}


@PROFILE
@given(rows(), rows(), st.integers(1, 30))
def test_late_readings_are_reordered_within_the_window_and_refused_beyond(first: list[Row], second: list[Row],
                                                                         window_s: int) -> None:
    cfg = CleanSettings(reorder_window_s=window_s)
    state = SeriesState()
    _, c1 = run_clean(first, state, cfg)
    c1.commit_state()
    before = state.last_ts.copy()
    r, c2 = run_clean(second, state, cfg)
    sid = np.array([state.index[(t, p)] for t, p in zip(r.twin.tolist(), r.prop.tolist(), strict=True)],
                   dtype=np.int64)
    last = np.array([before[s] if s < len(before) else NO_TS for s in sid.tolist()], dtype=np.int64)
    too_late = {i for rows_, _, rule in c2.rejected if rule == "too_late" for i in rows_.tolist()}
    impossible = {i for rows_, _, rule in c2.rejected if rule != "too_late" for i in rows_.tolist()}
    for i in range(len(r)):
        if i in impossible:
            continue
        beyond = last[i] != NO_TS and r.ts[i] < last[i] - window_s * S
        if beyond:  # refused, unless it is an exact duplicate of the series' last point
            assert i in too_late or i not in c2.keep.tolist()
        else:
            assert i not in too_late
    for j, i in enumerate(c2.keep.tolist()):
        assert bool(c2.readings.flags[j] & LATE) == bool(last[i] != NO_TS and r.ts[i] < last[i])


# -- flags ---------------------------------------------------------------------------------------------------


@PROFILE
@given(rows())
def test_a_fresh_series_has_nothing_to_be_late_or_stale_against(batch: list[Row]) -> None:
    _, c = run_clean(batch, SeriesState())
    assert not np.any(c.readings.flags & (LATE | STALE))


@PROFILE
@given(st.lists(rows(max_size=25), min_size=1, max_size=4), st.integers(1, 6), st.floats(0.5, 4.0))
def test_a_spike_needs_a_history_and_non_numbers_never_join_the_statistics(batches: list[list[Row]], warmup: int,
                                                                           z: float) -> None:
    cfg = CleanSettings(spike_warmup=warmup, spike_z=z, stats_memory=10**9)
    state = SeriesState()
    judged: Counter[int] = Counter()  # numeric readings each series has been judged on so far
    for batch in batches:
        _, c = run_clean(batch, state, cfg)
        out = c.readings
        seen_in_batch: Counter[int] = Counter()
        for j in range(len(out)):
            s, v = int(c.sid[j]), float(out.value[j])
            numeric = math.isfinite(v) and abs(v) < 1e150
            if out.flags[j] & SPIKE:
                assert numeric, f"a non-number flagged as a spike: {v}"
                assert judged[s] + seen_in_batch[s] >= warmup, "a spike before the series had its warm-up"
                assert out.quality[j] >= UNCERTAIN
            seen_in_batch[s] += numeric
        c.commit_state()
        judged.update(seen_in_batch)
        live = state.n > 0
        assert np.all(np.isfinite(state.mean[live])) and np.all(np.isfinite(state.m2[live]))
        assert np.allclose(state.n, [judged[i] for i in range(len(state.n))])


# -- state ---------------------------------------------------------------------------------------------------


@PROFILE
@given(rows(), rows())
def test_the_state_moves_only_on_commit_and_then_to_the_newest_reading(first: list[Row], second: list[Row]) -> None:
    state = SeriesState()
    _, c1 = run_clean(first, state)
    c1.commit_state()
    r = Readings.from_rows(second)
    sid = state.ids(r.twin, r.prop)
    before = snapshot(state)
    a = clean(r, sid, state, NOW, CleanSettings())
    b = clean(r, sid, state, NOW, CleanSettings())
    assert same_snapshot(before, snapshot(state)), "clean changed the series state"
    assert keys(a.readings) == keys(b.readings) and np.array_equal(a.readings.flags, b.readings.flags)
    old_last = state.last_ts.copy()
    a.commit_state()
    for s in range(len(state.last_ts)):
        mine = a.readings.ts[a.sid == s]
        expected = max([int(old_last[s]), *mine.tolist()])
        assert state.last_ts[s] == expected
    # exactly the newest non-late row of each series is marked newest
    for s in np.unique(a.sid).tolist():
        rows_ = np.flatnonzero(a.sid == s)
        marked = rows_[a.newest[rows_]].tolist()
        last_row = int(rows_[-1])
        assert marked == ([] if a.readings.flags[last_row] & LATE else [last_row])


@PROFILE
@given(in_order_streams(), st.data())
def test_an_in_order_stream_stores_the_same_readings_however_it_is_split(stream: list[Row], data: Any) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=3)))
    whole_state, split_state = SeriesState(), SeriesState()
    _, whole = run_clean(stream, whole_state)
    whole.commit_state()
    stored: Counter[tuple[str, str, int, Any, Any]] = Counter()
    duplicates = 0
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        _, part = run_clean(stream[lo:hi], split_state)
        assert part.rejected == []
        part.commit_state()
        stored += keys(part.readings)
        duplicates += part.duplicates
    assert whole.rejected == []
    assert stored == keys(whole.readings) and duplicates == whole.duplicates
    for t, p in whole_state.index:
        a, b = whole_state.index[(t, p)], split_state.index[(t, p)]
        assert whole_state.last_ts[a] == split_state.last_ts[b]
        assert whole_state.last_text[a] == split_state.last_text[b]
        assert np.array_equal(whole_state.last_val[a:a + 1], split_state.last_val[b:b + 1], equal_nan=True)


# -- the pipeline around it: no NaN or infinity stored as a number ----------------------------------------------

START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
envelopes = st.lists(st.tuples(st.sampled_from(["B1", "B2"]), st.integers(0, 20),
                               st.dictionaries(st.sampled_from(["temperature", "vibration"]), numbers, min_size=1)),
                     max_size=15)


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_the_pipeline_never_stores_nan_or_infinity_and_accounts_for_every_value(items: list[Any]) -> None:
    _, pipe, history, letters = make_pipeline()
    batch = [Envelope(twin=t, ts=START + timedelta(seconds=s), values=v) for t, s, v in items]
    res = pipe.ingest_envelopes(batch, now=START + timedelta(minutes=1))
    values = [x for _, _, v in items for x in v.values()]
    assert res.accepted + res.rejected + res.duplicates == len(values)
    stored = history.all
    assert len(stored) == res.accepted
    assert np.all(np.isfinite(stored.value[stored.text == None] if stored.text is not None  # noqa: E711
                              else stored.value))
    bad = sum(1 for x in values if not math.isfinite(x))
    assert sum(d.count for d in res.letters if d.rule == "finite") == bad  # each one dead-lettered, saying why
    assert (letters.count() > 0) == (res.rejected > 0)  # (a repeated rejection is stored once, counted twice)
