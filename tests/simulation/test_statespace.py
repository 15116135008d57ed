"""Python state-space models: RK4 and solve_ivp against analytic solutions, discrete models,
vectorised runs equal to one-at-a-time runs, process noise, and clear errors for bad input."""

from __future__ import annotations

import doctest
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import tvilling.simulation.statespace as statespace_module
from tvilling.core.errors import Invalid, Unavailable
from tvilling.simulation.ports import BehaviourModel, Signature, Variable
from tvilling.simulation.statespace import StateSpaceModel, Values


class Lag(StateSpaceModel):
    """First-order lag ``x' = (k·u − x)/τ``: analytic ``x(t) = k·u + (x0 − k·u)·e^(−t/τ)`` for constant ``u``."""

    name = "lag"
    signature = Signature(
        states=(Variable("x", default=0.0),),
        parameters=(Variable("tau", "s", default=10.0, lower=0.01, upper=1e5), Variable("gain", default=1.0)),
        inputs=(Variable("u"),),
        outputs=(Variable("y"),))

    def derivatives(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"x": (p["gain"] * u["u"] - x["x"]) / p["tau"]}

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"y": x["x"]}


class Oscillator(StateSpaceModel):
    """Undamped harmonic oscillator ``q'' = −ω²q``: analytic ``q = q0·cos(ωt) + v0/ω·sin(ωt)``."""

    name = "oscillator"
    signature = Signature(
        states=(Variable("q", default=1.0), Variable("v", default=0.0)),
        parameters=(Variable("omega", "rad/s", default=1.0, lower=0.0),),
        outputs=(Variable("position"), Variable("energy")))

    def derivatives(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"q": x["v"], "v": -(p["omega"] ** 2) * x["q"]}

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"position": x["q"], "energy": 0.5 * (x["v"] ** 2 + (p["omega"] * x["q"]) ** 2)}


class Tank(StateSpaceModel):
    """A discrete model: a tank filled by ``inflow`` and drained by ``leak``·level per step of ``dt``;
    exact solution of ``h' = inflow − leak·h`` for inflow held over the step. Level never below 0."""

    name = "tank"
    signature = Signature(
        states=(Variable("level", "m", default=0.0, lower=0.0),),
        parameters=(Variable("leak", "1/s", default=0.1, lower=1e-6, upper=10.0),),
        inputs=(Variable("inflow", "m/s"), Variable("open", default=1.0)),
        outputs=(Variable("level", "m"),))

    def update(self, t: float, dt: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        steady = u["inflow"] * u["open"] / p["leak"]
        return {"level": steady + (x["level"] - steady) * np.exp(-p["leak"] * dt)}

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"level": x["level"]}


