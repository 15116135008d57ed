"""The production routes over HTTP (memory and embedded stores): orders, a plan, the plan in force, a re-plan
with KPI deltas, a comparison, and problem answers naming what was wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.models.builtin import builtin_documents
from tvilling.planning.production import current_plan
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.twins.importer import import_twins

PROBLEM = "application/problem+json"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
M1, M2 = "line-1-m01", "line-1-m02"


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@pytest.fixture(params=["memory", "sqlite"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(store="memory") if request.param == "memory" else Settings(data_dir=tmp_path / "data")
    platform = build_platform(settings)
    platform.models.add(builtin_documents(MODEL_SET))
    import_twins(platform.twins, Plant(2, seed=1, scenario=None).twins())
    app = create_app(platform=platform)
    with TestClient(app) as client:
        client.app_state = app.state  # type: ignore[attr-defined]
        yield client
    platform.close()


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status and doc["detail"]
    return doc


def order(**over: Any) -> dict[str, Any]:
    body = {"line": "line-1", "product": "shaft", "quantity": 120, "routing": [[M1]], "due": iso(90),
            "release": iso(0)}
    body.update(over)
    return body


def test_orders_plan_replan_and_compare(api: TestClient) -> None:
    r = api.post("/api/production/orders", json=order(id="a"), headers={"X-Tvilling-Actor": "scheduler"})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/production/orders/a" and r.json()["created_by"] == "scheduler"
    assert api.post("/api/production/orders", json=order(id="b", due=iso(120), routing=[["*"]])).status_code == 201
    assert api.get("/api/production/orders/a").json()["routing"] == [[M1]]
    assert [o["id"] for o in api.get("/api/production/orders?line=line-1&state=open").json()["items"]] == ["a", "b"]

    problem(api.get("/api/production/plans/current?line=line-1"), 404)
    r = api.post("/api/production/plans", json={"line": "line-1", "time_limit": 2, "at": iso(0)})
    assert r.status_code == 201, r.text
    first = r.json()["plan"]
    assert r.json()["comparison"] is None and r.json()["solver"]["optimal"] is True
    assert {(o["order"], o["machine"], o["start"], o["end"]) for o in first["operations"]} >= \
        {("a", M1, iso(0), iso(60))}
    assert first["kpis"]["total_tardiness_h"] == 0.0 and first["reason"] == "initial"
    assert api.get("/api/production/plans/current?line=line-1").json() == first
    assert api.get(f"/api/production/plans/{first['id']}").json() == first

    r = api.post("/api/production/plans/replan", json={"line": "line-1", "reason": "breakdown", "at": iso(30),
                                                       "event": {"machine": M1, "repair_h": 1}})
    assert r.status_code == 201, r.text
    answer = r.json()
    plan = answer["plan"]
    assert plan["previous"] == first["id"] and plan["reason"] == "breakdown"
    running = next(o for o in plan["operations"] if o["order"] == "a")
    assert (running["machine"], running["start"], running["end"]) == (M1, iso(0), iso(120))  # resumed after repair
    kpis = answer["comparison"]["kpis"]
    assert kpis["downtime_h"]["after"] == 1.0 and kpis["total_tardiness_h"]["delta"] == \
        pytest.approx(kpis["total_tardiness_h"]["after"] - kpis["total_tardiness_h"]["before"])
    assert kpis["total_tardiness_h"]["after"] >= 0.5  # a ends at 10:00, due 09:30
    compared = api.get(f"/api/production/compare?before={first['id']}&after={plan['id']}").json()
    assert compared["kpis"] == kpis
    history = api.get("/api/production/plans?line=line-1").json()["items"]
    assert [p["id"] for p in history] == [plan["id"], first["id"]]
    platform = api.app_state.platform  # type: ignore[attr-defined]
    assert current_plan(platform, "line-1") is not None and current_plan(platform, "line-1").id == plan["id"]

    r = api.post("/api/production/orders/b/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    problem(api.post("/api/production/orders/b/cancel"), 409)


@pytest.mark.parametrize(("body", "status", "field"), [
    (order(line="line-7"), 404, None),
    (order(routing=[["line-1-m09"]]), 422, "routing[0]"),
    (order(routing=[]), 422, "routing"),
    (order(due=iso(-30)), 422, "due"),
    (order(quantity="many"), 422, "quantity"),
    ([1, 2], 422, "body"),
])
def test_bad_orders_get_problems_naming_the_field(api: TestClient, body: Any, status: int, field: str | None) -> None:
    doc = problem(api.post("/api/production/orders", json=body), status)
    if field is not None:
        assert doc["field"] == field
    assert api.get("/api/production/orders").json()["items"] == []


def test_bad_plan_requests_get_problems(api: TestClient) -> None:
    problem(api.post("/api/production/plans", content=b"{not json", headers={"content-type": "application/json"}),
            400)
    problem(api.post("/api/production/plans", json={"line": "nowhere"}), 404)
    assert problem(api.post("/api/production/plans", json={"line": "line-1", "time_limit": 0}), 422)["field"] == \
        "time_limit"
    assert problem(api.post("/api/production/plans", json={"line": "line-1", "at": "soon"}), 422)["field"] == "at"
    assert problem(api.post("/api/production/plans/replan", json={"line": "line-1", "reason": "rain", "event": {}}),
                   422)["field"] == "reason"
    doc = problem(api.post("/api/production/plans/replan", json={
        "line": "line-1", "reason": "machine slowed", "event": {"machine": M2, "speed_rpm": "slow"}}), 422)
    assert doc["field"] == "event.speed_rpm"
    problem(api.get("/api/production/plans/plan-none"), 404)
    problem(api.get("/api/production/orders/none"), 404)
    problem(api.get("/api/production/compare?before=x&after=y"), 404)
    problem(api.get("/api/production/orders?state=paused"), 422)
