"""The audit chain on the platform's one write path: on with the setting ``audit`` and whenever auth is
required; each change through the API is an entry naming the signed-in caller, never a name the request
gives; the chain verifies. An alarm acknowledged by a signed-in caller names that caller, not the body's actor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_auth_http import BEARING, LINE, MACHINE, plant_documents

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.tokens import issue


@pytest.fixture
def signed_in(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", auth="required"))
    _, admin = issue(app.state.platform.backend.tokens, "ops-admin", "admin", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        yield client


def test_each_change_is_audited_as_the_signed_in_caller_and_the_chain_verifies(signed_in: TestClient) -> None:
    client = signed_in
    forged = {"X-Tvilling-Actor": "somebody-else"}
    assert client.put("/api/twins/line-9", json={"model": LINE}, headers=forged).status_code == 201
    assert client.put("/api/twins/line-9-m01", json={"model": MACHINE}).status_code == 201
    assert client.patch("/api/twins/line-9-m01", json={"reported": {"state": "running"}},
                        headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
    assert client.delete("/api/twins/line-9-m01").status_code == 204
    r = client.get("/api/audit", params={"target": "twin:line-9-m01"})
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert [e["action"] for e in entries][:3] == ["twin.put", "twin.patch", "twin.delete"]
    assert {e["actor"] for e in entries} == {"token:ops-admin"}
    line = client.get("/api/audit", params={"target": "twin:line-9"}).json()["items"]
    assert line and line[0]["actor"] == "token:ops-admin"  # the header named someone else: not who acted
    verdict = client.get("/api/audit/verify").json()
    assert verdict["ok"] is True, verdict


def test_a_signed_in_caller_acknowledges_as_itself(tmp_path: Path) -> None:
    rules = [{"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
              "severity": "major", "above": 90, "clear": 85, "message": "{twin} hot"}]
    app = create_app(Settings(data_dir=tmp_path / "data", auth="required", alarm_rules=rules))
    _, admin = issue(app.state.platform.backend.tokens, "shift-lead", "admin", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        assert client.put("/api/twins/B1", json={"model": BEARING}).status_code == 201
        ts = int(datetime.now(UTC).timestamp() * 1000)
        assert client.post("/api/ingest", json={"twin": "B1", "ts": ts, "values": {"temperature": 95.0}}
                           ).status_code == 200
        deadline = time.monotonic() + 10
        while not (found := client.get("/api/alarms?twin=B1&state=active").json()["items"]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        [alarm] = found
        r = client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": "Eva Berg", "note": "on it"})
        assert r.status_code == 200, r.text
        got = client.get(f"/api/alarms/{alarm['id']}").json()
        assert (got["acknowledged_by"], got["ack_note"]) == ("token:shift-lead", "on it")


def test_audit_off_by_default_without_auth(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app) as client:
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        assert client.put("/api/twins/line-7", json={"model": LINE}).status_code == 201
        assert client.get("/api/audit").json()["items"] == []
    app = create_app(Settings(data_dir=tmp_path / "data2", audit=True))
    with TestClient(app) as client:
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        assert client.put("/api/twins/line-7", json={"model": LINE}, headers={"X-Tvilling-Actor": "eva"}
                          ).status_code == 201
        items = client.get("/api/audit", params={"target": "twin:line-7"}).json()["items"]
        assert [(e["action"], e["actor"]) for e in items] == [("twin.put", "eva")]
