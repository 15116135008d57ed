"""`tvilling serve` as a user runs it: a real process, a real socket, the embedded store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serve_util import call, free_port, wait_healthy
from tvilling.models.builtin import builtin_documents

ROOT = Path(__file__).resolve().parents[1]


def test_serve_runs_the_api_on_the_embedded_store(tmp_path):
    port = free_port()
    env = {**os.environ, "TVILLING_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        status, body = call("GET", f"{base}/health")
        assert status == 200 and body["status"] == "ok"
        docs = builtin_documents("plant")
        assert call("POST", f"{base}/api/models", docs)[0] == 201
        status, twin = call("PUT", f"{base}/api/twins/B1",
                            {"model": "dtmi:tvilling:example:Bearing;1", "reported": {"temperature": 70.0}})
        assert status == 201 and twin["revision"] == 1
        status, problem = call("PATCH", f"{base}/api/twins/B1", {"reported": {"temperature": "x"}})
        assert status == 422 and problem["rule"] == "type"
        assert (tmp_path / "d" / "tvilling.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
