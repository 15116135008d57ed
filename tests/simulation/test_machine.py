"""The machine model against the simulated plant: the same inputs, parameters and start give the same
trajectories (noise off); changed parameters make them disagree."""

from __future__ import annotations

import doctest
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import tvilling.simulation.machine as machine_module
from tvilling.core.errors import Invalid
from tvilling.plant.faults import Injection
from tvilling.plant.physics import Params
from tvilling.plant.plant import Plant
from tvilling.plant.signals import COL, FAULT, RUNNING
from tvilling.simulation.machine import MachineModel

#: the plant's noise-free truth and the model agree to this (they discretise the same equations)
RTOL, ATOL = 1e-6, 1e-9
STEP = 60.0  # plant seconds a step
QUIET = Params(torque_sigma=0.0)  # the process load holds still: the model is given it as an input


def model_parameters(p: Params) -> dict[str, float]:
    """The plant's constants under the model's parameter names."""
    return {
        "nominalSpeed": p.nominal_rpm, "tauSpeed": p.tau_speed, "noLoadCurrent": p.noload_current,
        "ratedCurrent": p.rated_current, "motorRise": p.motor_rise, "tauMotor": p.tau_motor,
        "bearingRiseSpeed": p.bearing_rise_speed, "bearingRiseDamage": p.bearing_rise_damage,
        "bearingRiseMisalignment": p.bearing_rise_misalignment, "tauBearing": p.tau_bearing,
        "torqueBase": p.torque_base, "wearLife": p.wear_life_h, "defectRate": p.defect_rate_h,
        "ratePerHour": p.rate_per_h, "band1x": p.band_1x, "band2x": p.band_2x, "bandBpfo": p.band_bpfo,
        "bandHigh": p.band_high, "bandFloor": p.band_floor, "defectBpfo": p.defect_bpfo_g,
        "defectHigh": p.defect_high_g, "coupling": p.coupling, "ndeShare": p.nde_share,
        "vibrationOk": p.vibration_ok,
    }


def plant_states(plant: Plant) -> dict[str, np.ndarray]:
    m = plant.m
    return {"speed": m.speed.copy(), "motor.temperature": m.motor_temp.copy(),
            "de:temperature": m.bearing_temp[:, 0].copy(), "nde:temperature": m.bearing_temp[:, 1].copy(),
            "de:wear": m.wear[:, 0].copy(), "nde:wear": m.wear[:, 1].copy(),
            "de:defect": m.defect[:, 0].copy(), "nde:defect": m.defect[:, 1].copy(),
            "operatingHours": m.operating_h.copy(), "fault": (m.state == FAULT).astype(float)}


def plant_inputs(plant: Plant) -> dict[str, np.ndarray]:
    m = plant.m
    return {"speedSetpoint": m.setpoint.copy(), "spindle:load": 100.0 * m.torque,
            "running": (m.state == RUNNING).astype(float), "ambient": np.full(plant.n, m.p.ambient)}


def plant_truth(plant: Plant) -> dict[str, np.ndarray]:
    """What the plant's state says, noise-free, under the model's output names."""
    m = plant.m
    b1, b2, bpfo, high = m.bands()
    out = {"speed": m.speed, "motor.current": m.current, "motor.load": m.load, "motor.temperature": m.motor_temp,
           "operatingHours": m.operating_h}
    for k, b in enumerate(("de", "nde")):
        out |= {f"{b}:temperature": m.bearing_temp[:, k], f"{b}:vibrationBand1x": b1[:, k],
                f"{b}:vibrationBand2x": b2[:, k], f"{b}:vibrationBandBpfo": bpfo[:, k],
                f"{b}:vibrationBandHigh": high[:, k]}
    return out


#: plant minute → what happens: machine 1 slows to 900 rpm at 2 h; machine 3 stops at 3 h and starts at 4 h
COMMANDS: dict[int, list[tuple[str, str, Any]]] = {
    120: [("line-1-m01", "setSpeed", 900.0)], 180: [("line-1-m03", "stop", None)],
    240: [("line-1-m03", "start", None)],
}


DEFECT_AT = 1800.0  # plant seconds: machine 2's drive-end bearing defect starts
#: faults present from the first step: on the plant as injections, in the model as parameters
FAULTS_FROM_THE_START = [Injection(machine=1, fault="imbalance", severity=0.2), Injection(machine=1,
                         fault="overheating", severity=0.5), Injection(machine=3, fault="misalignment", severity=0.3)]
FAULT_PARAMETERS = {"imbalance": np.array([0.2, 0.0, 0.0]), "overheat": np.array([0.5, 0.0, 0.0]),
                    "misalignment": np.array([0.0, 0.0, 0.3])}


