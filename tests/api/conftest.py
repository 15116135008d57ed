from __future__ import annotations

import pytest
from api_plant import BEARING, LINE, MACHINE, plant_documents
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings


@pytest.fixture(params=["memory", "sqlite"])
def client(request, tmp_path):
    settings = Settings(store="memory") if request.param == "memory" else Settings(data_dir=tmp_path / "data")
    platform = build_platform(settings)
    app = create_app(platform=platform)
    with TestClient(app) as c:
        yield c
    platform.close()


@pytest.fixture
def plant(client):
    """A small plant: lines L1 (machines M1, M2) and L2 (machine M3), two bearings per machine."""
    r = client.post("/api/models", json=plant_documents())
    assert r.status_code == 201, r.text
    temps = {"B1": 85.0, "B2": 60.0, "B3": 95.5, "B4": 70.0, "B5": 99.0, "B6": 81.0}
    for line in ("L1", "L2"):
        assert client.put(f"/api/twins/{line}", json={"model": LINE}).status_code == 201
    machines = {"M1": "L1", "M2": "L1", "M3": "L2"}
    for i, (machine, line) in enumerate(machines.items()):
        r = client.put(f"/api/twins/{machine}", json={"model": MACHINE, "reported": {"state": "running"}})
        assert r.status_code == 201, r.text
        r = client.put(f"/api/twins/{line}/relationships/{line}-{machine}",
                       json={"name": "hasMachine", "target": machine, "properties": {"position": i}})
        assert r.status_code == 200, r.text
    for n, (bearing, temp) in enumerate(temps.items()):
        machine = f"M{n // 2 + 1}"
        r = client.put(f"/api/twins/{bearing}", json={"model": BEARING, "reported": {"temperature": temp}})
        assert r.status_code == 201, r.text
        r = client.put(f"/api/twins/{machine}/relationships/{machine}-{bearing}",
                       json={"name": "hasBearing", "target": bearing,
                             "properties": {"location": "drive-end" if n % 2 == 0 else "non-drive-end"}})
        assert r.status_code == 200, r.text
    return client
