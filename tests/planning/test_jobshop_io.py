"""Parsing the job-shop and flexible job-shop formats, and their errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvilling.core.errors import Invalid
from tvilling.planning.jobshop import Option
from tvilling.planning.jobshop_io import (
    detect_format,
    parse_flexible,
    parse_jobshop,
    read_best_known,
    read_instance,
)

PLAIN = "2\t3 \n0 3 1 2 2 2\n\n0\t2 2 1 1 4\n"
FLEX = "2 3 1.5\n2 1 0 3 2 1 2 2 4\n1 3 0 1 1 1 2 9\n"


def test_plain_format_with_tabs_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text(PLAIN)
    p = read_instance(path)
    assert p.name == "tiny" and p.machines == 3 and len(p.jobs) == 2
    assert [o.options for o in p.jobs[1].operations] == [(Option(0, 2),), (Option(2, 1),), (Option(1, 4),)]
    assert not p.is_flexible


def test_flexible_format(tmp_path: Path) -> None:
    path = tmp_path / "flex.txt"
    path.write_text(FLEX)
    p = read_instance(path)
    assert p.machines == 3 and p.is_flexible
    assert p.jobs[0].operations[1].options == (Option(1, 2), Option(2, 4))
    assert p.jobs[1].operations[0].options == (Option(0, 1), Option(1, 1), Option(2, 9))
    assert detect_format(FLEX) == "flexible" and detect_format(PLAIN) == "jobshop"
    # without the third header number the shape still tells the format
    assert read_instance(_write(tmp_path, "f2.txt", FLEX.replace(" 1.5", ""))).is_flexible


def test_forced_format(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.txt", FLEX.replace(" 1.5", ""))
    with pytest.raises(Invalid, match=r"x\.txt:2: job 0 has 9 numbers; expected 6"):
        read_instance(path, flexible="no")


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("2 2\n0 3 1 2\n", r"bad\.txt:2: the header declares 2 jobs but 1 job line"),
    ("1 2\n0 3 1\n", r"bad\.txt:2: job 0 has 3 numbers; expected 4"),
    ("1 2\n0 3 1 -2\n", r"bad\.txt:2: job 0 op 1: duration -2 is negative"),
    ("1 2\n0 3 2 2\n", r"bad\.txt:2: job 0 op 1: machine 2 is out of range 0\.\.1"),
    ("1 2\n0 3 x 2\n", r"bad\.txt:2: job 0 op 1: machine 'x' is not an integer"),
    ("", r"bad\.txt: empty file"),
])
def test_plain_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message) as info:
        parse_jobshop(text, str(tmp_path / "bad.txt"))
    assert info.value.fields["file"].endswith("bad.txt")


@pytest.mark.parametrize(("text", "message"), [
    ("1 2\n2 1 0 3\n", r"bad\.txt:2: job 0: the line ends after 1 of its 2 operations"),
    ("1 2\n1 0\n", r"bad\.txt:2: job 0 op 0: machine count 0; an operation needs at least one machine"),
    ("1 2\n1 2 0 3\n", r"bad\.txt:2: job 0 op 0: declares 2 machines but the line ends first"),
    ("1 2\n1 1 5 3\n", r"bad\.txt:2: job 0 op 0: machine 5 is out of range 0\.\.1"),
    ("1 2\n1 1 0 -3\n", r"bad\.txt:2: job 0 op 0: duration -3 is negative"),
    ("1 2\n1 1 0 3 7\n", r"bad\.txt:2: job 0: 1 number\(s\) left after its 1 operations"),
    ("1 2\n1 2 0 3 0 4\n", r"bad\.txt:2: job 0 op 0: a machine is listed twice"),
    ("1 2\n\n\n1 1 0 3\n1 1 0 3\n", r"bad\.txt:5: the header declares 1 jobs but 2 job line"),
])
def test_flexible_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_flexible(text, str(tmp_path / "bad.txt"))


def test_best_known(tmp_path: Path) -> None:
    path = _write(tmp_path, "best_known.json", json.dumps(
        {"a": {"jobs": 2, "machines": 3, "optimum": None, "lower": 5, "upper": 7}}))
    assert read_best_known(path)["a"]["upper"] == 7
    _write(tmp_path, "bad.json", json.dumps({"a": {"upper": "seven"}}))
    with pytest.raises(Invalid, match="entry 'a' needs an integer 'upper'"):
        read_best_known(tmp_path / "bad.json")
    _write(tmp_path, "broken.json", "{")
    with pytest.raises(Invalid, match="cannot be read as JSON"):
        read_best_known(tmp_path / "broken.json")
