"""One decision, end to end (issue 13, item 4, server side): a predictive alarm on the drive-end bearing of the
demo's machine → the what-if runs the options (run to failure, slow down, replace the bearing in each window) →
the optimiser's work order in the best window is proposed with every option in its rationale → the decision is
stored; a second alarm for the same asset makes no second decision; approval schedules the work order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planning.test_maintenance_service import BEARING, LINE, MACHINE, NOW, SPEED, degrade
from tvilling.api.app import create_app
from tvilling.app import Platform
from tvilling.core.errors import Conflict, Invalid
from tvilling.demo import demo_simulations
from tvilling.planning.decision import DecisionService
from tvilling.planning.decision_watch import DecisionWatch
from tvilling.planning.workorders_service import WorkOrderService
from tvilling.simulation.scenario_service import ScenarioService
from tvilling.simulation.spec import parse_simulations


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = degrade(tmp_path_factory.mktemp("decision") / "data")
    yield p
    p.close()


def service(platform: Platform) -> DecisionService:
    workorders = WorkOrderService(platform.backend.workorders, platform.twins)
    # the machine's behaviour model bound as in the demo (not run in shadow during the ingest above: faster)
    scenarios = ScenarioService(platform.backend, parse_simulations(demo_simulations(SPEED)),
                                registry=platform.analytics_registry)
    return DecisionService(platform, workorders, scenarios=scenarios)


def rul_alarm(platform: Platform) -> dict[str, Any]:
    alarm = next(a for a in platform.alarm_store.list(state="active") if a.rule == "bearing-rul" and a.twin == BEARING)
    return {"id": alarm.id, "rule": alarm.rule, "twin": alarm.twin, "origin": BEARING, "severity": alarm.severity,
            "raised": NOW.isoformat()}


def test_the_decision_weighs_the_options_and_proposes_one_work_order(platform: Platform) -> None:
    decisions = service(platform)
    record = decisions.decide(rul_alarm(platform))
    assert record["status"] == "proposed" and record["asset"] == BEARING
    assert record["machine"] == MACHINE and record["line"] == LINE
    assert record["trigger"]["rule"] == "bearing-rul"
    # the what-if really ran: one scenario, every option with its simulated KPIs
    assert record["whatif"]["ran"] is True
    scenario = decisions.scenarios.get(record["whatif"]["scenario"])
    assert scenario["status"] == "done"
    kinds = [o["kind"] for o in record["options"]]
    assert kinds[:2] == ["run_to_failure", "slow_down"] and kinds.count("window") >= 1 and "preventive" in kinds
    for option in record["options"]:
        if option["kind"] != "preventive":
            assert option["name"] in scenario["kpis"]
            assert option["p_fail_horizon"] is not None and option["production"] is not None
        assert option["expected_cost"] is not None
    rtf, slow = record["options"][:2]
    # the plan guards against the worse of the what-if and the remaining-life analytic: left alone it fails
    assert record["failure_source"] in ("what-if", "rul-analytic") and rtf["p_fail_horizon_planned"] > 0.5
    if record["failure_source"] == "what-if":
        assert rtf["p_fail_horizon_planned"] == pytest.approx(rtf["p_fail_horizon"], abs=0.1)
    assert slow["lost_production_h"] > 0 and slow["p_fail_horizon_planned"] <= rtf["p_fail_horizon_planned"]
    # preventive work in a window wins: cheapest, and what the optimiser could staff
    chosen = next(o for o in record["options"] if o["chosen"])
    assert chosen["kind"] == "preventive" and chosen["window"].startswith("nightly-stop")
    assert chosen["expected_cost"] == min(o["expected_cost"] for o in record["options"] if o["feasible"])
    assert record["chosen"]["kind"] == "preventive" and "expected cost" in record["chosen"]["why"]
    # exactly one work order, proposed on the machine, its rationale listing every option
    proposed = decisions.workorders.list(state="proposed")
    assert [o.id for o in proposed] == [record["work_order"]]
    order = proposed[0]
    assert order.asset == MACHINE and order.rationale["decision"] == record["id"]
    assert [o["name"] for o in order.rationale["decision_options"]] == [o["name"] for o in record["options"]]
    assert order.rationale["planned_asset"] == BEARING
    # the production plan: the line has no production orders, so the re-plan answers a plan without operations
    assert record["production"]["line"] == LINE
    assert decisions.get(record["id"])["status"] == "proposed"

    # a second alarm for the same asset: no second decision, no second work order
    again = decisions.decide(rul_alarm(platform))
    assert again["id"] == record["id"] and again["duplicate"] is True
    assert len(decisions.list(asset=BEARING)) == 1 and len(decisions.workorders.list(state="proposed")) == 1

    # approval schedules the work order; the decision is approved, and cannot be approved twice
    approved = decisions.approve_and_schedule(record["id"], "alice")
    assert approved["status"] == "approved" and approved["approved_by"] == "alice"
    wo = decisions.workorders.get(record["work_order"])
    assert wo.state == "scheduled" and wo.firm and wo.approved_by == "alice"
    with pytest.raises(Conflict):
        decisions.approve_and_schedule(record["id"], "alice")
    # the work order cancelled: the decision is rejected, and a new alarm may decide again
    decisions.workorders.move(wo.id, "cancel", "alice", body={"note": "no crane today"})
    assert decisions.get(record["id"])["status"] == "rejected" and decisions.open_for(BEARING) is None


def test_the_watch_decides_once_per_asset_and_the_api_shows_decisions(platform: Platform) -> None:
    decisions = service(platform)
    for order in decisions.workorders.list(state="proposed"):
        decisions.workorders.move(order.id, "cancel", "test", body={"note": "reset"})

    async def watch() -> DecisionWatch:
        async with DecisionWatch(platform, lambda: decisions, ["bearing-rul"]) as w:
            alarm = {**rul_alarm(platform), "raised": NOW.isoformat()}
            started = [w.submit(alarm), w.submit(alarm)]  # the same alarm twice while the first is in flight
            w.join(120)
            assert started == [True, False]
            return w

    w = asyncio.run(watch())
    assert not w.errors and len(w.decided) == 1
    assert len(decisions.workorders.list(state="proposed")) == 1
    open_one = decisions.open_for(BEARING)
    assert open_one is not None and open_one["id"] == w.decided[0]["id"]
    with pytest.raises(Invalid):
        decisions.decide(LINE)  # the line has no maintenance task

    client = TestClient(create_app(platform=platform))
    client.app.state.decisions = decisions  # type: ignore[attr-defined]
    items = client.get("/api/decisions", params={"asset": BEARING}).json()["items"]
    assert open_one["id"] in [d["id"] for d in items]
    one = client.get(f"/api/decisions/{open_one['id']}")
    assert one.status_code == 200 and one.json()["work_order"] == open_one["work_order"]
    missing = client.get("/api/decisions/dec-nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    bad = client.post("/api/decisions", json={"twin": BEARING, "alarm": {}})
    assert bad.status_code == 422 and bad.json()["field"] == "body"
    again = client.post("/api/decisions", json={"twin": BEARING})
    assert again.status_code == 200 and again.json()["id"] == open_one["id"] and again.json()["duplicate"] is True
    approved = client.post(f"/api/decisions/{open_one['id']}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert client.post(f"/api/decisions/{open_one['id']}/approve").status_code == 409
