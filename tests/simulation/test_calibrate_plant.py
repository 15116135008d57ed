"""The acceptance test of calibration (issue 12, item 3) on the demo plant.

One machine of the simulated plant runs an hour with its sensor noise and its process load
wandering (the plant's own random walk), an operator changing its speed twice in each half hour:
900 rpm at minute 5, 1,500 at 18, 1,200 at 35, 900 at 48. The twin's machine model starts with its thermal and
vibration parameters 15–25 % off; calibrated on the first 30 minutes it must recover the plant's
true values within 5 % and predict the next 30 minutes, free-running, within nRMSE 5 %.

What is calibrated, and why:

* thermal: ``motorRise``, ``tauMotor`` (winding), ``bearingRiseSpeed``, ``tauBearing`` (bearings) —
  the speed change drives a transient of both lags, which fixes their rise and time constant;
* vibration: ``band1x``, ``band2x`` — the healthy machine's 1× and 2× bands, seen directly in their
  bands at two speeds.
  Why two speed changes per half hour: with one (900 rpm at minute 5 only) the winding's time
  constant is determined to ≈ ±3 % (its standard error), and some runs miss 5 % (seed 3: ``tauMotor``
  +4.5 %, motor temperature nRMSE 7.2 % on the held-out window); a second change brings it to ≈ ±1 %.
* the start values of what no sensor gives exactly: the temperatures at the window's start, and the
  bearings' wear (the high and BPFO bands depend on it through ``√D``: with wear assumed 0 the model
  would be far off).

Not calibrated: ``bandBpfo`` and ``defectBpfo`` (and ``bandHigh``/``defectHigh``): on a healthy
machine the damage ``D`` is nearly constant over an hour, so ``bandBpfo + defectBpfo·D`` is all the
one bearing's band shows — :func:`test_what_the_data_cannot_separate_shows_as_a_large_standard_error` fits them
anyway and finds the standard error and the correlation that say so. ``ndeShare``, ``imbalance``,
``misalignment`` and ``bearingRiseDamage`` act only through faults this healthy machine has not got.

On nRMSE: it is normalised by the measured range of the held-out window. For the vibration bands
the plant's 5 % log-normal sensor noise alone gives ≈ 5–8 % of the range a 900↔1,500 rpm change
covers (the plant's noise-free truth scores that against its own readings); the criterion < 5 %
is asserted on the outputs the twin monitors and the noise does not dominate — the temperatures,
the motor current and each bearing's overall vibration — and on every output the calibrated model
must score within 1.5 points of the plant's own noise-free truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tvilling.plant.physics import Params
from tvilling.plant.plant import Plant
from tvilling.plant.signals import COL, RUNNING
from tvilling.simulation.calibrate import Calibration, calibrate
from tvilling.simulation.calibrate_report import output_metrics
from tvilling.simulation.machine import MachineModel

STEP = 10.0  # s between readings
SCHEDULE = {5: 900.0, 18: 1500.0, 35: 1200.0, 48: 900.0}  # plant minute → speed setpoint (rpm)
TRUE = Params()  # the plant's constants
TRUTH = {"motorRise": TRUE.motor_rise, "tauMotor": TRUE.tau_motor, "bearingRiseSpeed": TRUE.bearing_rise_speed,
         "tauBearing": TRUE.tau_bearing, "band1x": TRUE.band_1x, "band2x": TRUE.band_2x}
OFF = {"motorRise": 1.2, "tauMotor": 0.8, "bearingRiseSpeed": 1.25, "tauBearing": 1.15, "band1x": 0.85,
       "band2x": 1.2}  # where the twin's model starts: 15–25 % off
START_STATES = ["motor.temperature", "de:temperature", "nde:temperature", "de:wear", "nde:wear"]
#: twin property → the plant's (part, signal) column
OUTPUTS = {"motor.temperature": ("", "motor.temperature"), "motor.current": ("", "motor.current"),
           **{f"{b}:{s}": (b, s) for b in ("de", "nde") for s in ("temperature", "vibration", "vibrationBand1x",
                                                                 "vibrationBand2x", "vibrationBandBpfo",
                                                                 "vibrationBandHigh")}}
MONITORED = ["motor.temperature", "de:temperature", "nde:temperature", "motor.current", "de:vibration",
             "nde:vibration"]


@dataclass
class PlantRun:
    t: np.ndarray
    inputs: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]  # the plant's noise-free values at the same instants
    wear: np.ndarray


def _noise_free(plant: Plant) -> dict[str, float]:
    m = plant.m
    b1, b2, bpfo, high = m.bands()
    floor = TRUE.band_floor if m.speed[0] > 1.0 else 0.004
    out = {"motor.temperature": m.motor_temp[0], "motor.current": m.current[0]}
    for k, b in enumerate(("de", "nde")):
        bands = np.array([b1[0, k], b2[0, k], bpfo[0, k], high[0, k]])
        out |= {f"{b}:temperature": m.bearing_temp[0, k], f"{b}:vibrationBand1x": bands[0],
                f"{b}:vibrationBand2x": bands[1], f"{b}:vibrationBandBpfo": bands[2],
                f"{b}:vibrationBandHigh": bands[3], f"{b}:vibration": np.sqrt((bands**2).sum() + floor**2)}
    return {k: float(v) for k, v in out.items()}


def plant_run(seed: int, minutes: float = 60.0) -> PlantRun:
    """One machine's readings every 10 s, as the twin's history holds them.

    The plant reports the setpoint and load in effect over the step just ended; the model holds an input
    from its time stamp to the next, so each input value is stamped at the start of the step it drove."""
    plant = Plant(machines=1, seed=seed, speed=1.0, scenario=None, params=TRUE)
    wear = plant.m.wear[0].copy()
    rows, times, truths, running = [], [], [], []
    for k in range(int(minutes * 60 / STEP) + 1):
        minute = k * STEP / 60.0
        if minute in SCHEDULE:
            assert plant.handle("line-1-m01", "setSpeed", SCHEDULE[minute]).ok
        frame = plant.step(STEP)
        rows.append(frame.values[0])
        times.append(frame.plant_time)
        truths.append(_noise_free(plant))
        running.append(float(frame.states[0] == RUNNING))
    values = np.array(rows)
    ahead = values[1:]  # the input in effect over the step after each time stamp
    inputs = {"speedSetpoint": np.r_[ahead[:, COL["", "speedSetpoint"]], np.nan],
              "spindle:load": np.r_[ahead[:, COL["spindle", "load"]], np.nan],
              "running": np.r_[running[1:], np.nan]}
    measured = {name: values[:, COL[col]] for name, col in OUTPUTS.items()}
    truth = {name: np.array([row[name] for row in truths]) for name in OUTPUTS}
    return PlantRun(np.array(times), inputs, measured, truth, wear)


def first_readings(run: PlantRun) -> dict[str, float]:
    """The twin's start state: the first readings (speed and temperatures); wear unknown (0)."""
    return {name: float(run.measured[name][0]) for name in ("motor.temperature", "de:temperature",
                                                            "nde:temperature")}


