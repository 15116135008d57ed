"""The [[simulations]] configuration: parsing, errors naming the field, the check against the model,
relationship resolution and parameter versions in the analytic registry."""

from __future__ import annotations

from typing import Any

import pytest

from tvilling.analytics.binding.registry import MemoryRegistry
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.simulation.binding import Binder, check_relationships, load_model
from tvilling.simulation.binding_versions import add_version, parameters_for
from tvilling.simulation.machine import SIGNATURE
from tvilling.simulation.spec import parse_simulation, parse_simulations, residual_rules
from tvilling.twins.importer import import_twins

MACHINE = "dtmi:tvilling:example:Machine;3"


def spec_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "machine", "model": MACHINE, "kind": "python", "class": "tvilling.simulation.machine:MachineModel",
        "inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "hasSpindle/load",
                   "running": {"path": "state", "map": {"running": 1, "stopped": 0}}, "ambient": 21.5},
        "outputs": {"speed": "speed", "de:vibration": "hasBearing[location=de]/vibration"},
        "parameters": {"tauMotor": 1000.0}, "twins": {"line-1-m02": {"motorRise": 60.0}},
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_a_full_spec_parses_into_sources():
    spec = parse_simulation(spec_doc(alarm={"above": 6.0}))
    assert spec.inputs["spindle:load"].relationship == "hasSpindle"
    assert spec.inputs["spindle:load"].path == "load"
    assert spec.inputs["ambient"].constant == 21.5
    assert spec.inputs["running"].number('"running"') == 1.0 and spec.inputs["running"].number('"idle"') != 1.0
    de = spec.outputs["de:vibration"]
    assert (de.relationship, de.where, de.path) == ("hasBearing", (("location", "de"),), "vibration")
    assert spec.registry_name == "sim:machine"
    assert spec.alarm is not None and spec.alarm.clear == 3.0
    load_model(spec)  # every name exists in the machine model


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"name": "9x"}, "simulations.name", "start with a letter"),
    ({"model": "machine"}, "simulations.model", "DTMI"),
    ({"kind": "modelica"}, "simulations.kind", "python, fmu"),
    ({"class": None}, "simulations.class", "class ="),
    ({"kind": "fmu", "class": None}, "simulations.path", "path ="),
    ({"outputs": {}}, "simulations.outputs", "at least one"),
    ({"outputs": {"speed": 3.0}}, "simulations.outputs.speed", "not a constant"),
    ({"inputs": {"speedSetpoint": "rel[x=1]/"}}, "simulations.inputs.speedSetpoint.path", "dotted property path"),
    ({"inputs": {"running": {"path": "state", "where": {"a": "b"}}}}, "simulations.inputs.running.where",
     "give the relationship"),
    ({"inputs": {"running": {"path": "state", "mapping": {}}}}, "simulations.inputs.running.mapping", "no key"),
    ({"step": 0}, "simulations.step", "> 0"),
    ({"time_scale": "fast"}, "simulations.time_scale", "a number"),
    ({"learn_rows": 3}, "simulations.learn_rows", "≥ 10"),
    ({"alpha": 2.0}, "simulations.alpha", "[None, 1.0]"),
    ({"parameters": {"tauMotor": "slow"}}, "simulations.parameters.tauMotor", "a number"),
    ({"tolerance": {"current": 1.0}}, "simulations.tolerance.current", "not a configured output"),
    ({"alarm": {"clear": 1.0}}, "simulations.alarm.above", "needs above"),
    ({"alarm": {"above": 2.0, "clear": 3.0}}, "simulations.alarm.clear", "must not exceed"),
    ({"alarm": {"above": 2.0, "severity": "loud"}}, "simulations.alarm.severity", "critical"),
    ({"colour": "red"}, "simulations.colour", "no setting"),
])
def test_spec_errors_name_the_field(changes: dict[str, Any], field: str, words: str):
    with pytest.raises(Invalid) as err:
        parse_simulation(spec_doc(**changes))
    assert err.value.fields["field"] == field
    assert words in err.value.message


