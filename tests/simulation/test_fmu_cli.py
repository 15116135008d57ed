"""``tvilling sim fmu``: an FMU run on its own into a CSV, with start values and an input table."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tvilling.cli import main
from tvilling.core.errors import Invalid
from tvilling.simulation.fmu_run import parse_start_values, read_inputs, run_fmu, time_grid


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=float)


def test_sim_fmu_writes_time_and_every_output(fmus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "result.csv"
    result = CliRunner().invoke(main, ["sim", "fmu", str(fmus["oscillator3"]), "--stop-time", "2", "--step", "0.25",
                                       "--start-values", "k=9,x=2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    header, table = _read(out)
    assert header == ["time", "x"]
    np.testing.assert_allclose(table[:, 0], np.arange(0, 2.01, 0.25))
    np.testing.assert_allclose(table[:, 1], 2.0 * np.cos(3.0 * table[:, 0]), atol=1e-9)


def test_sim_fmu_follows_an_input_table(fmus: dict[str, Path], tmp_path: Path) -> None:
    table = tmp_path / "inputs.csv"
    table.write_text("time,u\n0,1\n0.999,1\n1,0\n3,0\n")
    out = tmp_path / "lag.csv"
    result = CliRunner().invoke(main, ["sim", "fmu", str(fmus["lag2"]), "--stop-time", "2", "--inputs", str(table),
                                       "--interface", "model-exchange", "--start-values", "K=1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    header, values = _read(out)
    assert header == ["time", "y"]
    assert len(values) == 201  # the FMU's default experiment steps 0.01 s
    t, y = values[:, 0], values[:, 1]
    expected = np.where(t <= 1.0, 1 - np.exp(-t / 0.5), (1 - np.exp(-1 / 0.5)) * np.exp(-(t - 1.0) / 0.5))
    np.testing.assert_allclose(y, expected, atol=1e-4)


@pytest.mark.parametrize(("args", "message"), [
    (["--start-values", "K"], "start value 'K' is not NAME=VALUE"),
    (["--start-values", "K=fast"], "start value of K is not a number: 'fast'"),
    (["--start-values", "Kp=1"], "has no variable named 'Kp'; did you mean K"),
    (["--stop-time", "-1"], "the stop time must be after the start time"),
])
def test_sim_fmu_bad_input_is_a_clear_error(fmus: dict[str, Path], tmp_path: Path, args: list[str],
                                            message: str) -> None:
    base = ["sim", "fmu", str(fmus["lag2"]), "--out", str(tmp_path / "o.csv")]
    if "--stop-time" not in args:
        base += ["--stop-time", "1"]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "o.csv").exists()


def test_sim_fmu_names_an_unknown_input_column(fmus: dict[str, Path], tmp_path: Path) -> None:
    table = tmp_path / "inputs.csv"
    table.write_text("time,uu\n0,1\n1,1\n")
    result = CliRunner().invoke(main, ["sim", "fmu", str(fmus["lag2"]), "--stop-time", "1", "--inputs", str(table),
                                       "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 1
    assert "has no input named 'uu'; did you mean u?" in result.output


def test_input_tables_and_grids_check_their_shape(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,u\n0,1\n")
    with pytest.raises(Invalid, match="needs a header with a 'time' column"):
        read_inputs(bad)
    bad.write_text("time,u\n0,1\n0,2\n")
    with pytest.raises(Invalid, match="must increase strictly"):
        read_inputs(bad)
    bad.write_text("time,u\n0,x\n")
    with pytest.raises(Invalid, match="line 2: u is not a number"):
        read_inputs(bad)
    np.testing.assert_allclose(time_grid(0.0, 1.0, 0.3), [0.0, 0.3, 0.6, 0.9, 1.0])
    with pytest.raises(Invalid, match="exceed the limit"):
        time_grid(0.0, 1e9, 1e-3)
    assert parse_start_values(" a=1, b=true ,") == {"a": 1.0, "b": 1.0}


def test_run_fmu_returns_the_columns_in_model_order(fmus: dict[str, Path]) -> None:
    result = run_fmu(fmus["cooling"], 1.0, 0.5)
    assert result.columns == ["time", "temperature", "steps"]
    np.testing.assert_array_equal(result.outputs["steps"], [0.0, 1.0, 2.0])


def test_without_fmpy_the_command_names_the_extra(fmus: dict[str, Path], tmp_path: Path) -> None:
    code = ("import sys; sys.modules['fmpy'] = None\n"  # as if the sim extra were not installed
            "import tvilling, tvilling.cli\n"
            "from tvilling.cli import main\n"
            f"main(['sim', 'fmu', {str(fmus['lag2'])!r}, '--stop-time', '1', '--out', {str(tmp_path / 'o.csv')!r}])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'tvilling[sim]'" in done.stderr


def test_the_base_package_does_not_import_fmpy_or_scipy() -> None:
    code = ("import sys, tvilling, tvilling.cli, tvilling.simulation.ports, tvilling.app\n"
            "print(sorted(m for m in ('fmpy', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
