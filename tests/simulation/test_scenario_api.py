"""The what-if API on a platform fed by the simulated plant: a request is checked at once (404 for an
unknown twin, 422 naming the field for anything else), runs off the request with progress on the
change stream, and leaves a record with KPIs and banded series that lists, compares and survives in
the backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_shadow import SIM, plant_platform, run

from tvilling.api.app import create_app
from tvilling.app import Platform
from tvilling.simulation.scenario_feed import ScenarioFeedSource

MACHINE = "line-1-m01"
OPTIONS = [{"name": "keep 1500 rpm", "interventions": []},
           {"name": "slow to 900 rpm", "interventions": [{"at": "0m", "command": "setSpeed", "value": 900}]},
           {"name": "replace bearing at next stop",
            "interventions": [{"at": "4h", "maintenance": "replaceBearing", "part": "de", "duration": "1h"}]}]


def body(**over: Any) -> dict[str, Any]:
    return {"twin": MACHINE, "horizon": "24h", "step": "1m", "samples": 20, "seed": 7, "options": OPTIONS, **over}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[TestClient, Platform]]:
    p, plant = plant_platform(machines=1)
    run(p, plant, range(0, 5))
    with TestClient(create_app(platform=p)) as client:
        yield client, p
    p.close()


def wait_done(client: TestClient, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = client.get(f"/api/scenarios/{sid}").json()
        if doc["status"] != "running":
            return doc
        time.sleep(0.05)
    raise AssertionError("the scenario did not finish within 60 s")


def test_a_scenario_runs_off_the_request_and_reports_kpis_and_bands(api):
    client, p = api
    r = client.post("/api/scenarios", json=body())
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["status"] == "running" and started["progress"] == 0.0
    assert r.headers["location"] == f"/api/scenarios/{started['id']}"
    doc = wait_done(client, started["id"])
    assert doc["status"] == "done", doc.get("error")
    assert doc["progress"] == 1.0 and doc["finished"] and doc["request"]["twin"] == MACHINE
    kpis = doc["kpis"]
    assert list(kpis) == ["keep 1500 rpm", "slow to 900 rpm", "replace bearing at next stop"]
    keep, slow = kpis["keep 1500 rpm"], kpis["slow to 900 rpm"]
    assert set(keep) == {"ttf_p10_h", "ttf_p50_h", "ttf_p90_h", "p_fail_horizon", "p_fail_shift", "production",
                         "energy_kwh", "lost_production"}
    # slowing down makes fewer parts than running on at full speed, and the loss is counted against the baseline
    assert slow["production"] < keep["production"] and slow["lost_production"] > 0
    assert keep["lost_production"] == 0 and keep["energy_kwh"] > slow["energy_kwh"] > 0
    series = doc["series"]
    assert series["t_s"][0] == 0 and series["t_s"][-1] == 24 * 3600 and len(series["t_s"]) <= 500
    speed = series["outputs"]["speed"]["slow to 900 rpm"]
    assert len(speed["p50"]) == len(series["t_s"])
    assert speed["p10"][-1] <= speed["p50"][-1] <= speed["p90"][-1]
    assert abs(speed["p50"][-1] - 900) < 50 and abs(series["outputs"]["speed"]["keep 1500 rpm"]["p50"][-1] - 1500) < 60
    # listed newest first, comparable, and kept in the backend's store
    items = client.get("/api/scenarios").json()["items"]
    assert items[0]["id"] == started["id"] and items[0]["options"] == list(kpis) and items[0]["twin"] == MACHINE
    cmp = client.get(f"/api/scenarios/compare?ids={started['id']}").json()["items"]
    assert cmp[0]["kpis"] == kpis
    assert p.backend.scenarios.get(started["id"])["status"] == "done"
    # the change stream saw it start, move on and finish
    seen = [item for _, item in ScenarioFeedSource(p.backend.scenarios).read(0, 10_000) if item["id"] == started["id"]]
    assert seen[0]["status"] == "running" and seen[-1] == {"kind": "scenario", "id": started["id"],
                                                           "status": "done", "progress": 1.0}
    assert any(0 < item["progress"] < 1 for item in seen)


def test_the_vocabulary_names_what_a_scenario_may_use(api):
    client, _ = api
    doc = client.get(f"/api/scenarios/vocabulary?twin={MACHINE}").json()
    assert doc["simulation"] == SIM["name"]
    commands = {c["name"]: c for c in doc["commands"]}
    assert set(commands) == {"setSpeed", "stop", "start"}
    assert commands["stop"]["fixed"] == 0.0 and commands["setSpeed"]["fixed"] is None
    assert commands["setSpeed"]["upper"] == 10_000.0
    assert doc["maintenance"] == [{"name": "replaceBearing", "parts": ["de", "nde"]}]
    assert "de:bearingDefect" in doc["faults"] and "speed" in doc["outputs"]
    rate = next(v for v in doc["parameters"] if v["name"] == "defectRate")
    assert set(rate) == {"name", "unit", "lower", "upper", "default"}


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"twin": "no-such-machine"}, 404, "twin"),
    ({"twin": "line-1-m01-de"}, 422, "twin"),  # a bearing: no simulation is bound to its model
    ({"horizon": "400d"}, 422, "horizon"),
    ({"horizon": "soon"}, 422, "horizon"),
    ({"samples": 1_000_000}, 422, "samples"),
    ({"options": [OPTIONS[0], {"name": "x", "interventions": [{"at": "0m", "command": "explode"}]}]}, 422,
     "options[1].interventions[0].command"),
    ({"options": [{"name": "x", "interventions": [{"at": "0m", "command": "setSpeed", "value": 99_999}]}]}, 422,
     "options[0].interventions[0].value"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "maintenance": "paint"}]}]}, 422,
     "options[0].interventions[0].action"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "fault": "gremlins", "size": 1}]}]}, 422,
     "options[0].interventions[0].fault"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "parameters": {"warpFactor": 9}}]}]}, 422,
     "options[0].interventions[0].values.warpFactor"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "parameters": {"defectRate": -5}}]}]}, 422,
     "options[0].interventions[0].values.defectRate"),
    ({"options": [{"name": "x", "interventions": [{"at": "30h", "command": "stop"}]}]}, 422,
     "options[0].interventions[0].at"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "parameter": "defectRate", "value": 99}]}]}, 422,
     "options[0].interventions[0].values.defectRate"),
    ({"options": [{"name": "x", "interventions": [{"at": "1h", "parameter": "defectRate"}]}]}, 422,
     "options[0].interventions[0].parameters.defectRate"),
    ({"simulation": "other"}, 422, "simulation"),
])
def test_bad_requests_get_a_problem_naming_the_field(api, change, status, field):
    client, _ = api
    r = client.post("/api/scenarios", json=body(**change))
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == field, problem


def test_unknown_scenarios_are_404(api):
    client, _ = api
    assert client.get("/api/scenarios/nope").status_code == 404
    assert client.get("/api/scenarios/compare?ids=nope").status_code == 404
    assert client.get("/api/scenarios/vocabulary?twin=nope").status_code == 404
