"""Export to DTDL v3 and round trips."""

from __future__ import annotations

from models_samples import QT, V3, thermostat

from tvilling.models import ModelSet, export_models, parse_models, to_dtdl


def test_parse_export_parse_round_trips(plant_v2: ModelSet) -> None:
    for models in (list(plant_v2), parse_models(thermostat())):
        again = parse_models(export_models(models))
        assert {i.id: i for i in again} == {i.id: i for i in models}


def test_export_is_a_fresh_v3_document() -> None:
    models = {i.id: i for i in parse_models(thermostat())}
    fan = to_dtdl(models["dtmi:com:example:Fan;1"])
    assert next(iter(fan)) == "@context" and fan["@context"] == [V3, QT]
    assert to_dtdl(models["dtmi:com:example:Device;1"])["@context"] == V3
    fan["contents"].clear()
    assert models["dtmi:com:example:Fan;1"].document["contents"], "export must not share state"


def test_exported_models_register_as_a_set(plant: ModelSet) -> None:
    rebuilt = ModelSet(parse_models(export_models(plant)))
    assert {i.id for i in rebuilt} == {i.id for i in plant}
    assert rebuilt.resolve("dtmi:tvilling:example:Machine;1") == plant.resolve(
        "dtmi:tvilling:example:Machine;1"
    )
