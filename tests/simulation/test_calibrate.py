"""Calibration on a model with known parameters: recovery, standard errors, bounds, the report, bad input."""

from __future__ import annotations

import doctest
import json
import math
from typing import Any

import numpy as np
import pytest

import tvilling.simulation.calibrate as calibrate_module
import tvilling.simulation.calibrate_data as data_module
import tvilling.simulation.calibrate_report as report_module
from tvilling.core.errors import Invalid
from tvilling.simulation.calibrate import calibrate
from tvilling.simulation.ports import Signature, Variable
from tvilling.simulation.statespace import StateSpaceModel

STEP = 10.0
TRUTH = {"gain": 0.08, "tau": 600.0, "volts": 230.0}
NOISE = {"T": 0.1, "draw": 0.01}  # K, A: outputs in different units and of different sizes


class Heater(StateSpaceModel):
    """A heated tank: temperature lags towards ambient + gain·power; the heater draws power/volts."""

    name = "heater"
    signature = Signature(
        states=(Variable("T", "°C", default=20.0),),
        inputs=(Variable("power", "W"), Variable("ambient", "°C", default=20.0)),
        outputs=(Variable("T", "°C"), Variable("draw", "A")),
        parameters=(Variable("gain", "K/W", default=0.05, lower=0.0, upper=1.0),
                    Variable("tau", "s", default=300.0, lower=1.0, upper=1e4),
                    Variable("volts", "V", default=200.0, lower=1.0, upper=1000.0)))

    def update(self, t: float, dt: float, x: Any, u: Any, p: Any) -> dict[str, Any]:
        target = u["ambient"] + p["gain"] * u["power"]
        return {"T": target + (x["T"] - target) * np.exp(-dt / p["tau"])}

    def outputs(self, t: float, x: Any, u: Any, p: Any) -> dict[str, Any]:
        return {"T": x["T"], "draw": u["power"] / p["volts"]}


