"""The alarm lifecycle as pure values: every legal and illegal move, folding, the JSON shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tvilling.core.errors import Conflict, Invalid
from tvilling.decisions.alarms.record import acknowledge, alarm_key, change_item, clear, fold, new_alarm

from .conftest import T0

KEYS = {"id", "twin", "model", "rule", "severity", "state", "message", "property", "value", "raised",
        "acknowledged", "cleared", "updated", "count", "origin", "actor"}


def _alarm(**kw):
    return new_alarm(twin="B1", model="dtmi:tvilling:example:Bearing;1", rule="hot", severity="minor",
                     message="B1 hot", prop="temperature", value=81.0, now=T0, **kw)


def test_new_alarm_json_has_the_contract_fields():
    doc = _alarm().to_json()
    assert set(doc) >= KEYS
    assert (doc["state"], doc["count"], doc["origin"], doc["actor"], doc["acknowledged"], doc["cleared"]) == \
        ("active", 1, "B1", "rule", None, None)
    assert doc["raised"] == doc["updated"] == "2024-05-01T08:00:00Z"
    item = change_item(_alarm(), "alarm.raised")
    assert (item["kind"], item["type"], item["twin"], item["model"]) == \
        ("alarm", "alarm.raised", "B1", "dtmi:tvilling:example:Bearing;1")


def test_active_acknowledged_cleared_and_straight_to_cleared():
    a = _alarm()
    b, kind = acknowledge(a, now=T0 + timedelta(seconds=1), actor="ann", note="looking")
    assert (b.state, kind, b.actor, b.note, b.version, a.state) == ("acknowledged", "alarm.acknowledged", "ann",
                                                                     "looking", 2, "active")
    c, kind = clear(b, now=T0 + timedelta(seconds=2), actor="bob")
    assert (c.state, kind, c.cleared_by, c.acknowledged_by, c.version) == ("cleared", "alarm.cleared", "bob",
                                                                           "ann", 3)
    d, _ = clear(a, now=T0 + timedelta(seconds=3), actor="rule", note="back to normal")
    assert (d.state, d.acknowledged, d.to_json()["cleared"]) == ("cleared", None, "2024-05-01T08:00:03Z")


@pytest.mark.parametrize("path", [["ack", "ack"], ["clear", "ack"], ["clear", "clear"], ["ack", "clear", "clear"],
                                  ["clear", "fold"]])
def test_illegal_moves_conflict(path):
    a = _alarm()
    moves = {"ack": lambda x: acknowledge(x, now=T0, actor="u"), "clear": lambda x: clear(x, now=T0, actor="u"),
             "fold": lambda x: fold(x, now=T0, value=1.0, severity="major")}
    for step in path[:-1]:
        a, _ = moves[step](a)
    with pytest.raises(Conflict) as err:
        moves[path[-1]](a)
    assert err.value.fields["rule"] == "transition" and err.value.fields["alarm"] == a.id


def test_fold_counts_refreshes_and_only_escalates():
    a = _alarm()
    b, kind = fold(a, now=T0 + timedelta(seconds=5), value=97.0, severity="critical")
    assert (kind, b.count, b.value, b.severity, b.to_json()["updated"]) == \
        ("alarm.updated", 2, 97.0, "critical", "2024-05-01T08:00:05Z")
    c, _ = fold(b, now=T0 + timedelta(seconds=6), value=82.0, severity="warning")
    assert (c.count, c.severity) == (3, "critical")  # never lowered while open
    acked, _ = acknowledge(c, now=T0 + timedelta(seconds=7), actor="ann")
    d, _ = fold(acked, now=T0 + timedelta(seconds=8), value=99.0, severity="major")
    assert (d.state, d.count) == ("acknowledged", 4)  # a re-trigger does not undo the acknowledgement
    with pytest.raises(Invalid):
        fold(a, now=T0, value=1.0, severity="fatal")


def test_keys_deduplicate_per_rule_and_twin_and_per_origin_when_derived():
    assert alarm_key("M1", "hot") == alarm_key("M1", "hot", "M1") != alarm_key("M1", "hot", "B1")
    assert alarm_key("M1", "hot", "B1") != alarm_key("M1", "hot", "B2")
    derived = _alarm(origin="B0", source="src")
    assert (derived.origin, derived.key) == ("B0", alarm_key("B1", "hot", "B0"))
