"""Detection that knows the operating point: on the simulated plant, a commanded speed change, a stop and a
restart are not faults; a bearing defect is one at every speed, and its own band names it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tvilling.analytics.binding import parse_specs
from tvilling.analytics.detectors.operating_point import OperatingPoint, parse_exponents
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.demo import BEARING, demo_analytics
from tvilling.models.builtin import builtin_documents
from tvilling.plant import Injection, Plant
from tvilling.plant.plant import MODEL_SET
from tvilling.twins.importer import import_twins

T0_MS = 1_790_000_000_000
SPEED = 60.0  # one plant minute per reading, as in the demo


def plant_platform(analytics: list[dict[str, Any]], scenario: list[Injection], machines: int = 2,
                   seed: int = 4) -> tuple[Platform, Plant]:
    p = build_platform(Settings(store="memory", analytics=analytics))
    p.models.add(builtin_documents(MODEL_SET))
    plant = Plant(machines=machines, seed=seed, speed=SPEED, scenario=scenario)
    import_twins(p.twins, plant.twins(), actor="test")
    return p, plant


def run(p: Platform, plant: Plant, steps: range, commands: dict[int, tuple[str, str, Any]] | None = None) -> None:
    """One reading a (wall) second through the ingest pipeline; ``commands`` at given steps, as an operator."""
    for i in steps:
        if commands and i in commands:
            twin, name, arg = commands[i]
            assert plant.handle(twin, name, arg).ok
        frame = plant.step(1.0, now_ms=T0_MS + i * 1000)
        rows = [(twin, prop, (T0_MS + i * 1000) * 1000, v) for twin, values in frame.records()
                for prop, v in values.items()]
        p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")


def scores(p: Platform, twin: str) -> np.ndarray:
    return np.array([pt.value for pt in p.history.range(twin, "anomaly_score", 0, 2**62, limit=100_000)])


def flags(p: Platform, twin: str) -> list[bool]:
    return [pt.text == "true" for pt in p.history.range(twin, "anomaly", 0, 2**62, limit=100_000)]


def test_speed_changes_stops_and_restarts_without_a_fault_raise_nothing():
    p, plant = plant_platform(demo_analytics(SPEED), scenario=[])
    m = plant.machine_ids[0]
    plan = {70: (m, "setSpeed", 900.0), 110: (m, "stop", None), 140: (m, "start", None),
            170: (m, "setSpeed", 1200.0), 200: (m, "setSpeed", 1500.0), 230: (m, "setSpeed", 700.0)}
    run(p, plant, range(260), plan)
    for bearing in (f"{m}-de", f"{m}-nde"):
        s = scores(p, bearing)
        assert s.size > 150 and s.max() < 1.0, f"{bearing}: a healthy machine changing speed scored {s.max():.2f}"
        assert not any(flags(p, bearing))
        drift = p.twins.get(bearing).reported["analytics"]["bearing-anomaly"]["drift"]
        assert not drift["drifting"], drift
    # while it stood still nothing was scored, and the twin said why
    stopped = [pt for pt in p.history.range(f"{m}-de", "anomaly_score", (T0_MS + 112_000) * 1000,
                                            (T0_MS + 139_000) * 1000, limit=100)]
    assert stopped == []
    markers = [pt.text for pt in p.history.range(f"{m}-de", "analytics", 0, 2**62, limit=10_000)]
    assert any("suspended: stopped (shaftSpeed 0)" in t for t in markers)
    assert p.twins.get(f"{m}-de").reported["analytics"]["bearing-anomaly"]["scoring"] == "active"


def test_the_untrained_detector_reads_the_slow_down_as_a_fault():
    """The same run without the operating point: what the demo used to show (the control for the test above)."""
    blind = [{**a, "context": [], "params": {k: v for k, v in a.get("params", {}).items()
                                             if k not in ("exponents", "running_above")}}
             for a in demo_analytics(SPEED)]
    p, plant = plant_platform(blind, scenario=[])
    m = plant.machine_ids[0]
    run(p, plant, range(120), {70: (m, "setSpeed", 900.0)})
    assert scores(p, f"{m}-de").max() > 1.0


@pytest.mark.parametrize("rpm", [900.0, 1200.0, 1800.0])
def test_a_bearing_defect_is_found_at_every_speed_and_named_by_its_band(rpm: float):
    # the line runs at `rpm` from the start of the defect on: the detector learned at 1500 only
    fault = Injection(machine=2, fault="bearing_defect", at=100 * SPEED, severity=1.0, growth=1.0, bearing="de")
    p, plant = plant_platform(demo_analytics(SPEED), scenario=[fault])
    m2 = plant.machine_ids[1]
    commands = {80: (m2, "setSpeed", rpm), 81: (plant.machine_ids[0], "setSpeed", rpm)}
    run(p, plant, range(150), commands)
    de = p.twins.get(f"{m2}-de").reported
    assert de["anomaly"] is True, f"defect at {rpm} rpm not flagged (score {de['anomaly_score']})"
    shares = de["contributions"]
    assert max(shares, key=shares.get) == "vibrationBandBpfo", shares
    assert de["anomaly_score"] > p.twins.get(f"{m2}-nde").reported["anomaly_score"]  # the faulty one scores higher
    before = scores(p, f"{m2}-de")[: 100 - 60]  # scored rows before the defect (60 rows trained)
    assert before.max() < 1.0  # the speed change itself (at row 80) raised nothing
    healthy = scores(p, f"{plant.machine_ids[0]}-de")
    assert healthy.max() < 1.0  # the other machine changed speed too, without a fault
    assert p.twins.get(f"{m2}-de").reported.get("rul") is not None  # the trend sees it at this speed as well
    # the other bearing hears the defect through the shaft (its high band), but no failure is predicted for it
    assert p.twins.get(f"{m2}-nde").reported.get("rul") is None


def test_exponents_are_learned_when_training_spans_several_speeds():
    """No declared exponents: a commissioning run at three speeds teaches the detector how each band scales."""
    spec = {"name": "bearing-anomaly", "model": BEARING, "method": "mewma", "context": ["shaftSpeed"],
            "inputs": ["vibrationBand1x", "vibrationBand2x", "vibrationBandBpfo", "vibrationBandHigh"],
            "train_rows": 90}
    p, plant = plant_platform([spec], scenario=[])
    m = plant.machine_ids[0]
    sweep = {0: (m, "setSpeed", 1500.0), 30: (m, "setSpeed", 1200.0), 60: (m, "setSpeed", 900.0),
             90: (m, "setSpeed", 1000.0), 120: (m, "stop", None), 140: (m, "start", None),
             170: (m, "setSpeed", 1400.0), 200: (m, "setSpeed", 2500.0)}
    run(p, plant, range(230), sweep)
    version = p.analytics_registry.versions("bearing-anomaly", f"{m}-de")[0]
    learned = version.metrics["operating_point"]["exponents"]
    assert learned["vibrationBand1x"]["shaftSpeed"] == pytest.approx(2.0, abs=0.15)
    assert learned["vibrationBandBpfo"]["shaftSpeed"] == pytest.approx(1.5, abs=0.15)
    s = scores(p, f"{m}-de")
    assert s.size > 50 and s.max() < 1.0
    # 2500 rpm was never seen in training and nothing was declared: not judged, and the twin says so
    scoring = p.twins.get(f"{m}-de").reported["analytics"]["bearing-anomaly"]["scoring"]
    assert scoring.startswith("suspended: operating point not learned (shaftSpeed 2496; trained at 898"), scoring


def test_operating_point_unit():
    rng = np.random.default_rng(1)
    C = np.r_[np.full(40, 1500.0), np.full(40, 1000.0)][:, None]
    X = np.c_[0.1 * (C[:, 0] / 1500) ** 2, 20.0 + 0.01 * C[:, 0]] * np.exp(0.01 * rng.standard_normal((80, 2)))
    op = OperatingPoint(["speed"], names=["band", "temp"]).fit(X, C)
    assert op.coef_[0, 0] == pytest.approx(2.0, abs=0.1)
    Xn = op.normalise(X, C)
    assert Xn[:, 0].std() / Xn[:, 0].mean() < 0.02  # the speed's effect is gone, the noise is left
    # one speed only: the declared exponent is kept, an undeclared one stays 0 (nothing to learn from)
    one = OperatingPoint(["speed"], names=["band", "temp"], exponents={"band": {"speed": 2.0}})
    one.fit(X[:40], C[:40])
    assert one.coef_[0, 0] == pytest.approx(2.0, abs=1e-3) and abs(one.coef_[1, 0]) < 1e-2
    assert one.status(np.array([[1400.0], [600.0], [100.0]])).tolist() == ["ok", "unlearned", "stopped"]
    declared = OperatingPoint(["speed"], names=["band"], exponents={"band": {"speed": 2.0}}).fit(X[:40, :1], C[:40])
    assert declared.status(np.array([[600.0], [3000.0]])).tolist() == ["ok", "ok"]  # physics extrapolates
    with pytest.raises(ValueError, match="not one of the inputs"):
        parse_exponents({"nope": 1.0}, ["band"], ["speed"])


def test_context_configuration_errors_name_the_field():
    base = {"name": "a", "model": BEARING, "method": "mewma", "inputs": ["vibrationBand1x", "vibrationBandBpfo"]}
    with pytest.raises(Invalid, match="both an input and a context input"):
        parse_specs([{**base, "context": ["vibrationBand1x"]}])
    with pytest.raises(Invalid, match="need context inputs"):
        parse_specs([{**base, "params": {"exponents": {"vibrationBand1x": 2}}}])
    with pytest.raises(Invalid, match="not one of the inputs"):
        parse_specs([{**base, "context": ["shaftSpeed"], "params": {"exponents": {"temperature": 2}}}])
    with pytest.raises(Invalid, match="not rul-fleet"):
        parse_specs([{**base, "method": "rul-fleet", "context": ["shaftSpeed"]}])
