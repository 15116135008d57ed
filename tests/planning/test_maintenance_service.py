"""Maintenance planning on the live platform (issue 13, item 1 on the platform): the demo's line, its analytics and
alarm rules, run over an embedded data directory until the drive-end bearing of its machine is predicted to fail
within hours; the problem is read from the twins, the plan stored as work orders, the API answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.decisions.alarms import build_driver
from tvilling.demo import demo_alarm_rules, demo_analytics, seed_twins
from tvilling.planning.maintenance import MaintenanceInfeasible
from tvilling.planning.maintenance_service import MaintenanceService
from tvilling.planning.maintenance_service_config import parse_maintenance
from tvilling.planning.maintenance_types import downtime_rate
from tvilling.planning.workorders_service import WorkOrderService
from tvilling.plant import Injection
from tvilling.plant.run import TickedPlant

MACHINE, LINE = "line-1-m01", "line-1"
BEARING, HEALTHY = f"{MACHINE}-de", f"{MACHINE}-nde"
SPEED = 60.0  # the demo's plant: one plant minute per reading second
T0_MS = 1_767_225_600_000
STEPS = 130
NOW = datetime.fromtimestamp((T0_MS + STEPS * 1000) / 1000, UTC)
#: plant hour 0 of the planning clock 20 plant hours (20 readings' minutes at the demo's speed 60) before NOW: the
#: nightly stop (22:00-06:00) begins 2 plant hours after NOW
ORIGIN = NOW - timedelta(minutes=20)


def maintenance_config(**extra: Any) -> dict[str, Any]:
    return {"clock_origin": ORIGIN.isoformat(), "decision": {"rules": ["bearing-rul"], "samples": 24}, **extra}


def degrade(data: Path, **settings: Any) -> Platform:
    """The demo line stepped until its drive-end bearing is predicted to fail within hours (RUL written by ingest)."""
    # the demo's drive-end defect, growing a twelfth as fast: its remaining life is hours, not the demo's minutes
    plant = TickedPlant(machines=1, seed=1, speed=SPEED, scenario=[
        Injection(machine=1, fault="bearing_defect", at=70 * SPEED, severity=1.0, growth=0.08, bearing="de")])
    platform = build_platform(Settings(data_dir=data, analytics=demo_analytics(SPEED, 60),
                                       alarm_rules=demo_alarm_rules(),
                                       maintenance=settings.pop("maintenance", maintenance_config()), **settings))
    seed_twins(platform, plant)
    driver = build_driver(platform)
    for step in range(STEPS):
        frame = plant.step(1.0, now_ms=T0_MS + step * 1000)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    driver.catch_up()
    rep = platform.twins.get(BEARING).reported
    assert 2 < rep["rul"] < 12 and platform.twins.get(HEALTHY).reported.get("rul") is None
    assert any(a.rule == "bearing-rul" and a.twin == BEARING for a in platform.alarm_store.list(state="active"))
    return platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = degrade(tmp_path_factory.mktemp("maint") / "data")
    yield p
    p.close()


def services(platform: Platform) -> tuple[WorkOrderService, MaintenanceService]:
    workorders = WorkOrderService(platform.backend.workorders, platform.twins)
    return workorders, MaintenanceService(platform, workorders)


def cancel_open(workorders: WorkOrderService) -> None:
    for state in ("proposed", "approved", "scheduled"):
        for order in workorders.list(state=state):
            workorders.move(order.id, "cancel", "test", body={"note": "test reset"})


def test_the_problem_is_read_from_the_twins(platform: Platform) -> None:
    _, maintenance = services(platform)
    built = maintenance.build(now=NOW)
    problem = built.problem
    by_id = {a.id: a for a in problem.assets}
    assert maintenance.time_scale() == SPEED  # the remaining-life analytic's plant hours
    # at risk: the bearing with a prediction; the healthy one is known but has no failure distribution
    assert by_id[BEARING].failure is not None and by_id[HEALTHY].failure is None
    assert {s["asset"] for s in built.skipped} == {HEALTHY}
    rep = platform.twins.get(BEARING).reported
    assert by_id[BEARING].failure.prob_fail_before(rep["rul"], now=0.0) == pytest.approx(0.5, abs=0.15)
    # criticality from the graph: the bearing stops its machine, the machine its line
    assert by_id[BEARING].stops == (MACHINE,) and by_id[MACHINE].stops == (LINE,)
    assert downtime_rate(problem, BEARING) == pytest.approx(150.0 + 600.0)
    assert built.assets[BEARING].target == MACHINE  # the machine takes the maintenance command
    assert [t.name for t in problem.tasks] == ["replace-bearing"] and by_id[BEARING].task == "replace-bearing"
    nights = [w for w in problem.windows if w.kind == "nightly-stop"]
    assert nights[0].start == pytest.approx(2.0) and nights[0].end == pytest.approx(10.0)
    night = next(t for t in problem.technicians if t.id == "tech-night")
    assert night.shifts[0].start == pytest.approx(2.0)


def test_plan_proposes_work_in_the_nightly_window_and_none_for_healthy_bearings(platform: Platform) -> None:
    workorders, maintenance = services(platform)
    cancel_open(workorders)
    answer = maintenance.plan(now=NOW, by="planner")
    [order] = answer["proposed"]
    assert order["asset"] == MACHINE and order["state"] == "proposed" and order["task"] == "replace-bearing"
    assert order["rationale"]["planned_asset"] == BEARING
    assert order["planned_start"] == (NOW + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")  # 22:00 plant
    assert order["crew"] == ["tech-night"] and order["parts"] == {"bearing-kit": 1}
    assert order["maintenance_command"] == "maintenanceDone"
    assert answer["work_orders"][0]["window"].startswith("nightly-stop")
    assert answer["totals"]["expected_cost"] < answer["totals"]["all_run_to_failure_cost"]
    assert answer["solver"]["status"] == "optimal"
    assert {a["asset"] for a in answer["not_planned"]} == {HEALTHY}
    assert not any(o.rationale.get("planned_asset") == HEALTHY for o in workorders.list())


def test_replan_keeps_its_proposal_and_firm_orders_and_replaces_others(platform: Platform) -> None:
    workorders, maintenance = services(platform)
    cancel_open(workorders)
    first = maintenance.plan(now=NOW)["proposed"][0]
    again = maintenance.plan(now=NOW)
    assert again["proposed"] == [] and again["kept"] == [first["id"]]  # same plan: no churn
    # a proposal of an earlier plan at another time is replaced, cancelled with the reason
    later = (NOW + timedelta(minutes=30)).isoformat()
    old = workorders.propose({"task": "replace-bearing", "asset": MACHINE, "planned_start": later,
                              "planned_end": (NOW + timedelta(minutes=32)).isoformat(),
                              "rationale": {"planned_asset": BEARING}}, "someone")
    third = maintenance.plan(now=NOW)
    assert old.id in {c["id"] for c in third["cancelled"]}
    cancelled = workorders.get(old.id)
    assert cancelled.state == "cancelled" and "superseded" in cancelled.notes[-1].text
    # once approved and scheduled the order is firm: a re-plan keeps it and proposes nothing new
    workorders.move(first["id"], "approve", "alice")
    workorders.move(first["id"], "schedule", "alice")
    fourth = maintenance.plan(now=NOW)
    assert fourth["proposed"] == [] and fourth["cancelled"] == []
    [firm] = fourth["work_orders"]
    assert firm["firm"] and firm["previous_order"] == first["id"]
    assert workorders.get(first["id"]).state == "scheduled"


@pytest.mark.parametrize(("doc", "field"), [
    ({"tasks": [{"model": "dtmi:a:B", "name": "x", "duration_h": 0, "skills": ["m"]}]},
     "maintenance.tasks[0].duration_h"),
    ({"technicians": [{"id": "t", "skills": ["m"], "shifts": ["25:00-06:00"]}]},
     "maintenance.technicians[0].shifts[0]"),
    ({"windows": [{"id": "w", "daily": "22:00-06:00", "start": "2026-01-01T00:00:00Z"}]}, "maintenance.windows[0]"),
    ({"parts": [{"part": "p", "on_hand": 1, "lead_time_h": 1}]}, "maintenance.tasks[0].parts[0]"),
    ({"horizon": 10}, "maintenance.horizon"),
    ({"decision": {"samples": 1}}, "maintenance.decision.samples"),
])
def test_bad_configuration_names_the_key(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_maintenance(doc)
    assert err.value.fields["field"] == field and field in err.value.message


def test_api_plans_and_answers_4xx_naming_bad_input(platform: Platform) -> None:
    workorders, _ = services(platform)
    cancel_open(workorders)
    client = TestClient(create_app(platform=platform))
    answer = client.post("/api/maintenance/plan", json={"now": NOW.isoformat(), "assets": [BEARING]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [o["asset"] for o in body["proposed"]] == [MACHINE] and body["solver"]["status"] == "optimal"
    config = client.get("/api/maintenance/config").json()
    assert config["tasks"][0]["name"] == "replace-bearing" and config["time_scale_effective"] == SPEED
    for bad, status, field in (({"solver": "glpk"}, 422, "solver"), ({"horizon_h": -1}, 422, "horizon_h"),
                               ({"speed": 1}, 422, "speed"), ({"assets": ["nope"]}, 404, "assets[0]"),
                               ({"assets": [LINE]}, 422, "assets[0]"), ({"now": "yesterday"}, 422, "now")):
        answer = client.post("/api/maintenance/plan", json=bad)
        assert answer.status_code == status and answer.json()["field"] == field, (bad, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_an_impossible_plan_is_409_listing_the_conflicts(platform: Platform) -> None:
    workorders, _ = services(platform)
    cancel_open(workorders)
    tasks = [{"model": "dtmi:tvilling:example:Bearing", "name": "replace-bearing", "duration_h": 2,
              "skills": ["crane-operator"], "parts": ["bearing-kit"], "preventive_cost": 800, "corrective_cost": 4000,
              "corrective_downtime_h": 24}]
    settings = parse_maintenance(maintenance_config(tasks=tasks))
    maintenance = MaintenanceService(platform, workorders, settings=settings)
    with pytest.raises(MaintenanceInfeasible) as err:
        maintenance.plan(now=NOW)
    [conflict] = err.value.fields["conflicts"]
    assert conflict["kind"] == "missing-skill" and conflict["asset"] == BEARING
    assert "crane-operator" in err.value.message
    assert workorders.list(state="proposed") == []
