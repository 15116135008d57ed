"""Sample DTDL documents for the model-language tests: the example plant and a realistic thermostat."""

from __future__ import annotations

import json
from typing import Any

from tvilling.models.builtin import LIBRARY

EXAMPLES = LIBRARY
V3 = "dtmi:dtdl:context;3"
QT = "dtmi:dtdl:extension:quantitativeTypes;1"


def load(folder: str) -> list[dict[str, Any]]:
    """Return the JSON documents of one example folder, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted((EXAMPLES / folder).glob("*.json"))]


def thermostat() -> list[dict[str, Any]]:
    """A realistic DTDL v3 document: extends chain, components, semantic types, Map, Enum, schemas."""
    return [
        {
            "@context": V3,
            "@id": "dtmi:com:example:Device;1",
            "@type": "Interface",
            "displayName": {"en": "Device", "de": "Gerät"},
            "contents": [
                {"@type": "Property", "name": "serialNumber", "schema": "string"},
                {"@type": "Property", "name": "installed", "schema": "date"},
            ],
        },
        {
            "@context": [V3, QT],
            "@id": "dtmi:com:example:Thermostat;1",
            "@type": "Interface",
            "displayName": "Thermostat",
            "description": "Reports temperature and controls a set point.",
            "comment": "Used by the model tests.",
            "extends": ["dtmi:com:example:Device;1"],
            "schemas": [
                {
                    "@id": "dtmi:com:example:Thermostat:reading;1",
                    "@type": "Object",
                    "fields": [
                        {"name": "when", "schema": "dateTime"},
                        {
                            "@type": ["Field", "Temperature"],
                            "name": "value",
                            "schema": "double",
                            "unit": "degreeCelsius",
                        },
                    ],
                }
            ],
            "contents": [
                {
                    "@type": ["Telemetry", "Temperature"],
                    "@id": "dtmi:com:example:Thermostat:temp;1",
                    "name": "temp",
                    "schema": "double",
                    "unit": "degreeCelsius",
                },
                {
                    "@type": ["Property", "Temperature"],
                    "name": "setPoint",
                    "displayName": "Set point",
                    "schema": "double",
                    "unit": "degreeCelsius",
                    "writable": True,
                },
                {
                    "@type": "Property",
                    "name": "lastReading",
                    "schema": "dtmi:com:example:Thermostat:reading;1",
                },
                {
                    "@type": "Property",
                    "name": "mode",
                    "writable": True,
                    "schema": {
                        "@type": "Enum",
                        "valueSchema": "integer",
                        "enumValues": [
                            {"name": "off", "displayName": "Off", "enumValue": 0},
                            {"name": "heat", "enumValue": 1},
                            {"name": "cool", "enumValue": 2},
                        ],
                    },
                },
                {
                    "@type": "Property",
                    "name": "schedule",
                    "writable": True,
                    "schema": {
                        "@type": "Map",
                        "mapKey": {"name": "day", "schema": "string"},
                        "mapValue": {
                            "@type": ["MapValue", "Temperature"],
                            "name": "target",
                            "schema": "double",
                            "unit": "degreeFahrenheit",
                        },
                    },
                },
                {
                    "@type": "Telemetry",
                    "name": "history",
                    "schema": {"@type": "Array", "elementSchema": "dtmi:com:example:Thermostat:reading;1"},
                },
                {"@type": "Component", "name": "fan", "schema": "dtmi:com:example:Fan;1"},
                {
                    "@type": "Component",
                    "name": "display",
                    "schema": {
                        "@id": "dtmi:com:example:Display;1",
                        "@type": "Interface",
                        "contents": [
                            {"@type": "Property", "name": "brightness", "schema": "integer", "writable": True}
                        ],
                    },
                },
                {
                    "@type": "Command",
                    "name": "reboot",
                    "request": {"name": "delay", "schema": "duration"},
                    "response": {"@type": "CommandResponse", "name": "scheduledTime", "schema": "dateTime"},
                },
                {
                    "@type": "Relationship",
                    "name": "controls",
                    "target": "dtmi:com:example:Heater;1",
                    "minMultiplicity": 0,
                    "maxMultiplicity": 2,
                    "writable": True,
                    "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}],
                },
            ],
        },
        {
            "@context": [V3, QT],
            "@id": "dtmi:com:example:Fan;1",
            "@type": "Interface",
            "contents": [
                {
                    "@type": ["Telemetry", "AngularVelocity"],
                    "name": "speed",
                    "schema": "float",
                    "unit": "revolutionPerMinute",
                },
                {"@type": "Property", "name": "on", "schema": "boolean", "writable": True},
            ],
        },
        {
            "@context": V3,
            "@id": "dtmi:com:example:Heater;1",
            "@type": "Interface",
            "extends": {
                "@id": "dtmi:com:example:Powered;1",
                "@type": "Interface",
                "contents": [{"@type": "Telemetry", "name": "power", "schema": "double"}],
            },
        },
    ]
