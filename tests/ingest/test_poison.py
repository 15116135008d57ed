"""No single message can fail its batch: hostile values and internal failures become dead letters of that message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from ingest_fixtures import make_pipeline

from tvilling.core.envelope import Envelope
from tvilling.core.errors import Unavailable
from tvilling.core.readings import Readings
from tvilling.ingest.normalise import MAX_TEXT
from tvilling.ingest.pipeline import Pipeline
from tvilling.ingest.ports import RawMessage

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def env(twin: str, seconds: float, values: dict, **kw) -> Envelope:
    return Envelope(twin=twin, ts=T0 + timedelta(seconds=seconds), values=values, **kw)


def raw(payload: bytes, topic: str = "tvilling/B1/telemetry") -> RawMessage:
    return RawMessage(transport="mqtt", address=topic, payload=payload, received=T0)


def test_a_huge_integer_is_a_range_rejection_and_the_rest_of_the_batch_is_stored():
    platform, pipe, history, letters = make_pipeline()
    huge = 10**400
    res = pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0}, id="a"),
                                 env("B1", 1, {"vibration": huge, "temperature": 71.0}, id="b"),
                                 env("B2", 1, {"temperature": -(2**60)}, id="c")], now=T0)
    assert (res.accepted, res.rejected) == (2, 2)
    assert [d.rule for d in letters.list()] == ["range", "range"]
    assert "401 digits" in letters.list()[0].reason
    assert platform.twins.get("B1").reported == {"temperature": 71.0}
    assert sorted(history.all.value.tolist()) == [70.0, 71.0]


def test_a_too_long_string_is_a_size_rejection():
    _platform, pipe, _history, letters = make_pipeline()
    res = pipe.ingest_envelopes([env("B1", 0, {"manufacturer": "x" * (MAX_TEXT + 1)}),
                                 env("B1", 0, {"manufacturer": "SKF"})], now=T0)
    assert (res.accepted, res.rejected) == (1, 1)
    assert letters.list()[0].rule == "size" and "65537 characters" in letters.list()[0].reason


def test_empty_values_are_a_rejection_of_their_own():
    _platform, pipe, _history, letters = make_pipeline()
    res = pipe.ingest_envelopes([env("B1", 0, {}, id="e-1")], origins=[raw(b'{"ts": 0, "values": {}, "id": "e-1"}')],
                                now=T0)
    assert res.rejected == 1
    [d] = letters.list()
    assert (d.rule, d.message_id, d.payload) == ("empty", "e-1", b'{"ts": 0, "values": {}, "id": "e-1"}')


def test_every_rule_keeps_the_raw_payload_and_the_message_id():
    _platform, pipe, _history, letters = make_pipeline()
    msgs = [(env("B1", 0, {"nonsense": 1.0}, id="m1"), raw(b"P1")),
            (env("B1", 3600 * 24, {"temperature": 50.0}, id="m2"), raw(b"P2")),  # far future: the cleaning stage
            (env("B1", -7200, {"temperature": 50.0}, id="m3"), raw(b"P3")),  # before the re-order window
            (env("ghost", 0, {"temperature": 1.0}, id="m4"), raw(b"P4", "tvilling/ghost/telemetry"))]
    pipe.ingest_envelopes([env("B1", 600, {"temperature": 40.0})], now=T0 + timedelta(seconds=600))  # a newest
    pipe.ingest_envelopes([e for e, _ in msgs], origins=[r for _, r in msgs], now=T0 + timedelta(seconds=600))
    got = {d.message_id: (d.rule, d.payload, d.address) for d in letters.list()}
    assert got == {"m1": ("unknown_property", b"P1", "tvilling/B1/telemetry"),
                   "m2": ("far_future", b"P2", "tvilling/B1/telemetry"),
                   "m3": ("too_late", b"P3", "tvilling/B1/telemetry"),
                   "m4": ("unknown_twin", b"P4", "tvilling/ghost/telemetry")}
    assert all(d.size == 2 and d.digest for d in letters.list())


def test_a_redelivered_batch_does_not_dead_letter_its_rejections_twice():
    _platform, pipe, _history, letters = make_pipeline()
    batch = [env("B1", 0, {"nonsense": 1.0})]
    pipe.ingest_envelopes(batch, origins=[raw(b"P")], now=T0)
    pipe.ingest_envelopes(batch, origins=[raw(b"P")], now=T0)
    [d] = letters.list()
    assert d.deliveries == 2


def test_an_internal_failure_on_one_message_dead_letters_that_message_only(monkeypatch):
    platform, pipe, history, letters = make_pipeline()
    real = pipe._patches

    def failing(r, source, newest, snaps):  # a bug that only one twin's readings trigger
        if "B2" in set(r.twin.tolist()):
            raise ZeroDivisionError("boom")
        return real(r, source, newest, snaps)

    monkeypatch.setattr(pipe, "_patches", failing)
    msgs = [(env("B1", i, {"temperature": 70.0 + i}, id=f"b1-{i}"), raw(f"B1-{i}".encode())) for i in range(6)]
    msgs.insert(3, (env("B2", 0, {"temperature": 60.0}, id="b2"), raw(b"B2", "tvilling/B2/telemetry")))
    res = pipe.ingest_envelopes([e for e, _ in msgs], origins=[r for _, r in msgs], now=T0)
    assert (res.accepted, res.rejected) == (6, 1)
    [d] = letters.list()
    assert (d.rule, d.message_id, d.payload, d.twin) == ("internal", "b2", b"B2", "B2")
    assert "ZeroDivisionError" in d.reason
    assert platform.twins.get("B1").reported == {"temperature": 75.0}
    assert len(history.all) == 6


def test_a_store_failure_fails_the_batch_and_nothing_counts_as_seen():
    _platform, pipe, history, letters = make_pipeline()

    def down(readings, *, message_ids=()):
        raise Unavailable("history is down (test)")

    history.append = down  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0}, id="x")], now=T0)
    assert letters.count() == 0
    del history.append  # the store is back: the redelivered message is stored, not dropped as a duplicate
    assert pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0}, id="x")], now=T0).accepted == 1


def test_a_restarted_pipeline_drops_messages_whose_readings_history_already_has():
    platform, pipe, history, letters = make_pipeline()
    batch = [env("B1", i, {"temperature": 70.0 + i}, id=f"m{i}") for i in range(3)]
    assert pipe.ingest_envelopes(batch, now=T0).accepted == 3
    again = Pipeline(platform.twins, history, letters)  # a new process's pipeline over the same stores
    res = again.ingest_envelopes([*batch, env("B1", 9, {"temperature": 1.0}, id="m9")], now=T0)
    assert (res.accepted, res.duplicates) == (1, 3)


def test_columnar_input_for_unknown_twins_takes_no_series_state():
    _platform, pipe, _history, _letters = make_pipeline()
    n = 500
    r = Readings(np.array([f"nobody-{i}" for i in range(n)], dtype=object), np.full(n, "t", dtype=object),
                 np.full(n, 1_793_534_400_000_000, dtype=np.int64), np.ones(n))
    res = pipe.ingest_readings(r, now=T0)
    assert res.rejected == n and len(pipe.series.index) == 0


def test_a_value_whose_square_overflows_is_stored_and_leaves_the_spike_statistics_usable():
    _platform, pipe, history, _letters = make_pipeline()
    pipe.ingest_envelopes([env("B1", i, {"temperature": 70.0 + (i % 3) * 0.1}) for i in range(40)], now=T0)
    pipe.ingest_envelopes([env("B1", 41, {"temperature": 1e200})], now=T0)
    res = pipe.ingest_envelopes([env("B1", 42, {"temperature": 500.0})], now=T0)
    assert res.flagged == 1  # still judged a spike against the series' statistics
    sid = pipe.series.index[("B1", "temperature")]
    assert np.isfinite(pipe.series.mean[sid]) and np.isfinite(pipe.series.m2[sid])
    assert 1e200 in history.all.value.tolist()
