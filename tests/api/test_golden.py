"""The JSON shapes of a twin and of its events are a contract: compared with golden files.

Set TVILLING_UPDATE_GOLDEN=1 to rewrite the files after an intended change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def normalise(value):
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str) and TIME.match(value):
        return "<time>"
    return value


def check(name: str, value) -> None:
    path = GOLDEN / f"{name}.json"
    got = normalise(value)
    if os.environ.get("TVILLING_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text()), f"{name} differs from {path}"


def test_twin_and_event_payloads_match_golden_files(plant):
    c = plant
    c.patch("/api/twins/M1", json={"reported": {"speed": 1480.0}, "desired": {"speedSetpoint": 1500.0},
                                   "source": "plc-7", "attributes": {"site": "Gävle"}})
    check("twin_M1", c.get("/api/twins/M1").json())
    events = c.get("/api/twins/M1/events").json()
    for e in events["items"]:
        e.pop("position")  # global positions depend on the fixture's order of writes
    check("events_M1", events)