def _run(model: StateSpaceModel, n: int, dt: float, steps: int, inputs: dict[str, Any] | None = None,
         **start: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    runs = model.start(n, **start)
    rows: dict[str, list[np.ndarray]] = {}
    for _ in range(steps):
        for name, value in model.step(runs, dt, inputs or {}).items():
            rows.setdefault(name, []).append(value)
    times = runs.t - dt * np.arange(steps, 0, -1) + dt
    return times, {name: np.array(values) for name, values in rows.items()}


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(statespace_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_state_space_model_implements_the_behaviour_model_port() -> None:
    model: BehaviourModel = Lag()
    assert model.signature.names("parameters") == ("tau", "gain")


# ---------------------------------------------------------------------------------------- accuracy


TAUS = np.array([0.5, 2.0, 10.0, 60.0])


def test_rk4_follows_the_analytic_first_order_lag_to_1e_6() -> None:
    """RK4 with dt = 0.05 s (≤ τ/10 for every instance), 30 s: max error < 1e-6 of the step size 1."""
    model = Lag()
    t, y = _run(model, 4, 0.05, 600, {"u": 1.0}, parameters={"tau": TAUS, "gain": 2.0},
                start_values={"x": 0.5})
    exact = 2.0 + (0.5 - 2.0) * np.exp(-t[:, None] / TAUS[None, :])
    assert np.abs(y["y"] - exact).max() < 1e-6


def test_rk4_sub_steps_keep_a_long_step_stable_and_accurate() -> None:
    """A 10 s step on τ = 0.5 s: in sub-steps of 0.05 s it stays accurate (one step alone would not be)."""
    _, fine = _run(Lag(max_step=0.05), 4, 10.0, 3, {"u": 1.0}, parameters={"tau": TAUS})
    exact = 1.0 - np.exp(-np.array([10.0, 20.0, 30.0])[:, None] / TAUS[None, :])
    assert np.abs(fine["y"] - exact).max() < 1e-6
    _, coarse = _run(Lag(), 4, 10.0, 3, {"u": 1.0}, parameters={"tau": TAUS})
    assert np.abs(coarse["y"] - exact).max() > 1.0  # why max_step exists


def test_solve_ivp_follows_the_analytic_first_order_lag_to_1e_6() -> None:
    pytest.importorskip("scipy")
    model = Lag(integrator="solve_ivp", rtol=1e-9, atol=1e-12)
    t, y = _run(model, 4, 5.0, 6, {"u": np.array([1.0, -1.0, 3.0, 0.0])}, parameters={"tau": TAUS})
    u = np.array([1.0, -1.0, 3.0, 0.0])
    exact = u[None, :] * (1.0 - np.exp(-t[:, None] / TAUS[None, :]))
    assert np.abs(y["y"] - exact).max() < 1e-6


OMEGAS = np.array([0.5, 1.0, 2.0])


def _oscillator_exact(t: np.ndarray, q0: np.ndarray, v0: np.ndarray) -> np.ndarray:
    return q0 * np.cos(OMEGAS * t[:, None]) + v0 / OMEGAS * np.sin(OMEGAS * t[:, None])


def test_rk4_follows_the_analytic_harmonic_oscillator_to_1e_6() -> None:
    """dt = 0.01 s over 20 s (up to 6 periods): position within 1e-6, energy conserved within 1e-8."""
    q0, v0 = np.array([1.0, 0.0, -2.0]), np.array([0.0, 1.0, 0.5])
    t, y = _run(Oscillator(), 3, 0.01, 2000, parameters={"omega": OMEGAS}, start_values={"q": q0, "v": v0})
    assert np.abs(y["position"] - _oscillator_exact(t, q0, v0)).max() < 1e-6
    energy0 = 0.5 * (v0**2 + (OMEGAS * q0) ** 2)
    assert np.abs(y["energy"] / energy0 - 1.0).max() < 1e-8


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Radau", "BDF"])
def test_solve_ivp_follows_the_analytic_harmonic_oscillator(method: str) -> None:
    """Adaptive methods (explicit, and implicit ones with the block Jacobian sparsity) within 1e-5."""
    pytest.importorskip("scipy")
    q0, v0 = np.array([1.0, 0.0, -2.0]), np.array([0.0, 1.0, 0.5])
    model = Oscillator(integrator="solve_ivp", ivp_method=method, rtol=1e-10, atol=1e-12)
    t, y = _run(model, 3, 2.5, 8, parameters={"omega": OMEGAS}, start_values={"q": q0, "v": v0})
    assert np.abs(y["position"] - _oscillator_exact(t, q0, v0)).max() < 1e-5


def test_a_discrete_model_steps_exactly_and_inputs_with_a_default_may_be_left_out() -> None:
    model = Tank()
    leak = np.array([0.01, 0.1, 1.0])
    t, y = _run(model, 3, 7.0, 10, {"inflow": 0.2}, parameters={"leak": leak})
    exact = 0.2 / leak * (1.0 - np.exp(-leak * t[:, None]))
    np.testing.assert_allclose(y["level"], exact, rtol=1e-12)
    runs = model.start(2)
    model.step(runs, 5.0, {"inflow": 1.0, "open": np.array([1.0, 0.0])})
    level = model.state_values(runs)["level"]
    assert level[0] > 0 and level[1] == 0.0
    assert runs.t == 5.0


# ---------------------------------------------------------------------------------------- vectorised runs


def _varying_inputs(k: int) -> np.ndarray:
    return np.array([np.sin(0.1 * k), 1.0, -0.5 + 0.01 * k, 2.0 * np.cos(0.05 * k), 0.0])


@pytest.mark.parametrize("integrator", ["rk4", "solve_ivp"])
def test_a_vectorised_run_equals_running_the_instances_one_at_a_time(integrator: str) -> None:
    """Five instances with their own parameters, start values and time-varying inputs."""
    if integrator == "solve_ivp":
        pytest.importorskip("scipy")
    taus, gains, x0 = np.array([0.7, 3.0, 11.0, 40.0, 2.0]), np.array([1.0, -2.0, 0.5, 3.0, 1.0]), np.arange(5.0)
    model = Lag(integrator=integrator, max_step=0.5, rtol=1e-10, atol=1e-12)
    fleet = model.start(5, {"tau": taus, "gain": gains}, {"x": x0})
    together = np.array([model.step(fleet, 1.0, {"u": _varying_inputs(k)})["y"] for k in range(50)])
    for i in range(5):
        one = model.start(1, {"tau": taus[i], "gain": gains[i]}, {"x": x0[i]})
        alone = np.array([model.step(one, 1.0, {"u": _varying_inputs(k)[i]})["y"][0] for k in range(50)])
        if integrator == "rk4":  # the same arithmetic element by element: bit for bit
            np.testing.assert_array_equal(together[:, i], alone)
        else:  # the adaptive step is chosen over the whole stacked system: equal within tolerance
            np.testing.assert_allclose(together[:, i], alone, rtol=1e-7, atol=1e-9)


def test_set_states_and_parameters_change_only_the_instances_asked() -> None:
    model = Tank()
    runs = model.start(3, {"leak": 0.1}, {"level": 5.0})
    first = model.step(runs, 1.0, {"inflow": 0.0})["level"].copy()
    handed_out = model.step(runs, 1.0, {"inflow": 0.0})["level"]
    kept = handed_out.copy()
    model.set_states(runs, {"level": 0.0}, where=np.array([False, True, False]))
    model.set_parameters(runs, {"leak": 1.0}, where=np.array([True, False, False]))
    np.testing.assert_array_equal(handed_out, kept)  # outputs already returned are not changed under the caller
    assert model.state_values(runs)["level"].tolist() == [kept[0], 0.0, kept[2]]
    assert model.parameter_values(runs)["leak"].tolist() == [1.0, 0.1, 0.1]
    after = model.step(runs, 1.0, {"inflow": 0.0})["level"]
    assert after[0] == pytest.approx(kept[0] * np.exp(-1.0)) and after[2] == pytest.approx(kept[0] * np.exp(-0.1))
    assert first[0] == pytest.approx(5.0 * np.exp(-0.1))


# ---------------------------------------------------------------------------------------- process noise


class Walk(StateSpaceModel):
    """A pure random walk (no drift) with a non-negative twin: what process noise alone does."""

    name = "walk"
    signature = Signature(states=(Variable("w", default=0.0), Variable("positive", default=0.0, lower=0.0)),
                          outputs=(Variable("w"),))

    def derivatives(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"w": 0.0, "positive": 0.0}

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
        return {"w": x["w"]}


def _walk(seed: int, n: int = 2000, steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    model = Walk()
    runs = model.start(n, noise={"w": 0.5, "positive": 0.5}, rng=np.random.default_rng(seed))
    w = np.array([model.step(runs, 0.25, {})["w"] for _ in range(steps)])
    return w, model.state_values(runs)["positive"]


def test_process_noise_is_reproducible_with_a_seed_and_has_the_stated_intensity() -> None:
    a, _ = _walk(7)
    b, _ = _walk(7)
    c, _ = _walk(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # σ = 0.5 per √s over 25 s: variance 0.25·25 = 6.25 (2,000 walks: within 10 %)
    assert a[-1].var() == pytest.approx(6.25, rel=0.1)
    assert abs(a[-1].mean()) < 0.25


def test_process_noise_keeps_a_bounded_state_within_its_bounds() -> None:
    _, positive = _walk(3)
    assert positive.min() == 0.0 and positive.max() > 0.0


def test_noise_off_is_deterministic_and_noise_without_a_generator_is_refused() -> None:
    with pytest.raises(Invalid, match=r"rng"):
        Walk().start(2, noise={"w": 1.0})
    with pytest.raises(Invalid, match=r"no state 'z'"):
        Walk().start(2, noise={"z": 1.0}, rng=np.random.default_rng(0))
    with pytest.raises(Invalid, match=r"noise of state 'w'.*below its lower bound 0"):
        Walk().start(2, noise={"w": -1.0}, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "message", "field"), [
    ({"parameters": {"tau": 0.001}}, r"parameter 'tau' = 0.001 is below its lower bound 0.01", "tau"),
    ({"parameters": {"tau": np.array([1.0, 2e5])}}, r"parameter 'tau' = 200000 is above its upper bound", "tau"),
    ({"parameters": {"tua": 1.0}}, r"no parameter 'tua'; the parameters are \['gain', 'tau'\]", "tua"),
    ({"parameters": {"tau": [1.0, 2.0, 3.0]}}, r"parameter 'tau' has shape \(3,\); expected a scalar or \(2,\)",
     "tau"),
    ({"parameters": {"tau": "slow"}}, r"parameter 'tau' must be a number", "tau"),
    ({"parameters": {"gain": np.array([1.0, np.nan])}}, r"parameter 'gain' is not a finite number \(instance 1\)",
     "gain"),
    ({"start_values": {"y": 1.0}}, r"no state 'y'", "y"),
])
def test_bad_parameters_and_start_values_are_refused_naming_the_variable(kwargs: dict[str, Any], message: str,
                                                                         field: str) -> None:
    with pytest.raises(Invalid, match=message) as err:
        Lag().start(2, **kwargs)
    assert err.value.fields["field"] == field and err.value.fields["model"] == "lag"


def test_a_state_out_of_its_bounds_is_refused() -> None:
    with pytest.raises(Invalid, match=r"start value of state 'level' = -1 is below its lower bound 0"):
        Tank().start(1, start_values={"level": -1.0})
    runs = Tank().start(1)
    with pytest.raises(Invalid, match=r"value of state 'level'"):
        Tank().set_states(runs, {"level": -2.0})
    with pytest.raises(Invalid, match=r"parameter 'leak' = 100 is above its upper bound 10"):
        Tank().set_parameters(runs, {"leak": 100.0})


@pytest.mark.parametrize(("inputs", "message", "field"), [
    ({}, r"input 'u' is missing", "u"),
    ({"u": 1.0, "v": 2.0}, r"no input 'v'; the inputs are \['u'\]", "v"),
    ({"u": np.ones(3)}, r"input 'u' has shape \(3,\); expected a scalar or \(2,\)", "u"),
    ({"u": np.array([1.0, np.inf])}, r"input 'u' is not a finite number \(instance 1\)", "u"),
])
def test_bad_inputs_are_refused_naming_the_input(inputs: dict[str, Any], message: str, field: str) -> None:
    model = Lag()
    runs = model.start(2)
    with pytest.raises(Invalid, match=message) as err:
        model.step(runs, 1.0, inputs)
    assert err.value.fields["field"] == field
    assert runs.t == 0.0  # nothing happened


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan"), float("inf")])
def test_a_step_must_be_positive_and_finite(dt: float) -> None:
    model = Lag()
    with pytest.raises(Invalid, match=r"dt must be a number of seconds > 0"):
        model.step(model.start(1), dt, {"u": 1.0})


def test_a_model_that_breaks_its_own_signature_gets_a_clear_error() -> None:
    class Forgetful(Lag):
        def derivatives(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
            return {}

    class Extra(Lag):
        def derivatives(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
            return {"x": 0.0, "z": 1.0}

    class Mute(Lag):
        def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
            return {}

    with pytest.raises(Invalid, match=r"derivatives\(\) returned no value for state 'x'"):
        Forgetful().step(Forgetful().start(1), 1.0, {"u": 1.0})
    with pytest.raises(Invalid, match=r"unknown states \['z'\]"):
        Extra().step(Extra().start(1), 1.0, {"u": 1.0})
    with pytest.raises(Invalid, match=r"outputs\(\) returned no value for output 'y'"):
        Mute().step(Mute().start(1), 1.0, {"u": 1.0})


def test_a_model_definition_is_checked_when_it_is_made() -> None:
    class Nothing(StateSpaceModel):
        name = "nothing"
        signature = Signature(states=(Variable("x"),))

        def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Any]:
            return {}

    with pytest.raises(Invalid, match=r"defines derivatives\(\) or update\(\)"):
        Nothing()
    with pytest.raises(Invalid, match=r"integrator 'euler' is not one of"):
        Lag(integrator="euler")
    with pytest.raises(Invalid, match=r"discrete integrator needs update\(\)"):
        Lag(integrator="discrete")
    with pytest.raises(Invalid, match=r"integrator 'rk4' needs derivatives\(\)"):
        Tank(integrator="rk4")
    with pytest.raises(Invalid, match=r"max_step must be > 0"):
        Lag(max_step=0.0)
    with pytest.raises(Invalid, match=r"state 'x' has no default start value"):
        _no_default_state()
    with pytest.raises(Invalid, match=r"number of instances must be an integer ≥ 1"):
        Lag().start(0)


def _no_default_state() -> None:
    class Bare(Lag):
        signature = Signature(states=(Variable("x"),), inputs=(Variable("u"),), outputs=(Variable("y"),),
                              parameters=Lag.signature.parameters)

    Bare().start(1)


def test_an_unknown_solve_ivp_method_is_refused() -> None:
    pytest.importorskip("scipy")
    model = Lag(integrator="solve_ivp", ivp_method="Euler")
    with pytest.raises(Invalid, match=r"solve_ivp rejected the run"):
        model.step(model.start(1), 1.0, {"u": 1.0})


def test_without_scipy_solve_ivp_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.integrate", None)
    model = Lag(integrator="solve_ivp")
    with pytest.raises(Unavailable, match=r"pip install 'tvilling\[sim\]'"):
        model.step(model.start(1), 1.0, {"u": 1.0})
    runs = Lag().start(1)  # RK4 needs no SciPy
    assert Lag().step(runs, 1.0, {"u": 1.0})["y"][0] > 0


def test_importing_the_models_does_not_import_scipy() -> None:
    code = ("import sys, tvilling.simulation.statespace, tvilling.simulation.machine; "
            "print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
