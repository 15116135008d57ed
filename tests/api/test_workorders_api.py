"""The work order routes over HTTP (memory and embedded stores): proposals, moves with If-Match, filters,
problem answers naming what was wrong, the maintenance record, and done closing the loop to the plant."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.runtime import Runtime
from tvilling.twins.importer import import_twins

PUMP = "dtmi:test:maint:Pump;1"
SEAL = "dtmi:test:maint:Seal;1"
MODELS = [
    {"@context": "dtmi:dtdl:context;3", "@id": SEAL, "@type": "Interface", "contents": [
        {"@type": "Property", "name": "partNumber", "schema": "string"},
        {"@type": "Property", "name": "installDate", "schema": "date"}]},
    {"@context": "dtmi:dtdl:context;3", "@id": PUMP, "@type": "Interface", "contents": [
        {"@type": "Property", "name": "installDate", "schema": "date"},
        {"@type": "Property", "name": "operatingHours", "schema": "double"},
        {"@type": "Relationship", "name": "hasSeal", "target": SEAL},
        {"@type": "Command", "name": "serviceDone"}]},
]
PROBLEM = "application/problem+json"


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The API with a pump (install date, operating hours) and its seal (part number, install date)."""
    assert client.post("/api/models", json=MODELS).status_code == 201
    assert client.put("/api/twins/S1", json={"model": SEAL, "reported": {"partNumber": "SEAL-22",
                                                                            "installDate": "2024-05-01"}}
                      ).status_code == 201
    assert client.put("/api/twins/P1", json={"model": PUMP, "reported": {"installDate": "2023-01-15",
                                                                            "operatingHours": 1234.5}}
                      ).status_code == 201
    assert client.put("/api/twins/P1/relationships/P1-seal", json={"name": "hasSeal", "target": "S1"}
                      ).status_code == 200
    return client


def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"task": "replace-seal", "asset": "P1", "planned_start": "2026-03-03T06:00:00Z",
                           "planned_end": "2026-03-03T08:00:00Z", "crew": ["t1"], "parts": {"SEAL-22": 1},
                           "expected_cost": 300, "failure_probability": 0.2, "rationale": {"chosen": "sat"},
                           "maintenance_command": "serviceDone"}
    out.update(over)
    return out


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status and doc["detail"]
    return doc


def test_propose_and_walk_the_lifecycle(api: TestClient) -> None:
    r = api.post("/api/workorders", json=body(), headers={"X-Tvilling-Actor": "planner"})
    assert r.status_code == 201, r.text
    order = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/api/workorders/{order['id']}"
    assert order["state"] == "proposed" and order["created_by"] == "planner" and order["model"] == PUMP
    oid = order["id"]
    got = api.get(f"/api/workorders/{oid}")
    assert got.json() == order and got.headers["etag"] == '"1"'
    r = api.post(f"/api/workorders/{oid}/approve", headers={"If-Match": '"1"', "X-Tvilling-Actor": "alice"})
    assert r.status_code == 200 and r.json()["approved_by"] == "alice" and r.headers["etag"] == '"2"'
    r = api.post(f"/api/workorders/{oid}/schedule", json={"planned_start": "2026-03-04T06:00:00Z",
                                                          "planned_end": "2026-03-04T07:00:00Z", "version": 2})
    assert r.status_code == 200 and r.json()["firm"] and r.json()["planned_start"] == "2026-03-04T06:00:00Z"
    assert api.post(f"/api/workorders/{oid}/start").json()["actual_start"] is not None
    done = api.post(f"/api/workorders/{oid}/done", json={"note": "seal swapped"}).json()
    assert done["state"] == "done" and [h["to"] for h in done["history"]] == [
        "proposed", "approved", "scheduled", "in_progress", "done"]
    # this app has no command transport: the order is done and says why no command went out
    assert done["completion"]["command"]["sent"] is False and "--broker" in done["completion"]["command"]["reason"]
    assert done["completion"]["operating_hours"] == 1234.5

    record = api.get("/api/twins/P1/maintenance").json()
    assert record["workorders_done"] == 1 and record["last_maintenance"]["id"] == oid
    assert record["parts_replaced"][0]["part"] == "SEAL-22" and record["parts_replaced"][0]["quantity"] == 1
    assert {(i["twin"], i["relationship"], i.get("install_date"), i.get("part_number")) for i in record["installed"]} \
        == {("P1", None, "2023-01-15", None), ("S1", "hasSeal", "2024-05-01", "SEAL-22")}
    assert record["open_workorders"] == []


