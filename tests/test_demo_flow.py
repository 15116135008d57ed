"""`tvilling demo` walks through the flagship decision (issue 13, item 4), run in process and headless.

The demo runs as it does for a user (embedded broker, server, runtime, plant, dispatcher, decision watch), on a
two-machine line, with short times: two plant steps a wall second at 120× (a step is one plant minute, as in the
default run), 20 readings to learn, the defect from plant hour 0.4, one 30-minute maintenance window at plant
hour 1.0. The story must happen in order: production planned and dispatched, the anomaly alarm, the remaining
life, the decision with its options, the work order proposed in a window, production re-planned around it,
approved, started, done, the plant's bearing replaced, the twin's analytics reset and its alarms cleared, the
machine healthy again and back at work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest

from serve_util import free_port
from tvilling.demo import DemoOptions, run_demo
from tvilling.demo_flow import ACTOR, CREW, DemoFlow, option_name
from tvilling.planning.production_dispatch import DONE, RUNNING

MACHINE = "line-1-m02"
BEARING = f"{MACHINE}-de"
LIMIT_S = 110.0  # wall seconds the story may take on a loaded machine; about 55 on an idle one


def options() -> DemoOptions:
    return DemoOptions(machines=2, speed=120.0, step_s=0.5, learn_s=10.0, fault_at_s=12.0, port=free_port(),
                       whatif=False, first_stop_h=1.0, stop_every_h=12.0, stop_h=0.5, repair_h=0.5)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _snapshot(flow: DemoFlow, base: str) -> dict[str, Any]:
    """What the platform, the plant, the dispatcher and the API hold at the end of the story (the demo running)."""
    assert flow.decisions is not None
    platform = flow.platform
    decisions = [d for d in flow.decisions.list(limit=20) if d["asset"] == BEARING]
    order = flow.workorders.get(decisions[0]["work_order"]) if decisions and decisions[0].get("work_order") else None
    plans, plan = [], flow.production.current(flow.line)
    while plan is not None:
        plans.append(plan)
        plan = flow.production.get_plan(plan.previous) if plan.previous else None
    return {
        "decisions": decisions, "order": order, "plans": plans[::-1],
        "orders": {o.id: o for o in flow.production.list_orders(line=flow.line, limit=100)},
        "plant": flow.plant.state_of(MACHINE),
        "bearing": dict(platform.twins.get(BEARING).reported),
        "alarms": [a for a in platform.alarm_store.list(state="active", limit=100) if a.twin == BEARING],
        "dispatch": flow.dispatcher.status() if flow.dispatcher is not None else None,
        "api": {"dispatch": _get(f"{base}/api/production/dispatch?line={flow.line}"),
                "decisions": _get(f"{base}/api/decisions?asset={BEARING}")["items"],
                "plan": _get(f"{base}/api/production/plans/current?line={flow.line}")},
    }


@pytest.fixture(scope="module")
def story() -> tuple[DemoFlow, list[str], dict[str, Any], float]:
    lines: list[str] = []
    flows: list[DemoFlow] = []

    o = options()

    async def main() -> tuple[DemoFlow, dict[str, Any]]:
        demo = asyncio.create_task(run_demo(o, echo=lines.append, on_flow=flows.append))
        try:
            while not flows and not demo.done():
                await asyncio.sleep(0.05)
            if demo.done():
                demo.result()  # the demo failed to start: say why
            flow = flows[0]
            finished = asyncio.create_task(flow.finished.wait())
            await asyncio.wait({demo, finished}, timeout=LIMIT_S, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            return flow, await asyncio.to_thread(_snapshot, flow, f"http://{o.host}:{o.port}")
        finally:
            demo.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await demo

    started = time.monotonic()
    flow, snapshot = asyncio.run(main())
    return flow, lines, snapshot, time.monotonic() - started


def _index(names: list[str], name: str, after: int = -1) -> int:
    for i in range(after + 1, len(names)):
        if names[i] == name:
            return i
    raise AssertionError(f"no step {name!r} after step {after}: {names}")


def test_each_step_happens_in_order(story: Any) -> None:
    flow, lines, _, wall = story
    print("\n" + "\n".join(lines) + f"\n({wall:.0f} s)")
    assert flow.finished.is_set(), "\n".join(lines)
    steps = [s for s in flow.steps if s.detail.get("twin", BEARING) == BEARING]
    names = [s.name for s in steps]
    k = _index(names, "production.planned")
    k = _index(names, "production.dispatching", k)
    anomaly = next(i for i, s in enumerate(steps) if s.name == "alarm.raised" and s.detail["rule"] == "bearing-anomaly")
    rul = _index(names, "rul.predicted", anomaly)
    k = _index(names, "decision.options", rul)
    for name in ("workorder.proposed", "production.replanned", "workorder.approved", "workorder.started",
                 "workorder.done", "plant.wear_reset", "analytics.reset", "alarms.cleared"):
        k = _index(names, name, k)
    _index(names, "health.back", k)
    _index(names, "production.continues", k)
    # the remaining life came with its band, and the plant hours go forward through the story
    predicted = steps[rul].detail
    assert 0 < predicted["p10"] <= predicted["rul"] <= predicted["p90"]
    hours = [s.plant_h for s in flow.steps if s.plant_h is not None]
    assert hours == sorted(hours)


def test_the_decision_compares_the_options_and_plans_the_work_in_a_window(story: Any) -> None:
    flow, lines, snap, _ = story
    [decision] = snap["decisions"]
    assert decision["trigger"]["rule"] == "bearing-rul" and decision["whatif"]["ran"] is True
    kinds = [o["kind"] for o in decision["options"]]
    assert kinds[:2] == ["run_to_failure", "slow_down"] and "window" in kinds and "preventive" in kinds
    chosen = next(o for o in decision["options"] if o["chosen"])
    assert chosen["kind"] == "preventive" and decision["chosen"]["kind"] == "preventive"
    assert chosen["expected_cost"] == min(o["expected_cost"] for o in decision["options"] if o["feasible"])
    run_to_failure = decision["options"][0]
    assert chosen["expected_cost"] < run_to_failure["expected_cost"]
    # the window chosen lies within the predicted life: failing before the work is unlikely
    assert chosen["p_fail_before"] < 0.2 and run_to_failure["p_fail_horizon_planned"] > chosen["p_fail_before"]
    # the console tells every option with its figures (the optimiser's work order at its plant-clock time), and
    # the choice with why
    for option in decision["options"]:
        row = next(line for line in lines if option_name(option, flow.clock) in line and "expected cost" in line)
        assert f"expected cost {option['expected_cost']:,.0f}" in row, row
        if option["kind"] in ("run_to_failure", "slow_down"):
            assert "what-if time to failure" in row and f"P(failure within {decision['horizon_h']:g} h)" in row, row
        else:
            assert f"P(failure before the work) {option['p_fail_before']:.0%}" in row, row
    told = next(line for line in lines if "chosen: " in line)
    assert f"expected cost {decision['chosen']['expected_cost']:,.0f}" in told and "run to failure" in told


def test_the_work_order_runs_its_lifecycle_and_the_plant_and_twin_recover(story: Any) -> None:
    _, _, snap, _ = story
    order = snap["order"]
    assert order is not None and order.asset == MACHINE and order.state == "done"
    assert order.approved_by == ACTOR and [h.to for h in order.history] == [
        "proposed", "approved", "scheduled", "in_progress", "done"]
    assert order.history[3].by == CREW and order.history[4].by == CREW
    assert order.rationale["window"] and order.crew
    # the crew worked in the window: not before its start, done at its end (plant time, the readings' clock: the
    # stamps of the plant's steps, which planned times match to float noise)
    noise = timedelta(milliseconds=1)
    assert order.actual_start is not None and order.actual_end is not None
    assert order.planned_start - noise <= order.actual_start < order.actual_end
    assert order.actual_end >= order.planned_end - noise
    completion = order.completion or {}
    assert completion["command"]["name"] == "maintenanceDone" and completion["command"]["status"] == "succeeded"
    assert completion["analytics_reset"]["done"] is True and BEARING in completion["analytics_reset"]["twins"]
    # the plant replaced the bearings: the defect is gone, the wear starts again from nothing
    assert snap["plant"]["defect"] == {"de": 0.0, "nde": 0.0} and snap["plant"]["damage"]["de"] < 1e-3
    assert snap["plant"]["state"] == "running"
    # the twin relearned on the new bearing and holds no alarm
    marker = snap["bearing"]["analytics"]["bearing-anomaly"]
    assert marker["status"] == "running" and marker["version"] >= 2
    assert snap["bearing"]["anomaly_score"] < 1.0 and snap["alarms"] == []


def test_production_is_replanned_around_the_work_and_continues(story: Any) -> None:
    flow, _, snap, _ = story
    order = snap["order"]
    plans = snap["plans"]
    assert plans[0].reason == "initial"
    around = next(p for p in plans if p.reason == "maintenance inserted")
    down = [d for d in around.downtimes if d.get("work_order") == order.id]
    assert down and down[0]["machine"] == MACHINE
    # no job of the plan around the work starts on the machine while it is down; one running already when the plan
    # was made pauses over it (its end pushed past the downtime)
    start, end = down[0]["start"], down[0]["end"]
    spanning = [o for o in around.on_machine(MACHINE) if o.start < end and o.end > start]
    assert all(o.start < around.created and o.end >= end for o in spanning), spanning
    assert plans[-1].reason == "re-plan" and plans.index(around) < len(plans) - 1
    [decision] = snap["decisions"]
    production = decision["production"]
    assert production["replanned"] is True and production["after"]["plan"] == around.id
    # the dispatcher carried the plan out on the machines, and the maintained machine works again after the work:
    # a job running on from where the stop held it, or one started or finished since
    ops = snap["dispatch"]["operations"]
    assert any(o["status"] == DONE for o in ops)
    [step] = [s for s in flow.steps if s.name == "production.continues"]
    moved = step.detail
    assert moved["machine"] == MACHINE and moved["status"] in (RUNNING, DONE)
    assert (moved["status"] == RUNNING and moved["progress"] > (moved["progress_before"] or -1.0)) or (
        moved["status"] == DONE and _time(moved["finished"]) >= order.actual_end), moved
    now = next(o for o in ops if o["order"] == moved["order"] and o["op"] == moved["op"])
    assert now["machine"] == MACHINE and now["parts_done"] > 0
    # the dashboard's API sees the same: the dispatcher at work on the plan in force, the decision done
    api = snap["api"]
    assert api["dispatch"]["dispatching"] is True and api["dispatch"]["plan"] == plans[-1].id
    assert api["plan"]["id"] == plans[-1].id and api["dispatch"]["operations"]
    assert [(d["id"], d["status"]) for d in api["decisions"]] == [(decision["id"], "done")]


def test_the_plan_runs_on_the_plant_clock(story: Any) -> None:
    """An operation lasts what the accelerated plant takes for it (rounded up to a minute of the readings' clock, two
    plant hours at 120×), not the 120× longer its plant-hour rate would give on the readings' clock."""
    flow, _, snap, _ = story
    initial = snap["plans"][0]
    orders = snap["orders"]
    assert initial.operations
    for op in initial.operations:
        plant_h = (op.end - op.start).total_seconds() / 3600.0 * flow.speed
        nominal_h = orders[op.order].quantity / 120.0  # the machine model's rate at 1,500 rpm
        assert nominal_h <= plant_h < nominal_h + 60.0 / 3600.0 * flow.speed + 1e-6, op


