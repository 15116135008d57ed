"""Alarms through the real app: a reading crosses a threshold → the alarm is listed, acknowledged,
cleared (404/409 on bad requests), and every step is an item of ``/api/stream?types=alarm``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_plant import BEARING, LINE, MACHINE, plant_documents
from fastapi.testclient import TestClient
from streams_helpers import LiveServer, count, items, sse

from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings

RULES = [
    {"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
     "severity": "major", "above": 90, "clear": 85, "message": "{twin}: bearing at {value:.1f} °C"},
    {"name": "bearing-rul", "model": BEARING, "property": "rul", "kind": "rul", "severity": "critical",
     "horizon": 24, "propagate": False},
]


@pytest.fixture(params=["memory", "sqlite"])
def client(request, tmp_path):
    base = {"store": "memory"} if request.param == "memory" else {"data_dir": tmp_path / "data"}
    platform = build_platform(Settings(**base, alarm_rules=RULES))
    with TestClient(create_app(platform=platform)) as c:
        r = c.post("/api/models", json=plant_documents())
        assert r.status_code == 201, r.text
        assert c.put("/api/twins/L1", json={"model": LINE}).status_code == 201
        assert c.put("/api/twins/M1", json={"model": MACHINE}).status_code == 201
        assert c.put("/api/twins/B1", json={"model": BEARING, "reported": {"temperature": 50.0}}).status_code == 201
        for src, rel, name, target in (("L1", "m1", "hasMachine", "M1"), ("M1", "b1", "hasBearing", "B1")):
            r = c.put(f"/api/twins/{src}/relationships/{rel}", json={"name": name, "target": target})
            assert r.status_code == 200, r.text
        yield c
    platform.close()


def wait_alarms(client: TestClient, query: str, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = client.get(f"/api/alarms{query}").json()["items"]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_ingested_value_over_threshold_raises_an_alarm_that_is_acked_and_cleared(client):
    now = datetime.now(UTC).replace(microsecond=0)
    ts = [int((now + timedelta(seconds=i)).timestamp() * 1000) for i in range(3)]
    r = client.post("/api/ingest", json={"twin": "B1", "ts": ts, "values": {"temperature": [70.0, 80.0, 93.5]}})
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    [alarm] = wait_alarms(client, "?twin=B1&state=active", 1)
    assert {k: alarm[k] for k in ("twin", "model", "rule", "severity", "state", "property", "value", "count",
                                  "origin", "actor", "acknowledged", "cleared")} == {
        "twin": "B1", "model": BEARING, "rule": "bearing-hot", "severity": "major", "state": "active",
        "property": "temperature", "value": 93.5, "count": 1, "origin": "B1", "actor": "rule",
        "acknowledged": None, "cleared": None}
    assert alarm["message"] == "B1: bearing at 93.5 °C"
    assert alarm["raised"] == (now + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")  # the data time
    parents = wait_alarms(client, "?state=active", 3)
    assert sorted((a["twin"], a["origin"]) for a in parents) == [("B1", "B1"), ("L1", "B1"), ("M1", "B1")]
    assert client.get(f"/api/alarms/{alarm['id']}").json() == alarm

    r = client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": "ann", "note": "checking the grease"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["actor"], r.json()["note"]) == ("acknowledged", "ann", "checking the grease")
    assert r.json()["acknowledged"] is not None
    assert {a["state"] for a in client.get("/api/alarms").json()["items"]} == {"acknowledged"}  # parents follow
    again = client.post(f"/api/alarms/{alarm['id']}/ack")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["rule"] == "transition"

    r = client.post(f"/api/alarms/{alarm['id']}/clear", headers={"X-Tvilling-Actor": "bob"})
    assert r.status_code == 200 and r.json()["state"] == "cleared" and r.json()["actor"] == "bob"
    assert client.post(f"/api/alarms/{alarm['id']}/clear").status_code == 409
    assert client.post(f"/api/alarms/{alarm['id']}/ack").status_code == 409
    assert client.get("/api/alarms?state=active").json()["items"] == []
    assert len(client.get("/api/alarms?state=cleared").json()["items"]) == 3


def test_patch_crossing_a_threshold_and_back_auto_clears(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0}}).status_code == 200
    assert len(wait_alarms(client, "?state=active", 3)) == 3
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 80.0}}).status_code == 200
    cleared = wait_alarms(client, "?state=cleared", 3)
    assert {(a["state"], a["actor"]) for a in cleared} == {("cleared", "rule")}


def test_list_filters_and_pages(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0, "rul": 12.0}}).status_code == 200
    assert len(wait_alarms(client, "", 4)) == 4  # hot (B1, M1, L1) and rul (B1 only: propagate = false)
    crit = client.get("/api/alarms?severity=critical").json()["items"]
    assert [(a["twin"], a["rule"]) for a in crit] == [("B1", "bearing-rul")]
    assert [a["twin"] for a in client.get("/api/alarms?twin=M1").json()["items"]] == ["M1"]
    assert len(client.get("/api/alarms?rule=bearing-hot").json()["items"]) == 3
    page = client.get("/api/alarms?limit=3").json()
    assert len(page["items"]) == 3 and page["next"] == page["items"][-1]["id"]
    rest = client.get(f"/api/alarms?limit=3&after={page['next']}").json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    assert client.get("/api/alarms?state=open").status_code == 422
    assert client.get("/api/alarms?severity=fatal").status_code == 422
    assert client.get("/api/alarms?after=nope").status_code == 422


def test_unknown_alarm_is_404_and_bad_bodies_are_refused(client):
    for r in (client.get("/api/alarms/nope"), client.post("/api/alarms/nope/ack"),
              client.post("/api/alarms/nope/clear")):
        assert r.status_code == 404 and r.json()["alarm"] == "nope"
        assert r.headers["content-type"].startswith("application/problem+json")
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0}}).status_code == 200
    [alarm] = wait_alarms(client, "?twin=B1", 1)
    assert client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": 7}).status_code == 422
    assert client.post(f"/api/alarms/{alarm['id']}/ack", json={"who": "x"}).status_code == 422
    assert client.post(f"/api/alarms/{alarm['id']}/ack", content=b"{bad",
                       headers={"content-type": "application/json"}).status_code == 400
    assert client.get(f"/api/alarms/{alarm['id']}").json()["state"] == "active"


def test_alarm_steps_stream_on_the_change_hub(tmp_path):
    srv = LiveServer(tmp_path / "data", busy_interval=0.02, idle_interval=0.1)
    srv.platform.settings = srv.platform.settings.model_copy(update={"alarm_rules": RULES})
    with srv:
        srv.put("B1", BEARING, reported={"temperature": 50.0})

        async def main() -> list[dict]:
            async with httpx.AsyncClient(timeout=10) as c:
                task = asyncio.create_task(sse(c, srv.base + "/api/stream?types=alarm", until=count(1)))
                await asyncio.sleep(0.3)  # the stream is open: items from now on
                await asyncio.to_thread(srv.patch, "B1", {"reported": {"temperature": 91.0}})
                got = await task
                [raised] = [m["data"] for m in items(got)]
                r = await c.post(srv.base + f"/api/alarms/{raised['alarm']['id']}/ack")
                assert r.status_code == 200
                later = await sse(c, srv.base + "/api/stream?types=alarm.acknowledged&after=" + got[-1]["id"],
                                  until=count(1))
                return items(got) + items(later)

        got = asyncio.run(asyncio.wait_for(main(), 30))
    events = [(m["event"], m["data"]["type"], m["data"]["twin"], m["data"]["alarm"]["state"]) for m in got]
    assert events == [("alarm.raised", "alarm.raised", "B1", "active"),
                      ("alarm.acknowledged", "alarm.acknowledged", "B1", "acknowledged")]
    assert all(m["data"]["kind"] == "alarm" and "alarms:" in m["id"] for m in got)
