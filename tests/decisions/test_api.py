"""The command routes, over an app built the way the lead will wire it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.api.commands import router
from tvilling.app import Platform
from tvilling.config import Settings
from tvilling.decisions.commands import CommandService
from tvilling.decisions.store import open_command_store
from tvilling.runtime import Runtime

from .conftest import FakeTransport, plant_platform


@pytest.fixture(params=["memory", "sqlite"])
def setup(request, tmp_path) -> Iterator[tuple[TestClient, Platform, FakeTransport]]:
    settings = Settings(store="memory") if request.param == "memory" else Settings(data_dir=tmp_path / "data")
    platform = plant_platform(settings)
    transport = FakeTransport()
    store = open_command_store(settings)
    commands = CommandService(platform.twins, store, transport, timeout_s=30)
    app = create_app(runtime=Runtime(platform, commands=commands))
    app.include_router(router)
    with TestClient(app) as client:
        yield client, platform, transport
    store.close()
    platform.close()
    if request.param == "sqlite":
        assert (tmp_path / "data" / "tvilling.db").exists() and not (tmp_path / "data" / "commands.db").exists()


def test_post_a_command_then_read_it_back(setup) -> None:
    client, _, transport = setup
    r = client.post("/api/twins/M1/commands/setSpeed", json=900, headers={"X-Tvilling-Actor": "ops"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/commands/{body['id']}"
    assert {k: body[k] for k in ("twin", "name", "request", "status", "attempts", "actor", "error")} == {
        "twin": "M1", "name": "setSpeed", "request": 900, "status": "sent", "attempts": 1, "actor": "ops",
        "error": None}
    assert transport.sent == [("M1", "setSpeed", body["id"], 900)]
    got = client.get(r.headers["location"])
    assert got.status_code == 200 and got.json() == body
    asyncio.run(client.app.state.runtime.commands.on_response("M1", "setSpeed", body["id"], "ok", {"accepted": True}))
    done = client.get(f"/api/commands/{body['id']}").json()
    assert (done["status"], done["response"]) == ("succeeded", {"accepted": True})


def test_the_wrapped_form_sets_the_timeout(setup) -> None:
    client, _, _ = setup
    r = client.post("/api/twins/M1/commands/setSpeed", json={"request": 750.5, "timeout_s": 5})
    assert r.status_code == 202, r.text
    body = r.json()
    created = datetime.fromisoformat(body["created"].replace("Z", "+00:00"))
    deadline = datetime.fromisoformat(body["deadline"].replace("Z", "+00:00"))
    assert (deadline - created).total_seconds() == 5 and body["request"] == 750.5


def test_a_command_without_request_needs_no_body(setup) -> None:
    client, _, transport = setup
    r = client.post("/api/twins/M2/commands/stop")
    assert r.status_code == 202, r.text
    assert r.json()["request"] is None and transport.sent[0][:2] == ("M2", "stop")
    assert client.post("/api/twins/M2/commands/stop", json={"timeout_s": 3}).status_code == 202


@pytest.mark.parametrize(("path", "body", "status", "fields"), [
    ("/api/twins/M1/commands/selfDestruct", None, 404, {"command": "selfDestruct", "rule": "unknown_command"}),
    ("/api/twins/M9/commands/stop", None, 404, {"twin": "M9"}),
    ("/api/twins/M1/commands/setSpeed", "fast", 422, {"field": "request", "rule": "type"}),
    ("/api/twins/M1/commands/setSpeed", None, 422, {"field": "request", "rule": "required"}),
    ("/api/twins/M1/commands/setSpeed", {"request": 1.0, "timeout_s": "soon"}, 422, {"field": "timeout_s"}),
    ("/api/twins/M1/commands/setSpeed", {"request": 1.0, "timeout_s": -1}, 422, {"field": "timeout_s"}),
    ("/api/twins/M1/commands/stop", {"force": True}, 422, {"field": "request", "rule": "no_request"}),
])
def test_bad_commands_are_problems_naming_what_is_wrong(setup, path, body, status, fields) -> None:
    client, _, transport = setup
    r = client.post(path, json=body) if body is not None else client.post(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {k: problem.get(k) for k in fields} == fields
    assert transport.sent == []


def test_list_filters_and_pages(setup) -> None:
    client, _, _ = setup
    ids = [client.post(f"/api/twins/{t}/commands/stop").json()["id"] for t in ("M1", "M2", "M1", "M1")]
    asyncio.run(client.app.state.runtime.commands.on_response("M1", "stop", ids[0], "ok", None))
    everything = client.get("/api/commands").json()
    assert [c["id"] for c in everything["items"]] == ids and everything["next"] is None
    m1 = client.get("/api/commands", params={"twin": "M1", "limit": 2}).json()
    assert [c["id"] for c in m1["items"]] == [ids[0], ids[2]] and m1["next"] == ids[2]
    rest = client.get("/api/commands", params={"twin": "M1", "limit": 2, "after": m1["next"]}).json()
    assert [c["id"] for c in rest["items"]] == [ids[3]] and rest["next"] is None
    sent = client.get("/api/commands", params={"status": "sent"}).json()
    assert [c["id"] for c in sent["items"]] == ids[1:]
    assert client.get("/api/commands", params={"status": "exploded"}).status_code == 422
    assert client.get("/api/commands", params={"after": "nope"}).status_code == 422
    assert client.get("/api/commands", params={"limit": 0}).status_code == 400


def test_unknown_command_id_is_404(setup) -> None:
    client, _, _ = setup
    r = client.get("/api/commands/does-not-exist")
    assert r.status_code == 404 and r.json()["command"] == "does-not-exist"


def test_without_a_command_service_the_routes_say_unavailable() -> None:
    platform = plant_platform()
    app = create_app(platform=platform)
    app.include_router(router)
    with TestClient(app) as client:
        r = client.post("/api/twins/M1/commands/stop")
        assert r.status_code == 503 and r.json()["rule"] == "not_configured"
        assert client.get("/api/commands").status_code == 503
    platform.close()
