"""The production planner on a real (in-memory) platform with the demo plant's line and machine twins.

Durations follow the machines' speeds by the twin's machine model; maintenance work orders, breakdowns and
faults keep operations off their windows; a re-plan keeps the operations that started; KPI deltas are checked
by hand on a one-machine case; bad input is refused naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.models.builtin import builtin_documents
from tvilling.planning.jobshop import Infeasible
from tvilling.planning.production import PlannedOperation, ProductionPlan, current_plan
from tvilling.planning.production_build import busy_until, duration_min
from tvilling.planning.production_events import ProductionSettings
from tvilling.planning.production_json import plan_to_json
from tvilling.planning.production_service import ProductionService
from tvilling.planning.production_text import gantt, show
from tvilling.planning.production_twin import read_line, throughput_per_h
from tvilling.planning.workorders import APPROVED, propose, transition
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.twins.importer import import_twins

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
M1, M2, M3 = "line-1-m01", "line-1-m02", "line-1-m03"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


@pytest.fixture
def platform() -> Iterator[Platform]:
    """The demo line ``line-1`` with three machines at 1500 rpm (120 parts/h each by the machine model)."""
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents(MODEL_SET))
    items = Plant(3, seed=1, scenario=None).twins()
    for item in items:
        if item["id"] in (M1, M2, M3):
            item["reported"] = {**item.get("reported", {}), "speedSetpoint": 1500.0, "state": "running"}
    import_twins(p.twins, items)
    yield p
    p.close()


@pytest.fixture
def svc(platform: Platform) -> ProductionService:
    return ProductionService(platform, settings=ProductionSettings(time_limit_s=3.0, repair_h=2.0),
                             clock=lambda: T0)


def order(svc: ProductionService, oid: str, quantity: int, routing: list[list[str]], due_min: float,
          priority: int = 1, release_min: float = 0) -> None:
    svc.create_order({"id": oid, "line": "line-1", "product": "shaft", "quantity": quantity, "routing": routing,
                      "due": iso(due_min), "release": iso(release_min), "priority": priority}, "test", now=T0)


def ops(plan: ProductionPlan) -> dict[tuple[str, int], PlannedOperation]:
    return {(o.order, o.op): o for o in plan.operations}


def minutes_of(o: PlannedOperation) -> float:
    return (o.end - o.start).total_seconds() / 60


def overlaps(o: PlannedOperation, start: datetime, end: datetime) -> bool:
    return o.start < end and start < o.end


# ---------------------------------------------------------------------------------------------- durations


def test_the_twin_machine_model_gives_the_rate_at_a_speed() -> None:
    assert throughput_per_h([{}, {}, {"ratePerHour": 60.0}], [1500.0, 750.0, 1500.0]) == [120.0, 60.0, 60.0]
    assert duration_min(120, 120.0) == 60 and duration_min(120, 60.0) == 120 and duration_min(7, 0.0) is None


def test_halving_a_machines_speed_doubles_its_durations(svc: ProductionService, platform: Platform) -> None:
    order(svc, "a", 120, [[M1]], 600)
    order(svc, "b", 90, [[M2]], 600)
    first = ops(svc.plan("line-1", now=T0).plan)
    assert minutes_of(first["a", 0]) == 60 and minutes_of(first["b", 0]) == 45
    assert first["a", 0].speed_rpm == 1500.0
    platform.twins.patch(M1, {"desired": {"speedSetpoint": 750.0}})  # commanded, not yet reported: the plan follows
    again = ops(svc.plan("line-1", now=T0).plan)
    assert minutes_of(again["a", 0]) == 120 and again["a", 0].speed_rpm == 750.0
    assert minutes_of(again["b", 0]) == 45  # the other machine is unchanged


def test_a_machine_slowed_event_stretches_the_rest_of_the_work(svc: ProductionService) -> None:
    order(svc, "a", 120, [[M1], [M1]], 600)
    svc.plan("line-1", now=T0)
    result = svc.replan("line-1", "machine slowed", {"machine": M1, "speed_rpm": 750.0}, now=at(30))
    new = ops(result.plan)
    # the running first step: 30 minutes of work left at the old rate take 60 at half the rate
    assert new["a", 0].start == T0 and new["a", 0].end == at(90)
    assert minutes_of(new["a", 1]) == 120 and new["a", 1].start >= at(90) and new["a", 1].speed_rpm == 750.0
    assert result.comparison is not None and result.comparison["kpis"]["makespan_h"]["delta"] == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------------- availability


def _work_order(platform: Platform, wid: str, asset: str, start: float, end: float, state: str = APPROVED) -> None:
    wo = propose({"id": wid, "task": "replace-bearing", "asset": asset, "planned_start": iso(start),
                  "planned_end": iso(end)}, now=T0, by="planner")
    platform.backend.workorders.add(wo, by="planner")
    if state == APPROVED:
        platform.backend.workorders.update(transition(wo, APPROVED, now=T0, by="alice"), expected_version=1, by="alice")


def test_a_maintenance_work_order_keeps_operations_off_its_window(svc: ProductionService,
                                                                   platform: Platform) -> None:
    for i in range(3):
        order(svc, f"o{i}", 60, [[M1]], 600)
    before = svc.plan("line-1", now=T0).plan
    assert any(overlaps(o, at(30), at(90)) for o in before.operations if o.machine == M1)
    _work_order(platform, "wo-1", f"{M1}-de", 30, 90)  # on the machine's drive-end bearing: the machine stops
    after = svc.plan("line-1", now=T0).plan
    assert not any(overlaps(o, at(30), at(90)) for o in after.operations if o.machine == M1)
    assert [(d["machine"], d["work_order"], d["start"], d["end"]) for d in after.downtimes] == \
        [(M1, "wo-1", at(30), at(90))]
    assert after.kpis["downtime_h"] == pytest.approx(1.0)


def test_a_proposed_work_order_counts_once_it_is_inserted(svc: ProductionService, platform: Platform) -> None:
    order(svc, "a", 60, [[M2]], 600)
    _work_order(platform, "wo-p", M2, 0, 45, state="proposed")
    plain = svc.plan("line-1", now=T0).plan
    assert ops(plain)["a", 0].start == T0  # a proposal blocks nothing by itself
    result = svc.replan("line-1", "maintenance inserted", {"work_order": "wo-p"}, now=T0)
    assert ops(result.plan)["a", 0].start == at(45) and result.plan.reason == "maintenance inserted"
    assert result.comparison is not None and result.comparison["moved"][0]["shift_min"] == 45.0
    again = svc.plan("line-1", now=T0).plan  # the inserted work order stays in later plans
    assert ops(again)["a", 0].start == at(45)


def test_a_machine_in_fault_is_down_until_the_estimated_repair(svc: ProductionService, platform: Platform) -> None:
    platform.twins.patch(M1, {"reported": {"state": "fault"}})
    order(svc, "a", 60, [[M1]], 600)
    plan = svc.plan("line-1", now=T0).plan
    assert ops(plan)["a", 0].start == at(120)  # repair_h = 2
    assert [(d["machine"], d["reason"]) for d in plan.downtimes] == [(M1, "fault")]


def test_alternative_machines_take_the_work_of_a_broken_one(svc: ProductionService) -> None:
    order(svc, "a", 60, [[M1, M2]], 600)
    order(svc, "b", 60, [[M1, M2]], 600)
    result = svc.replan("line-1", "breakdown", {"machine": M1, "repair_h": 5}, now=T0)
    assert {o.machine for o in result.plan.operations} == {M2}
    assert result.comparison is None  # nothing was planned before
    assert result.plan.kpis["makespan_h"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- re-planning


def test_a_replan_keeps_the_operations_that_started(svc: ProductionService) -> None:
    for i in range(4):
        order(svc, f"o{i}", 60 * (i + 1), [[], [M2, M3], []], 240, priority=i + 1)
    first = svc.plan("line-1", now=T0).plan
    now = at(30)
    result = svc.replan("line-1", "breakdown", {"machine": M2, "repair_h": 1}, now=now)
    old, new = ops(first), ops(result.plan)
    started = [k for k, o in old.items() if o.start < now]
    assert started, "the first plan starts something at once"
    for key in started:
        assert new[key].machine == old[key].machine and new[key].start == old[key].start
        if old[key].machine == M2 and old[key].end > now:  # interrupted: resumes after the repair
            assert new[key].end == old[key].end + timedelta(hours=1)
        else:
            assert new[key].end == old[key].end
    for key, o in new.items():
        if key not in started:
            assert o.start >= now
            if o.machine == M2:
                assert not overlaps(o, now, now + timedelta(hours=1))
    assert result.plan.previous == first.id and result.plan.reason == "breakdown"
    assert current_plan(svc.store, "line-1") == result.plan


def test_kpi_deltas_on_a_hand_checked_case(svc: ProductionService) -> None:
    # one machine, 120 parts/h: a (120 parts, due 90 min) and b (120 parts, due 120 min), 60 minutes each
    order(svc, "a", 120, [[M1]], 90)
    order(svc, "b", 120, [[M1]], 120)
    first = svc.plan("line-1", now=T0)
    assert first.solver["optimal"]
    assert [(o.order, o.start, o.end) for o in first.plan.operations] == [("a", at(0), at(60)), ("b", at(60), at(120))]
    assert first.plan.kpis["makespan_h"] == 2.0 and first.plan.kpis["throughput_per_h"] == 120.0
    # a breakdown of 30 minutes now: a 30-90 on time, b 90-150, 30 minutes late
    result = svc.replan("line-1", "breakdown", {"machine": M1, "repair_h": 0.5}, now=T0)
    assert [(o.order, o.start, o.end) for o in result.plan.operations] == \
        [("a", at(30), at(90)), ("b", at(90), at(150))]
    assert result.comparison is not None
    k = result.comparison["kpis"]
    assert (k["makespan_h"]["before"], k["makespan_h"]["after"], k["makespan_h"]["delta"]) == (2.0, 2.5, 0.5)
    assert (k["total_tardiness_h"]["before"], k["total_tardiness_h"]["after"]) == (0.0, 0.5)
    assert k["weighted_tardiness_h"]["delta"] == 0.5 and k["late_orders"]["delta"] == 1.0
    assert k["throughput_per_h"]["after"] == pytest.approx(96.0) and k["throughput_per_h"]["delta"] == -24.0
    assert k["downtime_h"]["delta"] == 0.5
    # by 10:00, the end of the first plan, 240 parts were due; now a's 120 and half of b's: 60 lost
    assert k["lost_production"]["after"] == 60.0 and result.plan.kpis["lost_production"] == 60.0
    assert [(m["order"], m["shift_min"]) for m in result.comparison["moved"]] == [("a", 30.0), ("b", 30.0)]
    assert result.comparison["stability"] == 0.0
    assert result.comparison["downtime_avoided_h"] == 0.5  # a's first half hour was planned in the breakdown
    assert svc.compare(first.plan.id, result.plan.id)["kpis"] == k


def test_finished_orders_are_closed_and_cancelled_ones_dropped(svc: ProductionService) -> None:
    order(svc, "a", 60, [[M1]], 600)
    order(svc, "b", 60, [[M1]], 600)
    order(svc, "c", 60, [[M2]], 600)
    svc.plan("line-1", now=T0)
    svc.cancel_order("c", now=T0)
    later = svc.plan("line-1", now=at(200)).plan
    assert later.operations == ()
    assert {o.id: o.state for o in svc.list_orders(line="line-1")} == {"a": "done", "b": "done", "c": "cancelled"}
    assert svc.get_order("b").completed in (at(60), at(120))
    with pytest.raises(Conflict):
        svc.cancel_order("a")


def test_two_planners_from_the_same_plan_cannot_both_win(svc: ProductionService, platform: Platform) -> None:
    order(svc, "a", 60, [[M1]], 600)
    first = svc.plan("line-1", now=T0).plan
    other = ProductionService(platform, settings=svc.settings)
    other.plan("line-1", now=T0)
    stale = ProductionPlan("plan-x", T0, "line-1", (), (), {}, previous=first.id)
    with pytest.raises(Conflict) as err:
        svc.store.save_plan(stale, expected_current=first.id)
    assert err.value.fields["rule"] == "stale_plan"


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("change", "field", "rule"), [
    ({"routing": []}, "routing", "empty"),
    ({"routing": [["line-1-m99"]]}, "routing[0]", "unknown-machine"),
    ({"due": iso(-10)}, "due", "order"),
    ({"quantity": 0}, "quantity", "range"),
    ({"due": "tomorrow"}, "due", "format"),
    ({"colour": "red"}, "colour", "unknown"),
])
def test_bad_orders_are_refused_naming_the_field(svc: ProductionService, change: dict[str, Any], field: str,
                                                 rule: str) -> None:
    body = {"line": "line-1", "product": "p", "quantity": 10, "routing": [[M1]], "due": iso(60), **change}
    with pytest.raises(Invalid) as err:
        svc.create_order(body, "test", now=T0)
    assert err.value.fields["field"] == field and err.value.fields["rule"] == rule
    assert svc.list_orders() == []


def test_a_step_no_machine_can_run_is_refused(svc: ProductionService, platform: Platform) -> None:
    platform.twins.patch(M3, {"reported": {"speedSetpoint": 0.0}})
    with pytest.raises(Invalid, match="no feasible machine") as err:
        svc.create_order({"line": "line-1", "product": "p", "quantity": 5, "routing": [[M1], [M3]], "due": iso(60)},
                         "test", now=T0)
    assert err.value.fields["field"] == "routing[1]"
    order(svc, "a", 5, [[M1], [M2]], 600)
    platform.twins.patch(M2, {"reported": {"speedSetpoint": 0.0}})  # stopped after the order was taken
    with pytest.raises(Infeasible, match="order a step 1"):
        svc.plan("line-1", now=T0)


def test_unknown_lines_machines_and_events_are_named(svc: ProductionService, platform: Platform) -> None:
    with pytest.raises(NotFound):
        svc.create_order({"line": "line-9", "product": "p", "quantity": 5, "routing": [[]], "due": iso(60)}, "t")
    with pytest.raises(Invalid, match="has no machines"):
        svc.plan(M1)  # a machine is not a line
    order(svc, "a", 5, [[M1]], 600)
    with pytest.raises(Invalid) as err:
        svc.replan("line-1", "breakdown", {"machine": "line-2-m01"}, now=T0)
    assert err.value.fields["field"] == "event.machine"
    with pytest.raises(Invalid, match="reason must be one of"):
        svc.replan("line-1", "earthquake", {}, now=T0)
    with pytest.raises(Invalid) as err:
        svc.replan("line-1", "machine slowed", {"machine": M1, "speed_rpm": -5}, now=T0)
    assert err.value.fields["field"] == "event.speed_rpm"
    with pytest.raises(NotFound):
        svc.replan("line-1", "maintenance inserted", {"work_order": "wo-none"}, now=T0)
    with pytest.raises(Invalid) as err:
        svc.plan("line-1", time_limit=1e6)
    assert err.value.fields["field"] == "time_limit"
    assert svc.current("line-1") is None  # nothing was stored by the refused requests


# ---------------------------------------------------------------------------------------------- pieces


def test_running_work_resumes_after_a_stop() -> None:
    assert busy_until(T0, timedelta(minutes=30), [(at(10), at(40))]) == at(60)
    assert busy_until(T0, timedelta(minutes=30), [(at(30), at(40))]) == at(30)
    assert busy_until(T0, timedelta(minutes=30), [(at(-5), at(5)), (at(20), at(25))]) == at(40)


def test_the_line_is_read_from_the_twin_graph(platform: Platform) -> None:
    view = read_line(platform, "line-1")
    assert [m.id for m in view.machines] == [M1, M2, M3]
    assert view.machine_of(f"{M2}-nde") == M2 and view.machine_of("line-1") is None
    assert all(m.speed_rpm == 1500.0 and m.state == "running" for m in view.machines)


def test_the_text_gantt_shows_each_machine(svc: ProductionService) -> None:
    order(svc, "a", 60, [[M1], [M2]], 600)
    result = svc.replan("line-1", "breakdown", {"machine": M3, "repair_h": 1}, now=T0)
    doc = plan_to_json(result.plan)
    chart = gantt(doc, width=40).splitlines()
    rows = {line.split()[0]: line.split()[1] for line in chart[1:-1]}
    assert rows[M1] == "A" * 20 + "." * 20 and rows[M2] == "." * 20 + "A" * 20 and rows[M3] == "#" * 40
    assert "A=a" in chart[-1] and "makespan_h" in show(doc)


def test_plant_time_is_the_newest_reading_advanced_by_the_wall_clock(platform: Platform) -> None:
    from tvilling.planning.production_twin import plant_time

    twin = platform.twins.patch(M2, {"reported": {"speed": 1499.0}, "time": "2026-01-05T10:00:00Z"})
    assert plant_time(twin, twin.updated) == datetime(2026, 1, 5, 10, tzinfo=UTC)
    later = twin.updated + timedelta(minutes=7)
    assert plant_time(twin, later) == datetime(2026, 1, 5, 10, 7, tzinfo=UTC)


def test_current_plan_reads_through_a_platform_a_backend_or_the_store(svc: ProductionService,
                                                                        platform: Platform) -> None:
    assert current_plan(platform, "line-1") is None
    order(svc, "a", 60, [[M1]], 600)
    plan = svc.plan("line-1", now=T0).plan
    assert current_plan(platform, "line-1") == current_plan(platform.backend, "line-1") == plan
    with pytest.raises(Invalid, match="holds no production plan store"):
        current_plan(object(), "line-1")


@pytest.mark.parametrize("name", ["tvilling.planning.production_orders", "tvilling.planning.production_build",
                                  "tvilling.planning.production_json", "tvilling.backend.production"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("event", [{"machine": M1, "speed_rpm": 10**400}, {"machine": M1, "speed_rpm": float("nan")},
                                   {"machine": M1, "speed_rpm": True}])
def test_odd_numbers_in_events_are_refused(svc: ProductionService, event: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as err:
        svc.replan("line-1", "machine slowed", event, now=T0)
    assert err.value.fields["field"] == "event.speed_rpm"
    with pytest.raises(Invalid) as err:
        svc.replan("line-1", "breakdown", {"machine": M1, "repair_h": event["speed_rpm"]}, now=T0)
    assert err.value.fields["field"] == "event.repair_h"


def test_a_configured_machine_simulation_gives_the_planned_rates() -> None:
    from tvilling.planning.production_twin import machine_parameters

    sim = {"name": "machine", "model": "dtmi:tvilling:example:Machine;3", "kind": "python",
           "class": "tvilling.simulation.machine:MachineModel", "parameters": {"ratePerHour": 150.0},
           "outputs": {"throughput": "throughput"}}
    p = build_platform(Settings(store="memory", simulations=[sim]))
    try:
        p.models.add(builtin_documents(MODEL_SET))
        import_twins(p.twins, Plant(1, seed=1, scenario=None).twins())
        machine = p.twins.get("line-1-m01")
        assert machine_parameters(p, machine)["ratePerHour"] == 150.0  # Machine;4 twins, a Machine;3 simulation
        assert throughput_per_h([{"ratePerHour": 150.0}], [1500.0])[0] == pytest.approx(150.0, rel=0.01)
    finally:
        p.close()


def test_an_accelerated_plant_is_planned_on_its_readings_clock(platform: Platform) -> None:
    fast = ProductionService(platform, settings=ProductionSettings(time_limit_s=3.0), clock=lambda: T0, time_scale=60)
    order(fast, "a", 120, [[M1]], 600)  # 120 parts: one plant hour at 1500 rpm, one minute of the readings' clock
    assert minutes_of(ops(fast.plan("line-1", now=T0).plan)["a", 0]) == 1
    with pytest.raises(Invalid, match="time_scale must be a number > 0"):
        ProductionService(platform, time_scale=0)
