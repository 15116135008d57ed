"""The registered model set: resolution, inheritance, versions and validation of batches."""

from __future__ import annotations

from typing import Any

import pytest
from models_samples import V3, thermostat

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.models import ModelSet, PrimitiveSchema, parse_models

EX = "dtmi:tvilling:example:"


def iface(
    dtmi: str, *names: str, extends: Any = None, components: dict[str, str] | None = None
) -> dict[str, Any]:
    contents: list[dict[str, Any]] = [{"@type": "Property", "name": n, "schema": "double"} for n in names]
    contents += [{"@type": "Component", "name": k, "schema": v} for k, v in (components or {}).items()]
    doc: dict[str, Any] = {"@context": V3, "@id": dtmi, "@type": "Interface", "contents": contents}
    if extends is not None:
        doc["extends"] = extends
    return doc


def test_example_plant_parses_and_resolves(plant: ModelSet) -> None:
    assert len(plant) == 6
    machine = plant.resolve(EX + "Machine;1")
    assert machine.bases == {EX + "Machine;1", EX + "Asset;1"}
    assert set(machine.properties) == {"serialNumber", "manufacturer", "health", "state", "speedSetpoint"}
    assert set(machine.telemetry) == {"speed"}
    assert set(machine.commands) == {"setSpeed", "stop"}
    assert set(machine.relationships) == {"hasBearing", "hasSpindle"}
    assert machine.components["motor"].schema == EX + "Motor;1"
    assert machine.relationships["hasBearing"].max_multiplicity == 4
    assert machine.properties["speedSetpoint"].unit == "revolutionPerMinute"
    assert machine.properties["speedSetpoint"].writable is True
    assert plant.resolve(EX + "Bearing;1").properties["lubricationInterval"].unit == "hour"
    line = plant.resolve(EX + "ProductionLine;1")
    assert line.relationships["hasMachine"].properties["position"].schema == PrimitiveSchema("integer")
    assert plant.resolve(EX + "Machine;1") is machine  # cached


def test_thermostat_resolves_through_extends_and_inline_models() -> None:
    models = ModelSet(parse_models(thermostat()))
    t = models.resolve("dtmi:com:example:Thermostat;1")
    assert {"serialNumber", "installed", "setPoint"} <= set(t.properties)
    assert "power" in models.resolve("dtmi:com:example:Heater;1").telemetry


def test_descendants_and_is_a_with_unversioned_dtmis(plant_v2: ModelSet) -> None:
    assert plant_v2.descendants(EX + "Bearing") == {EX + "Bearing;1", EX + "Bearing;2"}
    assert plant_v2.descendants(EX + "Bearing;1") == {EX + "Bearing;1"}
    assert plant_v2.descendants(EX + "Asset;1") == {
        EX + n for n in ("Asset;1", "ProductionLine;1", "Machine;1", "Bearing;1", "Bearing;2", "Spindle;1")
    }
    assert plant_v2.descendants(EX + "Motor") == {EX + "Motor;1"}
    assert plant_v2.is_a(EX + "Bearing;2", EX + "Asset")
    assert plant_v2.is_a(EX + "Bearing;2", EX + "Asset;1")
    assert not plant_v2.is_a(EX + "Bearing;2", EX + "Asset;2")
    assert not plant_v2.is_a(EX + "Asset;1", EX + "Bearing")
    assert plant_v2.versions(EX + "Bearing") == [EX + "Bearing;1", EX + "Bearing;2"]
    assert plant_v2.versions(EX + "Nothing") == []
    with pytest.raises(NotFound):
        plant_v2.is_a(EX + "Nothing;1", EX + "Asset")


def test_versions_sort_numerically() -> None:
    models = ModelSet(parse_models([iface(f"dtmi:ex:A;{v}") for v in (10, 2, 1)]))
    assert models.versions("dtmi:ex:A") == ["dtmi:ex:A;1", "dtmi:ex:A;2", "dtmi:ex:A;10"]


def test_with_models_is_immutable_and_container_protocol(plant: ModelSet) -> None:
    bigger = plant.with_models(parse_models(iface("dtmi:ex:Extra;1", "x")))
    assert "dtmi:ex:Extra;1" in bigger and "dtmi:ex:Extra;1" not in plant
    assert len(bigger) == len(plant) + 1
    assert {i.id for i in bigger} == {i.id for i in plant} | {"dtmi:ex:Extra;1"}
    with pytest.raises(NotFound, match="not registered"):
        plant.get("dtmi:ex:Extra;1")


def test_same_definition_again_is_a_no_op_but_a_different_one_conflicts(plant: ModelSet) -> None:
    again = plant.with_models(list(plant))
    assert len(again) == len(plant)
    changed = iface(EX + "Motor;1", "different")
    with pytest.raises(Conflict) as info:
        plant.with_models(parse_models(changed))
    assert info.value.fields["ids"] == [EX + "Motor;1"]