def heater_data(seed: int, minutes: float = 120.0, truth: dict[str, float] = TRUTH,
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A run of the heater at the true parameters, power stepping and wandering, with sensor noise.
    ``inputs[k]`` is held from ``t[k]`` to ``t[k+1]``; ``measured[k]`` is read at ``t[k]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, minutes * 60.0 + STEP / 2, STEP)
    power = np.where((t // 1800) % 2 == 0, 450.0, 150.0) + 20.0 * np.sin(t / 400.0)
    model = Heater()
    runs = model.start(1, truth, {"T": 50.0})
    temps, draws = [50.0], [power[0] / truth["volts"]]
    for k in range(len(t) - 1):
        y = model.step(runs, STEP, {"power": power[k]})
        temps.append(float(y["T"][0]))
        draws.append(float(y["draw"][0]))
    measured = {"T": np.array(temps) + NOISE["T"] * rng.standard_normal(len(t)),
                "draw": np.array(draws) + NOISE["draw"] * rng.standard_normal(len(t))}
    return t, {"power": power}, measured


START = {"gain": 0.06, "tau": 800.0, "volts": 260.0}  # 13–33 % off


def test_the_docstring_examples_run() -> None:
    for module in (calibrate_module, data_module, report_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_known_parameters_are_recovered_with_standard_errors_that_cover_them() -> None:
    t, inputs, measured = heater_data(seed=1)
    fit = calibrate(Heater(), t, inputs, measured, ["gain", "tau", "volts"], values=START,
                    start_values={"T": 50.0}, window=(0.0, 3600.0), holdout=(3600.0, 7200.0))
    assert fit.converged
    for name, true in TRUTH.items():
        e = fit.estimate(name)
        assert e.initial == START[name]
        assert abs(e.estimate - true) < 3.0 * e.stderr, (name, e)
        assert e.relative_stderr < 0.02 and not e.at_bound
    assert fit.scales["T"] == pytest.approx(NOISE["T"], rel=0.2)  # the noise level found from the data
    assert fit.scales["draw"] == pytest.approx(NOISE["draw"], rel=0.2)
    assert fit.residual_sd == pytest.approx(1.0, abs=0.15)  # residuals in noise units: the model fits
    assert fit.residuals == 2 * 360  # two outputs, every sample after the start of the window
    assert fit.validation is not None and fit.holdout == (3600.0, 7200.0)
    for name in ("T", "draw"):
        assert fit.validation[name]["nrmse"] < 0.05 and fit.validation[name]["r2"] > 0.95
        assert fit.validation[name]["n"] == 361
    assert fit.parameters["gain"] == fit.value("gain")


def test_the_standard_errors_match_the_spread_of_the_estimates_over_repeated_experiments() -> None:
    """Over 16 noisy repetitions the estimates scatter as their standard errors say: about 95 % within
    2 SE of the truth, and the scatter's standard deviation close to the mean standard error."""
    estimates, errors = [], []
    for seed in range(16):
        t, inputs, measured = heater_data(seed=100 + seed, minutes=60.0)
        fit = calibrate(Heater(), t, inputs, measured, ["gain", "tau"], values=START | {"volts": 230.0},
                        start_values={"T": 50.0})
        estimates.append([fit.value("gain"), fit.value("tau")])
        errors.append([fit.estimate("gain").stderr, fit.estimate("tau").stderr])
    est, se = np.array(estimates), np.array(errors)
    truth = np.array([TRUTH["gain"], TRUTH["tau"]])
    covered = (np.abs(est - truth) < 2.0 * se).mean()
    assert covered >= 0.8
    ratio = est.std(axis=0, ddof=1) / se.mean(axis=0)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio


def test_the_vectorised_jacobian_gives_the_loops_result_in_fewer_model_runs() -> None:
    t, inputs, measured = heater_data(seed=3, minutes=60.0)
    args: dict[str, Any] = {"values": START, "start_values": {"T": 50.0}}
    one = calibrate(Heater(), t, inputs, measured, ["gain", "tau", "volts"], **args)
    loop = calibrate(Heater(), t, inputs, measured, ["gain", "tau", "volts"], vectorise=False, **args)
    for name in TRUTH:
        assert one.value(name) == pytest.approx(loop.value(name), rel=1e-9)
    assert loop.model_runs - one.model_runs == 3 * (one.jacobians + 1)  # q more runs per Jacobian


def test_a_start_state_is_fitted_beside_the_parameters() -> None:
    t, inputs, measured = heater_data(seed=4, minutes=60.0)
    fit = calibrate(Heater(), t, inputs, measured, ["gain", "tau"], values={"volts": 230.0},
                    start_states=["T"], start_values={"T": 40.0})
    start = fit.estimate("T")
    assert start.kind == "start" and abs(start.estimate - 50.0) < 3 * start.stderr < 0.5
    assert fit.start_values == {"T": start.estimate}
    assert abs(fit.value("tau") - 600.0) < 3 * fit.estimate("tau").stderr


def test_bounds_are_respected_and_an_estimate_on_its_bound_is_flagged() -> None:
    t, inputs, measured = heater_data(seed=5, minutes=60.0)
    fit = calibrate(Heater(), t, inputs, measured, ["gain", "tau"], values={"gain": 0.06, "tau": 500.0,
                    "volts": 230.0}, bounds={"tau": (100.0, 550.0)}, start_values={"T": 50.0})
    tau = fit.estimate("tau")
    assert tau.upper == 550.0 and tau.lower == 100.0
    assert tau.estimate <= 550.0 and tau.estimate == pytest.approx(550.0, rel=1e-6) and tau.at_bound
    assert not fit.estimate("gain").at_bound
    free = calibrate(Heater(), t, inputs, measured, ["gain", "tau"], values={"gain": 0.06, "tau": 500.0,
                     "volts": 230.0}, start_values={"T": 50.0})
    assert free.cost < fit.cost  # the bound held the fit away from its optimum


def test_parameters_the_data_cannot_separate_get_an_infinite_or_huge_standard_error() -> None:
    """With the heater held at constant power nothing moves: ``gain`` and the start temperature shape the
    same flat series, and ``volts`` is found only through ``draw``; left out, ``volts`` has no effect."""
    t, inputs, measured = heater_data(seed=6, minutes=30.0)
    flat = {"power": np.full(len(t), 300.0)}
    steady = {"T": np.full(len(t), 20.0 + 0.08 * 300.0) + 0.1 * np.random.default_rng(0).standard_normal(len(t))}
    fit = calibrate(Heater(), t, flat, steady, ["gain", "tau"], values={"volts": 230.0},
                    start_values={"T": 44.0})
    assert fit.estimate("gain").relative_stderr < 0.01  # the level tells the gain
    assert fit.estimate("tau").relative_stderr > 1.0 or math.isinf(fit.estimate("tau").stderr)  # no transient
    unseen = calibrate(Heater(), t, inputs, {"T": measured["T"]}, ["gain", "volts"], values={"tau": 600.0},
                       start_values={"T": 50.0})
    assert math.isinf(unseen.estimate("volts").stderr)  # volts shows only in draw, which is not measured
    assert unseen.to_dict()["estimates"][1]["stderr"] is None


def test_gaps_in_inputs_and_measurements_are_handled() -> None:
    t, inputs, measured = heater_data(seed=7, minutes=60.0)
    gappy = {name: series.copy() for name, series in measured.items()}
    gappy["T"][50:80] = np.nan
    gappy["draw"][::3] = np.nan
    power = inputs["power"].copy()
    held = power.copy()
    power[100:103] = np.nan  # a dropped input holds its last value
    held[100:103] = held[99]
    fit = calibrate(Heater(), t, {"power": power}, gappy, ["gain", "tau", "volts"], values=START,
                    start_values={"T": 50.0})
    same = calibrate(Heater(), t, {"power": held}, gappy, ["gain", "tau", "volts"], values=START,
                     start_values={"T": 50.0})
    assert fit.value("tau") == same.value("tau")
    assert fit.residuals == (360 - 30) + (360 - 120)
    assert abs(fit.value("tau") - 600.0) < 3 * fit.estimate("tau").stderr


def test_the_report_is_plain_json_and_a_registry_version() -> None:
    t, inputs, measured = heater_data(seed=8, minutes=60.0)
    fit = calibrate(Heater(), t, inputs, measured, ["gain", "tau"], values=START, start_values={"T": 50.0},
                    window=(0.0, 1800.0), holdout=(1800.0, 3600.0))
    version = fit.to_version()
    assert set(version) == {"params", "metrics", "report", "fingerprint"}
    again = json.loads(json.dumps(version))
    assert again["params"]["parameters"]["tau"] == fit.value("tau")
    assert again["params"]["parameters"]["volts"] == START["volts"]  # fixed values travel with the version
    assert again["metrics"]["window"] == "holdout"
    assert again["metrics"]["outputs"]["T"]["nrmse"] == fit.validation["T"]["nrmse"]  # type: ignore[index]
    assert again["metrics"]["maxNrmse"] == max(m["nrmse"] for m in fit.validation.values())  # type: ignore[union-attr]
    report = again["report"]
    assert [e["name"] for e in report["estimates"]] == ["gain", "tau"]
    assert report["fit"]["iterations"] >= 1 and report["fit"]["seconds"] > 0
    assert len(report["fit"]["correlation"]) == 2 and report["fit"]["correlation"][0][0] == pytest.approx(1.0)
    other = calibrate(Heater(), t, inputs, measured, ["gain"], values=START, start_values={"T": 50.0})
    assert other.to_version()["fingerprint"] != version["fingerprint"]
    assert other.to_version()["metrics"]["window"] == "fit"


def test_the_plot_is_saved(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    t, inputs, measured = heater_data(seed=9, minutes=40.0)
    fit = calibrate(Heater(), t, inputs, measured, ["gain"], values=START, start_values={"T": 50.0},
                    window=(0.0, 1200.0), holdout=(1200.0, 2400.0))
    path = fit.plot(tmp_path / "plots" / "heater.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(Invalid, match="no measured output 'speed'"):
        fit.plot(tmp_path / "x.png", outputs=["speed"])


# ---------------------------------------------------------------------------------------------- bad input


def _bad(match: str, field: str, **changes: Any) -> None:
    t, inputs, measured = heater_data(seed=10, minutes=20.0)
    args: dict[str, Any] = {"t": t, "inputs": inputs, "measured": measured, "parameters": ["gain"],
                            "start_values": {"T": 50.0}} | changes
    with pytest.raises(Invalid, match=match) as caught:
        calibrate(Heater(), **args)
    assert caught.value.fields["field"] == field


def test_an_unknown_parameter_or_state_is_refused_naming_it() -> None:
    _bad(r"heater has no parameter 'gian'", "parameters.gian", parameters=["gian"])
    _bad(r"heater has no state 'temp'", "start_states.temp", start_states=["temp"])
    _bad(r"heater has no parameter 'volt'", "values.volt", values={"volt": 230.0})
    _bad(r"names 'gain' more than once", "parameters.gain", parameters=["gain", "gain"])
    _bad(r"name at least one parameter", "parameters", parameters=[])
    _bad(r"the model has no output 'temperature'", "measured.temperature", measured={"temperature": [1.0] * 121})
    _bad(r"the model has no input 'heat'", "inputs.heat", inputs={"power": [1.0] * 121, "heat": [1.0] * 121})


def test_a_window_without_data_is_refused() -> None:
    _bad(r"window \(5000, 6000\) holds 0 time stamps", "window", window=(5000.0, 6000.0))
    _bad(r"holds 0 measured values", "window", measured={"T": [math.nan] * 121})
    _bad(r"window \(600, 300\) must have finite start < end", "window", window=(600.0, 300.0))
    _bad(r"holdout .* must come after the fit window", "holdout", window=(0.0, 600.0), holdout=(300.0, 900.0))


def test_mismatched_lengths_and_bad_series_are_refused_naming_them() -> None:
    _bad(r"measured.T has 5 values but t has 121", "measured.T", measured={"T": [1.0] * 5})
    _bad(r"inputs.power has 120 values but t has 121", "inputs.power", inputs={"power": [1.0] * 120})
    _bad(r"inputs.power has no value at all", "inputs.power", inputs={"power": [math.nan] * 121})
    _bad(r"t must increase strictly: t\[3\]", "t", t=[0.0, 1.0, 2.0, 2.0] + [float(k) for k in range(4, 121)])
    _bad(r"measured.T must be a sequence of numbers", "measured.T", measured={"T": ["hot"] * 121})


def test_bounds_and_starting_values_are_checked() -> None:
    _bad(r"bounds of 'gain' \(0, 2\) reach outside the model's own \(0, 1\)", "bounds.gain",
         bounds={"gain": (0.0, 2.0)})
    _bad(r"bounds of 'gain' \(0.5, 0.1\) need lower < upper", "bounds.gain", bounds={"gain": (0.5, 0.1)})
    _bad(r"bounds given for 'tau', which is not calibrated", "bounds.tau", bounds={"tau": (1.0, 2.0)})
    _bad(r"starting value of 'gain' \(0.05\) lies outside its bounds \(0.1, 0.2\)", "gain",
         bounds={"gain": (0.1, 0.2)})
    _bad(r"the scale of 'T' must be a number > 0", "scales.T", scales={"T": 0.0})
    _bad(r"a scale is given for 'draw', which is not a measured output", "scales.draw",
         measured={"T": [20.0] * 121}, scales={"draw": 0.1})
