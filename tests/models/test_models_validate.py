"""Validation of twin writes: state patches, relationships and migrations."""

from __future__ import annotations

from typing import Any

import pytest
from models_samples import thermostat

from tvilling.core.errors import Invalid
from tvilling.models import ModelSet, parse_models
from tvilling.models.validate import migration_report, validate_relationship, validate_section

EX = "dtmi:tvilling:example:"
THERMO = "dtmi:com:example:Thermostat;1"


@pytest.fixture(scope="module")
def thermo() -> ModelSet:
    return ModelSet(parse_models(thermostat()))


def rejected(models: ModelSet, model: str, section: str, patch: dict[str, Any], twin: str = "T1") -> Invalid:
    with pytest.raises(Invalid) as info:
        validate_section(models.resolve(model), models, twin, section, patch)  # type: ignore[arg-type]
    return info.value


def only_error(err: Invalid) -> tuple[str, str]:
    assert len(err.fields["errors"]) == 1, err.fields["errors"]
    assert err.fields["twin"] == "T1"
    return err.fields["field"], err.fields["rule"]


def test_good_patches_are_accepted(thermo: ModelSet) -> None:
    model = thermo.resolve(THERMO)
    reported = {
        "temp": 21.5,
        "setPoint": 20,
        "serialNumber": "SN-1",
        "installed": "2024-02-29",
        "mode": 2,
        "schedule": {"monday": 68.0, "tuesday": None},
        "lastReading": {"when": "2024-05-01T10:00:00.5+02:00"},
        "history": [{"when": "2024-05-01T10:00:00Z", "value": 20.5}],
        "fan": {"speed": 1200.0, "on": True},
        "display": None,
    }
    assert validate_section(model, thermo, "T1", "reported", reported) == reported
    desired = {"setPoint": 19.5, "mode": 0, "fan": {"on": False}, "display": {"brightness": 3}}
    assert validate_section(model, thermo, "T1", "desired", desired) == desired


@pytest.mark.parametrize(
    ("section", "patch", "field", "rule"),
    [
        ("reported", {"nope": 1}, "reported.nope", "unknown_property"),
        ("reported", {"reboot": 1}, "reported.reboot", "unknown_property"),
        ("reported", {"controls": 1}, "reported.controls", "unknown_property"),
        ("desired", {"temp": 1.0}, "desired.temp", "not_writable"),
        ("desired", {"serialNumber": "x"}, "desired.serialNumber", "not_writable"),
        ("desired", {"fan": {"speed": 3.0}}, "desired.fan.speed", "not_writable"),
        ("reported", {"fan": {"nope": 1}}, "reported.fan.nope", "unknown_property"),
        ("reported", {"fan": 3}, "reported.fan", "type"),
        ("reported", {"temp": "hot"}, "reported.temp", "type"),
        ("reported", {"temp": True}, "reported.temp", "type"),
        ("reported", {"temp": float("nan")}, "reported.temp", "range"),
        ("reported", {"temp": float("inf")}, "reported.temp", "range"),
        ("reported", {"fan": {"speed": 1e39}}, "reported.fan.speed", "range"),
        ("reported", {"display": {"brightness": 2.5}}, "reported.display.brightness", "type"),
        ("reported", {"display": {"brightness": 2**31}}, "reported.display.brightness", "range"),
        ("reported", {"serialNumber": 5}, "reported.serialNumber", "type"),
        ("reported", {"installed": "2023-02-29"}, "reported.installed", "format"),
        ("reported", {"installed": "29.02.2024"}, "reported.installed", "format"),
        ("reported", {"lastReading": {"when": "2024-05-01 10:00"}}, "reported.lastReading.when", "format"),
        ("reported", {"lastReading": {"colour": 1}}, "reported.lastReading.colour", "unknown_field"),
        ("reported", {"lastReading": [1]}, "reported.lastReading", "type"),
        ("reported", {"mode": 7}, "reported.mode", "enum"),
        ("reported", {"mode": "heat"}, "reported.mode", "enum"),
        ("reported", {"schedule": {"monday": "warm"}}, "reported.schedule.monday", "type"),
        ("reported", {"history": {"when": 1}}, "reported.history", "type"),
        ("reported", {"history": [None]}, "reported.history[0]", "type"),
        ("reported", {"history": [{"value": None}]}, "reported.history[0].value", "type"),
        ("reported", {"temp": {"value": 70, "unit": "metre"}}, "reported.temp", "unit"),
        ("reported", {"temp": {"value": 70, "unit": "furlong"}}, "reported.temp", "unit"),
        ("reported", {"temp": {"value": "70", "unit": "kelvin"}}, "reported.temp", "type"),
        ("reported", {"temp": {"value": 70}}, "reported.temp", "type"),
        ("reported", {"serialNumber": {"value": 1, "unit": "metre"}}, "reported.serialNumber", "type"),
        (
            "reported",
            {"display": {"brightness": {"value": 1, "unit": "metre"}}},
            "reported.display.brightness",
            "unit",
        ),
    ],
)
def test_each_rule_rejects_with_twin_field_and_rule(
    thermo: ModelSet, section: str, patch: dict[str, Any], field: str, rule: str
) -> None:
    err = rejected(thermo, THERMO, section, patch)
    assert only_error(err) == (field, rule)
    assert err.message.startswith(f"twin 'T1': {field} ")
    assert err.message.endswith(f"(rule: {rule})")