def test_bad_proposals_are_4xx_problems_naming_what_was_wrong(api: TestClient) -> None:
    doc = problem(api.post("/api/workorders", json=body(asset="P9")), 404)
    assert doc["field"] == "asset" and "'P9'" in doc["detail"]
    doc = problem(api.post("/api/workorders", json=body(planned_end="2026-03-03T05:00:00Z")), 422)
    assert doc["field"] == "planned_end" and "after planned_start" in doc["detail"]
    assert problem(api.post("/api/workorders", json=body(colour="red")), 422)["field"] == "colour"
    assert problem(api.post("/api/workorders", json=body(parts={"SEAL-22": -1})), 422)["field"] == "parts.SEAL-22"
    assert problem(api.post("/api/workorders", json=body(maintenance_command="fly")), 422)["field"] \
        == "maintenance_command"
    assert problem(api.post("/api/workorders", json=[body()]), 422)["field"] == "body"
    problem(api.post("/api/workorders", content=b"{not json", headers={"content-type": "application/json"}), 400)
    problem(api.post("/api/workorders"), 400)
    api.post("/api/workorders", json=body(id="wo-dup"))
    assert problem(api.post("/api/workorders", json=body(id="wo-dup")), 409)["rule"] == "exists"
    problem(api.get("/api/workorders/nope"), 404)
    problem(api.post("/api/workorders/nope/approve"), 404)


def test_moves_check_state_and_version(api: TestClient) -> None:
    oid = api.post("/api/workorders", json=body()).json()["id"]
    doc = problem(api.post(f"/api/workorders/{oid}/done"), 409)
    assert doc["state"] == "proposed" and doc["to"] == "done" and "is proposed; it cannot become done" in doc["detail"]
    doc = problem(api.post(f"/api/workorders/{oid}/approve", headers={"If-Match": '"7"'}), 412)
    assert doc["version"] == 1 and doc["expected"] == 7
    assert problem(api.post(f"/api/workorders/{oid}/approve", headers={"If-Match": "seven"}), 400)["field"] \
        == "If-Match"
    assert problem(api.post(f"/api/workorders/{oid}/approve", json={"version": 2}, headers={"If-Match": '"1"'}),
                   400)["field"] == "version"
    assert problem(api.post(f"/api/workorders/{oid}/approve", json={"actual_end": "2026-01-01T00:00:00Z"}),
                   422)["field"] == "actual_end"
    assert problem(api.post(f"/api/workorders/{oid}/approve", json={"note": 5}), 422)["field"] == "note"
    assert problem(api.post(f"/api/workorders/{oid}/approve", json=[1]), 422)["field"] == "body"
    assert api.post(f"/api/workorders/{oid}/approve", headers={"If-Match": '"1"'}).status_code == 200
    doc = problem(api.post(f"/api/workorders/{oid}/approve", headers={"If-Match": '"2"'}), 409)
    assert "is approved; it cannot become approved" in doc["detail"]
    assert api.post(f"/api/workorders/{oid}/cancel", json={"note": "parts late"}).json()["state"] == "cancelled"
    doc = problem(api.post(f"/api/workorders/{oid}/cancel"), 409)
    assert "is cancelled; it cannot become cancelled" in doc["detail"]


