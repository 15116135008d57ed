"""A scenario is scored once its horizon has passed: its bands against what the twin then measured, read
from history through the simulation's binding; before that, or for an option it lacks, a clear answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from test_shadow import plant_platform

from tvilling.api.app import create_app
from tvilling.app import Platform
from tvilling.core.errors import Conflict, Invalid
from tvilling.core.readings import Readings
from tvilling.plant.plant import Plant
from tvilling.simulation.scenario_service import service_for

MACHINE = "line-1-m01"
FORK_STEP = 20  # readings before the fork (one a second, one plant minute each)
HORIZON_STEPS = 120  # the scenario's 2 plant hours, in readings


def feed(p: Platform, plant: Plant, t0_ms: int, steps: range) -> None:
    for i in steps:
        frame = plant.step(1.0, now_ms=t0_ms + i * 1000)
        rows = [(twin, prop, (t0_ms + i * 1000) * 1000, v) for twin, values in frame.records()
                for prop, v in values.items()]
        p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")


@pytest.fixture(scope="module")
def scored() -> Iterator[tuple[TestClient, Platform, str, datetime]]:
    p, plant = plant_platform(machines=1)
    t0_ms = int(time.time() * 1000) - FORK_STEP * 1000  # the fork's reading is stamped now
    feed(p, plant, t0_ms, range(0, FORK_STEP + 1))
    with TestClient(create_app(platform=p)) as client:
        r = client.post("/api/scenarios", json={
            "twin": MACHINE, "horizon": "2h", "step": "1m", "samples": 30, "seed": 3,
            "options": [{"name": "stop now", "interventions": [{"at": "0m", "command": "stop"}]}]})
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        deadline = time.monotonic() + 60
        while (doc := client.get(f"/api/scenarios/{sid}").json())["status"] == "running":
            assert time.monotonic() < deadline, "the scenario did not finish"
            time.sleep(0.05)
        assert doc["status"] == "done", doc
        at = datetime.fromisoformat(doc["at"])
        # what the plant then did (the next 2 plant hours, stamped up to 2 minutes ahead of the clock)
        feed(p, plant, t0_ms, range(FORK_STEP + 1, FORK_STEP + HORIZON_STEPS + 2))
        yield client, p, sid, at
    p.close()


def score(p: Platform, sid: str, at: datetime, option: str | None = None) -> dict[str, Any]:
    return service_for(p).score(sid, modelset=lambda: p.models.modelset, option=option,
                                now=at + timedelta(seconds=HORIZON_STEPS + 60))


def test_before_the_horizon_has_passed_the_score_is_refused(scored) -> None:
    client, p, sid, at = scored
    r = client.get(f"/api/scenarios/{sid}/score")  # the horizon ends 2 minutes (of readings' time) after the fork
    assert r.status_code == 409 and "its horizon ends at" in r.json()["detail"], r.text
    with pytest.raises(Conflict, match="its horizon ends at"):
        service_for(p).score(sid, modelset=lambda: p.models.modelset, now=at + timedelta(seconds=60))


def test_the_baseline_is_scored_against_what_the_plant_did(scored) -> None:
    _, p, sid, at = scored
    doc = score(p, sid, at)
    assert doc["option"] == "do nothing" and doc["twin"] == MACHINE
    speed = doc["outputs"]["speed"]
    assert speed["property"] == f"{MACHINE}/speed" and speed["points"] >= HORIZON_STEPS - 2
    assert speed["mae"] < 5  # the plant kept running at its setpoint, as the baseline predicted
    # the bands of the outputs the model is uncertain about hold most of what happened (speed's are one line)
    for output in ("motor.temperature", "motor.current", "de:vibration", "throughput"):
        row = doc["outputs"][output]
        assert row["points"] >= HORIZON_STEPS - 2 and row["coverage"] >= 0.6, (output, row)
    assert doc["outputs"]["motor.temperature"]["mae"] < 5


def test_the_option_that_did_not_happen_scores_worse(scored) -> None:
    _, p, sid, at = scored
    baseline = score(p, sid, at)["outputs"]["speed"]
    stopped = score(p, sid, at, "stop now")["outputs"]["speed"]
    assert stopped["mae"] > 10 * max(baseline["mae"], 1.0) and stopped["coverage"] < 0.2
    throughput = score(p, sid, at, "stop now")["outputs"]["throughput"]
    assert throughput["coverage"] < 0.2  # a stopped machine makes nothing; the plant made its 120 parts an hour


def test_bad_requests_name_what_is_wrong(scored) -> None:
    client, p, sid, at = scored
    r = client.get(f"/api/scenarios/{sid}/score", params={"option": "fly"})
    assert r.status_code == 422 and "no option 'fly'" in r.json()["detail"]
    assert client.get("/api/scenarios/nope/score").status_code == 404
    with pytest.raises(Invalid, match="no option 'fly'"):
        score(p, sid, at, "fly")


def test_the_cli_prints_the_score(scored, monkeypatch: pytest.MonkeyPatch) -> None:
    _, p, sid, at = scored
    import tvilling.cli.simulation as cli_sim
    import tvilling.simulation.scenario_service as service_module

    class Opened:
        def __enter__(self) -> Platform:
            return p

        def __exit__(self, *exc: Any) -> None:
            return None

    real = service_module.ScenarioService.score
    monkeypatch.setattr(cli_sim, "opened_platform", lambda *a, **k: Opened())
    monkeypatch.setattr(service_module.ScenarioService, "score",
                        lambda self, sid, **kw: real(self, sid, **{**kw, "now": at + timedelta(minutes=3)}))
    result = CliRunner().invoke(cli_sim.sim_group, ["score", sid])
    assert result.exit_code == 0, result.output
    assert "do nothing" in result.output and "speed" in result.output and "in p10-p90" in result.output


def test_a_simulation_of_a_base_model_serves_twins_of_models_extending_it() -> None:
    from test_shadow import SIM

    from tvilling.app import build_platform
    from tvilling.config import Settings
    from tvilling.models.builtin import builtin_documents
    from tvilling.plant.plant import MODEL_SET, MODELS
    from tvilling.twins.importer import import_twins

    base = "dtmi:tvilling:example:Machine;3"
    assert MODELS["machine"] != base  # the plant's machines are of a model extending it
    p = build_platform(Settings(store="memory", simulations=[{**SIM, "model": base}]))
    try:
        p.models.add(builtin_documents(MODEL_SET))
        import_twins(p.twins, Plant(machines=1, seed=5, speed=60.0, scenario=[]).twins(), actor="test")
        assert service_for(p).vocabulary(MACHINE)["simulation"] == "machine"
    finally:
        p.close()
