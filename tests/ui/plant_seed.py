"""The demo plant for the dashboard tests, through the HTTP API of a running server.

The twins, models and readings come from :mod:`tvilling.plant` (the simulated line the demo
runs): its model set, its twins and relationships, and half an hour of its readings as
history; a bearing defect grows on machine 2's drive end, and that bearing carries analytic
outputs (as the platform's analytics would write them)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from serve_util import call
from tvilling.models.builtin import builtin_documents
from tvilling.plant import MODEL_SET, MODELS, Plant

MACHINES = 3
SICK = "line-1-m02-de"  # the bearing whose analytics say it is failing


def _ok(status: int, body: Any, what: str) -> Any:
    if status >= 300:
        raise AssertionError(f"{what}: HTTP {status}: {body}")
    return body


def iso(ts_ms: float) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def seed(base: str, *, minutes: int = 30, step_s: int = 20) -> dict[str, Any]:
    """Models, twins, relationships, desired values and history; returns what the tests check against."""
    _ok(*call("POST", f"{base}/api/models", builtin_documents(MODEL_SET)), "models")
    plant = Plant(machines=MACHINES, seed=7, scenario=None)
    plant.inject(2, "bearing_defect", at=0.0, bearing="de", severity=1.0)
    twins = []
    for doc in plant.twins():  # leaves first: relationship targets exist when they are set
        body: dict[str, Any] = {"model": doc["model"], "reported": doc.get("reported", {})}
        if doc["model"] == MODELS["machine"]:
            body["desired"] = {"speedSetpoint": 1500.0}
        elif doc["model"] == MODELS["line"]:
            body["desired"] = {"targetRate": 120.0}
        _ok(*call("PUT", f"{base}/api/twins/{doc['id']}", body), f"twin {doc['id']}")
        for rel in doc.get("relationships", []):
            _ok(*call("PUT", f"{base}/api/twins/{doc['id']}/relationships/{rel['id']}",
                      {k: v for k, v in rel.items() if k != "id"}), f"relationship {rel['id']}")
        twins.append(doc["id"])

    # history: the plant stepped over the last `minutes`, one columnar batch per twin; the last step is now
    now_ms = int(time.time() * 1000)
    n = minutes * 60 // step_s
    columns: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    stamps: dict[str, list[int]] = defaultdict(list)
    states: dict[str, str] = {}
    for i in range(n):
        ts = now_ms - (n - 1 - i) * step_s * 1000
        for twin, values in plant.step(step_s, now_ms=ts).records():
            if "state" in values:
                states[twin] = values.pop("state")
            seen = len(stamps[twin])
            stamps[twin].append(ts)
            for key, value in values.items():
                col = columns[twin][key]
                col.extend([None] * (seen - len(col)))
                col.append(value)
    batches = []
    for twin, cols in columns.items():
        size = len(stamps[twin])
        batches.append({"twin": twin, "ts": stamps[twin],
                        "values": {k: v + [None] * (size - len(v)) for k, v in cols.items()}})
    batches += [{"twin": t, "ts": now_ms, "values": {"state": s}} for t, s in states.items()]
    res = _ok(*call("POST", f"{base}/api/ingest", batches), "history")
    assert res["rejected"] == 0, res
    return {"twins": twins, "machines": plant.machine_ids, "models": MODELS}


def analytics_outputs(base: str, *, minutes: int = 30, step_s: int = 60) -> bool:
    """Analytic outputs on the sick bearing (history + current); False when the server refuses them."""
    now_ms = time.time() * 1000
    n = minutes * 60 // step_s
    ts = [now_ms - (n - 1 - i) * step_s * 1000 + 500 for i in range(n)]
    score = [0.3 + 1.5 * (i / n) ** 3 for i in range(n)]
    rul = [900 - 600 * (i / n) ** 1.5 for i in range(n)]
    res = call("POST", f"{base}/api/ingest", [{"twin": SICK, "ts": ts, "values": {
        "anomaly_score": score, "rul": rul, "rul_p10": [r * 0.7 for r in rul], "rul_p90": [r * 1.35 for r in rul],
        "health": [max(0.0, min(1.0, r / 1000)) for r in rul]}}])
    if res[0] != 200 or res[1]["rejected"]:
        return False
    status, _ = call("PATCH", f"{base}/api/twins/{SICK}", {"reported": {
        "anomaly": True, "contributions": {"vibrationBandBpfo": 0.61, "vibration": 0.27, "temperature": 0.12},
        "fault_family": "bearing_defect", "analytics": {
            "vibration-detector": {"version": 3, "time": iso(now_ms)},
            "bearing-rul": {"version": 2, "time": iso(now_ms)}}}})
    return status == 200