def test_list_filters_and_pages(api: TestClient) -> None:
    ids = []
    for day in (5, 3, 4):
        r = api.post("/api/workorders", json=body(planned_start=f"2026-03-0{day}T06:00:00Z",
                                                  planned_end=f"2026-03-0{day}T08:00:00Z"))
        ids.append(r.json()["id"])
    api.post(f"/api/workorders/{ids[1]}/approve")
    items = api.get("/api/workorders").json()["items"]
    assert [i["id"] for i in items] == [ids[1], ids[2], ids[0]]
    assert [i["id"] for i in api.get("/api/workorders?state=approved").json()["items"]] == [ids[1]]
    assert [i["id"] for i in api.get("/api/workorders?asset=P1&state=proposed").json()["items"]] == [ids[2], ids[0]]
    assert api.get("/api/workorders?asset=S1").json()["items"] == []
    window = api.get("/api/workorders?start=2026-03-04T00:00:00Z&end=2026-03-05T00:00:00Z").json()["items"]
    assert [i["id"] for i in window] == [ids[2]]
    page = api.get("/api/workorders?limit=2").json()
    assert len(page["items"]) == 2 and page["next"] == ids[2]
    rest = api.get(f"/api/workorders?limit=2&after={page['next']}").json()
    assert [i["id"] for i in rest["items"]] == [ids[0]] and rest["next"] is None
    assert problem(api.get("/api/workorders?state=finished"), 422)["field"] == "state"
    assert problem(api.get("/api/workorders?start=yesterday"), 422)["field"] == "start"
    assert problem(api.get("/api/workorders?start=2026-03-05T00:00:00Z&end=2026-03-04T00:00:00Z"), 422)["field"] \
        == "end"
    assert problem(api.get("/api/workorders?after=ghost"), 422)["field"] == "after"
    problem(api.get("/api/workorders?limit=0"), 400)
    record = api.get("/api/twins/P1/maintenance").json()
    assert [o["id"] for o in record["open_workorders"]] == [ids[1], ids[2], ids[0]]
    assert record["operating_hours_since_maintenance"] == 1234.5  # no order done yet: what the pump reports
    problem(api.get("/api/twins/nope/maintenance"), 404)


def test_the_routes_are_in_the_openapi_document(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for action in ("approve", "schedule", "start", "done", "cancel"):
        op = paths[f"/api/workorders/{{workorder_id}}/{action}"]["post"]
        assert {"409", "412", "422"} <= set(op["responses"])
        assert any(p["name"] == "If-Match" for p in op["parameters"])
    assert set(paths["/api/workorders"]) == {"get", "post"}
    assert "required" in paths["/api/workorders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "/api/twins/{twin_id}/maintenance" in paths


class PlantDevice:
    def __init__(self, plant: Plant, twin: str) -> None:
        self.plant, self.twin = plant, twin

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        result = self.plant.handle(self.twin, name, payload)
        return result.status, result.payload

    async def desired(self, state: dict[str, Any]) -> None:
        return None


def test_done_over_http_sends_the_plant_its_maintenance_command() -> None:
    plant = Plant(machines=1, seed=3, speed=3600.0, scenario=None)
    for i in range(20):
        plant.step(1.0, now_ms=1_767_225_600_000 + i * 1000)
    machine = plant.machine_ids[0]
    assert min(plant.state_of(machine)["wear"].values()) > 0
    platform = build_platform(Settings(store="memory"))
    platform.models.add(builtin_documents(MODEL_SET))
    import_twins(platform.twins, plant.twins())
    commands: list[CommandService] = []

    async def answered(*args: Any) -> None:
        await commands[0].on_response(*args)

    transport = LoopbackTransport(on_response=answered)
    asyncio.run(transport.attach(machine, PlantDevice(plant, machine)))
    commands.append(CommandService(platform.twins, platform.command_store, transport, retries=0))
    try:
        with TestClient(create_app(runtime=Runtime(platform, commands=commands[0]))) as api:
            oid = api.post("/api/workorders", json=body(asset=machine, maintenance_command=None,
                                                        parts={"6205-2RS": 2})).json()["id"]
            for action in ("approve", "schedule", "start"):
                assert api.post(f"/api/workorders/{oid}/{action}").status_code == 200
            done = api.post(f"/api/workorders/{oid}/done").json()
            command = done["completion"]["command"]
            assert command["sent"] and command["name"] == "maintenanceDone"
            deadline = time.monotonic() + 10
            while (status := api.get(f"/api/commands/{command['id']}").json()["status"]) != "succeeded":
                assert time.monotonic() < deadline, status
                time.sleep(0.02)
            assert plant.state_of(machine)["wear"] == {"de": 0.0, "nde": 0.0}
            record = api.get(f"/api/twins/{machine}/maintenance").json()
            assert record["workorders_done"] == 1 and record["parts_replaced"][0]["part"] == "6205-2RS"
    finally:
        platform.close()
