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
    parents = wait_alarms(client, "?state=active&grouped=false", 3)  # the raw copies, one per twin
    assert sorted((a["twin"], a["origin"]) for a in parents) == [("B1", "B1"), ("L1", "B1"), ("M1", "B1")]
    [alarm] = client.get("/api/alarms?state=active").json()["items"]  # grouped: one row per condition
    assert (alarm["twin"], alarm["affected"], alarm["shelved"]) == ("B1", ["M1", "L1"], False)
    assert client.get(f"/api/alarms/{alarm['id']}").json() == alarm

    r = client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": "ann", "note": "checking the grease"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["actor"], r.json()["note"]) == ("acknowledged", "ann", "checking the grease")
    assert (r.json()["acknowledged_by"], r.json()["ack_note"]) == ("ann", "checking the grease")
    assert r.json()["acknowledged"] is not None and r.json()["affected"] == ["M1", "L1"]
    assert {a["state"] for a in client.get("/api/alarms?grouped=false").json()["items"]} == {"acknowledged"}
    again = client.post(f"/api/alarms/{alarm['id']}/ack")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["rule"] == "transition"

    r = client.post(f"/api/alarms/{alarm['id']}/clear", headers={"X-Tvilling-Actor": "bob"})
    assert r.status_code == 200 and r.json()["state"] == "cleared" and r.json()["actor"] == "bob"
    assert (r.json()["cleared_by"], r.json()["clear_note"], r.json()["ack_note"]) == \
        ("bob", None, "checking the grease")  # the acknowledgement's note is kept
    assert client.post(f"/api/alarms/{alarm['id']}/clear").status_code == 409
    assert client.post(f"/api/alarms/{alarm['id']}/ack").status_code == 409
    assert client.get("/api/alarms?state=active").json()["items"] == []
    assert len(client.get("/api/alarms?state=cleared").json()["items"]) == 1
    assert len(client.get("/api/alarms?state=cleared&grouped=false").json()["items"]) == 3


def test_patch_crossing_a_threshold_and_back_auto_clears(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0}}).status_code == 200
    assert len(wait_alarms(client, "?state=active&grouped=false", 3)) == 3
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 80.0}}).status_code == 200
    cleared = wait_alarms(client, "?state=cleared&grouped=false", 3)
    assert {(a["state"], a["actor"]) for a in cleared} == {("cleared", "rule")}


def test_list_filters_and_pages(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0, "rul": 12.0}}).status_code == 200
    assert len(wait_alarms(client, "?grouped=false", 4)) == 4  # hot (B1, M1, L1), rul (B1: propagate = false)
    crit = client.get("/api/alarms?severity=critical").json()["items"]
    assert [(a["twin"], a["rule"], a["affected"]) for a in crit] == [("B1", "bearing-rul", [])]
    # an ancestor's filter finds the condition affecting it; the raw view finds the copy on it
    assert [(a["twin"], a["rule"]) for a in client.get("/api/alarms?twin=M1").json()["items"]] == \
        [("B1", "bearing-hot")]
    assert [a["twin"] for a in client.get("/api/alarms?twin=M1&grouped=false").json()["items"]] == ["M1"]
    assert len(client.get("/api/alarms?rule=bearing-hot").json()["items"]) == 1
    assert len(client.get("/api/alarms?rule=bearing-hot&grouped=false").json()["items"]) == 3
    page = client.get("/api/alarms?limit=3&grouped=false").json()
    assert len(page["items"]) == 3 and page["next"] == page["items"][-1]["id"]
    rest = client.get(f"/api/alarms?limit=3&after={page['next']}&grouped=false").json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    first = client.get("/api/alarms?limit=1").json()  # two conditions, a page each
    second = client.get(f"/api/alarms?limit=1&after={first['next']}").json()
    assert {a["rule"] for a in first["items"] + second["items"]} == {"bearing-hot", "bearing-rul"}
    assert client.get(f"/api/alarms?limit=1&after={second['next']}").json() == {"items": [], "next": None}
    assert client.get("/api/alarms?state=open").status_code == 422
    assert client.get("/api/alarms?severity=fatal").status_code == 422
    assert client.get("/api/alarms?after=nope").status_code == 422
    bad = client.get("/api/alarms?grouped=maybe")
    assert bad.status_code == 400 and bad.json()["field"] == "query.grouped"


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
    srv = LiveServer(tmp_path / "data", busy_interval=0.02, idle_interval=0.1, settings={"alarm_rules": RULES})
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