def test_the_demo_plan_words_and_figures() -> None:
    import doctest

    import tvilling.planning.demo_plan as demo_plan
    from tvilling.demo_flow import kpi_text, option_lines
    from tvilling.planning.maintenance_service_config import parse_maintenance

    result = doctest.testmod(demo_plan)
    assert result.attempted > 0 and result.failed == 0
    settings = parse_maintenance(demo_plan.demo_maintenance(speed=60.0, first_stop_h=3.0, stop_every_h=4.0, stop_h=1.0,
                                                            repair_h=1.0, origin=datetime.fromisoformat(
                                                                "2026-03-02T08:00:00+00:00")))
    assert settings.time_scale == 60.0 and settings.tasks[0].duration_h == 1.0
    assert [w.daily.start_h for w in settings.windows if w.daily] == [3.0, 7.0, 11.0, 15.0, 19.0, 23.0]
    assert settings.decision.rules == ("bearing-rul",) and settings.clock_origin.hour == 8
    record = {"horizon_h": 12.0, "options": [
        {"name": "run to failure", "kind": "run_to_failure", "ttf_p10_h": 5.0, "ttf_p50_h": 7.25, "ttf_p90_h": None,
         "p_fail_horizon": 0.8, "p_fail_horizon_planned": 0.9, "lost_production": 0.0, "expected_cost": 19800.0,
         "chosen": False},
        {"name": "preventive replace-bearing at X", "kind": "preventive", "p_fail_before": 0.012, "crew": ["tech-a"],
         "expected_cost": 1064.4, "chosen": True}]}
    rtf, work = option_lines(record)
    assert "what-if time to failure 7.2 h (p10 5.0 h, p90 > 12 h)" in rtf and "P(failure within 12 h) 90%" in rtf
    assert "expected cost 19,800" in rtf and "chosen" not in rtf
    assert "P(failure before the work) 1%" in work and "crew tech-a" in work and work.endswith("← chosen")
    text = kpi_text({"comparison": {"kpis": {"makespan_h": {"before": 0.1, "after": 0.125},
                                             "throughput_per_h": {"before": 12000.0, "after": 9600.0}},
                                    "moved": [{}, {}], "downtime_avoided_h": 0.0}}, 60.0)
    assert text == "makespan 6.0 → 7.5 plant h, throughput 200 → 160 parts/plant h; 2 operation(s) moved"


@pytest.mark.parametrize(("settings", "field"), [
    ({"first_stop_h": 3.0, "stop_every_h": 5.0, "stop_h": 1.0}, "stop_every_h"),
    ({"first_stop_h": 3.0, "stop_every_h": 4.0, "stop_h": 4.0}, "stop_h"),
    ({"first_stop_h": -1.0, "stop_every_h": 4.0, "stop_h": 1.0}, "first_stop_h"),
])
def test_a_window_pattern_that_is_none_is_refused_naming_the_setting(settings: dict[str, float], field: str) -> None:
    from tvilling.core.errors import Invalid
    from tvilling.planning.demo_plan import demo_maintenance, window_spans

    with pytest.raises(Invalid) as caught:
        window_spans(**settings)
    assert caught.value.fields["field"] == field
    with pytest.raises(Invalid, match="repair_h must be > 0 and fit its window of 1 plant h"):
        demo_maintenance(speed=60.0, first_stop_h=3.0, stop_every_h=4.0, stop_h=1.0, repair_h=2.0)
