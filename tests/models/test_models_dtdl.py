"""Parsing real DTDL documents into Interfaces."""

from __future__ import annotations

import copy

import pytest
from models_samples import QT, V3, thermostat

from tvilling.core.errors import Invalid, TooLarge
from tvilling.models import (
    ArraySchema,
    CommandDef,
    ComponentDef,
    EnumSchema,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    PropertyDef,
    RelationshipDef,
    TelemetryDef,
    parse_models,
)


def test_realistic_v3_document_imports_as_is() -> None:
    models = {i.id: i for i in parse_models(thermostat())}
    assert sorted(models) == [
        "dtmi:com:example:Device;1",
        "dtmi:com:example:Display;1",
        "dtmi:com:example:Fan;1",
        "dtmi:com:example:Heater;1",
        "dtmi:com:example:Powered;1",
        "dtmi:com:example:Thermostat;1",
    ]
    t = models["dtmi:com:example:Thermostat;1"]
    assert t.dtmi.version == 1 and t.extends == ("dtmi:com:example:Device;1",)
    assert t.display_name == "Thermostat"
    assert t.description == "Reports temperature and controls a set point."
    assert t.contents["temp"] == TelemetryDef(
        "temp", PrimitiveSchema("double"), "degreeCelsius", "Temperature"
    )
    assert t.contents["setPoint"] == PropertyDef(
        "setPoint", PrimitiveSchema("double"), True, "degreeCelsius", "Temperature"
    )
    reading = ObjectSchema({"when": PrimitiveSchema("dateTime"), "value": PrimitiveSchema("double")})
    assert t.contents["lastReading"] == PropertyDef("lastReading", reading)
    assert t.contents["mode"].schema == EnumSchema("integer", {"off": 0, "heat": 1, "cool": 2})  # type: ignore[union-attr]
    assert t.contents["schedule"].schema == MapSchema("day", "target", PrimitiveSchema("double"))  # type: ignore[union-attr]
    assert t.contents["history"].schema == ArraySchema(reading)  # type: ignore[union-attr]
    assert t.contents["display"] == ComponentDef("display", "dtmi:com:example:Display;1")
    reboot = t.contents["reboot"]
    assert isinstance(reboot, CommandDef)
    assert reboot.request is not None and reboot.request.schema == PrimitiveSchema("duration")
    assert reboot.response is not None and reboot.response.name == "scheduledTime"
    controls = t.contents["controls"]
    assert isinstance(controls, RelationshipDef)
    assert (controls.target, controls.max_multiplicity, controls.writable) == (
        "dtmi:com:example:Heater;1",
        2,
        True,
    )
    assert controls.properties["since"].schema == PrimitiveSchema("dateTime")
    assert models["dtmi:com:example:Device;1"].display_name == "Device"


def test_inline_interfaces_become_separate_models_referenced_by_id() -> None:
    models = {i.id: i for i in parse_models(thermostat())}
    heater = models["dtmi:com:example:Heater;1"]
    assert heater.extends == ("dtmi:com:example:Powered;1",)
    assert heater.document["extends"] == "dtmi:com:example:Powered;1"
    powered = models["dtmi:com:example:Powered;1"]
    assert powered.document["@context"] == V3 and "power" in powered.contents
    thermo = models["dtmi:com:example:Thermostat;1"].document
    display = next(c for c in thermo["contents"] if c["name"] == "display")
    assert display["schema"] == "dtmi:com:example:Display;1"


def test_outer_interface_comes_before_its_inline_ones() -> None:
    ids = [i.id for i in parse_models(thermostat())]
    assert ids.index("dtmi:com:example:Heater;1") < ids.index("dtmi:com:example:Powered;1")


def test_single_interface_and_the_input_is_not_mutated() -> None:
    doc = thermostat()[3]
    before = copy.deepcopy(doc)
    parse_models(doc)
    assert doc == before


