"""Policies through the app with auth required and API tokens: routes, filtered queries and lists, hidden
paths, commands, history, and an SSE subscriber that stops seeing a twin right after a revoke is PUT."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.models.builtin import builtin_dir
from tvilling.security.tokens import issue

LINE = "dtmi:tvilling:example:ProductionLine;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
SUBGRAPH_LINE_1 = {"subjects": ["token:ops"], "entries": [
    {"effect": "grant", "actions": ["read"], "resources": ["subgraph:line-1"]}]}
NO_TEMPERATURE = {"subjects": ["role:viewer"], "entries": [
    {"effect": "revoke", "actions": ["read"], "resources": ["twin:*"], "paths": ["reported.temperature"]}]}


def _as(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def seed(client: httpx.Client | TestClient, admin: str) -> None:
    """The example plant's models and two lines (line → machine → bearing), as the admin."""
    h = _as(admin)
    docs = [json.loads(p.read_text()) for p in sorted(builtin_dir("plant").glob("*.json"))]
    assert client.post("/api/models", json=docs, headers=h).status_code == 201
    for line in ("line-1", "line-2"):
        for twin, model, reported in ((line, LINE, {}), (f"{line}-m01", MACHINE, {"state": "running"}),
                                      (f"{line}-m01-b1", BEARING, {"temperature": 71.25, "vibration": 0.5})):
            r = client.put(f"/api/twins/{twin}", json={"model": model, "reported": reported}, headers=h)
            assert r.status_code == 201, r.text
        for source, name, target in ((line, "hasMachine", f"{line}-m01"), (f"{line}-m01", "hasBearing",
                                                                            f"{line}-m01-b1")):
            r = client.put(f"/api/twins/{source}/relationships/r-{target}", json={"name": name, "target": target},
                           headers=h)
            assert r.status_code == 200, r.text


