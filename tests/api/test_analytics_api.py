"""Analytics through the HTTP API: online outputs on ingest, versions, training, promotion, forecasts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from api_plant import BEARING, plant_documents
from fastapi.testclient import TestClient

from pgtest import PG_DSN, fresh_schema
from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings

ANALYTICS = [{"name": "bearing-anomaly", "model": "dtmi:tvilling:example:Bearing", "method": "mewma",
              "inputs": ["vibration", "temperature"], "train_rows": 100},
             {"name": "vibration-trend", "model": "dtmi:tvilling:example:Bearing", "method": "rul-trend",
              "inputs": ["vibration"], "train_rows": 20, "params": {"failure_level": 5.0}}]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request, tmp_path):
    schema_gen = fresh_schema() if request.param == "postgres" else None
    if request.param == "memory":
        kw: dict = {"store": "memory"}
    elif request.param == "sqlite":
        kw = {"data_dir": tmp_path / "data"}
    else:
        kw = {"store": PG_DSN, "pg_schema": next(schema_gen)}
    platform = build_platform(Settings(analytics=ANALYTICS, **kw))
    try:
        with TestClient(create_app(platform=platform)) as c:
            assert c.post("/api/models", json=plant_documents()).status_code == 201
            assert c.put("/api/twins/B1", json={"model": BEARING}).status_code == 201
            yield c
    finally:
        platform.close()
        if schema_gen is not None:
            next(schema_gen, None)


def push(client, start_ms: int, vib, temp):
    batch = {"twin": "B1", "ts": [start_ms + 1000 * i for i in range(len(vib))],
             "values": {"vibration": list(map(float, vib)), "temperature": list(map(float, temp))}}
    r = client.post("/api/ingest", json=batch)
    assert r.status_code == 200, r.text
    return r.json()


def test_outputs_versions_and_forecast(client):
    now_ms = int(time.time() * 1000) - 600_000
    rng = np.random.default_rng(0)
    push(client, now_ms, 1 + 0.05 * rng.normal(size=150), 60 + 0.5 * rng.normal(size=150))
    twin = client.get("/api/twins/B1").json()
    rep = twin["reported"]
    assert rep["anomaly"] is False and rep["anomaly_score"] < 1.0
    assert rep["analytics"]["bearing-anomaly"]["version"] == 1
    assert rep["analytics"]["vibration-trend"]["version"] == 1 and 0 <= rep["health"] <= 1
    listed = client.get("/api/analytics").json()["items"]
    assert [a["name"] for a in listed] == ["bearing-anomaly", "vibration-trend"]
    assert listed[0]["promoted"] == {"B1": 1} and listed[0]["versions"][0]["metrics"]["train_rows"] == 100
    # an anomaly: vibration jumps; its contribution names it
    push(client, now_ms + 150_000, 3 + 0.05 * rng.normal(size=20), 60 + 0.5 * rng.normal(size=20))
    rep = client.get("/api/twins/B1").json()["reported"]
    assert rep["anomaly"] is True and max(rep["contributions"], key=rep["contributions"].get) == "vibration"
    hist = client.get("/api/twins/B1/history", params={"property": "anomaly_score", "from": "0"}).json()
    assert len(hist["items"]) == 70
    # retrain on a chosen range, backtest it, promote it
    r = client.post("/api/analytics/bearing-anomaly/train",
                    json={"twins": ["B1"], "from": now_ms, "to": now_ms + 120_000})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["status"] == "candidate"
    r = client.post("/api/analytics/bearing-anomaly/versions/2/backtest", json={"twins": ["B1"], "from": now_ms})
    assert r.status_code == 200, r.text
    assert r.json()["per_twin"]["B1"]["episodes"] >= 1 and r.json()["rows"] == 170
    r = client.post("/api/analytics/bearing-anomaly/versions/2/promote", params={"scope": "B1"})
    assert r.status_code == 200 and r.json()["status"] == "promoted"
    versions = client.get("/api/analytics/bearing-anomaly").json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "retired"), (2, "promoted")]
    assert versions[1]["backtest"]["rows"] == 170
    push(client, now_ms + 170_000, [1.0], [60.0])
    assert client.get("/api/twins/B1").json()["reported"]["analytics"]["bearing-anomaly"]["version"] == 2
    # forecasting a property
    r = client.get("/api/twins/B1/forecast", params={"property": "temperature", "horizon": 5})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert len(fc["forecast"]) == 5 and fc["step_s"] == 1.0
    assert all(p["lower"] < p["mean"] < p["upper"] for p in fc["forecast"])
    assert abs(fc["forecast"][0]["mean"] - 60) < 3


def test_errors_are_clear(client):
    assert client.get("/api/analytics/nope").status_code == 404
    r = client.post("/api/analytics/bearing-anomaly/train", json={"twins": []})
    assert r.status_code == 422 and "twins" in r.json()["detail"]
    r = client.post("/api/analytics/bearing-anomaly/train", json={"twins": ["B1"]})
    assert r.status_code == 422 and "at least 10" in r.json()["detail"]
    r = client.get("/api/twins/B1/forecast", params={"property": "temperature"})
    assert r.status_code == 422 and "at least 4" in r.json()["detail"]
    assert client.post("/api/analytics/bearing-anomaly/versions/9/promote", params={"scope": "B1"}).status_code == 404


def test_forecast_uses_the_newest_readings_and_promote_needs_a_scope(client):
    start_ms = int(time.time() * 1000) - 3_000_000
    n = 3000
    batch = {"twin": "B1", "ts": [start_ms + 1000 * i for i in range(n)],
             "values": {"temperature": [float(i) for i in range(n)]}}
    assert client.post("/api/ingest", json=batch).status_code == 200
    r = client.get("/api/twins/B1/forecast", params={"property": "temperature", "horizon": 3, "points": 200})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["points_used"] == 200 and abs(fc["forecast"][0]["mean"] - n) < 1.0  # continues from the newest
    r = client.post("/api/analytics/bearing-anomaly/versions/1/promote")
    assert r.status_code == 422 and "scope" in r.json()["detail"]
