"""The health index: one number that agrees with remaining life, the anomaly state and the open alarms, rolled up
from bearing to machine to line."""

from __future__ import annotations

from tvilling.twins.health import health_index, own_health, status_of

UNIT = {"symbol": "h", "clock": "plant"}


def graph(**reported):
    return {
        "line": {"reported": {}, "children": ["m1", "m2"]},
        "m1": {"reported": {"speed": 1500}, "children": ["m1-de", "m1-nde"]},
        "m2": {"reported": {}, "children": ["m2-de"]},
        "m1-de": {"reported": reported.get("m1_de", {}), "children": []},
        "m1-nde": {"reported": reported.get("m1_nde", {}), "children": []},
        "m2-de": {"reported": {"health": 0.95}, "children": []},
    }


def test_remaining_life_lowers_health_and_rolls_up_with_the_reason():
    de = {"health": 0.06, "rul": 2.68, "rul_p10": 1.9, "rul_p90": 4.6}
    out = health_index(graph(m1_de=de), alarms=[], rul_units={"m1-de": UNIT})
    assert out["m1-de"]["health"] == 0.06 and out["m1-de"]["status"] == "critical"
    assert out["m1-de"]["reason"] == "predicted to fail in 2.7 plant h (p10 1.9)"
    for parent in ("m1", "line"):  # the machine and the line are as healthy as their worst part, and say which
        assert out[parent]["health"] == 0.06 and out[parent]["source"] == "m1-de"
    assert out["m2"]["health"] == 0.95 and out["m2"]["status"] == "good"
    assert out["m1"]["own"] is None  # nothing known about the machine itself


def test_a_critical_alarm_never_stands_beside_full_health():
    alarm = {"id": "a1", "twin": "m1-de", "origin": "m1-de", "severity": "critical", "rule": "bearing-rul",
             "message": "m1-de is predicted to fail within 12 plant hours"}
    copy = {**alarm, "id": "a2", "twin": "m1", "origin": "m1-de"}  # the propagated copy counts at its origin only
    out = health_index(graph(m1_de={"health": 1.0}), alarms=[alarm, copy])
    assert out["m1-de"]["health"] == 0.1 and out["m1-de"]["reason"] == (
        "m1-de is predicted to fail within 12 plant hours (alarm bearing-rul)")
    assert out["m1"]["own"] is None and out["m1"]["health"] == 0.1 and out["line"]["status"] == "critical"


def test_anomaly_caps_health_and_a_held_flag_is_told_apart():
    h, reason, _ = own_health({"anomaly": True, "anomaly_score": 2.4, "contributions": {"a": 0.2, "bpfo": 0.8}}, [])
    assert h == 0.5 and reason == "abnormal behaviour (score 2.40), driven by bpfo"
    h, reason, _ = own_health({"anomaly": True, "anomaly_score": 0.27}, [])
    assert h == 0.7 and reason.startswith("anomaly easing (score 0.27, below 1)")
    assert own_health({"anomaly": False, "anomaly_score": 0.3}, []) == (1.0, "no findings", [])  # watched, fine
    assert own_health({"speed": 3.0}, []) == (None, None, [])  # nothing watches it: unknown


def test_no_trend_is_said_and_unknown_twins_do_not_count():
    out = health_index(graph(m1_de={"health": 1.0, "analytics": {"rul": {"trend": False}}}), alarms=[])
    assert out["m1-de"]["reason"] == "no failure trend" and out["m1-de"]["status"] == "good"
    assert out["m1-nde"]["health"] is None and out["m1-nde"]["status"] == "unknown"
    assert out["m1"]["health"] == 1.0
    assert [status_of(x) for x in (0.8, 0.79, 0.5, 0.2, 0.19)] == ["good", "watch", "watch", "poor", "critical"]


def test_cycles_in_the_graph_do_not_loop():
    twins = {"a": {"reported": {"health": 0.3}, "children": ["b"]}, "b": {"reported": {}, "children": ["a"]}}
    out = health_index(twins, alarms=[])
    assert out["a"]["health"] == 0.3 and out["b"]["health"] == 0.3