@pytest.fixture
def served() -> Iterator[tuple[TestClient, str, str]]:
    """An app with auth required, two lines, an admin token and a viewer token named ``ops``."""
    app = create_app(Settings(store="memory", auth="required"))
    tokens = app.state.platform.backend.tokens
    _, admin = issue(tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    _, viewer = issue(tokens, "ops", "viewer", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        seed(client, admin)
        yield client, admin, viewer


def put_policy(client: httpx.Client | TestClient, admin: str, pid: str, body: dict[str, Any]) -> None:
    r = client.put(f"/api/policies/{pid}", json=body, headers=_as(admin))
    assert r.status_code in (200, 201), r.text


def test_policy_routes_put_get_list_delete_are_admin_only(served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    r = client.put("/api/policies/line-1", json=SUBGRAPH_LINE_1, headers=_as(admin))
    assert r.status_code == 201 and r.json()["id"] == "line-1"
    assert client.put("/api/policies/line-1", json=SUBGRAPH_LINE_1, headers=_as(admin)).status_code == 200
    assert client.get("/api/policies/line-1", headers=_as(admin)).json()["subjects"] == ["token:ops"]
    assert [p["id"] for p in client.get("/api/policies", headers=_as(admin)).json()["items"]] == ["line-1"]
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, "/api/policies/line-1", headers=_as(viewer),
                           json=SUBGRAPH_LINE_1 if method == "PUT" else None)
        assert r.status_code == 403 and r.json()["rule"] == "role"
    bad = client.put("/api/policies/x", json={"subjects": ["*"], "entries": [{"effect": "allow"}]}, headers=_as(admin))
    assert bad.status_code == 422
    assert client.delete("/api/policies/line-1", headers=_as(admin)).status_code == 200
    assert client.delete("/api/policies/line-1", headers=_as(admin)).status_code == 404


def test_a_viewer_limited_to_a_subgraph_sees_only_its_twins(served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    everything = client.post("/api/query", json={}, headers=_as(viewer)).json()["items"]
    assert {t["id"] for t in everything} == {"line-1", "line-1-m01", "line-1-m01-b1", "line-2", "line-2-m01",
                                             "line-2-m01-b1"}
    put_policy(client, admin, "line-1", SUBGRAPH_LINE_1)
    r = client.post("/api/query", json={}, headers=_as(viewer))
    assert r.status_code == 200
    assert {t["id"] for t in r.json()["items"]} == {"line-1", "line-1-m01", "line-1-m01-b1"}
    r = client.post("/api/query", json={"model": BEARING}, headers=_as(viewer))
    assert [t["id"] for t in r.json()["items"]] == ["line-1-m01-b1"]
    feed = client.get("/api/events", headers=_as(viewer)).json()["items"]
    assert feed and {e["twin"] for e in feed} <= {"line-1", "line-1-m01", "line-1-m01-b1"}
    assert client.get("/api/twins/line-1-m01-b1", headers=_as(viewer)).json()["reported"]["temperature"] == 71.25
    for path in ("/api/twins/line-2-m01-b1", "/api/twins/line-2-m01-b1/history?property=temperature",
                 "/api/twins/line-2-m01-b1/events", "/api/twins/line-2"):
        r = client.get(path, headers=_as(viewer))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["rule"] == "policy"
        assert "line-2" not in r.text and "71.25" not in r.text and "temperature" not in r.text
    assert client.get("/api/twins/line-2-m01-b1", headers=_as(admin)).status_code == 200  # others unaffected


def test_a_revoked_path_is_removed_from_documents_events_and_its_history_is_403(
        served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    put_policy(client, admin, "no-temperature", NO_TEMPERATURE)
    doc = client.get("/api/twins/line-1-m01-b1", headers=_as(viewer)).json()
    assert doc["reported"] == {"vibration": 0.5}
    assert "temperature" not in json.dumps(doc["metadata"]) and "71.25" not in json.dumps(doc)
    queried = client.post("/api/query", json={"model": BEARING}, headers=_as(viewer)).json()["items"]
    assert len(queried) == 2 and all("temperature" not in json.dumps(t) for t in queried)
    events = client.get("/api/twins/line-1-m01-b1/events", headers=_as(viewer)).json()["items"]
    assert events and "71.25" not in json.dumps(events)
    r = client.get("/api/twins/line-1-m01-b1/history?property=temperature", headers=_as(viewer))
    assert r.status_code == 403 and "71.25" not in r.text
    assert client.get("/api/twins/line-1-m01-b1/history?property=vibration", headers=_as(viewer)).status_code == 200
    admin_doc = client.get("/api/twins/line-1-m01-b1", headers=_as(admin)).json()
    assert admin_doc["reported"]["temperature"] == 71.25  # the policy names viewers only


def test_execute_is_checked_on_the_command_path(served: tuple[TestClient, str, str]) -> None:
    client, admin, _ = served
    made = client.post("/api/tokens", json={"name": "op", "role": "operator"}, headers=_as(admin)).json()
    put_policy(client, admin, "speed-only", {"subjects": ["token:op"], "entries": [
        {"effect": "grant", "actions": ["execute"], "resources": ["twin:line-1-m01"], "paths": ["commands.setSpeed"]}]})
    r = client.post("/api/twins/line-1-m01/commands/stop", json={}, headers=_as(made["secret"]))
    assert r.status_code == 403 and r.json()["rule"] == "policy"
    r = client.post("/api/twins/line-1-m01/commands/setSpeed", json={}, headers=_as(made["secret"]))
    assert r.status_code != 403, r.text  # past the policy (what the command service then says is its own)


def test_auth_off_ignores_policies() -> None:
    app = create_app(Settings(store="memory"))
    with TestClient(app) as client:
        seed(client, "unused")
        app.state.platform.backend.policies.put(
            __import__("tvilling.security.policies", fromlist=["Policy"]).Policy.from_json(
                {"id": "p", **SUBGRAPH_LINE_1, "subjects": ["*"]}))
        assert len(client.post("/api/query", json={}).json()["items"]) == 6
        assert client.get("/api/twins/line-2-m01-b1").json()["reported"]["temperature"] == 71.25


# -- SSE through a real server ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live() -> Iterator[tuple[str, str, str]]:
    app = create_app(Settings(store="memory", auth="required"))
    tokens = app.state.platform.backend.tokens
    _, admin = issue(tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    _, viewer = issue(tokens, "ops", "viewer", by="test", now=datetime.now(UTC))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base) as client:
        seed(client, admin)
    try:
        yield base, admin, viewer
    finally:
        server.should_exit = True
        thread.join(10)


async def _read_sse(client: httpx.AsyncClient, url: str, headers: dict[str, str], out: list[dict[str, Any]],
                    opened: asyncio.Event) -> None:
    async with client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        opened.set()
        msg: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line == "":
                if "data" in msg:
                    out.append(json.loads(msg["data"]))
                msg = {}
                continue
            field, _, value = line.partition(":")
            msg[field] = value.lstrip(" ")


def test_an_sse_subscriber_stops_receiving_a_twins_events_right_after_a_revoke(live: tuple[str, str, str]) -> None:
    base, admin, viewer = live

    async def run() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        opened = asyncio.Event()
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            reader = asyncio.create_task(_read_sse(client, "/api/stream?types=TwinPatched", _as(viewer), got, opened))
            await asyncio.wait_for(opened.wait(), 5)

            async def patch(twin: str, value: float) -> None:
                r = await client.patch(f"/api/twins/{twin}", json={"reported": {"vibration": value}},
                                       headers=_as(admin))
                assert r.status_code == 200, r.text

            async def until(predicate: Any) -> None:
                deadline = time.monotonic() + 5
                while not predicate():
                    assert time.monotonic() < deadline, got
                    await asyncio.sleep(0.02)

            await patch("line-1-m01-b1", 1.0)
            await until(lambda: any(e["twin"] == "line-1-m01-b1" for e in got))
            r = await client.put("/api/policies/hide-b1", headers=_as(admin), json={
                "subjects": ["token:ops"], "entries": [
                    {"effect": "revoke", "actions": ["read"], "resources": ["twin:line-1-m01-b1"]}]})
            assert r.status_code == 201
            await patch("line-1-m01-b1", 2.0)
            await patch("line-2-m01-b1", 3.0)  # the marker: once it arrived, the revoked one would have too
            await until(lambda: any(e["twin"] == "line-2-m01-b1" for e in got))
            reader.cancel()
            return got

    got = asyncio.run(run())
    seen = [(e["twin"], e["payload"]["reported"]["vibration"]) for e in got]
    assert ("line-1-m01-b1", 1.0) in seen and ("line-2-m01-b1", 3.0) in seen
    assert ("line-1-m01-b1", 2.0) not in seen
