"""Tvilling's commands extension: disruptive commands and the properties a command affects."""

from __future__ import annotations

from typing import Any

import pytest
from models_samples import QT, V3, load

from tvilling.core.errors import Invalid
from tvilling.models import CommandDef, ModelSet, parse_models, to_dtdl
from tvilling.models.dtdl_care import COMMANDS_CONTEXT

MACHINE_V2 = "dtmi:tvilling:example:Machine;3"


def press(*commands: dict[str, Any], context: object = None,
          extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "@context": [V3, COMMANDS_CONTEXT] if context is None else context,
        "@id": "dtmi:com:example:Press;1",
        "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "state", "schema": "string"},
            {"@type": "Telemetry", "name": "strokes", "schema": "double"},
            {"@type": "Component", "name": "drive", "schema": "dtmi:com:example:Drive;1"},
            *(extra or []),
            *commands,
        ],
    }


DRIVE = {"@context": V3, "@id": "dtmi:com:example:Drive;1", "@type": "Interface",
         "contents": [{"@type": "Telemetry", "name": "current", "schema": "double"}]}


def messages(document: object) -> list[str]:
    with pytest.raises(Invalid) as info:
        ModelSet(parse_models(document))
    assert info.value.status == 422
    return [e["message"] for e in info.value.fields["errors"]]


def test_a_disruptive_command_keeps_its_marking_through_parse_resolve_and_export() -> None:
    stop = {"@type": ["Command", "Disruptive"], "name": "stop", "disruption": {"en": "The press stops.", "de": "Halt."},
            "affects": ["state", "drive.current"]}
    jog = {"@type": ["Command", "Effect"], "name": "jog", "affects": ["strokes"],
           "request": {"name": "mm", "schema": "double"}}
    plain = {"@type": "Command", "name": "ping"}
    models = ModelSet(parse_models([DRIVE, press(stop, jog, plain)]))
    cmds = models.resolve("dtmi:com:example:Press;1").commands
    assert cmds["stop"] == CommandDef("stop", None, None, True, "The press stops.", ("state", "drive.current"))
    assert (cmds["jog"].disruptive, cmds["jog"].affects, cmds["jog"].request is not None) == (False, ("strokes",), True)
    assert (cmds["ping"].disruptive, cmds["ping"].disruption, cmds["ping"].affects) == (False, None, ())

    exported = to_dtdl(models.get("dtmi:com:example:Press;1"))
    assert exported["@context"] == [V3, COMMANDS_CONTEXT]
    assert exported["contents"][3]["@type"] == ["Command", "Disruptive"]
    again = ModelSet(parse_models([DRIVE, exported]))
    assert again.resolve("dtmi:com:example:Press;1").commands == cmds


def test_the_extension_combines_with_quantitative_types() -> None:
    doc = press({"@type": ["Command", "Disruptive"], "name": "stop"}, context=[V3, QT, COMMANDS_CONTEXT])
    [iface] = parse_models(doc | {"contents": [c for c in doc["contents"] if c["@type"] != "Component"]})
    assert to_dtdl(iface)["@context"] == [V3, QT, COMMANDS_CONTEXT]
    assert iface.contents["stop"].disruptive  # type: ignore[union-attr]


