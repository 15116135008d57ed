"""What-if scenarios of FMU-bound simulations: the FMU's running instances read and changed (states and
parameters, in place or by restarting, forks through the FMU state), a scenario vocabulary declared in
the configuration and checked, scenarios run on a leaking tank FMU (co-simulation and model exchange)
with Monte-Carlo samples, and once through ``POST /api/scenarios``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tvilling.core.errors import Invalid
from tvilling.simulation.binding import load_model
from tvilling.simulation.fmu import FmuModel
from tvilling.simulation.scenario import Option, Scenario, Start, Uncertainty
from tvilling.simulation.scenario_declared import HOLD_INPUT, declared_model, start_from_binding
from tvilling.simulation.scenario_interventions import Command, Fault, Maintenance, ParameterChange
from tvilling.simulation.scenario_kpis import bands, kpis
from tvilling.simulation.scenario_runner import run
from tvilling.simulation.scenario_service import ScenarioService
from tvilling.simulation.spec import parse_simulation

TANK2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="2.0" modelName="Tank" guid="{tank2-0001}" description="a leaking tank"
                     numberOfEventIndicators="0">
  <ModelExchange modelIdentifier="tank2" canGetAndSetFMUstate="true" canSerializeFMUstate="true"/>
  <CoSimulation modelIdentifier="tank2" canHandleVariableCommunicationStepSize="true" canGetAndSetFMUstate="true"
                canSerializeFMUstate="true"/>
  <UnitDefinitions><Unit name="m"/><Unit name="m2"/><Unit name="m3/h"/><Unit name="kW"/></UnitDefinitions>
  <ModelVariables>
    <ScalarVariable name="q_in" valueReference="0" causality="input" variability="continuous" description="inflow">
      <Real start="2" unit="m3/h" min="0" max="20"/></ScalarVariable>
    <ScalarVariable name="level" valueReference="1" causality="output" variability="continuous" initial="LEVEL_INITIAL"
                    description="level"><Real LEVEL_START unit="m" min="0"/></ScalarVariable>
    <ScalarVariable name="der(level)" valueReference="2" causality="local" variability="continuous"
                    initial="calculated"><Real derivative="2"/></ScalarVariable>
    <ScalarVariable name="q_out" valueReference="3" causality="output" variability="continuous"
                    initial="calculated" description="outflow"><Real unit="m3/h"/></ScalarVariable>
    <ScalarVariable name="pump_power" valueReference="4" causality="output" variability="continuous"
                    initial="calculated" description="pump power"><Real unit="kW"/></ScalarVariable>
    <ScalarVariable name="area" valueReference="5" causality="parameter" variability="fixed" initial="exact">
      <Real start="2" min="0.1" max="100" unit="m2"/></ScalarVariable>
    <ScalarVariable name="cv" valueReference="6" causality="parameter" variability="fixed" initial="exact"
                    description="outlet coefficient"><Real start="2" min="0" max="10"/></ScalarVariable>
    <ScalarVariable name="pump_kw" valueReference="7" causality="parameter" variability="fixed" initial="exact">
      <Real start="0.5" min="0" max="10"/></ScalarVariable>
    <ScalarVariable name="leak" valueReference="8" causality="parameter" variability="tunable" initial="exact"
                    description="leak coefficient"><Real start="0" min="0" max="5"/></ScalarVariable>
  </ModelVariables>
  <ModelStructure>
    <Outputs><Unknown index="2"/><Unknown index="4"/><Unknown index="5"/></Outputs>
    <Derivatives><Unknown index="3"/></Derivatives>
    <InitialUnknowns><Unknown index="3"/><Unknown index="4"/><Unknown index="5"/></InitialUnknowns>
  </ModelStructure>
</fmiModelDescription>
"""

DECLARED: dict[str, Any] = {
    "commands": {"setInflow": {"input": "q_in", "min": 0, "max": 10}, "stop": {"input": "q_in", "value": 0}},
    "failed": "level < 0.6 or level > 1.9",
    "failure": "the tank ran dry or overflowed",
    "production": "q_out",
    "power": "pump_power",
    "faults": {"leak": {"parameter": "leak"}},
    "maintenance": {"repair": {"parameters": {"leak": 0.0}}},
}
INTERFACES = ["co-simulation", "model-exchange"]
HOUR = 3600.0


