"""Every unsupported DTDL feature is rejected, naming the feature and its JSON path."""

from __future__ import annotations

from typing import Any

import pytest
from models_samples import QT, V3

from tvilling.core.errors import Invalid
from tvilling.models import parse_models


def doc(content: dict[str, Any], context: object = (V3, QT), **extra: Any) -> list[dict[str, Any]]:
    ok = {"@context": V3, "@id": "dtmi:com:example:Ok;1", "@type": "Interface"}
    iface = {
        "@context": list(context) if isinstance(context, tuple) else context,
        "@id": "dtmi:com:example:Thing;1",
        "@type": "Interface",
        "contents": [content],
        **extra,
    }
    return [ok, iface]


CASES: list[tuple[list[dict[str, Any]], str]] = [
    (
        doc({"@type": ["Property", "Historized"], "name": "p", "schema": "double"}),
        "$[1].contents[0].@type: 'Historized' is not supported "
        "(extension dtmi:dtdl:extension:historization;1)",
    ),
    (
        doc({"@type": ["Telemetry", "ValueAnnotation"], "name": "a", "annotates": "p", "schema": "double"}),
        "$[1].contents[0].@type: 'ValueAnnotation' is not supported "
        "(extension dtmi:dtdl:extension:annotation;1)",
    ),
    (
        doc(
            {"@type": "Property", "name": "p", "schema": "double"},
            context=[V3, "dtmi:dtdl:extension:historization;1"],
        ),
        "$[1].@context[1]: extension dtmi:dtdl:extension:historization;1 is not supported",
    ),
    (
        doc(
            {"@type": "Property", "name": "p", "schema": "double"}, context=[V3, "dtmi:dtdl:extension:mqtt;1"]
        ),
        "$[1].@context[1]: extension dtmi:dtdl:extension:mqtt;1 is not supported",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double"}, context="dtmi:dtdl:context;4"),
        "$[1].@context[0]: context 'dtmi:dtdl:context;4' is not supported",
    ),
    (
        doc(
            {"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": "degreeCelsius"},
            context=V3,
        ),
        "$[1].contents[0].@type: semantic type 'Temperature' requires the extension "
        "dtmi:dtdl:extension:quantitativeTypes;1 in @context",
    ),
    (
        doc({"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": "metre"}),
        "$[1].contents[0].unit: unit 'metre' is not a TemperatureUnit",
    ),
    (
        doc({"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "string"}),
        "$[1].contents[0].schema: semantic type 'Temperature' needs a numeric schema",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": "double", "unit": "degreeCelsius"}),
        "$[1].contents[0].unit: key 'unit' needs a semantic type in @type",
    ),
    (
        doc({"@type": "Sensor", "name": "t", "schema": "double"}),
        "$[1].contents[0].@type: 'Sensor' is not supported (unknown type)",
    ),
    (
        doc({"@type": ["Telemetry", "dtmi:com:example:Custom;1"], "name": "t", "schema": "double"}),
        "$[1].contents[0].@type: 'dtmi:com:example:Custom;1' is not supported (unknown type)",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": "double", "colour": "red"}),
        "$[1].contents[0].colour: key 'colour' is not supported on a Telemetry",
    ),
    (
        doc(
            {"@type": "Command", "name": "c", "request": {"name": "r", "schema": "double", "nullable": True}}
        ),
        "$[1].contents[0].request.nullable: key 'nullable' is not supported (a DTDL v4 feature)",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": "uuid"}),
        "$[1].contents[0].schema: schema 'uuid' is not supported (a DTDL v4 primitive schema)",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": "point"}),
        "$[1].contents[0].schema: geospatial schema 'point' is not supported",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": "complex"}),
        "$[1].contents[0].schema: schema 'complex' is not supported (unknown schema)",
    ),
    (
        doc({"@type": "Telemetry", "name": "t", "schema": {"@type": "Union", "options": []}}),
        "$[1].contents[0].schema.@type: 'Union' is not supported (unknown type)",
    ),
    (
        doc(
            {
                "@type": "Telemetry",
                "name": "t",
                "schema": {"@type": "Enum", "valueSchema": "double", "enumValues": []},
            }
        ),
        "$[1].contents[0].schema.valueSchema: 'valueSchema' must be 'integer' or 'string'",
    ),
    (
        doc(
            {
                "@type": "Property",
                "name": "m",
                "schema": {
                    "@type": "Map",
                    "mapKey": {"name": "k", "schema": "integer"},
                    "mapValue": {"name": "v", "schema": "string"},
                },
            }
        ),
        "$[1].contents[0].schema.mapKey.schema: the schema of a MapKey must be 'string'",
    ),
    (
        doc(
            {
                "@type": "Telemetry",
                "name": "t",
                "schema": {
                    "@type": "Object",
                    "fields": [{"@type": ["Field", "Historized"], "name": "f", "schema": "double"}],
                },
            }
        ),
        "$[1].contents[0].schema.fields[0].@type: 'Historized' is not supported",
    ),
    (
        doc({"@type": ["Command", "Temperature"], "name": "c"}),
        "$[1].contents[0].@type: a Command cannot have a semantic type",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double"}, **{"@type": ["Interface", "Mqtt"]}),
        "$[1].@type: 'Mqtt' is not supported (unknown type)",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double", "@context": V3}),
        "$[1].contents[0].@context: '@context' is only allowed on an Interface",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double"}, sealed=True),
        "$[1].sealed: key 'sealed' is not supported on an Interface",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double", "writable": "yes"}),
        "$[1].contents[0].writable: 'writable' must be true or false",
    ),
    (
        doc({"@type": "Relationship", "name": "r", "target": "not a dtmi"}),
        "$[1].contents[0].target: 'not a dtmi' is not a valid DTMI",
    ),
    (
        doc({"@type": "Component", "name": "c", "schema": {"@type": "Interface"}}),
        "$[1].contents[0].schema.@id: '@id' is required",
    ),
    (
        [{"@id": "dtmi:com:example:NoContext;1", "@type": "Interface"}],
        "$[0].@context: '@context' is required",
    ),
    (
        doc({"@type": "Property", "name": "p", "schema": "double"}, context=["dtmi:dtdl:context;2", QT]),
        "$[1].@context[1]: the QuantitativeTypes extension is for DTDL v3",
    ),
]


@pytest.mark.parametrize(("document", "expected"), CASES, ids=[c[1].split(": ", 1)[1][:50] for c in CASES])
def test_unsupported_feature_is_rejected_with_its_path(document: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_models(document)
    messages = [e["message"] for e in info.value.fields["errors"]]
    assert any(m.startswith(expected) for m in messages), messages
    assert info.value.status == 422
    for error in info.value.fields["errors"]:
        assert set(error) == {"path", "feature", "message"}
        assert error["message"].startswith(error["path"] + ": ")


def test_all_problems_are_collected_into_one_error() -> None:
    bad = doc({"@type": ["Property", "Historized"], "name": "p", "schema": "uuid", "extra": 1})
    with pytest.raises(Invalid) as info:
        parse_models(bad)
    errors = info.value.fields["errors"]
    assert [e["feature"] for e in errors] == ["Historized", "extra", "uuid"]
    assert info.value.message == errors[0]["message"] + " (and 2 more)"
