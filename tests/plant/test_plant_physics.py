"""Behaviour of the simulated plant: physics, faults, commands, reproducibility (pure, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from tvilling.core.errors import Invalid
from tvilling.plant import Injection, Plant
from tvilling.plant.plant import MODEL_SET
from tvilling.plant.signals import COL

NOW = 1_767_225_600_000


def run(plant: Plant, steps: int, dt: float = 1.0) -> list[dict[str, dict[str, object]]]:
    return [plant.step(dt, now_ms=NOW + k * 1000).twin_values() for k in range(steps)]


def val(frames: list[dict[str, dict[str, object]]], twin: str, path: str) -> np.ndarray:
    return np.array([f[twin].get(path, np.nan) if twin in f else np.nan for f in frames], dtype=float)


def quiet(machines: int = 2, seed: int = 1, speed: float = 60.0) -> Plant:
    return Plant(machines=machines, seed=seed, speed=speed, scenario=None)


def test_speed_up_raises_current_at_once_and_temperature_with_a_first_order_lag() -> None:
    plant = quiet(speed=1.0)  # real time: one step = one plant second
    before = run(plant, 10, dt=10.0)
    plant.set_speed(1, 2400.0)
    after = run(plant, 400, dt=10.0)  # 4000 s, a bit over 3 motor time constants (1200 s)
    cur0, cur1 = val(before, "line-1-m01", "motor.current").mean(), val(after[-20:], "line-1-m01",
                                                                                "motor.current").mean()
    assert cur1 > cur0 * 1.3  # load ∝ speed (plus the no-load current)
    assert val(after[1:3], "line-1-m01", "motor.current").mean() > cur0 * 1.3  # current follows within seconds
    temp = val(after, "line-1-m01", "motor.temperature")
    t0, t_end = val(before, "line-1-m01", "motor.temperature").mean(), temp[-20:].mean()
    assert t_end > t0 + 10
    # a first-order lag: after one time constant (1200 s = 120 steps) about 63 % of the rise, not all of it
    share = (temp[115:125].mean() - t0) / (t_end - t0)
    assert 0.5 < share < 0.8, share
    assert (np.diff(temp[:300]) > -1.0).all()  # no overshoot or oscillation beyond noise
    # the other machine is untouched
    assert abs(val(after[-20:], "line-1-m02", "motor.temperature").mean()
               - val(before, "line-1-m02", "motor.temperature").mean()) < 2


def test_wear_grows_faster_under_a_higher_load() -> None:
    plant = quiet(machines=2, speed=3600.0)  # a plant hour per step
    plant.m.torque_mean[:] = [0.5, 1.0]
    plant.m.torque[:] = [0.5, 1.0]
    w0 = plant.m.wear.copy()
    run(plant, 200)
    grown = (plant.m.wear - w0).mean(axis=1)
    assert grown[0] > 0 and grown[1] > 4 * grown[0]  # wear ∝ torque³: (1.0/0.5)³ = 8
    assert plant.m.state.tolist() == [1, 1]


def test_bearing_defect_raises_vibration_until_failure_then_the_machine_stops() -> None:
    plant = Plant(machines=3, seed=3, speed=60.0,
                  scenario=[Injection(machine=2, fault="bearing_defect", at=300.0, bearing="de")])
    frames = run(plant, 900)
    vib = val(frames, "line-1-m02-de", "vibration")
    healthy = val(frames, "line-1-m01-de", "vibration")
    assert vib[:5].mean() < 1.3 * healthy[:5].mean()
    assert vib[150] > 2.0 * vib[:5].mean()  # clearly visible within 2.5 wall minutes at speed 60
    assert val(frames, "line-1-m02-de", "vibrationBandBpfo")[150] > 4 * val(frames, "line-1-m01-de",
                                                                               "vibrationBandBpfo")[150]
    states = [f["line-1-m02"]["state"] for f in frames]
    failed_at = states.index("fault")
    assert 300 < failed_at < 800  # fails some minutes later
    assert val(frames, "line-1-m02", "speed")[failed_at + 30] < 1.0
    assert all(s == "running" for s in (f["line-1-m01"]["state"] for f in frames))
    assert frames[-1]["line-1"]["throughput"] == 0.0  # a series line stops with its machine
    assert plant.handle("line-1-m02", "start").status == 409


def test_reducing_speed_slows_the_defect_and_lowers_vibration_and_temperature() -> None:
    scenario = [Injection(machine=1, fault="bearing_defect", at=0.0)]
    fast = Plant(machines=1, seed=5, speed=60.0, scenario=scenario)
    slow = Plant(machines=1, seed=5, speed=60.0, scenario=scenario)
    run(fast, 150)
    run(slow, 150)
    slow.set_speed(1, 1000.0)
    f_frames, s_frames = run(fast, 200), run(slow, 200)
    assert slow.m.defect[0, 0] < 0.75 * fast.m.defect[0, 0]
    assert val(s_frames[-20:], "line-1-m01-de", "vibration").mean() < 0.6 * val(
        f_frames[-20:], "line-1-m01-de", "vibration").mean()
    assert val(s_frames[-20:], "line-1-m01-de", "temperature").mean() < val(
        f_frames[-20:], "line-1-m01-de", "temperature").mean() - 5


def test_maintenance_resets_wear_and_clears_a_fault() -> None:
    plant = Plant(machines=1, seed=2, speed=600.0, scenario=[Injection(machine=1, fault="bearing_defect")])
    frames = run(plant, 200)
    assert frames[-1]["line-1-m01"]["state"] == "fault"
    answer = plant.handle("line-1-m01", "maintenanceDone")
    assert answer.status == 200 and answer.payload["state"] == "stopped"
    assert plant.state_of(1)["damage"] == {"de": 0.0, "nde": 0.0}
    assert plant.handle("line-1-m01", "start").payload["state"] == "running"
    after = run(plant, 10, dt=0.1)
    assert abs(val(after, "line-1-m01", "speed")[-1] - 1500) < 20
    assert val(after, "line-1-m01-de", "vibration")[-1] < 0.3


def test_stop_brings_speed_to_zero_and_start_back() -> None:
    plant = quiet(speed=1.0)
    assert plant.handle("line-1-m01", "stop").payload == {"accepted": True, "state": "stopped",
                                                          "speedSetpoint": 1500.0}
    frames = run(plant, 60)
    speed = val(frames, "line-1-m01", "speed")
    assert speed[0] < 1500 and speed[-1] == 0.0 and (np.diff(speed) <= 1e-9).all()  # coasts down
    assert frames[-1]["line-1-m01"]["throughput"] == 0.0
    assert frames[-1]["line-1-m01"]["motor.current"] == 0.0
    assert "quality" not in frames[-1]["line-1-m01"]
    assert frames[-1]["line-1"]["machinesRunning"] == 1
    plant.start(1)
    assert val(run(plant, 30), "line-1-m01", "speed")[-1] > 1490


def test_same_seed_same_run_and_another_seed_differs() -> None:
    def trace(seed: int) -> np.ndarray:
        plant = Plant(machines=4, seed=seed, speed=60.0)
        rows = []
        for k in range(120):
            frame = plant.step(1.0, now_ms=NOW)
            if k == 50:
                plant.set_speed(3, 1200.0)
            rows.append(frame.values)
        return np.stack(rows)

    a, b, c = trace(11), trace(11), trace(12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, equal_nan=True)


def test_dropout_makes_values_missing() -> None:
    plant = quiet(machines=2)
    plant.inject(1, "sensor_dropout", severity=0.5, signal="de:vibration")
    plant.inject(2, "sensor_dropout", severity=1.0)
    frames = run(plant, 200)
    missing = np.isnan(val(frames, "line-1-m01-de", "vibration")).mean()
    assert 0.35 < missing < 0.65
    assert not np.isnan(val(frames, "line-1-m01-de", "temperature")).any()
    assert all("line-1-m02" not in f and "line-1-m02-de" not in f for f in frames)  # a silent device


def test_sensor_drift_bias_grows_with_plant_time() -> None:
    plant = quiet(machines=2, speed=3600.0)
    plant.inject(1, "sensor_drift", growth=2.0)  # the DE bearing temperature, +2 K per plant hour
    frames = run(plant, 10)
    drifted = val(frames, "line-1-m01-de", "temperature") - val(frames, "line-1-m01-nde", "temperature")
    assert drifted[-1] - drifted[0] == pytest.approx(18.0, abs=1.5)
    assert plant.m.bearing_temp[0, 0] == pytest.approx(plant.m.bearing_temp[0, 1], abs=1.0)  # truth unchanged


def test_imbalance_misalignment_overheating_show_in_their_signals() -> None:
    plant = quiet(machines=4)
    plant.inject(2, "imbalance", severity=0.5)
    plant.inject(3, "misalignment", severity=0.5)
    plant.inject(4, "overheating", severity=0.8)
    frames = run(plant, 60)[-10:]

    def mean(twin: str, path: str) -> float:
        return float(val(frames, twin, path).mean())

    assert mean("line-1-m02-de", "vibrationBand1x") > 4 * mean("line-1-m01-de", "vibrationBand1x")
    assert mean("line-1-m03-de", "vibrationBand2x") > 5 * mean("line-1-m01-de", "vibrationBand2x")
    assert mean("line-1-m04", "motor.temperature") > mean("line-1-m01", "motor.temperature") + 10


def test_desired_speed_setpoint_is_obeyed_and_bad_requests_refused() -> None:
    plant = quiet()
    assert plant.apply_desired("line-1-m02", {"speedSetpoint": 900.0}).status == 200  # type: ignore[union-attr]
    assert plant.apply_desired("line-1-m02", {"other": 1}) is None
    assert val(run(plant, 5), "line-1-m02", "speedSetpoint")[-1] == 900.0
    assert plant.handle("line-1-m02", "setSpeed", -5).status == 400
    assert plant.handle("line-1-m02", "setSpeed", "fast").status == 400
    assert plant.handle("line-1-m02-de", "stop").status == 404
    assert plant.handle("line-1-m09", "stop").status == 404


def test_twins_follow_the_contracts_and_import_with_the_shipped_models() -> None:
    from tvilling.ingest.specs import specs_for
    from tvilling.models import ModelSet, parse_models
    from tvilling.models.builtin import builtin_documents
    from tvilling.models.validate import validate_section

    plant = quiet(machines=2)
    twins = plant.twins()
    ids = [t["id"] for t in twins]
    assert ids[-1] == "line-1" and "line-1-m02-nde" in ids and "line-1-m01-spindle" in ids
    line = twins[-1]
    assert [r["target"] for r in line["relationships"]] == ["line-1-m01", "line-1-m02"]
    machine = next(t for t in twins if t["id"] == "line-1-m01")
    assert {(r["name"], r["target"]) for r in machine["relationships"]} == {
        ("hasBearing", "line-1-m01-de"), ("hasBearing", "line-1-m01-nde"), ("hasSpindle", "line-1-m01-spindle")}
    models = ModelSet(parse_models(builtin_documents(MODEL_SET)))
    values = plant.step(1.0, now_ms=NOW).twin_values()
    for twin in twins:  # every value the plant reports is one the ingest pipeline knows for the model
        model = models.resolve(twin["model"])
        specs = specs_for(models, model)
        assert set(values[twin["id"]]) <= set(specs), (twin["id"], set(values[twin["id"]]) - set(specs))
        plain = {k: v for k, v in values[twin["id"]].items() if "." not in k}
        validate_section(model, models, twin["id"], "reported", {**plain, **twin.get("reported", {})})


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(Invalid):
        Plant(machines=0)
    with pytest.raises(Invalid):
        Plant(machines=2, scenario=[Injection(machine=3, fault="imbalance")])
    with pytest.raises(Invalid):
        Plant(machines=2).speed = 0
    with pytest.raises(Invalid):
        Injection(machine=1, fault="sensor_drift", signal="de:colour")


def test_a_thousand_machines_step_fast() -> None:
    plant = Plant(machines=1000, seed=1, speed=60.0)
    frame = plant.step(1.0)
    assert frame.values.shape == (1000, len(COL))
    assert len(frame.payloads()) == 4001
