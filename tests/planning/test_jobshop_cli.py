"""``tvilling eval jobshop``: the JSON last line, the schedule files, progress on stderr, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared_data import datasets_dir
from tvilling.cli import main
from tvilling.planning.jobshop_check import check_schedule, schedule_from_json
from tvilling.planning.jobshop_io import read_instance

SCHEDULING = datasets_dir() / "scheduling"


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "instances"
    folder.mkdir()
    (folder / "two.txt").write_text("2 2\n0 3 1 2\n1 2 0 4\n")
    (folder / "flex.txt").write_text("2 2 1.5\n2 1 0 3 2 0 2 1 4\n1 2 0 5 1 1\n")
    (folder / "best_known.json").write_text(json.dumps({
        "two": {"jobs": 2, "machines": 2, "optimum": 7, "lower": 7, "upper": 7},
        "flex": {"jobs": 2, "machines": 2, "optimum": None, "lower": 4, "upper": 6},
    }))
    return folder


def test_json_last_line_and_schedules(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "schedules"
    result = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(folder), "--time-limit", "5",
                                       "--schedules", str(out), "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last) == {"instances", "mean_gap"}
    rows = {r["instance"]: r for r in last["instances"]}
    assert set(rows) == {"two", "flex"}
    assert set(rows["two"]) == {"instance", "makespan", "best_known", "gap", "optimal", "seconds"}
    assert rows["two"]["makespan"] == 7 and rows["two"]["optimal"] is True and rows["two"]["gap"] == 0.0
    # flex: job 0 runs 3 then 2 on machine 0, job 1 runs 1 on machine 1: makespan 5, below the "upper" 6 given
    assert rows["flex"]["makespan"] == 5 and rows["flex"]["gap"] == pytest.approx((5 - 6) / 6)
    assert last["mean_gap"] == pytest.approx((0.0 + (5 - 6) / 6) / 2)
    for name in ("two", "flex"):
        data = json.loads((out / f"{name}.json").read_text())
        assert data["instance"] == name and data["makespan"] == rows[name]["makespan"]
        assert [(o["job"], o["op"]) for o in data["operations"]][:1] == [(0, 0)]
        assert check_schedule(read_instance(folder / f"{name}.txt"), schedule_from_json(data)) == []
    assert "[1/2] flex: makespan 5" in result.stderr and "[2/2] two" in result.stderr


@pytest.mark.skipif(not SCHEDULING.is_dir(), reason=f"scheduling data set not found at {SCHEDULING}")
def test_published_instances_with_names_and_best_known_file(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(SCHEDULING / "jobshop"),
                                       "--names", "ft06,la01", "--time-limit", "5", "--json", "--schedules",
                                       str(out)])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["instance"], r["makespan"], r["best_known"], r["optimal"]) for r in last["instances"]] == [
        ("ft06", 55, 55, True), ("la01", 666, 666, True)]
    flexible = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(SCHEDULING / "flexible" / "k1.txt"),
                                         "--best-known", str(SCHEDULING / "flexible" / "best_known.json"),
                                         "--time-limit", "5", "--flexible", "yes"])
    assert flexible.exit_code == 0, flexible.output
    assert "mean gap 0.00% over 1 instances; 1 proven optimal" in flexible.stdout


def test_errors_are_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    missing = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(folder), "--time-limit", "1",
                                        "--names", "two,nope"])
    assert missing.exit_code == 1 and "no instance named nope" in missing.stderr
    (folder / "broken.txt").write_text("1 2\n0 3 1 -2\n")
    broken = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(folder / "broken.txt"),
                                       "--time-limit", "1"])
    assert broken.exit_code == 1 and "broken.txt:2: job 0 op 1: duration -2 is negative" in broken.stderr
    zero = CliRunner().invoke(main, ["eval", "jobshop", "--instances", str(folder), "--time-limit", "0"])
    assert zero.exit_code == 2 and "must be positive" in zero.output
