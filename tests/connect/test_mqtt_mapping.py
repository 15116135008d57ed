"""Declarative payload mappings and the topic → envelope translator (pure, no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tvilling.connect.mapping import JsonPath, PayloadMapping, TopicPattern, load_mappings, load_mappings_file
from tvilling.connect.mqtt.telemetry import Translator
from tvilling.core.errors import Invalid

BASE: dict[str, Any] = {
    "name": "acme",
    "topic": "plant/{line}/{machine}/sensors",
    "twin": "{machine}",
    "ts": "$.time",
    "ts_format": "epoch_s",
    "values": {"vibration": {"path": "$.vib.rms", "unit": "metrePerSecond"},
               "temperature": {"path": "$.t", "unit": "degreeFahrenheit", "to_unit": "degreeCelsius"}},
    "id": "$.seq",
}


def mapping(**changes: Any) -> PayloadMapping:
    return PayloadMapping.from_dict({**BASE, **changes})


# ------------------------------------------------------------------ topics

@pytest.mark.parametrize(("pattern", "subscription", "topic", "expected"), [
    ("plant/{line}/{machine}/sensors", "plant/+/+/sensors", "plant/L1/M7/sensors", {"line": "L1", "machine": "M7"}),
    ("plant/{line}/{machine}/sensors", "plant/+/+/sensors", "plant/L1/M7/other", None),
    ("plant/{line}/{machine}/sensors", "plant/+/+/sensors", "plant/L1/sensors", None),
    ("site/{rest...}", "site/#", "site/a/b/c", {"rest": "a/b/c"}),
    ("site/{rest...}", "site/#", "site", {"rest": ""}),
    ("site/+/{dev}/#", "site/+/+/#", "site/x/d1/a/b", {"dev": "d1"}),
    ("a/b", "a/b", "a/b", {}),
])
def test_topic_patterns(pattern: str, subscription: str, topic: str, expected: dict[str, str] | None) -> None:
    p = TopicPattern.parse(pattern)
    assert p.subscription == subscription
    assert p.match(topic) == expected


@pytest.mark.parametrize(("pattern", "error"), [
    ("plant/{rest...}/x", "must be the last level"),
    ("plant/#/x", "must be the last level"),
    ("plant/m{machine}", "whole level"),
    ("plant/{a}/{a}", "twice"),
    ("$share/g/x", "must not start with '$'"),
    ("", "non-empty"),
])
def test_bad_topic_patterns(pattern: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("$", r"\$")):
        TopicPattern.parse(pattern)


# ------------------------------------------------------------------ paths

@pytest.mark.parametrize(("path", "doc", "value"), [
    ("$", 5, 5),
    ("$.a.b", {"a": {"b": 1}}, 1),
    ("$.a[0].c", {"a": [{"c": "x"}]}, "x"),
    ("$.a[-1]", {"a": [1, 2, 3]}, 3),
    ("$.with-dash", {"with-dash": True}, True),
    ("$.m[1][0]", {"m": [[0], [7]]}, 7),
])
def test_paths(path: str, doc: Any, value: Any) -> None:
    assert JsonPath.parse(path).get(doc) == value


@pytest.mark.parametrize("path", ["a.b", "$.", "$..a", "$.a[x]", "$[", "$ .a"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(ValueError):
        JsonPath.parse(path)


# ------------------------------------------------------------------ translation

def test_translate_converts_units_reads_ids_and_times() -> None:
    [env] = mapping().translate("plant/L1/M7/sensors", {"time": 1767225600.5, "vib": {"rms": 0.004}, "t": 32,
                                                        "seq": 5})
    assert env.twin == "M7" and env.id == "5"
    assert env.ts == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    # to_unit converts here; a unit alone travels with the value, for the pipeline to convert
    assert env.values == {"vibration": {"value": 0.004, "unit": "metrePerSecond"}, "temperature": 0.0}
    assert mapping().units == {"vibration": "metrePerSecond", "temperature": "degreeCelsius"}


@pytest.mark.parametrize(("fmt", "raw", "iso"), [
    ("epoch_ms", 1767225600000, "2026-01-01T00:00:00+00:00"),
    ("epoch_us", 1767225600000000, "2026-01-01T00:00:00+00:00"),
    ("iso", "2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00+00:00"),
    ("auto", 1767225600000, "2026-01-01T00:00:00+00:00"),
    ("auto", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"),
])
def test_timestamp_formats(fmt: str, raw: Any, iso: str) -> None:
    [env] = mapping(ts_format=fmt).translate("plant/L1/M7/sensors", {"time": raw, "vib": {"rms": 1}, "t": 1,
                                                                      "seq": 1})
    assert env.ts.isoformat() == iso


def test_without_ts_the_receive_time_is_used_and_a_list_is_many_records() -> None:
    received = datetime(2026, 5, 1, tzinfo=UTC)
    m = PayloadMapping.from_dict({"topic": "dev/{id}", "twin": "pump-{id}", "values": {"p": "$.p"}})
    envs = m.translate("dev/3", [{"p": 1}, {"p": 2}], received=received)
    assert [(e.twin, e.ts, e.values) for e in envs] == [("pump-3", received, {"p": 1}), ("pump-3", received, {"p": 2})]


def test_twin_from_the_payload_and_optional_values() -> None:
    m = PayloadMapping.from_dict({"topic": "gw/#", "twin": "$.device", "values": {
        "a": "$.a", "b": {"path": "$.b", "optional": True}}, "source": "gateway"})
    [env] = m.translate("gw/x/y", {"device": "D9", "a": 1})
    assert (env.twin, env.values, env.source) == ("D9", {"a": 1}, "gateway")


@pytest.mark.parametrize(("payload", "reason"), [
    ({"time": 1, "t": 1, "seq": 1}, "$.vib.rms is missing"),
    ({"vib": {"rms": 1}, "t": 1, "seq": 1}, "$.time is missing"),
    ({"time": "x", "vib": {"rms": 1}, "t": 1, "seq": 1}, "must be a number (epoch_s)"),
    ({"time": 1, "vib": {"rms": 1}, "t": "hot", "seq": 1}, "must be a number to convert"),
    ({"time": 1, "vib": {"rms": 1}, "t": 1, "seq": [1]}, "$.seq must be a string or an integer"),
    ([], "empty list"),
    ([{"time": 1, "vib": {"rms": 1}, "t": 1, "seq": 1}, {"time": 1}], "record [1]"),
])
def test_untranslatable_payloads_raise_invalid_naming_mapping_and_reason(payload: Any, reason: str) -> None:
    with pytest.raises(Invalid) as err:
        mapping().translate("plant/L1/M7/sensors", payload)
    assert reason in err.value.message
    assert "'acme'" in err.value.message
    assert err.value.fields["mapping"] == "acme"


# ------------------------------------------------------------------ validation at load

@pytest.mark.parametrize(("changes", "field", "text"), [
    ({"twin": "{nope}"}, "twin", "not in the topic pattern"),
    ({"twin": None}, "twin", "is required"),
    ({"topic": "plant/{a}/{a}"}, "topic", "twice"),
    ({"ts": "time"}, "ts", "must start with '$'"),
    ({"ts_format": "unix"}, "ts_format", "must be one of"),
    ({"values": {}}, "values", "non-empty"),
    ({"values": {"v": {"path": "$.v", "unit": "furlong"}}}, "values.v.unit", "unknown unit 'furlong'"),
    ({"values": {"v": {"path": "$.v", "to_unit": "degreeCelsius"}}}, "values.v.to_unit", "needs 'unit'"),
    ({"values": {"v": {"path": "$.v", "unit": "metre", "to_unit": "degreeCelsius"}}}, "values.v.to_unit",
     "cannot convert"),
    ({"values": {"v": {"unit": "metre"}}}, "values.v.path", "is required"),
    ({"values": {"v": {"path": "$.v", "scale": 2}}}, "values.v.scale", "unknown key"),
    ({"values": {"v": 3}}, "values.v", "path string or an object"),
    ({"code": "import os"}, "code", "unknown key"),
    ({"source": "{nope}"}, "source", "not in the topic pattern"),
])
def test_validation_errors_name_the_mapping_and_the_field(changes: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(Invalid) as err:
        mapping(**changes)
    assert err.value.fields["mapping"] == "acme"
    assert err.value.fields["field"] == field
    assert f"mapping 'acme': {field}:" in err.value.message and text in err.value.message


def test_load_mappings_checks_duplicate_names_and_shape() -> None:
    with pytest.raises(Invalid, match="duplicate"):
        load_mappings([BASE, BASE])
    with pytest.raises(Invalid, match="list"):
        load_mappings("nope")
    with pytest.raises(Invalid, match="mapping #1: must be an object"):
        load_mappings([BASE, 3])
    assert [m.name for m in load_mappings({"mappings": [BASE]})] == ["acme"]


def test_load_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text('''
[[mappings]]
name = "acme"
topic = "plant/{line}/{machine}/sensors"
twin = "{machine}"
ts = "$.time"
ts_format = "epoch_s"
[mappings.values]
vibration = "$.vib.rms"
temperature = { path = "$.t", unit = "degreeFahrenheit", to_unit = "degreeCelsius" }
''')
    [m] = load_mappings_file(toml)
    assert m.subscription == "plant/+/+/sensors"
    [env] = m.translate("plant/L2/M1/sensors", {"time": 0, "vib": {"rms": 1.5}, "t": 212})
    assert env.values == {"vibration": 1.5, "temperature": 100.0}
    js = tmp_path / "m.json"
    js.write_text(json.dumps({"mappings": [BASE]}))
    assert load_mappings_file(js)[0].name == "acme"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[mappings]\n")
    with pytest.raises(Invalid, match="cannot read mappings"):
        load_mappings_file(bad)


# ------------------------------------------------------------------ translator routing

def test_translator_routes_mappings_first_then_canonical_topics() -> None:
    t = Translator(mappings=[mapping()])
    assert t.subscriptions == ["plant/+/+/sensors", "tvilling/+/telemetry"]
    [mapped] = t.translate("plant/L1/M7/sensors", b'{"time": 0, "vib": {"rms": 1}, "t": 32, "seq": 1}')
    assert mapped.values["temperature"] == 0.0
    envs = t.translate("tvilling/B1/telemetry", b'[{"ts": 0, "values": {"a": 1}}, {"ts": 1, "values": {"a": 2}}]')
    assert [e.twin for e in envs] == ["B1", "B1"]
    with pytest.raises(Invalid, match="no telemetry topic or mapping"):
        t.translate("elsewhere/x", b"{}")
    with pytest.raises(Invalid, match="not JSON"):
        t.translate("tvilling/B1/telemetry", b"\xff")
    with pytest.raises(Invalid, match=r"record \[1\]: envelope: 'values'"):
        t.translate("tvilling/B1/telemetry", b'[{"ts": 0, "values": {}}, {"ts": 0}]')


def test_translator_topics_must_capture_the_twin() -> None:
    with pytest.raises(Invalid, match="must capture the twin"):
        Translator(topics=["devices/+/data"])
    assert Translator(topics=["devices/{twin}/data"]).subscriptions == ["devices/+/data"]
