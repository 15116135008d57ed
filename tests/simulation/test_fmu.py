"""FMUs behind the behaviour-model port: signatures from modelDescription.xml, and numbers checked
against analytic solutions, for FMI 2.0 and 3.0, co-simulation and model exchange, n instances at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tvilling.simulation.fmu import FmuModel
from tvilling.simulation.ports import BehaviourModel

#: co-simulation steps the test models' exact solutions: equal up to rounding
EXACT = 1e-9
#: model exchange goes through CVODE at relative tolerance 1e-6: within 1e-4 of the analytic solution
INTEGRATED = 1e-4


def _run(model: FmuModel, n: int, parameters: dict[str, object], start: dict[str, object], inputs: dict[str, float],
         dt: float, steps: int, output: str) -> np.ndarray:
    """``output`` of every instance after each of ``steps`` steps, shape (steps, n)."""
    run = model.start(n, {k: np.asarray(v, dtype=float) for k, v in parameters.items()},
                      {k: np.asarray(v, dtype=float) for k, v in start.items()})
    try:
        rows = [model.step(run, dt, {k: np.full(n, v) for k, v in inputs.items()})[output] for _ in range(steps)]
        assert run.t == pytest.approx(steps * dt)
    finally:
        model.close(run)
    return np.array(rows)


def test_the_signature_comes_from_the_model_description(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"]) as model:
        sig = model.signature
        assert model.name == "Lag"
        assert sig.names("inputs") == ("u",)
        assert sig.names("outputs") == ("y",)
        assert sig.names("parameters") == ("K", "T")
        assert sig.names("states") == ("x",)
        gain, tau = sig.parameters
        assert (gain.default, gain.lower, gain.upper, gain.description) == (2.0, 0.0, 10.0, "gain")
        assert (tau.default, tau.lower, tau.upper, tau.unit) == (0.5, 0.001, 100.0, "s")
        assert sig.outputs[0].unit == "K" and sig.outputs[0].description == "lagged output"
    with FmuModel.open(fmus["oscillator3"]) as model:
        assert model.signature.names("states") == ("x", "v")
        assert model.signature.names("parameters") == ("k", "m")
        assert [p.unit for p in model.signature.parameters] == ["N/m", "kg"]
    with FmuModel.open(fmus["cooling"]) as model:
        assert model.signature.names("outputs") == ("temperature", "steps")
        assert model.interface == "co-simulation"


def test_an_fmu_model_satisfies_the_port(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"]) as model:
        port: BehaviourModel = model
        assert port.signature.names("outputs") == ("y",)


@pytest.mark.parametrize(("interface", "tolerance"), [("co-simulation", EXACT), ("model-exchange", INTEGRATED)])
def test_fmi2_first_order_lag_matches_its_analytic_solution(fmus: dict[str, Path], interface: str,
                                                            tolerance: float) -> None:
    tau = np.array([0.25, 0.5, 2.0])  # one time constant per instance
    dt, steps = 0.05, 60
    with FmuModel.open(fmus["lag2"], interface) as model:
        y = _run(model, 3, {"T": tau, "K": 3.0}, {"x": 0.5}, {"u": 1.0}, dt, steps, "y")
    t = dt * np.arange(1, steps + 1)[:, None]
    expected = 3.0 + (0.5 - 3.0) * np.exp(-t / tau[None, :])
    np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize(("interface", "tolerance"), [("co-simulation", EXACT), ("model-exchange", INTEGRATED)])
def test_fmi3_mass_spring_matches_its_analytic_solution(fmus: dict[str, Path], interface: str,
                                                        tolerance: float) -> None:
    k = np.array([1.0, 4.0])
    force = 2.0  # held: the rest position is force/k, the mass starts at x=1 at rest
    dt, steps = 0.1, 50
    # an undamped oscillator accumulates the integrator's phase error: integrate at relative tolerance 1e-8
    with FmuModel.open(fmus["oscillator3"], interface, relative_tolerance=1e-8) as model:
        x = _run(model, 2, {"k": k}, {}, {"F": force}, dt, steps, "x")
    t = dt * np.arange(1, steps + 1)[:, None]
    rest = force / k[None, :]
    expected = rest + (1.0 - rest) * np.cos(np.sqrt(k)[None, :] * t)
    np.testing.assert_allclose(x, expected, rtol=0, atol=tolerance)


def test_model_exchange_restarts_the_solver_when_an_input_jumps(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"], "model-exchange") as model:
        run = model.start(1, {"K": np.array([1.0]), "T": np.array([0.5])})
        try:
            for _ in range(10):  # u = 1 for one second
                model.step(run, 0.1, {"u": np.array([1.0])})
            for _ in range(10):  # then u = 0
                y = model.step(run, 0.1, {"u": np.array([0.0])})["y"]
        finally:
            model.close(run)
    at_one = 1.0 - np.exp(-1.0 / 0.5)
    assert y[0] == pytest.approx(at_one * np.exp(-1.0 / 0.5), abs=INTEGRATED)


def test_pythonfmu_cosimulation_runs_many_instances(fmus: dict[str, Path]) -> None:
    tau = np.array([5.0, 10.0])
    with FmuModel.open(fmus["cooling"]) as model:
        run = model.start(2, {"tau": tau})
        try:
            before = model.outputs(run)
            for _ in range(20):
                out = model.step(run, 0.5, {"ambient": np.array([20.0, 0.0])})
            read = model.read(run, ["tau", "ambient"])
        finally:
            model.close(run)
    np.testing.assert_allclose(before["temperature"], [80.0, 80.0])
    ambient = np.array([20.0, 0.0])
    np.testing.assert_allclose(out["temperature"], ambient + (80.0 - ambient) * np.exp(-10.0 / tau), atol=EXACT)
    np.testing.assert_array_equal(out["steps"], [20.0, 20.0])  # an Integer output, read as a number
    np.testing.assert_allclose(read["tau"], tau)
    np.testing.assert_allclose(read["ambient"], ambient)


def test_a_closed_run_cannot_step(fmus: dict[str, Path]) -> None:
    from tvilling.core.errors import Invalid

    with FmuModel.open(fmus["lag2"]) as model:
        run = model.start(2, {})
        model.close(run)
        model.close(run)  # twice is harmless
        with pytest.raises(Invalid, match="closed"):
            model.step(run, 0.1, {})