def test_document_keeps_what_the_author_wrote() -> None:
    t = next(i for i in parse_models(thermostat()) if i.id.endswith("Thermostat;1"))
    assert t.document["comment"] == "Used by the model tests."
    assert t.document["@context"] == [V3, QT]
    assert t.document["contents"][0]["@id"] == "dtmi:com:example:Thermostat:temp;1"


def test_dtdl_v2_document_with_builtin_semantic_types_is_upgraded() -> None:
    doc = {
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:com:example:Sensor;1",
        "@type": "Interface",
        "contents": [
            {
                "@type": ["Telemetry", "Temperature"],
                "name": "currentTemp",
                "schema": "double",
                "unit": "degreeFahrenheit",
            },
            {
                "@type": "Command",
                "name": "reset",
                "commandType": "synchronous",
                "request": {"@type": "CommandPayload", "name": "hard", "schema": "boolean"},
            },
        ],
    }
    (iface,) = parse_models(doc)
    assert iface.contents["currentTemp"] == TelemetryDef(
        "currentTemp", PrimitiveSchema("double"), "degreeFahrenheit", "Temperature"
    )
    assert iface.document["@context"] == [V3, QT]
    command = iface.document["contents"][1]
    assert "commandType" not in command and command["request"]["@type"] == "CommandRequest"
    assert parse_models(dict(iface.document)) == [iface]


def test_v2_rejects_arrays_in_properties_but_v3_accepts_them() -> None:
    prop = {"@type": "Property", "name": "tags", "schema": {"@type": "Array", "elementSchema": "string"}}
    v3 = {"@context": V3, "@id": "dtmi:com:example:Tagged;1", "@type": "Interface", "contents": [prop]}
    assert parse_models(v3)[0].contents["tags"].schema == ArraySchema(PrimitiveSchema("string"))  # type: ignore[union-attr]
    with pytest.raises(
        Invalid, match=r"\$\.contents\[0\]\.schema: an Array in a Property schema needs DTDL v3"
    ):
        parse_models({**v3, "@context": "dtmi:dtdl:context;2"})


def test_names_must_follow_dtdl_rules_and_be_unique() -> None:
    doc = {
        "@context": V3,
        "@id": "dtmi:com:example:Names;1",
        "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "ok_name1", "schema": "string"},
            {"@type": "Property", "name": "ok_name1", "schema": "string"},
            {"@type": "Property", "name": "1bad", "schema": "string"},
            {"@type": "Property", "name": "bad_", "schema": "string"},
            {"@type": "Property", "name": "x" * 513, "schema": "string"},
        ],
    }
    with pytest.raises(Invalid) as info:
        parse_models(doc)
    paths = [e["path"] for e in info.value.fields["errors"]]
    assert paths == [f"$.contents[{i}].name" for i in (1, 2, 3, 4)]
    assert "not unique" in info.value.fields["errors"][0]["message"]
    assert info.value.message.endswith("(and 3 more)")


def test_enum_values_must_match_value_schema_and_be_unique() -> None:
    enum = {
        "@type": "Enum",
        "valueSchema": "integer",
        "enumValues": [
            {"name": "a", "enumValue": 1},
            {"name": "b", "enumValue": 1},
            {"name": "c", "enumValue": "x"},
            {"name": "d", "enumValue": True},
        ],
    }
    doc = {
        "@context": V3,
        "@id": "dtmi:com:example:E;1",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": "e", "schema": enum}],
    }
    with pytest.raises(Invalid) as info:
        parse_models(doc)
    paths = [e["path"] for e in info.value.fields["errors"]]
    assert paths == [f"$.contents[0].schema.enumValues[{i}].enumValue" for i in (1, 2, 3)]


def test_interface_ids_must_be_versioned_user_dtmis() -> None:
    base = {"@context": V3, "@type": "Interface"}
    for bad, text in [
        ("dtmi:com:example:Thing", "has no version"),
        ("dtmi:com:_system:Thing;1", "system DTMI"),
        ("dtmi:dtdl:Thing;1", "reserved"),
        ("urn:thing", "not a valid DTMI"),
        ("dtmi:com:" + "a" * 130 + ";1", "longer than 128"),
    ]:
        with pytest.raises(Invalid, match=text):
            parse_models({**base, "@id": bad})
    with pytest.raises(Invalid, match=r"\$\.@id: '@id' is required"):
        parse_models(base)


