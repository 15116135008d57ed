"""Alarm rules: config validation and stateful evaluation on reading timestamps (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tvilling.core.errors import Invalid
from tvilling.decisions.alarms.evaluate import CLEAR, RAISE, RuleState
from tvilling.decisions.alarms.rules import parse_rule, parse_rules, render

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
BEARING = "dtmi:tvilling:example:Bearing;1"


def rule(**kw):
    doc = {"name": "r", "model": BEARING, "property": "temperature", "kind": "threshold", "severity": "major"}
    doc.update(kw)
    return parse_rule(doc)


def feed(state: RuleState, readings) -> list:
    return [state.observe(T0 + timedelta(seconds=s), v) for s, v in readings]


def test_threshold_hysteresis_holds_between_clear_and_raise_levels():
    state = RuleState(rule(above=90, clear=80, reraise_s=0))
    got = feed(state, [(0, 85), (1, 90), (2, 95), (3, 85), (4, 89.9), (5, 80), (6, 79.9), (7, 85), (8, 91)])
    assert got == [None, RAISE, None, None, None, None, CLEAR, None, RAISE]


def test_threshold_without_clear_level_clears_just_below_the_raise_level():
    state = RuleState(rule(above=1.0, reraise_s=0))
    assert feed(state, [(0, 1.0), (1, 0.999), (2, 1.2)]) == [RAISE, CLEAR, RAISE]


def test_low_threshold_raises_at_or_below_and_clears_above_the_clear_level():
    state = RuleState(rule(below=10, clear=12))
    assert feed(state, [(0, 11), (1, 10), (2, 11.5), (3, 12), (4, 12.1)]) == [None, RAISE, None, None, CLEAR]


def test_min_duration_runs_on_reading_time_and_resets_when_the_condition_lapses():
    state = RuleState(rule(above=90, clear=85, for_s=10))
    got = feed(state, [(0, 95), (5, 95), (9.9, 95), (10, 95), (30, 80)])
    assert got == [None, None, None, RAISE, CLEAR]
    state = RuleState(rule(above=90, clear=85, for_s=10))
    # a dip below the raise level (even above the clear level) restarts the timer
    assert feed(state, [(0, 95), (8, 88), (9, 95), (18, 95), (19, 95)]) == [None, None, None, None, RAISE]


def test_min_duration_is_wall_clock_free_and_ignores_late_readings():
    state = RuleState(rule(above=90, for_s=60))
    # a day of data replayed in microseconds still needs 60 s of data time
    assert feed(state, [(0, 91), (59, 91), (58, 50), (60, 91)]) == [None, None, None, RAISE]


def test_rate_of_change_between_readings_and_over_a_window():
    state = RuleState(rule(kind="rate", above=2.0, clear=0.5))  # °C per second
    got = feed(state, [(0, 20), (10, 25), (11, 28), (12, 29), (13, 29.2), (13, 40)])
    assert got == [None, None, RAISE, None, CLEAR, None]  # the duplicate time has no rate
    assert state.signal == pytest.approx(0.2)
    window = RuleState(rule(kind="rate", above=1.0, window_s=10))
    # a 5 °C step in one second is 5 °C/s between readings; against the last reading at least
    # 10 s earlier (t=0) it is 5 °C in 11 s
    assert feed(window, [(0, 20), (5, 20), (10, 20), (11, 25)]) == [None, None, None, None]
    assert window.signal == pytest.approx(5 / 11)
    assert feed(window, [(20, 35)]) == [RAISE]  # 15 °C over the last ≥ 10 s


def test_falling_rate_rule():
    state = RuleState(rule(kind="rate", below=-1.0))
    assert feed(state, [(0, 100), (1, 99.5), (2, 97)]) == [None, None, RAISE]


def test_rul_rule_raises_within_the_horizon():
    r = parse_rule({"name": "rul", "model": BEARING, "property": "rul", "kind": "rul", "severity": "critical",
                    "horizon": 48, "clear": 60})
    assert (r.rising, r.level) == (False, 48.0)
    state = RuleState(r)
    assert feed(state, [(0, 100), (1, 48.5), (2, 48), (3, 55), (4, 60.5)]) == [None, None, RAISE, None, CLEAR]


def test_latched_state_only_clears():
    state = RuleState(rule(above=90, clear=80, reraise_s=0), in_alarm=True)
    assert feed(state, [(0, 95), (1, 85), (2, 70), (3, 95)]) == [None, None, CLEAR, RAISE]


@pytest.mark.parametrize(("change", "field", "text"), [
    ({"kind": "threshold"}, "above", "needs 'above' or 'below'"),
    ({"above": 1, "below": 0}, "above", "exactly one"),
    ({"above": 90, "clear": 95}, "clear", "clear (hysteresis) level"),
    ({"below": 10, "clear": 5}, "clear", "clear (hysteresis) level"),
    ({"kind": "rul", "above": 3}, "horizon", "needs 'horizon'"),
    ({"kind": "rul", "horizon": 3, "below": 2}, "below", "takes 'horizon'"),
    ({"above": 1, "horizon": 3}, "horizon", "for rul rules"),
    ({"above": 1, "window_s": 3}, "window_s", "for rate rules"),
    ({"above": 1, "for_s": -1}, "for_s", "≥ 0"),
    ({"above": 1, "severity": "fatal"}, "severity", "fatal"),
    ({"above": 1, "kind": "median"}, "kind", "median"),
    ({"above": "hot"}, "above", "number"),
    ({"above": 1, "model": "Bearing"}, "model", "DTMI"),
    ({"above": 1, "property": "a..b"}, "property", "dotted path"),
    ({"above": 1, "message": "{twin} {nope}"}, "message", "nope"),
    ({"above": 1, "message": "{twin"}, "message", "malformed"),
    ({"above": 1, "colour": "red"}, "colour", "colour"),
    ({"above": float("nan")}, "above", "finite"),
])
def test_invalid_configs_name_the_rule_and_the_field(change, field, text):
    doc = {"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
           "severity": "major"}
    doc.update(change)
    with pytest.raises(Invalid) as err:
        parse_rules([doc])
    assert err.value.fields["rule_name"] == "bearing-hot"
    assert err.value.fields["field"] == field
    assert "bearing-hot" in err.value.message and text in err.value.message


def test_missing_name_and_duplicates_and_mixed_groups_are_refused():
    with pytest.raises(Invalid) as err:
        parse_rules([{"model": BEARING, "property": "t", "kind": "threshold", "severity": "major", "above": 1}])
    assert err.value.fields["field"] == "name"
    base = {"model": BEARING, "property": "temperature", "kind": "threshold", "severity": "major", "above": 1}
    with pytest.raises(Invalid, match="defined twice"):
        parse_rules([{"name": "a", **base}, {"name": "a", **base}])
    with pytest.raises(Invalid, match="group") as err:
        parse_rules([{"name": "a", "group": "g", **base}, {"name": "b", "group": "g", **base, "property": "vibration"}])
    assert err.value.fields == {"rule_name": "b", "field": "group", "rule": "group"}
    with pytest.raises(Invalid, match="table/object"):
        parse_rules(["not a table"])  # type: ignore[list-item]


def test_rules_parse_from_toml_and_render_messages():
    import tomllib

    doc = tomllib.loads("""