def test_not_writable_message(plant: ModelSet) -> None:
    err = rejected(plant, EX + "Bearing;1", "desired", {"temperature": 40.0}, twin="B1")
    assert err.message == "twin 'B1': desired.temperature is not writable (rule: not_writable)"
    assert err.status == 422


def test_all_problems_are_listed(thermo: ModelSet) -> None:
    err = rejected(thermo, THERMO, "desired", {"temp": 1.0, "mode": 9, "nope": 1})
    assert [(e["field"], e["rule"]) for e in err.fields["errors"]] == [
        ("desired.temp", "not_writable"),
        ("desired.mode", "enum"),
        ("desired.nope", "unknown_property"),
    ]
    assert err.message.endswith("(and 2 more)")
    assert all(e["message"].startswith("twin 'T1': ") for e in err.fields["errors"])


def test_values_with_units_are_converted_to_the_declared_unit(plant: ModelSet, thermo: ModelSet) -> None:
    machine = plant.resolve(EX + "Machine;1")
    out = validate_section(
        machine, plant, "M1", "desired", {"speedSetpoint": {"value": 2.0, "unit": "revolutionPerSecond"}}
    )
    assert out["speedSetpoint"] == pytest.approx(120.0)
    out = validate_section(
        machine,
        plant,
        "M1",
        "reported",
        {"motor": {"temperature": {"value": 176.0, "unit": "degreeFahrenheit"}}},
    )
    assert out["motor"]["temperature"] == pytest.approx(80.0)
    bearing = plant.resolve(EX + "Bearing;1")
    out = validate_section(
        bearing, plant, "B1", "reported", {"vibration": {"value": 9.80665, "unit": "metrePerSecondSquared"}}
    )
    assert out["vibration"] == pytest.approx(1.0)
    out = validate_section(
        bearing, plant, "B1", "desired", {"lubricationInterval": {"value": 2, "unit": "day"}}
    )
    assert out["lubricationInterval"] == pytest.approx(48.0)


def test_unit_on_a_property_without_unit_is_rejected(plant: ModelSet) -> None:
    err = rejected(plant, EX + "Asset;1", "reported", {"health": {"value": 0.5, "unit": "percent"}})
    assert only_error(err) == ("reported.health", "unit")
    assert "declares no unit" in err.message


def test_integer_conversion_must_stay_whole() -> None:
    doc = {
        "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
        "@id": "dtmi:ex:Clock;1",
        "@type": "Interface",
        "contents": [
            {
                "@type": ["Property", "TimeSpan"],
                "name": "period",
                "schema": "integer",
                "unit": "second",
                "writable": True,
            }
        ],
    }
    models = ModelSet(parse_models(doc))
    model = models.resolve("dtmi:ex:Clock;1")
    assert validate_section(model, models, "C", "desired", {"period": {"value": 2, "unit": "minute"}}) == {
        "period": 120
    }
    with pytest.raises(Invalid) as info:
        validate_section(model, models, "C", "desired", {"period": {"value": 1.5, "unit": "millisecond"}})
    assert info.value.fields["rule"] == "unit"


# --- relationships -------------------------------------------------------------------------------


def test_relationship_accepted_with_properties(plant: ModelSet) -> None:
    props = validate_relationship(
        plant, EX + "Machine;1", "M1", "hasBearing", "B1", EX + "Bearing;1", {"location": "drive end"}, 3
    )
    assert props == {"location": "drive end"}
    assert validate_relationship(
        plant, EX + "ProductionLine;1", "L1", "hasMachine", "M1", EX + "Machine;1", {"position": 2}, 100
    ) == {"position": 2}


