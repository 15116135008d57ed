"""A small plant for the dashboard tests: one line, three machines, their bearings and spindles,
half an hour of history, analytic outputs on one bearing. Talks to a running server over HTTP."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from serve_util import call
from tvilling.models.builtin import builtin_documents

LINE = "dtmi:tvilling:example:ProductionLine;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
SPINDLE = "dtmi:tvilling:example:Spindle;1"
MACHINES = 3
SICK = "line-1-m02-de"  # the bearing whose analytics say it is failing


def _ok(status: int, body: Any, what: str) -> Any:
    if status >= 300:
        raise AssertionError(f"{what}: HTTP {status}: {body}")
    return body


def iso(ts_ms: float) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def seed(base: str, *, minutes: int = 30, step_s: int = 20) -> dict[str, Any]:
    """Models, twins, relationships and history; returns what the tests check against."""
    _ok(*call("POST", f"{base}/api/models", builtin_documents("plant")), "models")
    put = lambda tid, body: _ok(*call("PUT", f"{base}/api/twins/{tid}", body), f"twin {tid}")  # noqa: E731
    rel = lambda src, rid, body: _ok(*call("PUT", f"{base}/api/twins/{src}/relationships/{rid}", body),  # noqa: E731
                                     f"relationship {src}/{rid}")
    put("line-1", {"model": LINE, "reported": {"throughput": 118.0}, "desired": {"targetRate": 120.0}})
    twins = ["line-1"]
    for m in range(1, MACHINES + 1):
        mid = f"line-1-m{m:02d}"
        put(mid, {"model": MACHINE, "attributes": {}, "reported": {
            "state": "running", "speed": 1480.0 + 10 * m, "speedSetpoint": 1500.0,
            "motor": {"current": 11.5 + m, "temperature": 52.0 + m}}, "desired": {"speedSetpoint": 1500.0}})
        for end in ("de", "nde"):
            put(f"{mid}-{end}", {"model": BEARING, "reported": {"vibration": 0.21, "temperature": 41.0},
                                 "desired": {"lubricationInterval": 500.0}})
            rel(mid, end, {"name": "hasBearing", "target": f"{mid}-{end}",
                           "properties": {"location": "drive end" if end == "de" else "non-drive end"}})
        put(f"{mid}-spindle", {"model": SPINDLE, "reported": {"speed": 6000.0, "load": 55.0}})
        rel(mid, "spindle", {"name": "hasSpindle", "target": f"{mid}-spindle"})
        rel("line-1", f"m{m:02d}", {"name": "hasMachine", "target": mid, "properties": {"position": m}})
        twins += [mid, f"{mid}-de", f"{mid}-nde", f"{mid}-spindle"]

    # history: one columnar batch per twin
    now_ms = time.time() * 1000
    n = minutes * 60 // step_s
    ts = [now_ms - (n - 1 - i) * step_s * 1000 for i in range(n)]  # the last one is now: it is the reported value
    batches = []
    for m in range(1, MACHINES + 1):
        mid = f"line-1-m{m:02d}"
        batches.append({"twin": mid, "ts": ts, "values": {
            "speed": [1490 + 8 * math.sin(i / 7 + m) for i in range(n)],
            "motor.current": [12 + m + 0.4 * math.sin(i / 5) for i in range(n)],
            "motor.temperature": [52 + m + 0.8 * math.sin(i / 11) for i in range(n)]}})
        for end in ("de", "nde"):
            sick = f"{mid}-{end}" == SICK
            batches.append({"twin": f"{mid}-{end}", "ts": ts, "values": {
                "vibration": [0.2 + 0.02 * math.sin(i / 3 + m) + (0.5 * (i / n) ** 3 if sick else 0) for i in range(n)],
                "temperature": [40 + m + 0.5 * math.sin(i / 9) + (6 * (i / n) ** 2 if sick else 0) for i in range(n)]}})
        batches.append({"twin": f"{mid}-spindle", "ts": ts, "values": {
            "speed": [6000 + 30 * math.sin(i / 4) for i in range(n)],
            "load": [55 + 5 * math.sin(i / 6) for i in range(n)]}})
    res = _ok(*call("POST", f"{base}/api/ingest", batches), "history")
    assert res["rejected"] == 0, res
    return {"twins": twins, "ts": ts}


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
        "anomaly": True, "contributions": {"vibration": 0.74, "temperature": 0.26},
        "fault_family": "outer race", "analytics": {
            "vibration-detector": {"version": 3, "time": iso(now_ms)},
            "bearing-rul": {"version": 2, "time": iso(now_ms)}}}})
    return status == 200