def test_names_are_checked_against_the_model():
    for changes, field in [({"inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "x", "torque": "t"}},
                            "inputs.torque"),
                           ({"outputs": {"vibration": "vibration"}}, "outputs.vibration"),
                           ({"parameters": {"tau": 1.0}}, "parameters.tau"),
                           ({"twins": {"m1": {"tau": 1.0}}}, "twins.m1.tau"),
                           ({"inputs": {"speedSetpoint": "speedSetpoint"}}, "inputs.spindle:load"),
                           ({"parameters": {"tauMotor": -5.0}}, "parameters.tauMotor"),
                           ({"class": "tvilling.simulation.machine:Nothing"}, "class"),
                           ({"class": "tvilling.nowhere:Machine"}, "class")]:
        with pytest.raises(Invalid) as err:
            load_model(parse_simulation(spec_doc(**changes)))
        assert err.value.fields["field"] == field, changes


def test_relationships_are_checked_against_the_twin_model():
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents(MODEL_SET))
    check_relationships(parse_simulation(spec_doc()), p.models.modelset)
    bad = parse_simulation(spec_doc(outputs={"de:vibration": "hasBearings[location=de]/vibration"}))
    with pytest.raises(Invalid) as err:
        check_relationships(bad, p.models.modelset)
    assert err.value.fields["field"] == "outputs.de:vibration" and "hasBearing" in err.value.message


def test_duplicate_names_are_refused():
    with pytest.raises(Invalid, match="configured twice"):
        parse_simulations([spec_doc(), spec_doc()])


def test_the_binder_finds_the_bearing_by_location_and_routes_its_readings_to_the_machine():
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents(MODEL_SET))
    import_twins(p.twins, Plant(machines=2, seed=1, scenario=None).twins(), actor="test")
    binder = Binder(parse_simulation(spec_doc()), p.twin_store, p.models.modelset)
    models = {"line-1-m02-de": "dtmi:tvilling:example:Bearing;4", "line-1": "dtmi:tvilling:example:ProductionLine;3"}
    routes = binder.routes(["line-1-m02-de", "line-1"], models)  # only a bearing: found through its machine
    assert list(routes) == ["line-1-m02-de"]
    assert routes["line-1-m02-de"] == [("line-1-m02", ("hasBearing", (("location", "de"),)))]
    bound = binder.bound["line-1-m02"]
    assert bound.targets[("hasSpindle", ())] == "line-1-m02-spindle"
    assert bound.targets[(None, ())] == "line-1-m02"
    assert "line-1-m02-nde" not in routes


def test_parameter_versions_live_in_the_analytic_registry_and_layer_over_the_configuration():
    spec = parse_simulation(spec_doc())
    reg = MemoryRegistry()
    assert parameters_for(reg, spec, "line-1-m02") == {"tauMotor": 1000.0, "motorRise": 60.0}
    add_version(reg, spec, "*", {"tauMotor": 1100.0, "motorRise": 50.0}, promote=True, signature=SIGNATURE)
    assert parameters_for(reg, spec, "line-1-m01") == {"tauMotor": 1100.0, "motorRise": 50.0}
    assert parameters_for(reg, spec, "line-1-m02") == {"tauMotor": 1100.0, "motorRise": 60.0}  # config per twin
    v = add_version(reg, spec, "line-1-m02", {"motorRise": 58.0}, signature=SIGNATURE)
    assert parameters_for(reg, spec, "line-1-m02")["motorRise"] == 60.0  # a candidate is not used
    reg.promote("sim:machine", "line-1-m02", v.version)
    assert parameters_for(reg, spec, "line-1-m02")["motorRise"] == 58.0
    assert [x.analytic for x in reg.versions()] == ["sim:machine", "sim:machine"]
    with pytest.raises(Invalid) as err:
        add_version(reg, spec, "*", {"motorRise": 1e6}, signature=SIGNATURE)
    assert err.value.fields["field"] == "parameters.motorRise"
    with pytest.raises(Invalid):
        add_version(reg, spec, "*", {"nothing": 1.0}, signature=SIGNATURE)


def test_a_version_registered_as_a_calibration_stores_it_is_read_like_a_flat_one():
    """Calibration.to_version() keeps parameters, start values and standard errors apart; the binding reads
    the parameters from it as from a flat version."""
    spec = parse_simulation(spec_doc())
    reg = MemoryRegistry()
    calibrated = {"parameters": {"motorRise": 55.5, "tauMotor": 1050.0}, "startValues": {"wear": 0.1},
                  "stderr": {"motorRise": 0.4, "tauMotor": None}}
    reg.add("sim:machine", "*", b"{}", fingerprint="f", params=calibrated, metrics={}, promote=True)
    assert parameters_for(reg, spec, "line-1-m01") == {"tauMotor": 1050.0, "motorRise": 55.5}


def test_residual_rules_are_one_per_output_and_parse():
    from tvilling.decisions.alarms.rules import parse_rules

    rules = residual_rules([parse_simulation(spec_doc(alarm={"above": 6.0, "severity": "minor"}))])
    assert [r["property"] for r in rules] == ["simulation.machine.score.speed",
                                              "simulation.machine.score.de.vibration"]
    parsed = parse_rules(rules)
    assert parsed[1].name == "machine-residual-de:vibration" and parsed[1].severity == "minor"
    assert residual_rules([parse_simulation(spec_doc())]) == []