[[alarm_rules]]
name = "temp-warning"
model = "dtmi:tvilling:example:Bearing;1"
property = "temperature"
kind = "threshold"
severity = "warning"
above = 80
group = "bearing-temp"
message = "{twin}: bearing at {value:.1f} °C (limit {level:g})"

[[alarm_rules]]
name = "temp-critical"
model = "dtmi:tvilling:example:Bearing;1"
property = "temperature"
kind = "threshold"
severity = "critical"
above = 95
clear = 90
group = "bearing-temp"
propagate = false
""")
    with pytest.raises(Invalid, match="mixes"):  # propagation differs inside one group
        parse_rules(doc["alarm_rules"])
    doc["alarm_rules"][1]["propagate"] = True
    warn, crit = parse_rules(doc["alarm_rules"])
    assert (warn.group, crit.group, crit.clear, warn.for_s) == ("bearing-temp", "bearing-temp", 90.0, 0.0)
    assert render(warn, twin="B1", model=BEARING, value=81.234) == "B1: bearing at 81.2 °C (limit 80)"
    odd = parse_rule({"name": "x", "model": BEARING, "property": "t", "kind": "threshold", "severity": "minor",
                      "above": 1, "message": "{value:d}"})
    assert "x" in render(odd, twin="B1", model=None, value=1.5)  # a bad format spec falls back, never raises