def test_shelving_a_machine_holds_its_subtree_alarms_until_ended(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0}}).status_code == 200
    [alarm] = wait_alarms(client, "?state=active", 1)
    r = client.post("/api/alarms/shelves", json={"twin": "M1", "for": "30m", "reason": "planned stop",
                                                  "actor": "eva"})
    assert r.status_code == 201, r.text
    shelf = r.json()
    assert (shelf["twin"], shelf["twins"], shelf["subtree"], shelf["actor"], shelf["shelved"], shelf["active"]) == \
        ("M1", ["M1", "B1"], True, "eva", 1, True)
    got = client.get(f"/api/alarms/{alarm['id']}").json()
    assert (got["state"], got["shelved"], got["shelf"], got["shelved_until"]) == \
        ("active", True, shelf["id"], shelf["until"])
    # not counted: the badge asks for the active ones a shelf does not hold
    assert client.get("/api/alarms?state=active&shelved=false").json()["items"] == []
    assert [a["id"] for a in client.get("/api/alarms?state=active&shelved=true").json()["items"]] == [alarm["id"]]
    assert {a["shelved"] for a in client.get("/api/alarms?grouped=false").json()["items"]} == {True}
    assert [s["id"] for s in client.get("/api/alarms/shelves?active=true").json()["items"]] == [shelf["id"]]
    assert client.get("/api/alarms/shelves?active=false").json()["items"] == []
    ended = client.post(f"/api/alarms/shelves/{shelf['id']}/end", json={"actor": "ann"})
    assert ended.status_code == 200 and (ended.json()["ended_by"], ended.json()["active"]) == ("ann", False)
    assert [a["id"] for a in client.get("/api/alarms?state=active&shelved=false").json()["items"]] == [alarm["id"]]
    again = client.post(f"/api/alarms/shelves/{shelf['id']}/end")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    only = client.post("/api/alarms/shelves", json={"twin": "L1", "for": 60, "reason": "x", "subtree": False})
    assert only.status_code == 201 and (only.json()["twins"], only.json()["shelved"], only.json()["actor"]) == \
        (["L1"], 0, "api")


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"for": "30m", "reason": "stop"}, 422, "twin"),
    ({"twin": "M1", "reason": "stop"}, 422, "for"),
    ({"twin": "M1", "for": "soon", "reason": "stop"}, 422, "for"),
    ({"twin": "M1", "for": "9d", "reason": "stop"}, 422, "for"),
    ({"twin": "M1", "for": "30m"}, 422, "reason"),
    ({"twin": "M1", "for": "30m", "reason": ""}, 422, "reason"),
    ({"twin": "M1", "for": "30m", "reason": 5}, 422, "reason"),
    ({"twin": "M1", "for": "30m", "reason": "x", "subtree": "yes"}, 422, "subtree"),
    ({"twin": "M1", "for": "30m", "reason": "x", "actor": 3}, 422, "actor"),
    ({"twin": "M1", "for": "30m", "reason": "x", "until": "later"}, 422, "until"),
    (["M1"], 422, "body"),
])
def test_bad_shelves_are_refused_naming_the_field(client, body, status, field):
    r = client.post("/api/alarms/shelves", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["field"] == field


def test_shelving_an_unknown_twin_or_ending_an_unknown_shelf_is_404(client):
    r = client.post("/api/alarms/shelves", json={"twin": "nope", "for": "30m", "reason": "x"})
    assert r.status_code == 404 and r.json()["twin"] == "nope"
    r = client.post("/api/alarms/shelves/nope/end")
    assert r.status_code == 404 and r.json()["shelf"] == "nope"
    assert client.post("/api/alarms/shelves/nope/end", json={"note": "x"}).status_code == 422
    assert client.get("/api/alarms/shelves?active=sometimes").status_code == 400


def test_ack_and_clear_notes_are_kept_apart_and_blank_notes_are_none(client):
    assert client.patch("/api/twins/B1", json={"reported": {"temperature": 95.0}}).status_code == 200
    [alarm] = wait_alarms(client, "?state=active", 1)
    acked = client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": "Eva Berg", "note": "  "}).json()
    assert (acked["acknowledged_by"], acked["ack_note"]) == ("Eva Berg", None)
    done = client.post(f"/api/alarms/{alarm['id']}/clear", json={"actor": "Ann", "note": "bearing replaced"}).json()
    assert (done["acknowledged_by"], done["cleared_by"], done["clear_note"], done["note"]) == \
        ("Eva Berg", "Ann", "bearing replaced", "bearing replaced")


def _health(client: TestClient, twin: str, want: float, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:  # the snapshot is shared for a second, and the alarm driver runs beside ingest
        got = client.get("/api/health").json()["items"][twin]
        if got["health"] == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_health_follows_the_alarm_and_rolls_up_to_the_line(client):
    before = client.get("/api/health").json()["items"]
    assert before["B1"]["status"] == "unknown" and before["L1"]["health"] is None  # nothing watches them yet
    now = datetime.now(UTC).replace(microsecond=0)
    ts = [int((now + timedelta(seconds=i)).timestamp() * 1000) for i in range(3)]
    r = client.post("/api/ingest", json={"twin": "B1", "ts": ts, "values": {"temperature": [70.0, 80.0, 93.5]}})
    assert r.status_code == 200, r.text
    b1 = _health(client, "B1", 0.4)  # a major alarm caps it at 40 %
    assert (b1["status"], b1["reason"]) == ("poor", "B1: bearing at 93.5 °C (alarm bearing-hot)")
    line = _health(client, "L1", 0.4)
    assert line["source"] == "B1" and line["own"] is None  # the line is as healthy as its worst part, and says which
    r = client.post("/api/ingest", json={"twin": "B1", "ts": int((now + timedelta(seconds=5)).timestamp() * 1000),
                                         "values": {"rul": 3.0, "health": 0.05}})
    assert r.status_code == 200, r.text
    b1 = _health(client, "B1", 0.05)  # three hours left: the critical alarm (no propagation) and the RUL agree
    assert b1["status"] == "critical" and _health(client, "M1", 0.05)["source"] == "B1"
