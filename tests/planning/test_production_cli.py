"""``tvilling production …`` on an embedded data directory, and through a real ``tvilling serve`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from serve_util import free_port, wait_healthy
from tvilling.app import build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.twins.importer import import_twins

M1, M2, M3 = "line-1-m01", "line-1-m02", "line-1-m03"


def seeded(folder: Path) -> Path:
    """A data directory holding the demo line's twins."""
    platform = build_platform(Settings(data_dir=folder))
    try:
        platform.models.add(builtin_documents(MODEL_SET))
        import_twins(platform.twins, Plant(3, seed=1, scenario=None).twins())
    finally:
        platform.close()
    return folder


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["production", *args], prog_name="tvilling")


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_orders_plan_show_and_replan_on_a_data_directory(tmp_path: Path) -> None:
    where = ["--data-dir", str(seeded(tmp_path / "d"))]
    out = ok("orders", "add", *where, "--id", "a", "--product", "shaft", "--quantity", "120", "--step", M1,
             "--step", f"{M2},{M3}", "--due", "+8h")
    assert out.startswith("a  open") and f"route {M1} > {M2},{M3}" in out
    ok("orders", "add", *where, "--id", "b", "--product", "gear", "--quantity", "60", "--steps", "2", "--due", "+8h",
       "--priority", "3")
    listed = json.loads(ok("orders", "list", *where, "--json"))
    assert [(o["id"], o["routing"], o["priority"]) for o in listed] == [("a", [[M1], [M2, M3]], 1),
                                                                        ("b", [[], []], 3)]

    out = ok("plan", *where, "--time-limit", "2")
    assert "line line-1  initial" in out and "makespan_h" in out and "solver: optimal" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("line-1-m")]
    assert {r[0] for r in rows} <= {M1, M2, M3} and any("A" in r[1] for r in rows)

    shown = ok("show", *where, "--width", "40")
    assert "A=a" in shown and "B=b" in shown
    plan = json.loads(ok("show", *where, "--json"))
    assert {(o["order"], o["op"]) for o in plan["operations"]} == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}

    out = ok("replan", *where, "--reason", "breakdown", "--machine", M1, "--repair-h", "3")
    assert "breakdown" in out and "downtime_h" in out and "operation(s) moved" in out
    answer = json.loads(ok("replan", *where, "--reason", "machine slowed", "--machine", M2, "--speed", "750",
                           "--json"))
    assert answer["plan"]["reason"] == "machine slowed" and answer["comparison"]["before"] == \
        json.loads(ok("show", *where, "--plan", answer["plan"]["previous"], "--json"))["id"]
    assert all(o["speed_rpm"] == 750.0 for o in answer["plan"]["operations"] if o["machine"] == M2)

    assert "cancelled" in ok("orders", "cancel", *where, "b")
    failed = cli("orders", "add", *where, "--product", "x", "--quantity", "5", "--step", "line-1-m77", "--due", "+1h")
    assert failed.exit_code == 1 and "line-1-m77" in failed.output and "not on line line-1" in failed.output
    failed = cli("show", *where, "--line", "line-2")
    assert failed.exit_code == 1 and "no production plan" in failed.output


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("serve")
    data = seeded(folder / "d")
    port = free_port()
    env = {**os.environ, "TVILLING_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(data),
                             "--port", str(port)], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_same_through_a_server(server: str) -> None:
    where = ["--server", server]
    ok("orders", "add", *where, "--id", "s1", "--product", "shaft", "--quantity", "90", "--steps", "1", "--due", "+2h")
    assert "s1  open" in ok("orders", "list", *where, "--line", "line-1")
    answer = json.loads(ok("plan", *where, "--json"))
    assert [o["order"] for o in answer["plan"]["operations"]] == ["s1"]
    answer = json.loads(ok("replan", *where, "--reason", "maintenance inserted", "--machine",
                           answer["plan"]["operations"][0]["machine"], "--start", "+0m", "--end", "+3h", "--json"))
    assert answer["plan"]["downtimes"][0]["reason"] == "maintenance"
    assert "s1" in ok("show", *where)
    failed = cli("replan", *where, "--reason", "breakdown", "--machine", "line-9-m01")
    assert failed.exit_code == 1 and "line-9-m01" in failed.output and "not on line line-1" in failed.output