@pytest.mark.parametrize(("document", "expected"), [
    (press({"@type": ["Command", "Disruptive"], "name": "stop"}, context=[V3]),
     "$.contents[3].@type: co-type 'Disruptive' needs the extension dtmi:tvilling:extension:commands;1 in @context"),
    (press({"@type": "Command", "name": "stop", "disruption": "It stops."}),
     "$.contents[3].disruption: key 'disruption' needs the co-type 'Disruptive' in @type"),
    (press({"@type": ["Command", "Effect"], "name": "stop", "disruption": "It stops."}),
     "$.contents[3].disruption: key 'disruption' needs the co-type 'Disruptive' in @type"),
    (press({"@type": "Command", "name": "stop", "affects": ["state"]}),
     "$.contents[3].affects: key 'affects' needs the co-type 'Disruptive' or 'Effect' in @type"),
    (press(extra=[{"@type": ["Property", "Disruptive"], "name": "mode", "schema": "string"}]),
     "$.contents[3].@type: co-type 'Disruptive' is only for a Command, not a Property"),
    (press({"@type": ["Command", "Disruptive"], "name": "stop", "affects": []}),
     "$.contents[3].affects: 'affects' must be a list of 1 to 32 property or telemetry names"),
    (press({"@type": ["Command", "Disruptive"], "name": "stop", "affects": ["state", "state"]}),
     "$.contents[3].affects[1]: 'state' is listed twice"),
    (press({"@type": ["Command", "Disruptive"], "name": "stop", "affects": ["a.b.c"]}),
     "$.contents[3].affects[0]: 'a.b.c' is not a property name"),
    (press({"@type": ["Command", "Disruptive"], "name": "stop", "disruption": 3}),
     "$.contents[3].disruption: must be a string or a map of language tags to strings"),
    ({**press({"@type": ["Command", "Disruptive"], "name": "stop"}), "@context": "dtmi:dtdl:context;2"}
     | {"contents": [{"@type": ["Command", "Disruptive"], "name": "stop"}]},
     "$.contents[0].@type: co-type 'Disruptive' needs the extension"),
])
def test_misuse_of_the_extension_is_rejected_with_its_path(document: dict[str, Any], expected: str) -> None:
    found = messages([DRIVE, document] if "Component" in str(document) else document)
    found = [m.replace("$[1].", "$.") for m in found]
    assert any(m.startswith(expected) for m in found), found


def test_a_v2_document_cannot_use_the_extension() -> None:
    doc = {"@context": ["dtmi:dtdl:context;2", COMMANDS_CONTEXT], "@id": "dtmi:com:example:Old;1",
           "@type": "Interface", "contents": []}
    assert messages(doc) == ["$.@context[1]: the extension dtmi:tvilling:extension:commands;1 is for DTDL v3"]


@pytest.mark.parametrize(("name", "expected"), [
    ("speed", "'speed' is not a Property or Telemetry of the model"),
    ("gear.current", "'gear.current': the model has no Component 'gear'"),
    ("drive.voltage", "'drive.voltage': Component 'drive' has no Property or Telemetry 'voltage'"),
])
def test_affects_must_name_what_the_resolved_model_declares(name: str, expected: str) -> None:
    doc = press({"@type": ["Command", "Disruptive"], "name": "stop", "affects": ["state", name]})
    assert messages([DRIVE, doc]) == [f"dtmi:com:example:Press;1.stop.affects: {expected}"]


def test_affects_may_name_inherited_properties() -> None:
    base = {"@context": V3, "@id": "dtmi:com:example:Base;1", "@type": "Interface",
            "contents": [{"@type": "Property", "name": "mode", "schema": "string"}]}
    child = {"@context": [V3, COMMANDS_CONTEXT], "@id": "dtmi:com:example:Child;1", "@type": "Interface",
             "extends": "dtmi:com:example:Base;1",
             "contents": [{"@type": ["Command", "Effect"], "name": "setMode", "affects": ["mode"]}]}
    models = ModelSet(parse_models([base, child]))
    assert models.resolve("dtmi:com:example:Child;1").commands["setMode"].affects == ("mode",)


def test_the_demo_plant_marks_its_disruptive_commands() -> None:
    models = ModelSet(parse_models(load("plant-v4")))
    cmds = models.resolve(MACHINE_V2).commands
    assert {n for n, c in cmds.items() if c.disruptive} == {"stop", "start", "maintenanceDone"}
    assert not cmds["setSpeed"].disruptive and cmds["setSpeed"].affects == ("speedSetpoint", "speed")
    assert "production on it stops" in (cmds["stop"].disruption or "")
    for cmd in cmds.values():
        assert cmd.affects, f"{cmd.name} names no property it affects"
