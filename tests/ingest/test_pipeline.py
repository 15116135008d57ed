from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
from ingest_fixtures import make_pipeline

from tvilling.core.envelope import Envelope, parse_envelope
from tvilling.core.readings import CONVERTED, LATE, SPIKE, STALE, Readings
from tvilling.ingest.normalise import to_us
from tvilling.ingest.pipeline import IngestSettings, Pipeline

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def env(twin: str, seconds: float, values: dict, **kw) -> Envelope:
    return Envelope(twin=twin, ts=T0 + timedelta(seconds=seconds), values=values, **kw)


def test_readings_reach_state_and_history_with_metadata():
    platform, pipe, history, letters = make_pipeline()
    res = pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0, "vibration": 1.5}, source="plc-1"),
                                 env("B1", 1, {"temperature": 71.0}, source="plc-1")], now=T0)
    assert (res.accepted, res.rejected, res.duplicates) == (3, 0, 0)
    twin = platform.twins.get("B1")
    assert twin.reported == {"temperature": 71.0, "vibration": 1.5}
    meta = twin.metadata["reported"]["temperature"]
    assert meta == {"time": "2026-11-01T12:00:01Z", "quality": "good", "source": "plc-1"}
    assert twin.revision == 2  # one event for the whole batch
    h = history.all
    assert sorted(zip(h.prop.tolist(), h.value.tolist(), strict=True)) == [
        ("temperature", 70.0), ("temperature", 71.0), ("vibration", 1.5)]
    assert letters.count() == 0


def test_bad_input_goes_to_dead_letters_with_reason_and_payload():
    platform, pipe, _history, letters = make_pipeline()
    res = pipe.ingest_envelopes([
        env("ghost", 0, {"temperature": 1.0}),
        env("B1", 0, {"nonsense": 1.0, "temperature": "hot", "vibration": math.inf}),
        env("B1", 3600 * 24, {"temperature": 50.0}),  # a day ahead of the clock
        env("B2", 0, {"temperature": 60.0}),
    ], now=T0)
    assert res.accepted == 1 and res.rejected == 5
    rules = sorted(d.rule for d in letters.list())
    assert rules == ["far_future", "finite", "type", "unknown_property", "unknown_twin"]
    ghost = next(d for d in letters.list() if d.rule == "unknown_twin")
    assert json.loads(ghost.payload)["twin"] == "ghost" and "does not exist" in ghost.reason
    typed = next(d for d in letters.list() if d.rule == "type")
    assert typed.twin == "B1" and typed.property == "temperature" and "number" in typed.reason
    assert platform.twins.get("B2").reported == {"temperature": 60.0}
    assert "temperature" not in platform.twins.get("B1").reported


def test_units_are_converted_to_the_model_unit():
    platform, pipe, history, letters = make_pipeline()
    pipe.ingest_envelopes([env("B1", 0, {"temperature": {"value": 176.0, "unit": "degreeFahrenheit"}})], now=T0)
    assert math.isclose(platform.twins.get("B1").reported["temperature"], 80.0)
    assert history.all.flags.tolist() == [CONVERTED]
    pipe.ingest_envelopes([env("B1", 1, {"temperature": {"value": 3.0, "unit": "ampere"}})], now=T0)
    assert letters.list()[0].rule == "unit"


def test_exact_duplicates_and_redelivered_messages_are_dropped_and_counted():
    platform, pipe, history, _letters = make_pipeline()
    e = env("B1", 0, {"temperature": 70.0}, id="m-1")
    assert pipe.ingest_envelopes([e], now=T0).accepted == 1
    again = pipe.ingest_envelopes([e], now=T0)
    assert (again.accepted, again.duplicates) == (0, 1)
    same_values = pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0}), env("B1", 0, {"temperature": 70.0})],
                                        now=T0)
    assert (same_values.accepted, same_values.duplicates) == (0, 2)
    corrected = pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.5})], now=T0)
    assert corrected.accepted == 1  # same time, new value: a correction, kept
    assert len(history.all) == 2 and platform.twins.get("B1").revision == 3


def test_late_readings_are_reordered_and_flagged_too_late_ones_dead_lettered():
    platform, pipe, history, letters = make_pipeline(IngestSettings(reorder_window_s=600))
    pipe.ingest_envelopes([env("B1", 300, {"temperature": 75.0})], now=T0 + timedelta(seconds=300))
    res = pipe.ingest_envelopes([env("B1", 200, {"temperature": 74.0}), env("B1", -600, {"temperature": 1.0})],
                                now=T0 + timedelta(seconds=300))
    assert (res.accepted, res.rejected) == (1, 1)
    late = history.batches[-1]
    assert late.flags.tolist() == [LATE]
    assert platform.twins.get("B1").reported["temperature"] == 75.0  # the newer value stays
    assert letters.list()[0].rule == "too_late"