def calibrated(run: PlantRun) -> Calibration:
    t0 = float(run.t[0])
    return calibrate(MachineModel(), run.t, run.inputs, run.measured, list(TRUTH),
                     values={name: TRUTH[name] * OFF[name] for name in TRUTH},
                     start_values=first_readings(run) | {"speed": TRUE.nominal_rpm}, start_states=START_STATES,
                     window=(t0, t0 + 1800.0), holdout=(t0 + 1800.0, t0 + 3600.0))


@pytest.fixture(scope="module")
def run() -> PlantRun:
    return plant_run(seed=11)


@pytest.fixture(scope="module")
def fit(run: PlantRun) -> Calibration:
    return calibrated(run)


def test_calibration_recovers_the_plants_true_thermal_and_vibration_parameters_within_5_percent(
        fit: Calibration) -> None:
    assert fit.converged
    for name, true in TRUTH.items():
        e = fit.estimate(name)
        assert e.initial == pytest.approx(true * OFF[name])
        assert abs(e.initial / true - 1.0) > 0.149  # it did start off
        assert e.estimate == pytest.approx(true, rel=0.05), name
        assert e.relative_stderr < 0.05 and not e.at_bound, e  # and the data determine it
        assert abs(e.estimate - true) < 4.0 * e.stderr, e  # the standard error is honest
    assert 0.8 < fit.residual_sd < 1.5  # residuals the size of the sensors' noise: nothing unmodelled is left


def test_the_start_state_found_matches_the_plants(fit: Calibration, run: PlantRun) -> None:
    for k, b in enumerate(("de", "nde")):
        assert fit.value(f"{b}:wear") == pytest.approx(run.wear[k], rel=0.05)
    assert fit.value("motor.temperature") == pytest.approx(run.truth["motor.temperature"][0], abs=0.3)