def _twin_run(params: Params, model_params: dict[str, Any], hours: float, *, plant_params: Params = QUIET,
              ) -> tuple[Plant, MachineModel, list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Drive the plant and the model side by side; the plant's truth and the model's outputs per step."""
    plant = Plant(machines=3, seed=5, speed=1.0, params=plant_params, scenario=[
        Injection(machine=2, fault="bearing_defect", at=DEFECT_AT, severity=1.0, growth=1.0, bearing="de"),
        *FAULTS_FROM_THE_START])
    model = MachineModel()
    runs = model.start(3, model_parameters(params) | FAULT_PARAMETERS | model_params, plant_states(plant))
    truths, predictions = [], []
    for k in range(int(hours * 60)):
        for twin, command, request in COMMANDS.get(k, []):
            assert plant.handle(twin, command, request).ok
        if plant.plant_time < DEFECT_AT <= plant.plant_time + STEP:  # the plant injects it in this step
            model.set_parameters(runs, {"de:defectSeed": np.array([0.0, plant.params.defect_offset, 0.0])})
        inputs = plant_inputs(plant)
        frame = plant.step(STEP)
        predictions.append(model.step(runs, STEP, inputs) | model.state_values(runs))
        truths.append(plant_truth(plant) | plant_states(plant) | {"measured": frame.values,
                                                                 "state": frame.states})
    return plant, model, truths, predictions


def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(machine_module)
    assert result.attempted > 0 and result.failed == 0


def test_the_model_follows_the_plant_given_the_same_inputs_parameters_and_start() -> None:
    """12 plant hours at 1-minute steps over a speed change, a stop and start, imbalance, overheating,
    misalignment, and a bearing defect that grows until machine 2 fails: every state and every noise-free
    output agree to 1e-6 (relative)."""
    plant, _, truths, predictions = _twin_run(QUIET, {}, hours=12.0)
    assert plant.m.state[1] == FAULT and plant.m.state[0] == RUNNING  # the run covered a failure
    compared = 0
    for truth, prediction in zip(truths, predictions, strict=True):
        for name, value in truth.items():
            if name in prediction:
                np.testing.assert_allclose(prediction[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
                compared += 1
    assert compared == len(truths) * 20  # 15 outputs and 5 more states
    failed_at = next(k for k, t in enumerate(truths) if t["state"][1] == FAULT)
    assert next(k for k, p in enumerate(predictions) if p["fault"][1] == 1.0) == failed_at
    assert 8 * 60 < failed_at < 11 * 60  # "fails the bearing after ~10 h" at nominal speed


def test_the_models_outputs_match_the_plants_measurements_within_their_noise() -> None:
    """The plant's sensors add noise the model does not predict: the residuals stay within it."""
    _, _, truths, predictions = _twin_run(QUIET, {}, hours=3.0)
    measured = np.array([t["measured"] for t in truths])  # steps × machines × signals
    for name, column, tolerance in [("motor.temperature", COL["", "motor.temperature"], 0.15 * 5),
                                    ("throughput", COL["", "throughput"], 0.8 * 5),
                                    ("de:temperature", COL["de", "temperature"], 0.15 * 5),
                                    ("motor.current", COL["", "motor.current"], 20 * 0.01 * 5)]:
        predicted = np.array([p[name] for p in predictions])
        residual = np.abs(predicted - measured[:, :, column])
        assert np.nanmax(residual) < tolerance, name
    vibration = np.array([p["de:vibration"] for p in predictions])
    ratio = measured[:, :, COL["de", "vibration"]] / vibration  # log-normal band noise, σ = 5 %
    assert np.abs(np.log(ratio)).max() < 0.25
    assert np.abs(np.log(ratio)).mean() < 0.05


def test_the_model_starts_warm_like_the_plant() -> None:
    plant = Plant(machines=4, seed=2, speed=1.0, params=QUIET, scenario=None)
    model = MachineModel()
    states = plant_states(plant)
    start = model.steady_start(4, plant_inputs(plant), model_parameters(QUIET),
                               {k: states[k] for k in ("de:wear", "nde:wear", "operatingHours")})
    for name in ("speed", "motor.temperature", "de:temperature", "nde:temperature"):
        np.testing.assert_allclose(start[name], states[name], rtol=RTOL, err_msg=name)


def test_changed_parameters_make_the_model_and_the_plant_disagree() -> None:
    """A twin whose winding cools better and whose bearing defect grows faster than the plant's: the
    motor temperature and the drive-end vibration of the defective machine part far beyond the tolerance."""
    _, _, truths, predictions = _twin_run(QUIET, {"motorRise": 45.0, "defectRate": 0.3}, hours=6.0)
    motor = np.array([p["motor.temperature"] - t["motor.temperature"] for t, p in zip(truths, predictions,
                                                                                      strict=True)])
    assert motor[-1].max() < -3.0  # 10 K less rise at rated current: ≥ 3 K cooler at each machine's load
    bpfo = np.array([p["de:vibrationBandBpfo"][1] / t["de:vibrationBandBpfo"][1]
                     for t, p in zip(truths, predictions, strict=True)])
    assert bpfo[-1] > 1.3 and bpfo[20] == pytest.approx(1.0, rel=RTOL)  # same until the defect starts


def test_slowing_down_slows_the_defect_and_stopping_stops_the_wear() -> None:
    model = MachineModel()
    inputs = {"speedSetpoint": np.array([1500.0, 900.0, 1500.0]), "spindle:load": 75.0,
              "running": np.array([1.0, 1.0, 0.0])}
    runs = model.start(3, {"de:defectSeed": 0.15}, model.steady_start(3, inputs))
    for _ in range(5 * 60):
        y = model.step(runs, 60.0, inputs)
    x = model.state_values(runs)
    assert x["de:defect"][0] > 2 * x["de:defect"][1] > 0.0  # grows like speed² · load²
    assert x["de:wear"][2] == 0.0 and x["operatingHours"].tolist() == pytest.approx([5.0, 5.0, 0.0])
    assert y["throughput"][2] == 0.0 and np.isnan(y["quality"][2]) and y["speed"][2] == 0.0
    assert y["throughput"][1] == pytest.approx(120.0 * 900 / 1500)


def test_a_maintenance_action_resets_wear_and_the_fault() -> None:
    model = MachineModel()
    runs = model.start(2, {"de:defectSeed": 0.15, "defectRate": 2.0})
    inputs = {"speedSetpoint": 1500.0, "spindle:load": 75.0}
    for _ in range(3 * 60):
        y = model.step(runs, 60.0, inputs)
    assert model.state_values(runs)["fault"].tolist() == [1.0, 1.0] and y["speed"].max() == 0.0
    model.set_states(runs, {"fault": 0.0, "de:wear": 0.0, "de:defect": 0.0, "operatingHours": 0.0},
                     where=np.array([True, False]))
    model.set_parameters(runs, {"de:defectSeed": 0.0}, where=np.array([True, False]))
    for _ in range(10):
        y = model.step(runs, 60.0, inputs)
    assert y["speed"][0] == pytest.approx(1500.0) and y["speed"][1] == 0.0
    assert y["de:vibrationBandBpfo"][0] < 0.05


def test_parameters_out_of_bounds_are_refused_naming_them() -> None:
    with pytest.raises(Invalid, match=r"parameter 'tauMotor' = 0 is below its lower bound 10"):
        MachineModel().start(2, {"tauMotor": 0.0})
    with pytest.raises(Invalid, match=r"no parameter 'tau_motor'"):
        MachineModel().start(2, {"tau_motor": 1200.0})
    runs = MachineModel().start(1)
    with pytest.raises(Invalid, match=r"input 'speedSetpoint' is missing"):
        MachineModel().step(runs, 60.0, {"spindle:load": 75.0})


def test_the_plant_parameters_differ_from_the_models_when_the_plant_is_built_otherwise() -> None:
    """The model's defaults are its own: a plant built with other constants is matched only after the
    model is given (or calibrated to) them."""
    other = replace(QUIET, tau_motor=600.0, motor_rise=70.0)
    _, _, truths, predictions = _twin_run(QUIET, {}, hours=4.0, plant_params=other)
    gap = max(np.abs(p["motor.temperature"] - t["motor.temperature"]).max()
              for t, p in zip(truths, predictions, strict=True))
    assert gap > 3.0
    _, _, truths, predictions = _twin_run(other, {}, hours=4.0, plant_params=other)
    for truth, prediction in zip(truths, predictions, strict=True):
        np.testing.assert_allclose(prediction["motor.temperature"], truth["motor.temperature"], rtol=RTOL)


def test_a_one_minute_model_step_follows_the_plant_stepped_every_ten_seconds() -> None:
    """The model's step is exact for held inputs, not a copy of the plant's stepping: against the plant
    advanced in 10-second steps, temperatures agree within 0.5 %, wear within 0.01 % and the vibration bands
    within 5 % (the defect starts up to a minute apart) over 6 hours."""
    plant = Plant(machines=3, seed=5, speed=1.0, params=QUIET, scenario=[
        Injection(machine=2, fault="bearing_defect", at=DEFECT_AT)])
    model = MachineModel()
    runs = model.start(3, model_parameters(QUIET), plant_states(plant))
    tolerances = {"motor.temperature": 5e-3, "de:temperature": 5e-3, "nde:temperature": 5e-3, "de:wear": 1e-4,
                  "nde:wear": 1e-4, "de:vibrationBandBpfo": 0.05, "de:vibrationBandHigh": 0.05,
                  "nde:vibrationBandHigh": 0.05, "speed": 1e-9, "motor.current": 1e-9}
    for k in range(6 * 60):
        for twin, command, request in COMMANDS.get(k, []):
            assert plant.handle(twin, command, request).ok
        if plant.plant_time < DEFECT_AT <= plant.plant_time + STEP:
            model.set_parameters(runs, {"de:defectSeed": np.array([0.0, plant.params.defect_offset, 0.0])})
        inputs = plant_inputs(plant)
        for _ in range(6):
            plant.step(10.0)
        prediction = model.step(runs, STEP, inputs) | model.state_values(runs)
        truth = plant_truth(plant) | plant_states(plant)
        for name, rtol in tolerances.items():
            np.testing.assert_allclose(prediction[name], truth[name], rtol=rtol, atol=1e-9, err_msg=f"{name} @ {k}")
    assert truth["de:vibrationBandBpfo"][1] > 3 * truth["de:vibrationBandBpfo"][0]  # the defect did grow