def test_spikes_and_stale_series_are_flagged_not_dropped():
    platform, pipe, history, _letters = make_pipeline(IngestSettings(stale_after_s=60, spike_warmup=30))
    rng = np.random.default_rng(1)
    normal = [env("B1", i, {"vibration": float(1.0 + 0.05 * rng.standard_normal())}) for i in range(100)]
    pipe.ingest_envelopes(normal[:50], now=T0 + timedelta(seconds=200))
    pipe.ingest_envelopes(normal[50:], now=T0 + timedelta(seconds=200))
    res = pipe.ingest_envelopes([env("B1", 100, {"vibration": 9.0}), env("B1", 400, {"vibration": 1.02})],
                                now=T0 + timedelta(seconds=400))
    assert res.accepted == 2 and res.flagged == 2
    last = history.batches[-1]
    assert last.flags.tolist() == [SPIKE, STALE]
    assert last.quality.tolist()[0] == 1  # uncertain
    assert not any(f & SPIKE for b in history.batches[:2] for f in b.flags.tolist())
    # the series then falls silent: its property is marked stale in the twin
    assert pipe.check_stale(T0 + timedelta(seconds=400 + 120)) == 1
    stamp = platform.twins.get("B1").metadata["reported"]["vibration"]
    assert stamp["stale"] is True and stamp["quality"] == "uncertain"
    assert pipe.check_stale(T0 + timedelta(seconds=400 + 180)) == 0  # not marked twice


def test_component_values_enum_and_strings_validated_by_the_model():
    platform, pipe, _history, letters = make_pipeline()
    res = pipe.ingest_envelopes([env("M1", 0, {"motor": {"current": 12.5}, "state": "running", "speed": 1480})],
                                now=T0)
    assert res.accepted == 3, letters.list()
    twin = platform.twins.get("M1")
    assert twin.reported["motor"] == {"current": 12.5} and twin.reported["state"] == "running"
    assert "motor.current" in twin.metadata["reported"]
    pipe.ingest_envelopes([env("M1", 1, {"state": "exploded"})], now=T0)
    assert letters.list()[0].rule == "enum"


def test_state_survives_a_restart_of_the_pipeline():
    platform, pipe, history, letters = make_pipeline()
    pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0})], now=T0)
    fresh = Pipeline(platform.twins, history, letters)  # a restarted process over the same stores
    res = fresh.ingest_envelopes([env("B1", 0, {"temperature": 70.0}), env("B1", -10, {"temperature": 69.0})],
                                 now=T0)
    assert res.duplicates == 1 and res.accepted == 1
    assert history.all.flags.tolist() == [0, LATE]


def test_a_reading_whose_state_was_committed_but_not_its_history_is_stored_when_redelivered():
    """A crash between the state commit and the history append: the twin has the value, history does not."""
    platform, pipe, _history, _letters = make_pipeline()
    pipe.ingest_envelopes([env("B1", 0, {"temperature": 70.0})], now=T0)
    _, fresh, empty_history, _ = make_pipeline(platform=platform)  # history never got the batch
    res = fresh.ingest_envelopes([env("B1", 0, {"temperature": 70.0})], now=T0)
    assert (res.accepted, res.duplicates) == (1, 0)
    assert empty_history.all.value.tolist() == [70.0]
    again = fresh.ingest_envelopes([env("B1", 0, {"temperature": 70.0})], now=T0)  # now it is a duplicate
    assert (again.accepted, again.duplicates) == (0, 1)


def test_columnar_fast_path_validates_per_series():
    platform, pipe, _history, letters = make_pipeline()
    n = 1000
    ts = to_us(T0) + np.arange(n, dtype=np.int64) * 1_000_000
    values = np.linspace(60, 70, n)
    values[10] = np.nan
    r = Readings(np.array(["B1"] * n + ["ghost"] * 5, dtype=object),
                 np.array(["temperature"] * n + ["temperature"] * 5, dtype=object),
                 np.concatenate([ts, ts[:5]]), np.concatenate([values, np.ones(5)]))
    res = pipe.ingest_readings(r, source="file.csv", now=T0 + timedelta(seconds=n))
    assert res.accepted == n - 1 and res.rejected == 6
    assert {d.rule: d.count for d in letters.list()} == {"unknown_twin": 5, "finite": 1}
    twin = platform.twins.get("B1")
    assert twin.reported["temperature"] == 70.0 and twin.metadata["reported"]["temperature"]["source"] == "file.csv"


def test_envelope_parsing_accepts_iso_and_epoch_ms_and_names_bad_fields():
    a = parse_envelope({"twin": "B1", "ts": "2026-11-01T12:00:00Z", "values": {"t": 1}})
    b = parse_envelope({"twin": "B1", "ts": 1793534400000, "values": {"t": 1}})
    assert a.ts == b.ts == T0
    import pytest

    from tvilling.core.errors import Invalid

    for bad, field in [({"twin": "B1", "ts": "yesterday", "values": {}}, "ts"),
                       ({"twin": "B1", "ts": "2026-11-01T12:00:00", "values": {}}, "ts"),
                       ({"twin": "B1", "ts": 0, "values": []}, "values"),
                       ({"twin": "B1", "ts": 0, "values": {}, "quality": "meh"}, "quality"),
                       ({"twin": "B1", "ts": 0, "values": {}, "extra": 1}, "extra")]:
        with pytest.raises(Invalid) as err:
            parse_envelope(bad)
        assert err.value.fields["field"] == field