def test_the_calibrated_model_predicts_the_next_30_minutes_within_nrmse_5_percent(fit: Calibration,
                                                                                     run: PlantRun) -> None:
    assert fit.validation is not None and fit.holdout is not None
    start = int(np.searchsorted(run.t, fit.holdout[0]))
    for name in MONITORED:
        assert fit.validation[name]["nrmse"] < 0.05, (name, fit.validation[name])
        assert fit.validation[name]["r2"] > 0.95, name
    for name in OUTPUTS:
        floor = output_metrics(run.measured[name][start:], run.truth[name][start:])["nrmse"]
        # within 1.5 points of it: the model is driven by the *measured* load (1 % noise) and runs free
        assert fit.validation[name]["nrmse"] < floor + 0.015, (name, fit.validation[name]["nrmse"], floor)
        # and against the plant's noise-free truth, the model's own error is small
        model_error = output_metrics(run.truth[name][start:], fit.simulated[name][start:])["nrmse"]
        assert model_error < 0.03, (name, model_error)


def test_the_uncalibrated_model_does_not_pass_the_same_validation(run: PlantRun) -> None:
    """The check has teeth: the twin's model as it was before (parameters off, wear taken as 0) fails it."""
    model = MachineModel()
    runs = model.start(1, {name: TRUTH[name] * OFF[name] for name in TRUTH}, first_readings(run))
    start = int(np.searchsorted(run.t, run.t[0] + 1800.0))
    predicted: dict[str, list[float]] = {name: [np.nan] for name in MONITORED}
    for k in range(len(run.t) - 1):
        y = model.step(runs, float(run.t[k + 1] - run.t[k]), {name: s[k] for name, s in run.inputs.items()})
        for name in MONITORED:
            predicted[name].append(float(y[name][0]))
    nrmse = {name: output_metrics(run.measured[name][start:], np.array(predicted[name])[start:])["nrmse"]
             for name in MONITORED}
    assert min(nrmse[name] for name in ("motor.temperature", "de:vibration", "nde:vibration")) > 0.1, nrmse


def test_the_calibration_result_is_a_version_with_a_plot(fit: Calibration, tmp_path: object) -> None:
    version = fit.to_version()
    assert version["params"]["parameters"]["tauMotor"] == fit.value("tauMotor")
    assert version["metrics"]["window"] == "holdout"
    assert version["metrics"]["outputs"]["motor.temperature"]["r2"] > 0.95
    pytest.importorskip("matplotlib")
    from pathlib import Path

    path = fit.plot(Path(str(tmp_path)) / "machine.png", outputs=MONITORED)
    assert path.stat().st_size > 20_000


def test_what_the_data_cannot_separate_shows_as_a_large_standard_error(run: PlantRun) -> None:
    """``bandBpfo`` and ``defectBpfo`` enter a bearing's BPFO band as ``bandBpfo + defectBpfo·D`` with ``D``
    (the wear, known here from the plant) nearly constant over the window: from one bearing the fit cannot
    tell them apart. Their standard errors dwarf the estimates and their correlation is ≈ −1, while their
    combination fits. (Both bearings together would separate them, through their different wear.)"""
    t0 = float(run.t[0])
    bpfo = {"de:vibrationBandBpfo": run.measured["de:vibrationBandBpfo"]}
    fit = calibrate(MachineModel(), run.t, run.inputs, bpfo, ["bandBpfo", "defectBpfo"],
                    values={"bandBpfo": 0.036, "defectBpfo": 2.0},
                    start_values={"de:wear": run.wear[0], "nde:wear": run.wear[1], "speed": TRUE.nominal_rpm},
                    window=(t0, t0 + 1800.0))
    for name in ("bandBpfo", "defectBpfo"):
        assert fit.estimate(name).relative_stderr > 1.0, fit.estimate(name)
    assert fit.correlation[0][1] is not None and fit.correlation[0][1] < -0.99
    assert 0.8 < fit.residual_sd < 1.5  # the band itself is fitted as well as the noise allows
    # on its own, with defectBpfo held at its true value, bandBpfo is found
    alone = calibrate(MachineModel(), run.t, run.inputs, bpfo, ["bandBpfo"], values={"bandBpfo": 0.036},
                      start_values={"de:wear": run.wear[0], "nde:wear": run.wear[1], "speed": TRUE.nominal_rpm},
                      window=(t0, t0 + 1800.0))
    assert alone.value("bandBpfo") == pytest.approx(TRUE.band_bpfo, rel=0.05)
    assert alone.estimate("bandBpfo").relative_stderr < 0.02


@pytest.mark.parametrize("seed", [3, 29])
def test_the_recovery_holds_for_other_plant_runs(seed: int) -> None:
    """Other noise, other load wander, other wear: still within 5 %, and the monitored outputs within 5 %."""
    fit = calibrated(plant_run(seed))
    for name, true in TRUTH.items():
        assert fit.value(name) == pytest.approx(true, rel=0.05), (seed, name)
    assert fit.validation is not None
    for name in MONITORED:
        assert fit.validation[name]["nrmse"] < 0.05, (seed, name, fit.validation[name])
