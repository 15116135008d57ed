"""``tvilling sim run|list|show|compare`` on an embedded data directory: the options are read against the
twin's vocabulary, the run prints a progress bar and the KPI table, and the record it leaves is listed,
shown and compared by later commands (other processes, in real use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_shadow import SIM, run

from tvilling.app import build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.twins.importer import import_twins

MACHINE = "line-1-m01"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TVILLING_SIMULATIONS", json.dumps([SIM]))
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "data"
    with build_platform(Settings(data_dir=d, simulations=[SIM])) as p:
        p.models.add(builtin_documents(MODEL_SET))
        plant = Plant(machines=1, seed=5, speed=60.0)
        import_twins(p.twins, plant.twins(), actor="test")
        run(p, plant, range(0, 5))
    return d


def test_run_then_list_show_and_compare(data_dir: Path) -> None:
    cli = CliRunner()
    args = ["sim", "run", "--data-dir", str(data_dir), "--twin", MACHINE, "--horizon", "12h", "--samples", "10",
            "--seed", "3", "--option", "keep", "--option", "slow:setSpeed=900@0m",
            "--option", "replace:replaceBearing/de@2h+1h"]
    result = cli.invoke(main, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "scenario " in out and "done" in out
    table = out[out.index("option"):].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["keep", "slow", "replace"]
    sid = out.split("scenario ", 2)[-1].split()[0]
    listed = cli.invoke(main, ["sim", "list", "--data-dir", str(data_dir)])
    assert listed.exit_code == 0 and listed.output.startswith(sid) and "keep | slow | replace" in listed.output
    shown = cli.invoke(main, ["sim", "show", "--data-dir", str(data_dir), sid, "--json"])
    record = json.loads(shown.output)
    assert record["status"] == "done" and set(record["kpis"]) == {"keep", "slow", "replace"}
    assert record["kpis"]["slow"]["production"] < record["kpis"]["keep"]["production"]
    second = cli.invoke(main, [*args[:-4], "--option", "stop:stop@1h"])
    other = second.output.split("scenario ", 2)[-1].split()[0]
    compared = cli.invoke(main, ["sim", "compare", "--data-dir", str(data_dir), sid, other])
    rows = [line.split()[0] for line in compared.output.splitlines()[2:-1]]
    assert compared.exit_code == 0 and rows == [f"{sid}/keep", f"{sid}/slow", f"{sid}/replace", f"{other}/keep",
                                                f"{other}/stop"]


@pytest.mark.parametrize(("option", "message"), [
    ("x:teleport@1h", "'teleport' is no command, maintenance action, fault or parameter"),
    ("x:setSpeed=fast@1h", "'fast' is not a number"),
    ("x:setSpeed=99999@0m", "above the upper bound"),
    ("x:stop@30h", "outside the horizon"),
])
def test_bad_options_are_named_and_nothing_is_recorded(data_dir: Path, option: str, message: str) -> None:
    cli = CliRunner()
    result = cli.invoke(main, ["sim", "run", "--data-dir", str(data_dir), "--twin", MACHINE, "--horizon", "12h",
                               "--option", option])
    assert result.exit_code == 1 and message in result.output, result.output
    assert cli.invoke(main, ["sim", "list", "--data-dir", str(data_dir)]).output == ""


def test_an_unknown_twin_and_scenario_are_errors(data_dir: Path) -> None:
    cli = CliRunner()
    result = cli.invoke(main, ["sim", "run", "--data-dir", str(data_dir), "--twin", "nope", "--horizon", "1h"])
    assert result.exit_code == 1 and "no twin 'nope'" in result.output
    shown = cli.invoke(main, ["sim", "show", "--data-dir", str(data_dir), "nope"])
    assert shown.exit_code == 1 and "no scenario 'nope'" in shown.output
