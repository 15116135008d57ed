"""The edges of the `tvilling serve` and `tvilling demo` processes, run for real in subprocesses.

* a port already in use is one line on stderr and exit status 1, before anything starts
  (no store opened, no temporary folder made);
* the demo's temporary data folder is gone after every way out: the end of ``--duration``,
  SIGINT (Ctrl+C), SIGTERM and an error;
* the same ``--seed`` gives the same run: two demos side by side raise the same alarms in
  the same order.

Each subprocess gets a private ``TMPDIR``, so the demo's ``tvilling-demo-*`` folder can be
found, and checked gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from serve_util import free_port, wait_healthy

TVILLING = [sys.executable, "-m", "tvilling.cli"]


def _env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1", "TVILLING_LOG_LEVEL": "warning"}
    env.pop("TVILLING_CONFIG", None)
    return env, tmp


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_one_line_and_exit_status_1(tmp_path: Path, command: str) -> None:
    env, tmp = _env(tmp_path)
    data = tmp_path / "data"
    args = ["--data-dir", str(data)] if command == "serve" else []
    with socket.create_server(("127.0.0.1", 0)) as taken:  # another server, listening
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([*TVILLING, command, "--port", str(port), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert done.stderr.splitlines() == [f"error: 127.0.0.1:{port} is already in use; choose another with --port"]
    assert done.returncode == 1
    assert done.stdout == ""
    assert not data.exists(), "the store was opened before the port was checked"
    assert list(tmp.iterdir()) == [], "a temporary folder was made (and left)"
    assert took < 20


def _start_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str, Path]:
    env, tmp = _env(tmp_path)
    port = free_port()
    proc = subprocess.Popen([*TVILLING, "demo", "--port", str(port), "--learn", "10", *extra], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}", tmp


def _running_folder(proc: subprocess.Popen[str], base: str, tmp: Path) -> Path:
    """The demo's temporary data folder, once the demo serves (with its store inside)."""
    try:
        wait_healthy(base, timeout=60)
    except AssertionError:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the demo did not start:\n{out[-2000:]}\n{err[-3000:]}") from None
    folders = list(tmp.glob("tvilling-demo-*"))
    assert len(folders) == 1, list(tmp.iterdir())
    assert any(folders[0].iterdir()), "the store is not in the temporary folder"
    return folders[0]


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the demo did not stop:\n{out[-2000:]}\n{err[-3000:]}") from None
    return proc.returncode, out, err


@pytest.mark.slow
def test_the_demo_removes_its_temporary_folder_at_the_end_of_its_duration(tmp_path: Path) -> None:
    proc, base, tmp = _start_demo(tmp_path, "--duration", "3")
    folder = _running_folder(proc, base, tmp)
    code, out, err = _finish(proc)
    assert code == 0, err
    assert "Traceback" not in err, err
    assert f"data in {folder}" in out
    assert not folder.exists()
    assert list(tmp.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_demo_removes_its_temporary_folder_when_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    proc, base, tmp = _start_demo(tmp_path)
    folder = _running_folder(proc, base, tmp)
    time.sleep(1.5)  # the plant steps, the platform writes
    proc.send_signal(sig)
    code, _out, err = _finish(proc, timeout=30)
    assert code == 0, err
    assert "Traceback" not in err, err
    assert not folder.exists()
    assert list(tmp.iterdir()) == []


@pytest.mark.slow
def test_the_demo_removes_its_temporary_folder_when_it_fails(tmp_path: Path) -> None:
    nobody = free_port()  # no broker listens there: the platform cannot subscribe, the demo stops
    proc, _base, tmp = _start_demo(tmp_path, "--broker", f"mqtt://127.0.0.1:{nobody}", "--duration", "5")
    code, out, err = _finish(proc)
    assert code == 1, (out, err)
    assert err.splitlines()[-1] == "error: the demo's server did not start (uvicorn exit status 3; see its log above)"
    assert "never retrieved" not in err, err
    assert list(tmp.iterdir()) == [], "the temporary folder was left behind"


def _alarms(data_dir: Path) -> list[tuple[Any, ...]]:
    from tvilling.app import build_platform
    from tvilling.config import Settings

    with build_platform(Settings(data_dir=data_dir)) as platform:
        out, position = [], 0
        while batch := platform.alarm_store.changes(position, 1000):
            position = batch[-1][0]
            for _, item in batch:
                alarm = item["alarm"]
                out.append((item["type"], alarm["rule"], alarm["twin"], alarm["severity"]))
        return out


@pytest.mark.slow
def test_the_same_seed_gives_the_same_alarms_in_the_same_order(tmp_path: Path) -> None:
    """Two demos side by side (each its own broker, store and port), same seed: the plant reaches the defect,
    the detector and the remaining-life trend react, the auto mode slows the machine; the alarms must match."""
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        proc, _base, _tmp = _start_demo(run, "--seed", "3", "--fault-at", "15", "--duration", "60",
                                        "--data-dir", str(run / "data"))
        runs.append((proc, run / "data"))
    results = [_finish(proc, timeout=150) for proc, _ in runs]
    for code, out, err in results:
        assert code == 0, (out[-2000:], err[-3000:])
    first, second = (_alarms(data) for _, data in runs)
    assert sum(1 for a in first if a[0] == "alarm.raised") >= 2, (first, results[0][1])
    assert first == second, "\n".join(out for _, out, _ in results)


def test_a_ticked_plant_is_a_function_of_its_seed_and_step_count() -> None:
    """Steps taken at uneven wall times give the same readings, stamped the same steps apart."""
    import doctest

    import numpy as np

    import tvilling.api.listen
    import tvilling.plant.run
    from tvilling.plant.run import TickedPlant

    for module in (tvilling.plant.run, tvilling.api.listen):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
    runs = []
    for pauses in ((0.0, 0.03, 0.0, 0.06, 0.01), (0.05, 0.0, 0.02, 0.0, 0.04)):
        plant = TickedPlant(machines=2, seed=11, speed=60.0)
        frames = []
        for pause in pauses:
            time.sleep(pause)  # scheduling jitter
            frames.append(plant.step(0.5))
        runs.append(frames)
        assert [f.ts_ms - frames[0].ts_ms for f in frames] == [0, 500, 1000, 1500, 2000]
        assert [plant.step_at(f.ts_ms) for f in frames] == [0, 1, 2, 3, 4]
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a.values, b.values, equal_nan=True) and a.plant_time == b.plant_time


def test_a_ticked_plant_far_behind_its_clock_catches_up_with_the_wall_clock(caplog: pytest.LogCaptureFixture) -> None:
    from tvilling.plant.run import TickedPlant

    plant = TickedPlant(machines=1, seed=1, scenario=None, max_lag_s=0.05)
    first = plant.step(0.01)
    time.sleep(0.2)  # an overloaded machine: 20 steps' worth of time for one
    before = time.time() * 1000
    second = plant.step(0.01)
    assert second.ts_ms >= before - 1 and second.ts_ms - first.ts_ms >= 190
    assert "behind its clock" in caplog.text
    third = plant.step(0.01)
    assert third.ts_ms - second.ts_ms == 10  # ticking again from there
