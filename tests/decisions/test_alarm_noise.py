"""Alarms without noise: the re-raise guard and clear bands (pure evaluation and through the engine),
one row per condition with the ancestors it affects, and shelving a subtree for a while."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tvilling.app import Platform
from tvilling.config import Settings
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.alarms import AlarmService, build_driver
from tvilling.decisions.alarms.evaluate import CLEAR, RAISE, RuleState
from tvilling.decisions.alarms.rules import DEFAULT_RERAISE_S, RUL_CLEAR_MARGIN, parse_rule
from tvilling.decisions.alarms.shelves import descendants, parse_duration

from .conftest import T0, Clock
from .test_alarm_engine import BEARING, RULES, alarms, driver_for, make_plant, report


def rule(**kw):
    doc = {"name": "r", "model": BEARING, "property": "temperature", "kind": "threshold", "severity": "major"}
    return parse_rule({**doc, **kw})


def feed(state: RuleState, readings) -> list:
    return [state.observe(T0 + timedelta(seconds=s), v) for s, v in readings]


# -- the re-raise guard and clear bands (pure) ------------------------------------------------------
def test_a_value_hovering_at_its_threshold_raises_once_per_guard_period():
    state = RuleState(rule(above=90, clear=89))  # reraise_s defaults to 60 s
    assert rule(above=90).reraise_s == DEFAULT_RERAISE_S == 60
    hover = [(s, 90.5 if s % 20 < 10 else 88.0) for s in range(0, 200, 5)]  # crosses every 10 s
    got = feed(state, hover)
    raised = [s for (s, _), v in zip(hover, got, strict=True) if v == RAISE]
    cleared = [s for (s, _), v in zip(hover, got, strict=True) if v == CLEAR]
    assert raised == [0, 80, 160]  # every 10 s without the guard; at most once per 60 s with it
    assert cleared == [10, 90, 170]
    assert all(r - c >= 60 for c, r in zip(cleared, raised[1:], strict=False))


def test_the_guard_holds_a_return_back_and_raises_once_the_condition_outlasts_it():
    state = RuleState(rule(above=90, clear=85, reraise_s=30))
    assert feed(state, [(0, 95), (10, 80), (20, 95), (39, 95), (40, 95), (41, 95)]) == \
        [RAISE, CLEAR, None, None, RAISE, None]
    # a return that lapses inside the guard raises nothing at all
    state = RuleState(rule(above=90, clear=85, reraise_s=30))
    assert feed(state, [(0, 95), (10, 80), (20, 95), (25, 84), (45, 84)]) == [RAISE, CLEAR, None, None, None]
    # and for_s still counts from the condition's return, not from the guard's end
    state = RuleState(rule(above=90, clear=85, reraise_s=30, for_s=15))
    assert feed(state, [(0, 95), (15, 95), (20, 80), (45, 95), (55, 95), (60, 95)]) == \
        [None, RAISE, CLEAR, None, None, RAISE]


def test_reraise_zero_turns_the_guard_off_and_auto_clear_false_has_none():
    assert feed(RuleState(rule(above=90, reraise_s=0)), [(0, 91), (1, 89), (2, 91)]) == [RAISE, CLEAR, RAISE]
    manual = RuleState(rule(above=90, auto_clear=False))
    assert feed(manual, [(0, 91), (1, 89), (2, 91)]) == [RAISE, CLEAR, RAISE]  # re-triggers fold, no guard


def test_clear_for_s_keeps_an_alarm_over_short_dips():
    state = RuleState(rule(above=90, clear=85, clear_for_s=20, reraise_s=0))
    got = feed(state, [(0, 95), (10, 80), (20, 95), (30, 80), (45, 80), (50, 80)])
    assert got == [RAISE, None, None, None, None, CLEAR]  # the dip at 10 s lasted < 20 s; 30 → 50 s did not


def test_a_rul_alarm_clears_only_above_the_horizon_times_a_margin():
    r = parse_rule({"name": "rul", "model": BEARING, "property": "rul", "kind": "rul", "severity": "critical",
                    "horizon": 12.0})
    assert r.clear == pytest.approx(12.0 * RUL_CLEAR_MARGIN) == pytest.approx(15.0)
    state = RuleState(r)
    # the estimate wanders just above the horizon after a slow-down: the alarm stays
    assert feed(state, [(0, 11.0), (30, 12.5), (54, 11.8), (60, 14.9), (120, 15.2)]) == \
        [RAISE, None, None, None, CLEAR]
    explicit = parse_rule({"name": "rul", "model": BEARING, "property": "rul", "kind": "rul",
                           "severity": "critical", "horizon": 12.0, "clear": 12.0})
    assert explicit.clear == 12.0  # the old behaviour, asked for


@pytest.mark.parametrize(("change", "field"), [({"reraise_s": -1}, "reraise_s"), ({"clear_for_s": -5}, "clear_for_s"),
                                               ({"reraise_s": float("inf")}, "reraise_s"),
                                               ({"reraise_s": "soon"}, "reraise_s")])
def test_bad_guard_settings_are_refused_naming_the_field(change, field):
    with pytest.raises(Invalid) as err:
        rule(above=90, **change)
    assert err.value.fields["field"] == field


# -- through the engine ---------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite"])
def plant(request, tmp_path):
    settings = Settings(store="memory") if request.param == "memory" else Settings(data_dir=tmp_path / "data")
    p = make_plant(settings)
    yield p
    p.close()


def test_the_guard_survives_a_restart_of_the_engine(tmp_path) -> None:
    p = make_plant(Settings(data_dir=tmp_path / "data"))
    try:
        report(p, "B1", 0, temperature=85.0)
        report(p, "B1", 10, temperature=70.0)  # cleared by its rule at 10 s
        driver_for(p).catch_up()
        report(p, "B1", 30, temperature=86.0)
        fresh = driver_for(p)  # a restarted engine resumes from the stored alarm
        fresh.catch_up()
        assert [a["state"] for a in alarms(p, twin="B1")] == ["cleared"]
        report(p, "B1", 70, temperature=86.5)
        fresh.catch_up()
        assert [a["state"] for a in alarms(p, twin="B1")] == ["active", "cleared"]
    finally:
        p.close()


def test_listing_is_one_row_per_condition_with_the_ancestors_it_affects(plant: Platform) -> None:
    d = driver_for(plant)
    report(plant, "B1", 0, temperature=85.0)
    report(plant, "B2", 0, temperature=99.0)
    report(plant, "M1", 0, health=0.2)
    d.catch_up()
    svc = AlarmService(plant.alarm_store)
    raw = svc.list(grouped=False)
    assert len(raw) == 3 + 3 + 2  # B1, B2 with copies on M1 and L1; M1's own with a copy on L1
    rows = svc.view(svc.list())
    assert sorted((r["twin"], r["rule"], tuple(r["affected"])) for r in rows) == [
        ("B1", "bearing-temp", ("M1", "L1")), ("B2", "bearing-temp", ("M1", "L1")), ("M1", "health-low", ("L1",))]
    assert {r["twin"] for r in svc.view(svc.list(twin="L1"))} == {"B1", "B2", "M1"}  # all affect the line
    assert {r["twin"] for r in svc.view(svc.list(twin="B2"))} == {"B2"}
    assert [r["twin"] for r in svc.view(svc.list(twin="L1", grouped=False), grouped=False)] == ["L1"] * 3
    assert "affected" not in svc.view(raw, grouped=False)[0]
    # acknowledging the row (the source) moves every copy; the count of conditions stays 3
    b1 = next(r for r in rows if r["twin"] == "B1")
    svc.acknowledge(b1["id"], actor="eva", note="greasing it")
    assert {(a.twin, a.state, a.acknowledged_by, a.ack_note) for a in svc.list(grouped=False)
            if a.origin == "B1"} == {(t, "acknowledged", "eva", "greasing it") for t in ("B1", "M1", "L1")}
    assert len(svc.list(state="active")) == 2


def test_a_shelf_holds_open_and_new_alarms_of_its_subtree_and_ends_by_itself(plant: Platform) -> None:
    clock = Clock(T0 + timedelta(seconds=5))
    d = driver_for(plant)
    svc = AlarmService(plant.alarm_store, clock=clock)
    report(plant, "B1", 0, temperature=85.0)
    d.catch_up()
    covered = descendants("M1", lambda t: [r.target for r in plant.twins.relationships(t)])
    assert covered == ["M1", "B1", "B2"]
    shelf, taken = svc.shelve("M1", twins=covered, duration_s=parse_duration("30m"), reason="planned stop",
                              actor="eva")
    assert taken == 1 and shelf.until == T0 + timedelta(seconds=5, minutes=30)
    # the open alarm and its copies are on the shelf
    assert {(a.twin, a.shelf, a.shelved_at(clock())) for a in svc.list(grouped=False)} == \
        {(t, shelf.id, True) for t in ("B1", "M1", "L1")}
    # a condition during the shelf is recorded, on the shelf (data time inside it)
    report(plant, "B2", 60, temperature=99.0)
    d.catch_up()
    [b2] = svc.list(twin="B2")
    assert (b2.state, b2.shelf, b2.shelved_until) == ("active", shelf.id, shelf.until)
    assert svc.list(state="active", shelved=False) == []  # nothing counts while shelved
    assert len(svc.list(state="active", shelved=True)) == 2
    assert svc.view([b2])[0]["shelved"] is True
    # ... and a twin outside the subtree is not shelved
    plant.twins.put("M9", {"model": "dtmi:tvilling:example:Machine;1", "reported": {"health": 0.9},
                           "time": T0.isoformat()})
    report(plant, "M9", 60, health=0.1)
    d.catch_up()
    assert [a.twin for a in svc.list(state="active", shelved=False)] == ["M9"]
    # the shelf ends by itself: the same alarms count again, nothing had to run
    clock.advance(30 * 60)
    assert {a.twin for a in svc.list(state="active", shelved=False)} == {"B1", "B2", "M9"}
    assert svc.view([b2])[0]["shelved"] is False
    assert [s.id for s in svc.shelves(active=True)] == [] and [s.id for s in svc.shelves(active=False)] == [shelf.id]


def test_ending_a_shelf_early_and_a_shelf_on_the_twin_alone(plant: Platform) -> None:
    clock = Clock(T0)
    d = driver_for(plant)
    svc = AlarmService(plant.alarm_store, clock=clock)
    report(plant, "B1", 0, temperature=85.0)
    report(plant, "M1", 0, health=0.2)
    d.catch_up()
    only, taken = svc.shelve("M1", twins=["M1"], duration_s=3600, reason="motor swap", actor="eva", subtree=False)
    assert taken == 1  # M1's own condition; B1's is not under a twin-only shelf
    assert {a.twin for a in svc.list(shelved=True)} == {"M1"}
    wide, taken = svc.shelve("M1", twins=["M1", "B1", "B2"], duration_s=600, reason="stop", actor="eva")
    assert taken == 1  # B1; M1 is held longer by the first shelf already
    assert {(a.twin, a.shelf) for a in svc.list()} == {("M1", only.id), ("B1", wide.id)}
    clock.advance(60)
    ended = svc.end_shelf(only.id, actor="ann")
    assert (ended.ended, ended.ended_by) == (T0 + timedelta(seconds=60), "ann")
    # M1 falls back onto the shelf still in effect over it
    assert {(a.twin, a.shelf) for a in svc.list()} == {("M1", wide.id), ("B1", wide.id)}
    svc.end_shelf(wide.id, actor="ann")
    assert {(a.twin, a.shelf, a.shelved_at(clock())) for a in svc.list(grouped=False)} == \
        {(t, None, False) for t in ("M1", "B1", "L1")}
    with pytest.raises(Conflict):
        svc.end_shelf(wide.id, actor="ann")
    with pytest.raises(NotFound):
        svc.end_shelf("nope", actor="ann")
    with pytest.raises(Invalid) as err:
        svc.shelve("M1", twins=["M1"], duration_s=0.5, reason="x")
    assert err.value.fields["field"] == "for"
    with pytest.raises(Invalid) as err:
        svc.shelve("M1", twins=["M1"], duration_s=60, reason="  ")
    assert err.value.fields["field"] == "reason"


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45s", 45),
                                               ("1d", 86400), ("90", 90), (120, 120), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "30x", "-5m", "8d", 0, -1, True, None, "1e9", float("nan")])
def test_bad_durations_name_the_field(bad):
    with pytest.raises(Invalid) as err:
        parse_duration(bad)
    assert err.value.fields["field"] == "for"


def test_build_driver_uses_the_settings_rules_with_the_guard(tmp_path) -> None:
    p = make_plant(Settings(store="memory", alarm_rules=RULES))
    try:
        d = build_driver(p)
        assert all(r.reraise_s == DEFAULT_RERAISE_S for r in d.engine.rules)
    finally:
        p.close()
