"""``tvilling serve`` refuses to expose the API without authentication on any address but loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serve_util import free_port, wait_healthy

COMMAND = [sys.executable, "-m", "tvilling.cli", "serve", "--store", "memory"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
    return {**env, "TVILLING_DATA_DIR": str(tmp_path / "data")}


def test_auth_off_on_a_public_address_is_refused_and_says_why(tmp_path: Path) -> None:
    done = subprocess.run([*COMMAND, "--host", "0.0.0.0", "--port", str(free_port())], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=_env(tmp_path))
    assert done.returncode != 0
    assert "refusing to serve on 0.0.0.0 with authentication off" in done.stderr
    assert "--auth required" in done.stderr and "--insecure" in done.stderr
    assert "serving on" not in done.stderr


def test_insecure_or_auth_required_lets_it_start(tmp_path: Path) -> None:
    for extra in (["--insecure"], ["--auth", "required"]):
        port = free_port()
        proc = subprocess.Popen([*COMMAND, "--host", "0.0.0.0", "--port", str(port), *extra], cwd=tmp_path,
                                env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", timeout=30)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        assert "refusing" not in err and f"auth {'off' if extra == ['--insecure'] else 'required'}" in err


def test_loopback_needs_no_flag(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*COMMAND, "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_cli_reaches_a_server_with_auth_required_through_TVILLING_TOKEN(tmp_path: Path) -> None:
    """A token made with `tvilling tokens create` on the server's store; the CLI's server client sends it."""
    env = {**_env(tmp_path), "TVILLING_DATA_DIR": str(tmp_path / "data")}
    made = subprocess.run([sys.executable, "-m", "tvilling.cli", "tokens", "create", "planner", "--role", "operator"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    secret = next(w for w in made.stdout.split() if w.startswith("tvl_"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--port", str(port), "--auth", "required"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=30)
        cli = [sys.executable, "-m", "tvilling.cli", "maintenance", "list", "--server", f"http://127.0.0.1:{port}"]
        refused = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode != 0 and "Authorization" in refused.stderr, refused.stderr
        allowed = subprocess.run(cli, capture_output=True, text=True, timeout=60, env={**env, "TVILLING_TOKEN": secret})
        assert allowed.returncode == 0, allowed.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_demo_refuses_a_public_address_without_insecure(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tvilling.cli", "demo", "--host", "0.0.0.0", "--port",
                           str(free_port()), "--duration", "1"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=_env(tmp_path))
    assert done.returncode != 0
    assert "refusing to serve the demo on 0.0.0.0" in done.stderr and "--insecure" in done.stderr
