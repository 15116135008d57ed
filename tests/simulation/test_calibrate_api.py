"""``POST /api/simulations/{name}/calibrations`` on a platform whose history holds an hour of a demo-plant
machine: 201 with the new version, the estimates with standard errors, nRMSE and R² per output and the series
to draw; the versions list and promote; bad input is a 4xx problem naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from calibrate_plant_history import (
    FIT_FROM,
    FIT_TO,
    MACHINE,
    MONITORED,
    SIM,
    START_STATES,
    T0_MS,
    TRUTH,
    iso,
    seed_plant,
    store_hour,
)
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.api.errors import PROBLEM
from tvilling.app import build_platform
from tvilling.config import Settings

pytest.importorskip("scipy")
URL = "/api/simulations/machine/calibrations"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    p = build_platform(Settings(store="memory", simulations=[SIM]))
    store_hour(p, seed_plant(p, seed=29))
    with TestClient(create_app(platform=p)) as c:
        yield c
    p.close()


@pytest.fixture(scope="module")
def answer(client: TestClient) -> Any:
    return client.post(URL, json={"twin": MACHINE, "from": FIT_FROM, "to": FIT_TO, "parameters": list(TRUTH),
                                  "start_states": START_STATES})


def test_a_calibration_answers_201_with_estimates_metrics_and_series(answer: Any) -> None:
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/api/simulations/machine/versions?twin={MACHINE}"
    doc = answer.json()
    assert doc["version"] == 1 and doc["status"] == "candidate" and doc["scope"] == MACHINE
    estimates = {e["name"]: e for e in doc["estimates"]}
    for name, true in TRUTH.items():
        assert estimates[name]["estimate"] == pytest.approx(true, rel=0.05), name
        assert 0 < estimates[name]["stderr"] < 0.05 * true
    for name in MONITORED:
        assert doc["validation"][name]["nrmse"] < 0.05 and doc["validation"][name]["r2"] > 0.95, name
    series = doc["series"]
    assert series["ts_ms"][0] == T0_MS and set(series["outputs"]) == set(doc["outputs"])
    assert len(series["outputs"]["de:vibration"]["simulated"]) == len(series["ts_ms"]) == 360


def test_the_version_is_listed_and_promoted(client: TestClient, answer: Any) -> None:
    listed = client.get(f"/api/simulations/machine/versions?twin={MACHINE}").json()
    assert [v["version"] for v in listed["items"]] == [1] and listed["promoted"] == {}
    assert listed["items"][0]["metrics"]["validation"]["motor.temperature"]["nrmse"] < 0.05
    r = client.post(f"/api/simulations/machine/versions/1/promote?twin={MACHINE}")
    assert r.status_code == 200 and r.json()["status"] == "promoted"
    assert client.get("/api/simulations/machine/versions").json()["promoted"] == {MACHINE: 1}
    missing = client.post(f"/api/simulations/machine/versions/7/promote?twin={MACHINE}")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/api/simulations/nope/calibrations", {"twin": MACHINE, "from": FIT_FROM, "to": FIT_TO}, 404, "name"),
    (URL, {"twin": "line-9-m09", "from": FIT_FROM, "to": FIT_TO}, 404, "twin"),
    (URL, {"twin": f"{MACHINE}-de", "from": FIT_FROM, "to": FIT_TO}, 422, "twin"),
    (URL, {"twin": MACHINE, "to": FIT_TO}, 422, "from"),
    (URL, {"twin": MACHINE, "from": "soon", "to": FIT_TO}, 422, "from"),
    (URL, {"twin": MACHINE, "from": FIT_FROM, "to": iso(T0_MS + 4_000)}, 422, "to"),
    (URL, {"twin": MACHINE, "from": iso(T0_MS - 9_000_000), "to": iso(T0_MS - 8_000_000)}, 422, "from"),
    (URL, {"twin": MACHINE, "from": FIT_FROM, "to": FIT_TO, "parameters": ["tauNothing"]}, 422,
     "parameters.tauNothing"),
    (URL, {"twin": MACHINE, "from": FIT_FROM, "to": FIT_TO, "max_evaluations": 10**30}, 422, "max_evaluations"),
    (URL, {"twin": MACHINE, "from": "-99999999999d", "to": FIT_TO}, 422, "from"),  # before the year 1000
    (URL, {"twin": MACHINE, "from": FIT_FROM, "to": FIT_TO, "step": 1e308}, 422, "step"),
    (URL, None, 400, None),  # a body that is not JSON
])
def test_bad_input_is_a_problem_naming_the_field(client: TestClient, path: str, body: Any, status: int,
                                                 field: str | None) -> None:
    r = client.post(path, json=body) if body is not None else client.post(
        path, content=b'{"twin": "x", "from": ', headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    if field is not None:
        assert r.json()["field"] == field, r.json()


def test_an_unknown_simulation_lists_none_and_versions_of_it_are_404(client: TestClient) -> None:
    r = client.get("/api/simulations/nope/versions")
    assert r.status_code == 404 and "there are machine" in r.json()["detail"]
