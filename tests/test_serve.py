"""`tvilling serve` as a user runs it: a real process, a real socket, the embedded store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tvilling.models.builtin import builtin_documents

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_runs_the_api_on_the_embedded_store(tmp_path):
    port = free_port()
    env = {**os.environ, "TVILLING_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                status, body = call("GET", f"{base}/health")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
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
