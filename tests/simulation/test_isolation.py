"""A what-if scenario runs on a fork: whatever its options do (stop the machine, change its speed, inject
a fault that fails it) the live world is untouched — twin revisions and the live change feed, history,
commands (a recording transport records nothing) and alarms stay as they were. Only the scenario's own
record is written, and it survives a restart of the embedded backend."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from test_shadow import SIM, run

from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.decisions.commands import CommandService
from tvilling.demo import demo_analytics
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, MODELS, Plant
from tvilling.runtime import Runtime
from tvilling.twins.importer import import_twins

MACHINE = "line-1-m01"


class RecordingTransport:
    """A command transport that records every command and desired state it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        self.sent.append((twin, name, request_id, payload))

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        self.sent.append((twin, desired))


def snapshot(p: Platform) -> dict[str, Any]:
    ids = [MACHINE, f"{MACHINE}-de", f"{MACHINE}-nde", f"{MACHINE}-spindle"]
    return {
        "twins": {i: (p.twin_store.get(i).revision, p.twin_store.get(i).reported) for i in ids},
        "feed": [(e.position, e.twin, e.revision) for e in p.twin_store.feed(after=0, limit=100_000)],
        "history": {(i, prop): len(p.history.range(i, prop, 0, 2**62, limit=100_000))
                    for i in ids for prop in p.history.properties(i)},
        "commands": p.command_store.changes(0, 10_000),
        "alarms": p.alarm_store.changes(0, 10_000),
    }


def test_a_scenario_never_touches_live_state_commands_or_alarms(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", simulations=[SIM])
    p = build_platform(settings)
    p.models.add(builtin_documents(MODEL_SET))
    plant = Plant(machines=1, seed=5, speed=60.0)
    import_twins(p.twins, plant.twins(), actor="test")
    run(p, plant, range(0, 5))
    transport = RecordingTransport()
    commands = CommandService(p.twins, p.command_store, transport, timeout_s=30)
    before = snapshot(p)
    assert before["history"] and before["feed"]
    options = [
        {"name": "stop now", "interventions": [{"at": "0m", "command": "stop"}]},
        {"name": "slow and start", "interventions": [{"at": "0m", "command": "setSpeed", "value": 900},
                                                      {"at": "1h", "command": "start"}]},
        {"name": "break it", "interventions": [{"at": "10m", "fault": "de:bearingDefect", "size": 0.9}]},
    ]
    with TestClient(create_app(runtime=Runtime(p, commands=commands))) as client:
        r = client.post("/api/scenarios", json={"twin": MACHINE, "horizon": "12h", "samples": 10, "seed": 1,
                                                "options": options})
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        deadline = time.monotonic() + 60
        while (doc := client.get(f"/api/scenarios/{sid}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert doc["status"] == "done", doc.get("error")
    # the injected fault failed the simulated machine: inside the scenario something did happen ...
    assert doc["kpis"]["break it"]["p_fail_horizon"] == 1.0
    # ... and outside it nothing did
    assert transport.sent == []
    assert snapshot(p) == before
    p.close()
    # the record is in the backend: a restart sees it
    again = build_platform(settings)
    try:
        assert again.backend.scenarios.get(sid)["kpis"] == doc["kpis"]
        assert [r["id"] for r in again.backend.scenarios.newest()] == [sid]
    finally:
        again.close()


def test_the_analytics_run_on_a_scenario_leave_the_live_analytics_as_they_were(tmp_path: Path) -> None:
    """The twin's detector and remaining-life trend run on the scenario's series from a copy of their live state:
    the live runners (baselines, EWMA and trend windows), their versions, history, alarms and the twins are
    the same afterwards, and no command went out."""
    sim = {**SIM, "model": MODELS["machine"]}  # the plant's machine model, whatever its version
    settings = Settings(data_dir=tmp_path / "data", simulations=[sim], analytics=demo_analytics(60.0, 10))
    p = build_platform(settings)
    p.models.add(builtin_documents(MODEL_SET))
    plant = Plant(machines=1, seed=5, speed=60.0)
    import_twins(p.twins, plant.twins(), actor="test")
    run(p, plant, range(0, 30))
    transport = RecordingTransport()
    commands = CommandService(p.twins, p.command_store, transport, timeout_s=30)

    def analytics(p: Platform) -> tuple[bytes, list[Any]]:
        s = p.analytics.state
        return pickle.dumps((s.runners, s.last, s.seen, s.markers)), p.analytics_registry.versions()

    before, state = snapshot(p), analytics(p)
    assert len(p.analytics.state.runners) == 4 and len(state[1]) == 4  # two analytics on two bearings, fitted
    options = [{"name": "break it", "interventions": [{"at": "0m", "fault": "de:bearingDefect", "size": 0.5}]}]
    with TestClient(create_app(runtime=Runtime(p, commands=commands))) as client:
        r = client.post("/api/scenarios", json={"twin": MACHINE, "horizon": "12h", "samples": 5, "seed": 1,
                                                "options": options})
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        deadline = time.monotonic() + 120
        while (doc := client.get(f"/api/scenarios/{sid}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert doc["status"] == "done", doc.get("error")
    # inside the scenario the analytics saw the defect grow and the trend predicted the failure ...
    assert {a["state"] for a in doc["analytics"]["ran"]} == {"live"} and len(doc["analytics"]["ran"]) == 4
    assert doc["kpis"]["break it"]["p_anomaly_horizon"] == 1.0 and doc["kpis"]["break it"]["ttf_rul_p50_h"] < 12
    # ... and outside it nothing changed
    assert transport.sent == []
    assert snapshot(p) == before
    assert analytics(p) == state
    p.close()
