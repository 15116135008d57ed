"""The alarm engine and service on real twins in a real store: de-duplication, escalation,
auto-clear, lifecycle cascades, propagation bearing → machine → line, and the driver's restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.alarms import AlarmDriver, AlarmEngine, AlarmService, build_driver, parse_rules
from tvilling.models.builtin import builtin_documents

from .conftest import T0

LINE = "dtmi:tvilling:example:ProductionLine;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
ASSET = "dtmi:tvilling:example:Asset;1"

RULES = [
    {"name": "temp-warning", "group": "bearing-temp", "model": BEARING, "property": "temperature",
     "kind": "threshold", "severity": "warning", "above": 80, "clear": 75},
    {"name": "temp-critical", "group": "bearing-temp", "model": BEARING, "property": "temperature",
     "kind": "threshold", "severity": "critical", "above": 95, "clear": 90},
    {"name": "motor-hot", "model": MACHINE, "property": "motor.temperature", "kind": "threshold",
     "severity": "major", "above": 120, "for_s": 30, "propagate": False,
     "message": "{twin}: motor at {value:.0f} °C"},
    {"name": "rul-short", "model": BEARING, "property": "rul", "kind": "rul", "severity": "major", "horizon": 48},
    {"name": "health-low", "model": ASSET, "property": "health", "kind": "threshold", "severity": "minor",
     "below": 0.3, "auto_clear": False},
]


def make_plant(settings: Settings) -> Platform:
    p = build_platform(settings)
    p.models.add(builtin_documents("plant"))
    p.twins.put("L1", {"model": LINE})
    p.twins.put("M1", {"model": MACHINE, "reported": {"state": "running"}})  # data time of readings: T0 + s
    p.twins.set_relationship("L1", "m1", {"name": "hasMachine", "target": "M1"})
    for b in ("B1", "B2"):
        p.twins.put(b, {"model": BEARING, "reported": {"temperature": 40.0},
                        "time": (T0 - timedelta(hours=1)).isoformat()})
        p.twins.set_relationship("M1", b.lower(), {"name": "hasBearing", "target": b})
    return p


@pytest.fixture(params=["memory", "sqlite"])
def plant(request, tmp_path) -> Iterator[Platform]:
    settings = Settings(store="memory") if request.param == "memory" else Settings(data_dir=tmp_path / "data")
    p = make_plant(settings)
    yield p
    p.close()


def driver_for(p: Platform, rules=RULES) -> AlarmDriver:
    return AlarmDriver(AlarmEngine(p.twins, parse_rules(rules), AlarmService(p.alarm_store)), p.twin_store,
                       p.alarm_store)


def report(p: Platform, twin: str, seconds: float, **values) -> None:
    """A reading at T0 + seconds (its data time), through the twin service like any client."""
    p.twins.patch(twin, {"reported": values, "time": (T0 + timedelta(seconds=seconds)).isoformat()})


def alarms(p: Platform, **kw) -> list[dict]:
    return [a.to_json() for a in p.alarm_store.list(**kw)]


def test_threshold_alarm_raises_escalates_folds_and_auto_clears_with_its_parents(plant: Platform) -> None:
    d = driver_for(plant)
    d.catch_up()
    assert alarms(plant) == []  # 40 °C at creation: normal
    report(plant, "B1", 0, temperature=85.0)
    d.catch_up()
    own = alarms(plant, twin="B1")
    assert [(a["rule"], a["severity"], a["state"], a["count"], a["origin"]) for a in own] == \
        [("bearing-temp", "warning", "active", 1, "B1")]
    assert own[0]["raised"] == "2024-05-01T08:00:00Z" and own[0]["value"] == 85.0 and own[0]["actor"] == "rule"
    derived = {a["twin"]: a for a in alarms(plant) if a["twin"] != "B1"}
    assert set(derived) == {"M1", "L1"}  # bearing → machine → line
    for twin, model in (("M1", MACHINE), ("L1", LINE)):
        assert (derived[twin]["origin"], derived[twin]["source"], derived[twin]["model"]) == ("B1", own[0]["id"], model)
    report(plant, "B1", 10, temperature=97.0)  # the critical rule of the same group fires: folds, escalates
    d.catch_up()
    [a] = alarms(plant, twin="B1")
    assert (a["count"], a["severity"], a["value"], a["state"]) == (2, "critical", 97.0, "active")
    assert {(x["twin"], x["count"], x["severity"]) for x in alarms(plant) if x["twin"] != "B1"} == \
        {("M1", 2, "critical"), ("L1", 2, "critical")}
    report(plant, "B1", 20, temperature=89.0)  # critical clears, warning still holds: stays open
    report(plant, "B1", 30, temperature=78.0)  # warning in its hysteresis band: stays open
    d.catch_up()
    assert [x["state"] for x in alarms(plant)] == ["active"] * 3
    report(plant, "B1", 40, temperature=74.0)
    d.catch_up()
    done = alarms(plant)
    assert len(done) == 3 and {x["state"] for x in done} == {"cleared"}
    [a] = alarms(plant, twin="B1")
    assert (a["actor"], a["cleared"]) == ("rule", "2024-05-01T08:00:40Z")
    assert "temp-warning" in a["note"] and "74" in a["note"]
    # the cleared alarm is final: a new excursion raises a new one, its parents too, once the re-raise
    # guard (60 s after the clear at 40 s) has run out
    report(plant, "B1", 50, temperature=82.0)
    d.catch_up()
    assert [x["state"] for x in alarms(plant, twin="B1")] == ["cleared"]
    report(plant, "B1", 100, temperature=82.5)
    d.catch_up()
    assert [x["state"] for x in alarms(plant, twin="B1")] == ["active", "cleared"]
    assert len(alarms(plant, twin="L1", state="active")) == 1


def test_change_feed_has_one_item_per_step_for_every_twin(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B1", 0, temperature=85.0)
    report(plant, "B1", 5, temperature=50.0)
    d.catch_up()
    items = [item for _, item in plant.alarm_store.changes(0, 100)]
    assert [(i["type"], i["twin"]) for i in items] == [
        ("alarm.raised", "B1"), ("alarm.raised", "M1"), ("alarm.raised", "L1"),
        ("alarm.cleared", "B1"), ("alarm.cleared", "M1"), ("alarm.cleared", "L1")]
    assert all(i["kind"] == "alarm" and i["alarm"]["twin"] == i["twin"] for i in items)


def test_derived_alarms_follow_their_source_through_ack_and_clear(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B1", 0, temperature=85.0)
    d.catch_up()
    svc = AlarmService(plant.alarm_store)
    [line] = alarms(plant, twin="L1")
    acked = svc.acknowledge(line["id"], actor="ann", note="seen at line level")  # acts on the source
    assert (acked.state, acked.actor, acked.note) == ("acknowledged", "ann", "seen at line level")
    assert {(x["twin"], x["state"], x["acknowledged_by"]) for x in alarms(plant)} == \
        {("B1", "acknowledged", "ann"), ("M1", "acknowledged", "ann"), ("L1", "acknowledged", "ann")}
    with pytest.raises(Conflict) as err:
        svc.acknowledge(line["id"])
    assert err.value.fields["rule"] == "transition"
    [src] = alarms(plant, twin="B1")
    svc.clear(src["id"], actor="bob")
    assert {(x["state"], x["cleared_by"]) for x in alarms(plant)} == {("cleared", "bob")}
    with pytest.raises(Conflict):
        svc.clear(src["id"])
    with pytest.raises(Conflict):
        svc.acknowledge(src["id"])
    with pytest.raises(NotFound):
        svc.acknowledge("no-such-alarm")
    # cleared by hand while still hot: no new alarm until the condition returns to normal and fires again
    report(plant, "B1", 10, temperature=88.0)
    d.catch_up()
    assert alarms(plant, state="active") == []
    report(plant, "B1", 20, temperature=70.0)
    report(plant, "B1", 80, temperature=86.0)  # 60 s after the condition cleared: past the re-raise guard
    d.catch_up()
    assert [x["twin"] for x in alarms(plant, state="active")] == ["L1", "M1", "B1"]


def test_acknowledged_alarm_auto_clears_when_the_condition_returns(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B2", 0, temperature=99.0)
    d.catch_up()
    [src] = alarms(plant, twin="B2")
    assert src["severity"] == "critical" and src["count"] == 1  # both rules at once: one alarm, the higher severity
    AlarmService(plant.alarm_store).acknowledge(src["id"], actor="ann")
    report(plant, "B2", 60, temperature=60.0)
    d.catch_up()
    [src] = alarms(plant, twin="B2")
    assert (src["state"], src["actor"], src["acknowledged_by"]) == ("cleared", "rule", "ann")


def test_min_duration_on_data_time_and_no_propagation(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "M1", 0, motor={"temperature": 125.0})
    report(plant, "M1", 20, motor={"temperature": 126.0})
    d.catch_up()
    assert alarms(plant) == []  # 20 s of data time < for_s = 30, however long the test took
    report(plant, "M1", 29, motor={"temperature": 118.0})  # dips: the timer restarts
    report(plant, "M1", 40, motor={"temperature": 130.0})
    report(plant, "M1", 65, motor={"temperature": 131.0})
    d.catch_up()
    assert alarms(plant) == []
    report(plant, "M1", 70, motor={"temperature": 132.0})
    d.catch_up()
    [a] = alarms(plant)
    assert (a["twin"], a["rule"], a["message"], a["raised"]) == ("M1", "motor-hot", "M1: motor at 132 °C",
                                                                 "2024-05-01T08:01:10Z")
    assert a["property"] == "motor.temperature" and a["origin"] == "M1"  # propagate = false: no line alarm


def test_rul_rule_and_a_rule_on_a_base_model(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B2", 0, rul=120.0, health=0.9)
    report(plant, "B2", 10, rul=47.5)
    report(plant, "M1", 10, health=0.2)  # health-low is on Asset: machines and bearings extend it
    d.catch_up()
    got = {(a["twin"], a["rule"], a["severity"]) for a in alarms(plant) if a["origin"] == a["twin"]}
    assert got == {("B2", "rul-short", "major"), ("M1", "health-low", "minor")}


def test_without_auto_clear_a_retrigger_folds_into_the_open_alarm(plant: Platform) -> None:
    d = driver_for(plant)
    for s, h in enumerate([0.25, 0.5, 0.2, 0.6, 0.1]):
        report(plant, "B1", s, health=h)
    d.catch_up()
    [a] = alarms(plant, twin="B1")
    assert (a["state"], a["count"], a["value"]) == ("active", 3, 0.1)
    assert {x["count"] for x in alarms(plant, twin="L1")} == {3}


def test_relationship_changes_reach_propagation(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B1", 0, temperature=85.0)
    d.catch_up()
    assert {a["twin"] for a in alarms(plant)} == {"B1", "M1", "L1"}
    plant.twins.delete_relationship("L1", "m1")  # M1 leaves the line
    report(plant, "B2", 10, temperature=85.0)
    d.catch_up()
    assert {a["twin"] for a in alarms(plant) if a["origin"] == "B2"} == {"B2", "M1"}


def test_deleting_a_twin_clears_its_alarms(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B2", 0, temperature=85.0)
    d.catch_up()
    plant.twins.delete_relationship("M1", "b2")
    plant.twins.delete("B2")
    d.catch_up()
    [a] = alarms(plant, twin="B2")
    assert (a["state"], a["actor"], a["note"]) == ("cleared", "rule", "cleared: the twin was deleted")


def test_driver_restart_resumes_without_duplicates(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", alarm_rules=RULES)
    p = make_plant(settings)
    d = build_driver(p)
    report(p, "B1", 0, temperature=85.0)
    report(p, "B2", 0, temperature=99.0)
    report(p, "B2", 5, temperature=60.0)
    report(p, "B2", 10, temperature=81.0)
    d.catch_up()
    before = alarms(p)
    changes = p.alarm_store.changes(0, 1000)
    position = d.position
    p.close()

    p = build_platform(settings)  # a new process on the same data dir
    d = build_driver(p)
    assert d.run_once() == 0 and d.position == position  # resumes at the saved cursor
    assert alarms(p) == before
    p.alarm_store.set_cursor("engine", 0)  # as if it crashed before saving: every event evaluated again
    p2 = build_platform(settings)
    d2 = build_driver(p2)
    d2.catch_up()
    assert alarms(p2) == before and p2.alarm_store.changes(0, 1000) == changes  # nothing raised twice
    report(p2, "B1", 20, temperature=60.0)  # and the resumed state still clears what is open
    report(p2, "B2", 20, temperature=60.0)
    d2.catch_up()
    assert {a["state"] for a in alarms(p2)} == {"cleared"}
    assert len(alarms(p2)) == len(before)
    p2.close()
    p.close()


def test_driver_runs_on_the_loop_until_cancelled_and_bad_rules(tmp_path) -> None:
    import asyncio

    p = make_plant(Settings(store="memory", alarm_rules=RULES))
    d = build_driver(p)

    async def main() -> None:
        task = asyncio.create_task(d.run(interval=0.01))
        try:
            await asyncio.to_thread(report, p, "B1", 0, temperature=96.0)
            deadline = asyncio.get_running_loop().time() + 10
            while not alarms(p) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert {a["twin"] for a in alarms(p)} == {"B1", "M1", "L1"}
    assert p.alarm_store.cursor("engine") == d.position > 0  # its position is saved as it goes
    with pytest.raises(Invalid, match="bad"):
        build_driver(make_plant(Settings(store="memory", alarm_rules=[{"name": "bad", "kind": "threshold"}])))
    p.close()