def test_relationship_target_may_be_a_derived_model(plant_v2: ModelSet) -> None:
    doc = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:ex:SpecialBearing;1",
        "@type": "Interface",
        "extends": EX + "Bearing;1",
    }
    models = plant_v2.with_models(parse_models(doc))
    assert (
        validate_relationship(
            models, EX + "Machine;1", "M1", "hasBearing", "S1", "dtmi:ex:SpecialBearing;1", {}, 0
        )
        == {}
    )


@pytest.mark.parametrize(
    ("name", "target_model", "props", "existing", "field", "rule"),
    [
        ("hasBearing", EX + "Spindle;1", {}, 0, "relationships.hasBearing.target", "target_model"),
        ("hasBearing", EX + "Bearing;2", {}, 0, "relationships.hasBearing.target", "target_model"),
        ("hasBearing", EX + "Bearing;1", {}, 4, "relationships.hasBearing", "multiplicity"),
        ("hasSpindle", EX + "Spindle;1", {}, 1, "relationships.hasSpindle", "multiplicity"),
        (
            "hasBearing",
            EX + "Bearing;1",
            {"side": "a"},
            0,
            "relationships.hasBearing.properties.side",
            "unknown_property",
        ),
        (
            "hasBearing",
            EX + "Bearing;1",
            {"location": 5},
            0,
            "relationships.hasBearing.properties.location",
            "type",
        ),
        (
            "hasBearing",
            EX + "Bearing;1",
            {"location": None},
            0,
            "relationships.hasBearing.properties.location",
            "type",
        ),
        ("hasMotor", EX + "Motor;1", {}, 0, "relationships.hasMotor", "unknown_relationship"),
    ],
)
def test_relationship_rules(
    plant_v2: ModelSet,
    name: str,
    target_model: str,
    props: dict[str, Any],
    existing: int,
    field: str,
    rule: str,
) -> None:
    with pytest.raises(Invalid) as info:
        validate_relationship(plant_v2, EX + "Machine;1", "M1", name, "X1", target_model, props, existing)
    assert (info.value.fields["twin"], info.value.fields["field"], info.value.fields["rule"]) == (
        "M1",
        field,
        rule,
    )
    assert info.value.message.startswith(f"twin 'M1': {field}")


# --- migration -----------------------------------------------------------------------------------


def test_migration_to_a_new_version_reports_nothing_blocking(plant_v2: ModelSet) -> None:
    report = migration_report(
        plant_v2,
        "B1",
        {"temperature": 40.0, "vibration": 0.2, "oldThing": 1},
        {"lubricationInterval": 100.0},
        [],
        EX + "Bearing;2",
        current_model=EX + "Bearing;1",
    )
    assert report.ok and report.problems == [] and report.dropped == ["oldThing"]


def test_migration_problems(plant_v2: ModelSet) -> None:
    report = migration_report(
        plant_v2,
        "B1",
        {"temperature": "hot"},
        {"temperature": 1.0},
        [],
        EX + "Bearing;2",
        current_model=EX + "Bearing;1",
    )
    assert not report.ok
    assert [(p["field"], p["rule"]) for p in report.problems] == [
        ("reported.temperature", "type"),
        ("desired.temperature", "not_writable"),
    ]
    assert report.problems[0]["message"].startswith("twin 'B1': reported.temperature")


def test_migration_between_unrelated_models_is_incompatible(plant_v2: ModelSet) -> None:
    report = migration_report(plant_v2, "B1", {}, {}, [], EX + "Spindle;1", current_model=EX + "Bearing;1")
    assert not report.ok and report.problems[0]["rule"] == "incompatible_model"
    # to a model that extends the current one is allowed
    assert migration_report(
        plant_v2, "A1", {"health": 1.0}, {}, [], EX + "Bearing;2", current_model=EX + "Asset;1"
    ).ok
    # downgrading to an older version of the same model is allowed too
    assert migration_report(plant_v2, "B1", {}, {}, [], EX + "Bearing;1", current_model=EX + "Bearing;2").ok


def test_migration_checks_relationships(plant_v2: ModelSet) -> None:
    rels = [
        ("r1", "hasBearing", EX + "Bearing;1"),
        ("r2", "hasBearing", EX + "Spindle;1"),
        ("r3", "hasSpindle", EX + "Spindle;1"),
        ("r4", "hasSpindle", EX + "Spindle;1"),
        ("r5", "feeds", EX + "Machine;1"),
    ]
    report = migration_report(plant_v2, "M1", {}, {}, rels, EX + "Machine;1", current_model=EX + "Machine;1")
    assert [(p["field"], p["rule"]) for p in report.problems] == [
        ("relationships.r2", "target_model"),
        ("relationships.r4", "multiplicity"),
        ("relationships.r5", "unknown_relationship"),
    ]