def test_local_schema_cycles_and_unknown_references_are_rejected() -> None:
    doc = {
        "@context": V3,
        "@id": "dtmi:com:example:Loop;1",
        "@type": "Interface",
        "schemas": [
            {
                "@id": "dtmi:com:example:node;1",
                "@type": "Object",
                "fields": [{"name": "next", "schema": "dtmi:com:example:node;1"}],
            }
        ],
        "contents": [{"@type": "Property", "name": "p", "schema": "dtmi:com:example:other;1"}],
    }
    with pytest.raises(Invalid) as info:
        parse_models(doc)
    messages = [e["message"] for e in info.value.fields["errors"]]
    assert any("refers to itself" in m for m in messages)
    assert (
        "$.contents[0].schema: schema 'dtmi:com:example:other;1' is not defined in this Interface's 'schemas'"
        in messages
    )


def test_complex_schemas_nest_at_most_five_levels() -> None:
    schema: object = "double"
    for _ in range(6):
        schema = {"@type": "Array", "elementSchema": schema}
    doc = {
        "@context": V3,
        "@id": "dtmi:com:example:Deep;1",
        "@type": "Interface",
        "contents": [{"@type": "Telemetry", "name": "t", "schema": schema}],
    }
    with pytest.raises(Invalid, match="at most 5 levels"):
        parse_models(doc)
    doc["contents"][0]["schema"] = schema["elementSchema"]  # type: ignore[index]
    assert parse_models(doc)[0].contents["t"].name == "t"


def test_documents_beyond_bounds_are_too_large() -> None:
    deep: object = {}
    for _ in range(100):
        deep = {"x": deep}
    with pytest.raises(TooLarge):
        parse_models({"@context": V3, "@id": "dtmi:com:example:A;1", "@type": "Interface", "comment": deep})
    huge = {
        "@context": V3,
        "@id": "dtmi:com:example:A;1",
        "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": f"p{i}", "schema": "string", "description": "d" * 500}
            for i in range(2500)
        ],
    }
    with pytest.raises(TooLarge, match="1 MiB"):
        parse_models(huge)
    with pytest.raises(TooLarge):
        parse_models([{"@context": V3}] * 2000)


def test_string_limits_are_enforced() -> None:
    doc = {
        "@context": V3,
        "@id": "dtmi:com:example:A;1",
        "@type": "Interface",
        "displayName": "d" * 65,
        "description": {"en": "x" * 513},
        "comment": "c" * 513,
    }
    with pytest.raises(Invalid) as info:
        parse_models(doc)
    assert sorted(e["path"] for e in info.value.fields["errors"]) == [
        "$.comment",
        "$.description.en",
        "$.displayName",
    ]


def test_relationship_multiplicity_rules() -> None:
    def rel(**extra: object) -> dict[str, object]:
        return {
            "@context": V3,
            "@id": "dtmi:com:example:R;1",
            "@type": "Interface",
            "contents": [{"@type": "Relationship", "name": "r", **extra}],
        }

    assert parse_models(rel(minMultiplicity=0, maxMultiplicity=1))[0].contents["r"] == RelationshipDef(
        "r", None, 1
    )
    with pytest.raises(Invalid, match=r"contents\[0\]\.minMultiplicity: 'minMultiplicity' must be 0"):
        parse_models(rel(minMultiplicity=1))
    with pytest.raises(Invalid, match="maxMultiplicity"):
        parse_models(rel(maxMultiplicity=0))


def test_duplicate_definitions_in_one_document_are_rejected() -> None:
    a = {"@context": V3, "@id": "dtmi:com:example:A;1", "@type": "Interface"}
    assert len(parse_models([a, dict(a)])) == 1
    with pytest.raises(Invalid, match="defined more than once"):
        parse_models([a, {**a, "displayName": "other"}])