def tank_xml(start: bool = True) -> str:
    """The tank's description; without ``start`` its level is ``initial="calculated"`` (takes no start value)."""
    return (TANK2_XML.replace("LEVEL_INITIAL", "exact" if start else "calculated")
            .replace("LEVEL_START", 'start="1"' if start else ""))


@pytest.fixture(scope="module")
def tank(fmus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``tank``: the leaking tank (FMI 2.0, ME + CS, FMU state); ``calculated``: the same binary whose level
    takes no start value; ``lag2``: an FMU without FMU-state support."""
    import fmu_build

    dest = tmp_path_factory.mktemp("tank")
    built = fmu_build.build_c_fmu("tank2.c", tank_xml(), "tank2", 2, dest)
    other = dest / "calculated"
    other.mkdir()
    calculated = fmu_build.rewrite(built, other / "tank2.fmu", lambda n: n != "modelDescription.xml",
                                   {"modelDescription.xml": tank_xml(start=False)})
    return {"tank": built, "calculated": calculated, "lag2": fmus["lag2"]}


def simulation(path: Path, interface: str | None = None, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "tank", "model": "dtmi:test:fmu:Tank;1", "kind": "fmu", "path": str(path),
                           "inputs": {"q_in": "inflow"}, "outputs": {"level": "level", "q_out": "outflow"},
                           "scenario": DECLARED, **over}
    if interface is not None:
        doc["interface"] = interface
    return doc


# -- the FMU's running instances ------------------------------------------------------------------------------

@pytest.mark.parametrize("interface", INTERFACES)
def test_running_instances_are_read_and_changed_where_the_mask_says(tank: dict[str, Path], interface: str) -> None:
    with FmuModel.open(tank["tank"], interface) as model:
        assert model.signature.names("states") == ("level",)
        run_ = model.start(3, {"leak": np.array([0.0, 1.0, 1.0])}, {"level": 1.0})
        first = model.read_outputs(run_, {"q_in": 2.0})
        np.testing.assert_allclose(first["q_out"], 2.0)  # cv · √1
        np.testing.assert_allclose(first["pump_power"], 1.0)  # 0.5 kW per m³/h
        for _ in range(6):
            model.step(run_, 600.0, {"q_in": 2.0})
        level = model.state_values(run_)["level"]
        assert level[0] == pytest.approx(1.0, abs=1e-6) and level[1] == pytest.approx(level[2]) and level[1] < 0.7
        # a tunable parameter changes in place, a fixed one by a restart with the state carried over
        model.set_parameters(run_, {"leak": 0.0}, where=np.array([False, True, False]))
        model.set_parameters(run_, {"cv": 3.0}, where=np.array([False, False, True]))
        model.set_states(run_, {"level": 1.5}, where=np.array([True, False, False]))
        np.testing.assert_allclose(model.state_values(run_)["level"], [1.5, level[1], level[2]], rtol=1e-9)
        after = model.step(run_, 600.0, {"q_in": 2.0})
        # each changed instance goes on exactly as a fresh instance started from that point would
        fresh = model.start(3, {"leak": np.array([0.0, 0.0, 1.0]), "cv": np.array([2.0, 2.0, 3.0])},
                            {"level": np.array([1.5, level[1], level[2]])}, t0=run_.t - 600.0)
        expected = model.step(fresh, 600.0, {"q_in": 2.0})
        np.testing.assert_allclose(after["level"], expected["level"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(after["q_out"], expected["q_out"], rtol=0, atol=1e-5)
        assert after["level"][1] > level[1] and after["level"][2] < level[2]  # leak fixed: fills; wider outlet: drains
        with pytest.raises(Invalid, match="outside its bounds"):
            model.set_parameters(run_, {"leak": 9.0})
        with pytest.raises(Invalid, match="no continuous state named 'q_out'"):
            model.set_states(run_, {"q_out": 1.0})
        with pytest.raises(Invalid, match="boolean array"):
            model.set_parameters(run_, {"leak": 1.0}, where=np.array([1, 0, 1]))
        model.close(run_)
        model.close(fresh)


@pytest.mark.parametrize("interface", INTERFACES)
def test_fmi3_states_and_fixed_parameters_change_mid_run(fmus: dict[str, Path], interface: str) -> None:
    with FmuModel.open(fmus["oscillator3"], interface, relative_tolerance=1e-9) as model:
        run_ = model.start(2, {"k": 4.0})
        for _ in range(5):
            model.step(run_, 0.1, {"F": 1.0})
        assert set(model.state_values(run_)) == {"x", "v"}
        model.set_states(run_, {"v": 0.0}, where=np.array([True, False]))
        model.set_parameters(run_, {"k": 1.0}, where=np.array([False, True]))
        now = model.state_values(run_)
        assert now["v"][0] == 0.0 and now["v"][1] != 0.0
        after = model.step(run_, 0.1, {"F": 1.0})["x"]
        fresh = model.start(2, {"k": np.array([4.0, 1.0])}, {"x": now["x"], "v": now["v"]}, t0=run_.t - 0.1)
        np.testing.assert_allclose(after, model.step(fresh, 0.1, {"F": 1.0})["x"], rtol=0, atol=1e-7)
        model.close(run_)
        model.close(fresh)


@pytest.mark.parametrize("interface", INTERFACES)
def test_a_running_instance_forks_through_its_fmu_state(tank: dict[str, Path], interface: str) -> None:
    with FmuModel.open(tank["tank"], interface) as model:
        origin = model.start(2, {"leak": np.array([0.5, 1.5])}, {"level": 1.2})
        for _ in range(3):
            model.step(origin, 900.0, {"q_in": 2.5})
        copies = model.fork(origin, 3, index=1)
        assert copies.n == 3 and copies.t == origin.t
        np.testing.assert_allclose(model.state_values(copies)["level"], model.state_values(origin)["level"][1])
        ahead = [model.step(origin, 900.0, {"q_in": 2.5}) for _ in range(2)][-1]
        forked = [model.step(copies, 900.0, {"q_in": 2.5}) for _ in range(2)][-1]
        np.testing.assert_allclose(forked["level"], ahead["level"][1], rtol=0, atol=1e-9)
        # the copies are their own instances: changing one leaves the origin alone
        model.set_parameters(copies, {"leak": 0.0}, where=np.array([True, False, False]))
        model.step(copies, 900.0, {"q_in": 2.5})
        model.step(origin, 900.0, {"q_in": 2.5})
        levels = model.state_values(copies)["level"]
        assert levels[0] > levels[1] == pytest.approx(model.state_values(origin)["level"][1], abs=1e-9)
        model.close(origin)
        model.close(copies)


def test_capabilities_an_fmu_lacks_are_named(tank: dict[str, Path]) -> None:
    with FmuModel.open(tank["lag2"]) as model:
        run_ = model.start(1, {})
        with pytest.raises(Invalid, match="does not declare canGetAndSetFMUstate and canSerializeFMUstate"):
            model.fork(run_, 2)
        model.close(run_)
    with FmuModel.open(tank["calculated"], "co-simulation") as model:
        run_ = model.start(1, {})
        with pytest.raises(Invalid, match=r"state 'level' cannot be set .* takes none \(initial calculated\)"):
            model.set_states(run_, {"level": 0.5})
        with pytest.raises(Invalid, match=r"cannot change cv .* its state 'level' takes no start value"):
            model.set_parameters(run_, {"cv": 3.0})
        model.set_parameters(run_, {"leak": 1.0})  # tunable: set in place, no restart needed
        with pytest.raises(Invalid, match="process noise needs model exchange"):
            model.start(1, {}, noise={"level": 0.01}, rng=np.random.default_rng(1))
        model.close(run_)
    # model exchange sets the same state through the state vector
    with FmuModel.open(tank["calculated"], "model-exchange") as model:
        run_ = model.start(1, {})
        model.set_states(run_, {"level": 0.5})
        assert model.state_values(run_)["level"][0] == pytest.approx(0.5)
        model.close(run_)


def test_process_noise_perturbs_model_exchange_states_reproducibly(tank: dict[str, Path]) -> None:
    with FmuModel.open(tank["tank"], "model-exchange") as model:
        ends = []
        for seed in (3, 3, 4):
            r = model.start(4, {}, {"level": 1.0}, noise={"level": 1e-3}, rng=np.random.default_rng(seed))
            for _ in range(5):
                model.step(r, 60.0, {"q_in": 2.0})
            ends.append(model.state_values(r)["level"])
            model.close(r)
        np.testing.assert_array_equal(ends[0], ends[1])
        assert not np.allclose(ends[0], ends[2]) and np.std(ends[0]) > 1e-4  # without noise all stay at 1.0


# -- the declared vocabulary -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field", "message"), [
    ({"bogus": 1}, "simulations.scenario.bogus", "no key 'bogus'"),
    ({"failed": "level => 2"}, "simulations.scenario.failed", "not 'name op number'"),
    ({"failed": "level < low"}, "simulations.scenario.failed", "not 'name op number'"),
    ({"failed": 3}, "simulations.scenario.failed", "must be a condition"),
    ({"commands": {"go": {"value": 1}}}, "simulations.scenario.commands.go.input", "must name the model input"),
    ({"commands": {"go": {"input": "q_in", "value": 1, "max": 2}}}, "simulations.scenario.commands.go.value",
     "takes no min/max"),
    ({"commands": {"go": {"input": "q_in", "min": 3, "max": 2}}}, "simulations.scenario.commands.go.min",
     "exceeds max"),
    ({"commands": {"go": {"input": "q_in", "speed": 2}}}, "simulations.scenario.commands.go.speed", "no key"),
    ({"faults": {"leak": {}}}, "simulations.scenario.faults.leak.parameter", "must name a model parameter"),
    ({"faults": {"leak": "leak"}}, "simulations.scenario.faults.leak", "must be a table"),
    ({"maintenance": {"repair": {}}}, "simulations.scenario.maintenance.repair.parameters", "at least one"),
    ({"maintenance": {"repair": {"parameters": {"leak": "none"}}}},
     "simulations.scenario.maintenance.repair.parameters.leak", "must be a number"),
    ({"record": []}, "simulations.scenario.record", "non-empty list"),
    ({"production": 5}, "simulations.scenario.production", "must name a model output"),
    ({"start": {"level": {"pth": "x"}}}, "simulations.scenario.start.level.pth", "no key 'pth'"),
])
def test_a_bad_declaration_is_refused_at_configuration_load_naming_the_key(tmp_path: Path, change: dict[str, Any],
                                                                           field: str, message: str) -> None:
    doc = simulation(tmp_path / "tank.fmu", scenario={**DECLARED, **change})
    with pytest.raises(Invalid, match=message) as err:
        parse_simulation(doc, "simulations")
    assert err.value.fields["field"] == field


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"commands": {"setInflow": {"input": "inflow"}}}, "scenario.commands.setInflow.input", "not an input"),
    ({"failed": "volume > 3"}, "scenario.failed", "'volume', which is not an output or state"),
    ({"production": "leak"}, "scenario.production", "not an output"),
    ({"power": "q_in"}, "scenario.power", "not an output"),
    ({"running": "pump_on"}, "scenario.running", "not an input"),
    ({"faults": {"clog": {"parameter": "clog"}}}, "scenario.faults.clog.parameter", "not a parameter"),
    ({"maintenance": {"refill": {"states": {"volume": 1}}}}, "scenario.maintenance.refill.states", "not a state"),
    ({"maintenance": {"fix": {"parts": ["a", "b"], "parameters": {"{part}:leak": 0}}}},
     "scenario.maintenance.fix.parameters", "'a:leak'"),
    ({"record": ["level", "leak"]}, "scenario.record", "not an output"),
    ({"start": {"q_out": "outflow"}}, "scenario.start.q_out", "not a state"),
])
def test_names_the_model_lacks_are_refused_when_it_is_opened(tank: dict[str, Path], change: dict[str, Any],
                                                             field: str, message: str) -> None:
    spec = parse_simulation(simulation(tank["tank"], scenario={**DECLARED, **change}))
    model = load_model(spec)
    try:
        with pytest.raises(Invalid, match=message) as err:
            declared_model(model, spec)
        assert err.value.fields["field"] == field
    finally:
        model.dispose()  # type: ignore[attr-defined]


def test_the_declaration_becomes_the_vocabulary_the_machine_has_in_code(tank: dict[str, Path]) -> None:
    spec = parse_simulation(simulation(tank["tank"]))
    bare = parse_simulation({k: v for k, v in simulation(tank["tank"]).items() if k != "scenario"})
    # the words are not the binding: parameter versions calibrated before they were declared still match
    assert spec.scenario is not None and bare.scenario is None and spec.fingerprint == bare.fingerprint
    model, vocab = declared_model(load_model(spec), spec)
    try:
        assert vocab.commands["setInflow"].input == "q_in" and vocab.commands["setInflow"].upper == 10.0
        assert vocab.commands["stop"].fixed == 0.0 and vocab.faults == {"leak": "leak"}
        assert dict(vocab.actions["repair"].parameters) == {"leak": 0.0} and vocab.production == "q_out"
        assert tuple(vocab.record) == ("level", "q_out", "pump_power") and vocab.failure.startswith("the tank")
        assert vocab.running == HOLD_INPUT and HOLD_INPUT in model.signature.names("inputs")
        failed = vocab.failed({"level": np.array([0.5, 1.0, 2.0, 0.6])})
        assert failed.tolist() == [True, False, True, False]
        assert vocab.power is not None and vocab.power({"pump_power": np.array([2.0])})[0] == 2.0
        # a command without bounds takes its input's own
        spec2 = parse_simulation(simulation(tank["tank"], scenario={**DECLARED, "commands": {"go": {"input": "q_in"}}}))
        _, vocab2 = declared_model(model.model, spec2)
        assert (vocab2.commands["go"].lower, vocab2.commands["go"].upper) == (0.0, 20.0)
    finally:
        model.dispose()


def test_the_start_maps_the_binding_from_reported_properties(tank: dict[str, Path]) -> None:
    spec = parse_simulation(simulation(
        tank["tank"], inputs={"q_in": {"path": "pump.state", "map": {"on": 2.5, "off": 0}}},
        outputs={"q_out": "outflow", "level": "hasSensor[location=top]/level"}))
    signature = FmuModel.open(tank["tank"]).signature
    start = start_from_binding(spec, signature, {"pump.state": "on", "top:level": 0.8, "outflow": 1.0})
    assert dict(start.inputs) == {"q_in": 2.5} and dict(start.states) == {"level": 0.8}
    declared = parse_simulation(simulation(tank["tank"], scenario={**DECLARED, "start": {"level": "gauge"}}))
    start = start_from_binding(declared, signature, {"gauge": 1.1, "level": 0.4, "inflow": True})
    assert dict(start.states) == {"level": 1.1} and dict(start.inputs) == {"q_in": 1.0}
    assert dict(start_from_binding(declared, signature, {"gauge": "n/a"}).states) == {}  # not a number: the default


# -- scenarios on the FMU -------------------------------------------------------------------------------------

OPTIONS = (
    Option("do nothing"),
    Option("raise inflow", (Command(at=0, command="setInflow", value=3.5),)),
    Option("repair at 1h", (Maintenance(at=HOUR, action="repair"),)),
    Option("repair, 1 h stop", (Maintenance(at=HOUR, action="repair", duration=HOUR),)),
    Option("repair at 2h", (Maintenance(at=2 * HOUR, action="repair"),)),
    Option("leak grows at 2h", (Fault(at=2 * HOUR, fault="leak", size=3.0),)),
    Option("wider outlet at 3h", (ParameterChange(at=3 * HOUR, values={"cv": 2.5}),)),
)


#: a scenario step, and the steps in an hour
STEP = 1200.0
H = int(HOUR / STEP)
#: the tank's leak is known to ±20 %; a wide tank (8 m²) drains over hours
UNCERTAIN = Uncertainty(means={"leak": 1.0, "area": 8.0}, std_errors={"leak": 0.2})


@pytest.mark.parametrize("interface", INTERFACES)
def test_a_scenario_runs_on_the_fmu_with_monte_carlo_bands_and_kpis(tank: dict[str, Path], interface: str) -> None:
    spec = parse_simulation(simulation(tank["tank"], interface))
    model, vocab = declared_model(load_model(spec), spec)
    scenario = Scenario(Start({"level": 1.0}, {"q_in": 2.0}), horizon=24 * HOUR, step=STEP, options=OPTIONS,
                        uncertainty=UNCERTAIN, samples=8, seed=11)
    try:
        result = run(scenario, model, vocab)
    finally:
        model.dispose()
    names = [o.name for o in OPTIONS]
    steps = 24 * H + 1
    assert result.options == names and result.series["level"].shape == (steps, len(names), 1, 8)
    level = result.series["level"][:, :, 0, :].astype(np.float64)  # (time, option, sample)
    o = {name: i for i, name in enumerate(names)}
    # common random numbers: every option draws the same leaks, so before any intervention the runs coincide
    assert result.parameters["leak"].shape == (1, 8) and np.ptp(result.parameters["leak"]) > 0.1
    np.testing.assert_allclose(level[:H + 1, o["do nothing"]], level[:H + 1, o["repair at 1h"]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(level[:2 * H + 1, o["do nothing"]], level[:2 * H + 1, o["leak grows at 2h"]],
                               rtol=0, atol=1e-6)
    assert np.ptp(level[-1, o["do nothing"]]) > 0.05  # the leak's uncertainty spreads the outcome
    # the repair resets the leak: every sample recovers towards the leak-free level, and the spread is gone
    np.testing.assert_allclose(level[-1, o["repair at 1h"]], 1.0, atol=0.02)
    assert np.ptp(level[-1, o["repair at 1h"]]) < 0.01 < np.ptp(level[H, o["repair at 1h"]])
    b = bands(result, "level", "do nothing")
    assert b.shape == (3, steps) and (b[0] <= b[1]).all() and (b[1] <= b[2]).all() and (b[2, -1] - b[0, -1]) > 0.05
    table = {k.option: k for k in kpis(result)}
    nothing, raised, repaired = table["do nothing"], table["raise inflow"], table["repair at 1h"]
    grows = table["leak grows at 2h"]
    # the leak drains the tank below 0.6 m within the horizon; more inflow or a repair prevents it, a growing
    # leak brings it sooner
    assert nothing.failure_probability >= 0.75 and 2.0 < nothing.time_to_failure_h[1] < 24.0
    assert raised.failure_probability == 0.0 and repaired.failure_probability == 0.0
    assert grows.failure_probability == 1.0 and grows.time_to_failure_h[2] < nothing.time_to_failure_h[0]
    fails = np.isfinite(result.failed_at[o["do nothing"], 0])
    assert (result.failed_at[o["leak grows at 2h"], 0][fails] < result.failed_at[o["do nothing"], 0][fails]).all()
    # production is the outflow (m³/h) integrated; energy the pump's kW: 0.5 kW per m³/h of inflow
    assert raised.production_mean > repaired.production_mean > nothing.production_mean > 0
    assert nothing.energy_kwh_mean == pytest.approx(0.5 * 2.0 * 24, rel=1e-9)
    assert raised.energy_kwh_mean == pytest.approx(0.5 * 3.5 * 24, rel=1e-9)
    # a maintenance stop without a declared running input counts no production while it lasts: the run
    # that stops 1 h and repairs at 2 h is the run that repairs at 2 h, less that hour's outflow
    q_out = result.series["q_out"][:, o["repair at 2h"], 0, :].astype(np.float64)
    stopped_hour = q_out[H + 1:2 * H + 1].sum(axis=0) * STEP / HOUR
    np.testing.assert_allclose(result.production[o["repair, 1 h stop"], 0],
                               result.production[o["repair at 2h"], 0] - stopped_hour, rtol=1e-4)
    assert (result.series["q_out"][H + 1:2 * H + 1, o["repair, 1 h stop"]] == 0).all()
    # a fixed parameter changed mid-run (a restart of each instance): the wider outlet drains faster
    assert (level[-1, o["wider outlet at 3h"]] < level[-1, o["do nothing"]]).all()
    np.testing.assert_allclose(level[:3 * H + 1, o["wider outlet at 3h"]], level[:3 * H + 1, o["do nothing"]],
                               rtol=0, atol=1e-6)


def test_both_interfaces_agree_on_the_scenario(tank: dict[str, Path]) -> None:
    ends = []
    for interface in INTERFACES:
        spec = parse_simulation(simulation(tank["tank"], interface))
        model, vocab = declared_model(load_model(spec), spec)
        scenario = Scenario(Start({"level": 1.0}, {"q_in": 2.0}), horizon=6 * HOUR, step=STEP, options=OPTIONS[:3],
                            uncertainty=UNCERTAIN, samples=4, seed=5)
        try:
            ends.append(run(scenario, model, vocab).series["level"][-1].astype(np.float64))
        finally:
            model.dispose()
    np.testing.assert_allclose(ends[0], ends[1], rtol=0, atol=1e-4)  # RK4 sub-steps vs CVODE


def test_a_scenario_needing_what_the_fmu_cannot_do_fails_with_its_reason(tank: dict[str, Path]) -> None:
    declared = {**DECLARED, "maintenance": {"refill": {"states": {"level": 1.0}}}}
    spec = parse_simulation(simulation(tank["calculated"], "co-simulation", scenario=declared))
    model, vocab = declared_model(load_model(spec), spec)
    scenario = Scenario(Start({}, {"q_in": 2.0}), horizon=2 * HOUR, step=600.0, samples=2, seed=1,
                        options=(Option("refill", (Maintenance(at=HOUR, action="refill"),)),))
    try:
        with pytest.raises(Invalid, match="state 'level' cannot be set at t=3600"):
            run(scenario, model, vocab)
    finally:
        model.dispose()


# -- through the service and the API --------------------------------------------------------------------------

TANK_MODEL = {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:fmu:Tank;1", "@type": "Interface",
              "displayName": "Tank", "contents": [
                  {"@type": "Property", "name": "level", "schema": "double"},
                  {"@type": "Property", "name": "inflow", "schema": "double"},
                  {"@type": "Property", "name": "outflow", "schema": "double"}]}


@pytest.fixture(scope="module")
def api(tank: dict[str, Path]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from tvilling.api.app import create_app
    from tvilling.app import build_platform
    from tvilling.config import Settings
    from tvilling.core.commands import CreateTwin

    doc = simulation(tank["tank"], parameters={"leak": 1.0})
    p = build_platform(Settings(store="memory", simulations=[doc]))
    p.models.add([TANK_MODEL])
    p.twins.execute([CreateTwin(twin="tank-1", model="dtmi:test:fmu:Tank;1",
                                reported={"level": 0.9, "inflow": 2.0, "outflow": 1.9})], "test")
    with TestClient(create_app(platform=p)) as client:
        yield client, p
    p.close()


def test_what_ifs_of_an_fmu_twin_run_through_the_api(api: Any) -> None:
    client, _ = api
    body = {"twin": "tank-1", "horizon": "12h", "step": "10m", "samples": 8, "seed": 3,
            "options": [{"name": "do nothing", "interventions": []},
                        {"name": "raise inflow", "interventions": [{"at": "0m", "command": "setInflow", "value": 3.5}]},
                        {"name": "repair", "interventions": [{"at": "1h", "maintenance": "repair"}]}]}
    r = client.post("/api/scenarios", json=body)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    deadline = time.monotonic() + 60
    doc = client.get(f"/api/scenarios/{sid}").json()
    while doc["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        doc = client.get(f"/api/scenarios/{sid}").json()
    assert doc["status"] == "done", doc.get("error")
    kpis_ = doc["kpis"]
    assert kpis_["do nothing"]["p_fail_horizon"] >= 0.75 and kpis_["do nothing"]["ttf_p50_h"] is not None
    assert kpis_["raise inflow"]["p_fail_horizon"] == 0
    assert kpis_["repair"]["p_fail_horizon"] < kpis_["do nothing"]["p_fail_horizon"]
    assert kpis_["raise inflow"]["production"] > kpis_["do nothing"]["production"]
    assert kpis_["raise inflow"]["energy_kwh"] > kpis_["do nothing"]["energy_kwh"] > 0
    level = doc["series"]["outputs"]["level"]
    assert level["do nothing"]["p50"][0] == pytest.approx(0.9)  # started from the twin's reported level
    assert level["repair"]["p50"][-1] > level["do nothing"]["p90"][-1]
    vocab = client.get("/api/scenarios/vocabulary?twin=tank-1").json()
    assert {c["name"] for c in vocab["commands"]} == {"setInflow", "stop"}
    assert vocab["faults"] == ["leak"] and vocab["maintenance"] == [{"name": "repair", "parts": []}]
    bad = {**body, "options": [{"name": "flood", "interventions": [{"at": "0m", "command": "setInflow",
                                                                     "value": 50}]}]}
    r = client.post("/api/scenarios", json=bad)
    assert r.status_code == 422 and r.json()["field"] == "options[0].interventions[0].value"


def test_an_fmu_without_a_declaration_is_refused_saying_what_to_declare(api: Any, tank: dict[str, Path]) -> None:
    _, p = api
    spec = parse_simulation({k: v for k, v in simulation(tank["tank"]).items() if k != "scenario"})
    service = ScenarioService(p.backend, [spec])
    with pytest.raises(Invalid, match=r"no scenario vocabulary; .*declare it in \[simulations.scenario\]") as err:
        service.vocabulary("tank-1")
    assert err.value.fields["rule"] == "no_vocabulary"
