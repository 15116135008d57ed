"""`tvilling serve --broker` end to end: a device publishes through a real Mosquitto into the twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tvilling.models.builtin import builtin_documents

from .serve_util import call, free_port, wait_healthy


def test_published_telemetry_reaches_state_history_and_dead_letters(broker, tmp_path):
    from .conftest import publish_many

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--broker", broker.url],
        cwd=tmp_path, env={**os.environ, "TVILLING_LOG_LEVEL": "warning", "TVILLING_MQTT_CLIENT_ID": "t-serve"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(base)
        assert call("POST", f"{base}/api/models", builtin_documents("plant"))[0] == 201
        assert call("PUT", f"{base}/api/twins/B1", {"model": "dtmi:tvilling:example:Bearing;1"})[0] == 201
        t0 = 1793534400000
        messages = [("tvilling/B1/telemetry",
                     json.dumps({"ts": t0 + i * 1000, "values": {"temperature": 50.0 + i * 0.01}, "id": f"m{i}"}),
                     1, False) for i in range(500)]
        messages.append(("tvilling/B1/telemetry", "not json", 1, False))
        publish_many(broker.url, messages)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            twin = call("GET", f"{base}/api/twins/B1")[1]
            if twin["reported"].get("temperature") == 50.0 + 499 * 0.01:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"telemetry did not arrive: {twin['reported']}")
        hist = call("GET", f"{base}/api/twins/B1/history?property=temperature&from={t0}&to={t0 + 600_000}"
                           "&limit=1000")[1]
        assert len(hist["items"]) == 500
        letters = call("GET", f"{base}/api/dead-letters")[1]["items"]
        assert len(letters) == 1 and letters[0]["transport"] == "mqtt" and letters[0]["payload"] == "not json"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Traceback" not in out and "Error" not in out, out