def test_unresolved_extends_and_components_are_listed() -> None:
    batch = parse_models(
        [
            iface("dtmi:ex:A;1", extends="dtmi:ex:Missing;1"),
            iface("dtmi:ex:B;1", components={"c": "dtmi:ex:Gone;1"}),
        ]
    )
    with pytest.raises(Invalid) as info:
        ModelSet().with_models(batch)
    assert [e["path"] for e in info.value.fields["errors"]] == ["dtmi:ex:A;1.extends[0]", "dtmi:ex:B;1.c"]
    # resolving within the same batch works regardless of order
    ok = ModelSet().with_models(
        parse_models([iface("dtmi:ex:C;1", extends="dtmi:ex:D;1"), iface("dtmi:ex:D;1")])
    )
    assert ok.is_a("dtmi:ex:C;1", "dtmi:ex:D;1")


def test_cycles_are_rejected() -> None:
    batch = parse_models(
        [iface("dtmi:ex:A;1", extends="dtmi:ex:B;1"), iface("dtmi:ex:B;1", extends="dtmi:ex:A;1")]
    )
    with pytest.raises(Invalid, match="cycle"):
        ModelSet(batch)
    with pytest.raises(Invalid, match="nested Components"):
        ModelSet(parse_models(iface("dtmi:ex:Self;1", components={"me": "dtmi:ex:Self;1"})))


def test_name_clash_with_inherited_contents() -> None:
    batch = parse_models(
        [iface("dtmi:ex:Base;1", "speed"), iface("dtmi:ex:Sub;1", "speed", extends="dtmi:ex:Base;1")]
    )
    with pytest.raises(Invalid) as info:
        ModelSet(batch)
    assert "'speed' is declared by 'dtmi:ex:Sub;1' and inherited from 'dtmi:ex:Base;1'" in info.value.message
    # a diamond inherits the same property once, without a clash
    diamond = parse_models(
        [
            iface("dtmi:ex:Root;1", "id"),
            iface("dtmi:ex:Left;1", extends="dtmi:ex:Root;1"),
            iface("dtmi:ex:Right;1", extends="dtmi:ex:Root;1"),
            iface("dtmi:ex:Both;1", extends=["dtmi:ex:Left;1", "dtmi:ex:Right;1"]),
        ]
    )
    assert set(ModelSet(diamond).resolve("dtmi:ex:Both;1").properties) == {"id"}
    clash = parse_models(
        [
            iface("dtmi:ex:L;1", "x"),
            iface("dtmi:ex:R;1", "x"),
            iface("dtmi:ex:LR;1", extends=["dtmi:ex:L;1", "dtmi:ex:R;1"]),
        ]
    )
    with pytest.raises(Invalid, match="inherited from both"):
        ModelSet(clash)


def test_nested_components_are_rejected() -> None:
    batch = parse_models(
        [
            iface("dtmi:ex:Leaf;1", "x"),
            iface("dtmi:ex:Middle;1", components={"leaf": "dtmi:ex:Leaf;1"}),
            iface("dtmi:ex:Top;1", components={"middle": "dtmi:ex:Middle;1"}),
        ]
    )
    with pytest.raises(Invalid) as info:
        ModelSet(batch)
    assert [e["path"] for e in info.value.fields["errors"]] == ["dtmi:ex:Top;1.middle"]


def test_extends_depth_is_at_most_ten() -> None:
    chain = [iface("dtmi:ex:L0;1")] + [
        iface(f"dtmi:ex:L{i};1", extends=f"dtmi:ex:L{i - 1};1") for i in range(1, 10)
    ]
    assert len(ModelSet(parse_models(chain))) == 10
    chain.append(iface("dtmi:ex:L10;1", extends="dtmi:ex:L9;1"))
    with pytest.raises(Invalid, match="11 levels deep"):
        ModelSet(parse_models(chain))


def test_failed_batch_leaves_the_set_unchanged(plant: ModelSet) -> None:
    with pytest.raises(Invalid):
        plant.with_models(
            parse_models([iface("dtmi:ex:Ok;1"), iface("dtmi:ex:Bad;1", extends="dtmi:ex:No;1")])
        )
    assert "dtmi:ex:Ok;1" not in plant


def test_a_missing_base_further_up_is_reported_once_without_crashing() -> None:
    batch = parse_models(
        [iface("dtmi:ex:A;1", extends="dtmi:ex:B;1"), iface("dtmi:ex:B;1", extends="dtmi:ex:Missing;1")]
    )
    with pytest.raises(Invalid) as info:
        ModelSet(batch)
    assert [e["path"] for e in info.value.fields["errors"]] == ["dtmi:ex:B;1.extends[0]"]


def test_long_hierarchies_are_rejected_without_deep_recursion() -> None:
    n = 3000
    chain = [iface("dtmi:ex:C0;1")] + [
        iface(f"dtmi:ex:C{i};1", extends=f"dtmi:ex:C{i - 1};1") for i in range(1, n)
    ]
    interfaces = [i for start in range(0, n, 1000) for i in parse_models(chain[start : start + 1000])]
    with pytest.raises(Invalid) as info:
        ModelSet(interfaces)
    assert info.value.message.startswith("dtmi:ex:C10;1.extends: the extends hierarchy is 11 levels deep")
    ring = [iface(f"dtmi:ex:R{i};1", extends=f"dtmi:ex:R{(i + 1) % n};1") for i in range(n)]
    interfaces = [i for start in range(0, n, 1000) for i in parse_models(ring[start : start + 1000])]
    with pytest.raises(Invalid, match="contains a cycle"):
        ModelSet(interfaces)
