"""Analytics bound to twin models: online on ingest, outputs as twin properties with their version."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tvilling.analytics.binding import parse_specs
from tvilling.analytics.binding.lifecycle import backtest, train
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents

SKAB = "dtmi:tvilling:datasets:SkabTestbed;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
T0 = 1_790_000_000_000_000  # µs
SEC = 1_000_000
INPUTS = ["accelerometer1RMS", "current", "pressure", "temperature"]


def platform_with(analytics, tmp_path=None):
    settings = Settings(store="memory", analytics=analytics)
    p = build_platform(settings)
    p.models.add(builtin_documents("datasets"))
    p.models.add(builtin_documents("plant"))
    return p


def rows(twin: str, start: int, X: np.ndarray, names=INPUTS) -> Readings:
    n, k = X.shape
    ts = np.repeat(T0 + (start + np.arange(n)) * SEC, k)
    return Readings(np.full(n * k, twin, dtype=object), np.tile(np.array(names, dtype=object), n),
                    ts.astype(np.int64), X.reshape(-1).astype(float))


MEWMA = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
         "inputs": INPUTS, "train_rows": 200}


def test_detector_learns_then_scores_and_writes_outputs_with_version():
    p = platform_with([MEWMA])
    p.twins.put("pump-1", {"model": SKAB})
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(300, 4)) * [0.1, 0.2, 0.05, 0.3] + [1.0, 2.0, 0.5, 70.0]
    p.pipeline.ingest_readings(rows("pump-1", 0, normal[:150]), transport="test")
    assert "anomaly_score" not in p.twins.get("pump-1").reported  # still learning (150 of 200 rows)
    p.pipeline.ingest_readings(rows("pump-1", 150, normal[150:]), transport="test")
    twin = p.twins.get("pump-1")
    assert twin.reported["anomaly"] is False
    assert twin.reported["analytics"]["pump-anomaly"]["version"] == 1
    assert twin.metadata["reported"]["anomaly_score"]["source"] == "analytics:pump-anomaly@1"
    versions = p.analytics_registry.versions("pump-anomaly")
    assert [(v.scope, v.version, v.status) for v in versions] == [("pump-1", 1, "promoted")]
    # a fault: pressure drops far below anything seen in training
    fault = normal[:60].copy()
    fault[:, 2] -= 1.0
    p.pipeline.ingest_readings(rows("pump-1", 300, fault), transport="test")
    twin = p.twins.get("pump-1")
    assert twin.reported["anomaly"] is True and twin.reported["anomaly_score"] > 1.0
    shares = twin.reported["contributions"]
    assert max(shares, key=shares.get) == "pressure"
    assert abs(sum(shares.values()) - 1.0) < 1e-3
    # scores reach history too, one per row after training
    hist = p.history.range("pump-1", "anomaly_score", 0, 2**62, limit=10_000)
    assert len(hist) == 100 + 60


def test_rows_are_filled_forward_across_batches_and_partial_readings():
    p = platform_with([MEWMA])
    p.twins.put("pump-1", {"model": SKAB})
    rng = np.random.default_rng(1)
    X = rng.normal(size=(260, 4)) + 10
    p.pipeline.ingest_readings(rows("pump-1", 0, X), transport="test")
    # only one of the four inputs arrives: the others carry their last values
    r = rows("pump-1", 260, np.array([[10.0]]), names=["pressure"])
    p.pipeline.ingest_readings(r, transport="test")
    hist = p.history.range("pump-1", "anomaly_score", 0, 2**62, limit=10_000)
    assert hist[-1].ts_us == T0 + 260 * SEC


def test_outputs_are_reserved_properties_validated_on_every_model():
    p = platform_with([])
    p.twins.put("pump", {"model": SKAB})  # a model that declares none of them
    p.twins.patch("pump", {"reported": {"health": 0.4, "rul": 12.0, "anomaly": True,
                                        "contributions": {"current": 1.0}}})
    assert p.twins.get("pump").reported["health"] == 0.4
    with pytest.raises(Invalid, match="between 0 and 1"):
        p.twins.patch("pump", {"reported": {"health": 3.0}})
    with pytest.raises(Invalid, match="true or false"):
        p.twins.patch("pump", {"reported": {"anomaly": "yes"}})
    with pytest.raises(Invalid, match="not declared"):
        p.twins.patch("pump", {"reported": {"healthy": 1.0}})
    with pytest.raises(Invalid, match=r"not writable|not declared"):
        p.twins.patch("pump", {"desired": {"health": 1.0}})  # outputs are reported only
    # a model that declares one keeps its own definition (Asset;1 declares health as a plain double)
    p.twins.put("b1", {"model": BEARING})
    p.twins.patch("b1", {"reported": {"health": 0.9}})


def test_trend_rul_predicts_failure_time_with_a_band():
    spec = {"name": "bearing-rul", "model": BEARING, "method": "rul-trend", "inputs": ["vibration"],
            "train_rows": 50, "params": {"failure_level": 2.0, "unit": "hour", "window": 200,
                                         "health_horizon": 0.05}}
    p = platform_with([spec])
    p.twins.put("b1", {"model": BEARING})
    t = np.arange(400, dtype=float)
    # baseline 0.5 g for 100 s, then exponential growth: 0.5 + 0.05·e^{(t−100)/60}; reaches 2.0 g at t≈304 s
    v = 0.5 + np.where(t < 100, 0.0, 0.05 * np.exp((t - 100) / 60))
    v *= 1 + np.random.default_rng(2).normal(scale=0.003, size=t.size)
    p.pipeline.ingest_readings(rows("b1", 0, v[:250, None], names=["vibration"]), transport="test")
    rep = p.twins.get("b1").reported
    truth_h = (60 * np.log(1.5 / 0.05) + 100 - 249) / 3600
    assert rep["rul_p10"] <= rep["rul"] <= rep["rul_p90"]
    assert abs(rep["rul"] - truth_h) < 0.25 * truth_h
    # health: the lower of the level's share (1.1 g now, of 0.5 g new and 2.0 g failed) and life / horizon
    assert abs(rep["health"] - min((2.0 - 1.1) / 1.5, rep["rul"] / 0.05)) < 0.05
    assert rep["health"] < 0.4  # 55 s left of a 3-minute horizon: the level alone (0.6) would overstate it


def test_trend_rul_without_a_credible_trend_writes_no_number():
    spec = {"name": "bearing-rul", "model": BEARING, "method": "rul-trend", "inputs": ["vibration"],
            "train_rows": 50, "params": {"failure_level": 2.0, "max_rul": 1000}}
    p = platform_with([spec])
    p.twins.put("b1", {"model": BEARING})
    v = 0.5 * (1 + np.random.default_rng(3).normal(scale=0.01, size=200))  # healthy: no growth
    p.pipeline.ingest_readings(rows("b1", 0, v[:, None], names=["vibration"]), transport="test")
    rep = p.twins.get("b1").reported
    assert not {"rul", "rul_p10", "rul_p90"} & set(rep)  # "no trend": no number at all, not 1000
    assert rep["analytics"]["bearing-rul"]["trend"] is False
    assert rep["health"] > 0.95
    assert not [pt for pt in p.history.range("b1", "rul", 0, 2**62, limit=1000) if pt.value == 1000]


def test_spec_errors_name_the_field():
    with pytest.raises(Invalid, match="method 'magic'"):
        parse_specs([{**MEWMA, "method": "magic"}])
    with pytest.raises(Invalid, match="two or more inputs"):
        parse_specs([{**MEWMA, "inputs": ["current"]}])
    with pytest.raises(Invalid, match="failure_level"):
        parse_specs([{**MEWMA, "method": "rul-trend", "inputs": ["current"]}])
    with pytest.raises(Invalid, match="twice"):
        parse_specs([MEWMA, MEWMA])


def test_fleet_rul_trains_from_platform_history_then_predicts_online():
    names = ["setting1", "setting2", "setting3", "s2", "s3", "s4"]
    spec = {"name": "engine-rul", "model": "dtmi:tvilling:datasets:TurbofanEngine", "method": "rul-fleet",
            "inputs": names, "params": {"n_features": 200, "members": 3, "windows": [5, 10]}}
    p = platform_with([spec])
    rng = np.random.default_rng(3)
    twins = []
    for u in range(12):  # run-to-failure units: a sensor drifts up faster as the end nears
        life = int(rng.integers(80, 140))
        cyc = np.arange(life, dtype=float)
        X = np.column_stack([np.zeros(life), np.zeros(life), np.full(life, 100.0),
                             600 + 0.02 * np.exp(cyc / life * 4) + rng.normal(scale=0.05, size=life),
                             1500 + 5 * (cyc / life) ** 2 + rng.normal(scale=0.2, size=life),
                             rng.normal(size=life)])
        twin = f"eng-{u}"
        p.twins.put(twin, {"model": "dtmi:tvilling:datasets:TurbofanEngine;1"})
        p.pipeline.ingest_readings(rows(twin, 0, X, names=names), transport="test")
        twins.append(twin)
    assert "rul" not in p.twins.get("eng-0").reported  # no fleet model yet: nothing predicted
    v = train(p.analytics.spec("engine-rul"), p.analytics_registry, p.history, twins[:10], promote=True)
    assert v.version == 1 and v.metrics["units"] == 10 and v.status == "promoted"
    report = backtest(p.analytics.spec("engine-rul"), p.analytics_registry, p.history, v, twins[10:])
    assert report["rmse_clipped_truth"] < 40
    assert p.analytics_registry.get("engine-rul", "*", 1).backtest["twins"] == 2
    # online: a new engine gets RUL predictions from the promoted version
    p.analytics.reload("engine-rul")
    p.twins.put("eng-new", {"model": "dtmi:tvilling:datasets:TurbofanEngine;1"})
    life = 120
    cyc = np.arange(life, dtype=float)
    X = np.column_stack([np.zeros(life), np.zeros(life), np.full(life, 100.0),
                         600 + 0.02 * np.exp(cyc / life * 4), 1500 + 5 * (cyc / life) ** 2, np.zeros(life)])
    p.pipeline.ingest_readings(rows("eng-new", 0, X[:100], names=names), transport="test")
    rep = p.twins.get("eng-new").reported
    assert rep["analytics"]["engine-rul"]["version"] == 1
    assert rep["rul_p10"] <= rep["rul"] <= rep["rul_p90"] and 0 <= rep["health"] <= 1
    assert rep["rul"] < 60  # 20 cycles left in truth; far below the 125 cap


def test_input_drift_is_reported_and_raises_a_warning_alarm():
    from tvilling.decisions.alarms import build_driver

    p = platform_with([MEWMA])
    p.twins.put("pump-1", {"model": SKAB})
    driver = build_driver(p)
    driver.from_start = True
    rng = np.random.default_rng(5)
    base = np.array([1.0, 2.0, 0.5, 70.0])
    scale = np.array([0.1, 0.2, 0.05, 0.3])
    p.pipeline.ingest_readings(rows("pump-1", 0, rng.normal(size=(400, 4)) * scale + base), transport="test")
    driver.catch_up()
    assert p.twins.get("pump-1").reported["analytics"]["pump-anomaly"]["drift"]["drifting"] is False
    assert p.alarm_store.list(rule="pump-anomaly-drift") == []
    # the temperature sensor settles 4 standard deviations higher and stays there: first an anomaly (the shift
    # is reported, but no retrain is advised while it could be a fault), then, lasting, a new normal
    shifted = rng.normal(size=(2300, 4)) * scale + base + [0, 0, 0, 1.2]
    for start in range(0, 2300, 100):
        p.pipeline.ingest_readings(rows("pump-1", 400 + start, shifted[start:start + 100]), transport="test")
        driver.catch_up()
        if start == 900:
            early = p.twins.get("pump-1").reported
            assert early["anomaly"] is True and early["analytics"]["pump-anomaly"]["drift"]["input_shift"] > 2.0
            assert early["analytics"]["pump-anomaly"]["drift"]["drifting"] is False
            assert p.alarm_store.list(rule="pump-anomaly-drift") == []
    drift = p.twins.get("pump-1").reported["analytics"]["pump-anomaly"]["drift"]
    assert drift["drifting"] is True and drift["input"] == "temperature" and drift["input_shift"] > 2.0
    assert drift["alarm_rate"] >= 0.8 and drift["retrain_shift"] == drift["input_shift"]
    assert p.analytics_registry.get("pump-anomaly", "pump-1", 1).drift["drifting"] is True
    alarms = p.alarm_store.list(rule="pump-anomaly-drift")
    assert len(alarms) == 1 and alarms[0].severity == "warning" and alarms[0].state == "active"


def test_univariate_detector_on_a_single_stream_flags_a_level_never_seen():
    spec = {"name": "stream-anomaly", "model": "dtmi:tvilling:datasets:NabStream", "method": "univariate",
            "inputs": ["value"], "train_rows": 400}
    p = platform_with([spec])
    p.twins.put("s1", {"model": "dtmi:tvilling:datasets:NabStream;1"})
    t = np.arange(1400)
    x = 10 + np.sin(2 * np.pi * t / 50) + np.random.default_rng(4).normal(scale=0.05, size=t.size)
    x[1200:1210] = 25.0  # a level far outside anything seen
    for start in range(0, 1400, 200):
        p.pipeline.ingest_readings(rows("s1", start, x[start:start + 200, None], names=["value"]), transport="test")
    scores = np.array([pt.value for pt in p.history.range("s1", "anomaly_score", 0, 2**62, limit=10_000)])
    assert scores.size == 1000  # every row after the 400 training rows
    assert scores[800:810].max() >= 1.0  # rows 1200.. (800 after training)
    assert (scores[:790] >= 1.0).mean() < 0.01


def test_a_tampered_artifact_cannot_call_anything():
    import pickle

    from tvilling.analytics.binding.registry import load_artifact

    def global_ref(module: str, name: str) -> bytes:
        def text(x: str) -> bytes:
            return b"\x8c" + bytes([len(x)]) + x.encode()
        return text(module) + text(name) + b"\x93"

    cmd = b"echo tampered"
    for module, name in [("tvilling.analytics.evaluation.cmapss", "os.system"), ("os", "system"),
                         ("builtins", "eval"), ("numpy.testing._private.utils", "os.system")]:
        payload = b"\x80\x04" + global_ref(module, name) + b"\x8c" + bytes([len(cmd)]) + cmd + b"\x85R."
        with pytest.raises(pickle.UnpicklingError, match="may not load"):
            load_artifact(payload)


def test_parameter_typos_and_bad_values_are_configuration_errors():
    with pytest.raises(Invalid, match="no parameter 'treshold'"):
        parse_specs([{**MEWMA, "params": {"treshold": 3}}])
    with pytest.raises(Invalid, match=r"params\.unit must be one of"):
        parse_specs([{"name": "r", "model": BEARING, "method": "rul-trend", "inputs": ["vibration"],
                      "params": {"failure_level": 2.0, "unit": "hours"}}])
    with pytest.raises(Invalid, match=r"params\.window must be a positive number"):
        parse_specs([{"name": "r", "model": BEARING, "method": "rul-trend", "inputs": ["vibration"],
                      "params": {"failure_level": 2.0, "window": 0}}])


def test_late_rows_do_not_move_the_outputs_back_and_repeat_nothing():
    p = platform_with([MEWMA])
    p.twins.put("pump-1", {"model": SKAB})
    rng = np.random.default_rng(6)
    X = rng.normal(size=(260, 4)) * [0.1, 0.2, 0.05, 0.3] + [1.0, 2.0, 0.5, 70.0]
    p.pipeline.ingest_readings(rows("pump-1", 0, X[:250]), transport="test")
    for i in range(250, 260):  # one row a batch
        p.pipeline.ingest_readings(rows("pump-1", i, X[i:i + 1]), transport="test")
    stamp = p.twins.get("pump-1").metadata["reported"]["anomaly_score"]["time"]
    late = X[100:101] + np.array([0, 0, -2.0, 0])  # 160 s late, and far off
    p.pipeline.ingest_readings(rows("pump-1", 100, late), transport="test")
    assert p.twins.get("pump-1").metadata["reported"]["anomaly_score"]["time"] == stamp
    # the flag is written when it changes, not with every batch (ten one-row batches above)
    flags = [pt.text for pt in p.history.range("pump-1", "anomaly", 0, 2**62, limit=1000)]
    assert flags[0] == "false" and all(a != b for a, b in itertools.pairwise(flags))
    contributions = p.history.range("pump-1", "contributions", 0, 2**62, limit=1000)
    nulls = [pt.text for pt in contributions if pt.text == "null"]
    assert len(nulls) == flags.count("false") - 1  # one "nothing drives it" per anomaly that ended
    assert len(p.history.range("pump-1", "anomaly_score", 0, 2**62, limit=1000)) == 60


def test_a_changed_configuration_does_not_reuse_a_stale_version(tmp_path):
    settings = {"data_dir": tmp_path / "data"}
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 4)) * [0.1, 0.2, 0.05, 0.3] + [1.0, 2.0, 0.5, 70.0]
    with build_platform(Settings(analytics=[MEWMA], **settings)) as p:
        p.models.add(builtin_documents("datasets"))
        p.twins.put("pump-1", {"model": SKAB})
        p.pipeline.ingest_readings(rows("pump-1", 0, X[:250]), transport="test")
    reordered = {**MEWMA, "inputs": list(reversed(INPUTS))}
    with build_platform(Settings(analytics=[reordered], **settings)) as p:
        p.pipeline.ingest_readings(rows("pump-1", 250, X[250:]), transport="test")
        # the twin learns afresh under the new configuration instead of scoring columns in the wrong order
        assert "anomaly_score" in p.twins.get("pump-1").reported
        versions = p.analytics_registry.versions("pump-anomaly", "pump-1")
        assert [v.version for v in versions] == [1]  # 50 rows are not enough to fit again yet
        assert p.twins.get("pump-1").reported["analytics"]["pump-anomaly"]["version"] == 1


def test_devices_cannot_write_out_of_range_analytic_outputs():
    p = platform_with([])
    p.twins.put("pump", {"model": SKAB})
    r = Readings.from_rows([("pump", "health", T0, 5.0), ("pump", "rul", T0, -3.0), ("pump", "rul_p10", T0, 2.0)])
    res = p.pipeline.ingest_readings(r, transport="test")
    assert res.accepted == 1 and res.rejected == 2
    assert p.twins.get("pump").reported == {"rul_p10": 2.0}
