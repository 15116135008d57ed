"""``tvilling sim calibrate`` on an embedded data directory holding an hour of a demo-plant machine: a progress
bar, each parameter with its value ± standard error, nRMSE and R² per output on the held-out window, a plot,
and a promoted version another process reads; errors are one ``error:`` line and exit status 1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from calibrate_plant_history import (
    FIT_FROM,
    FIT_TO,
    MACHINE,
    MONITORED,
    SIM,
    START_STATES,
    T0_MS,
    TRUTH,
    iso,
    seed_plant,
    store_hour,
)
from click.testing import CliRunner

from tvilling.app import build_platform
from tvilling.cli import main
from tvilling.config import Settings

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("calibrate-cli") / "data"
    with build_platform(Settings(data_dir=d, simulations=[SIM])) as p:
        store_hour(p, seed_plant(p, seed=3))
    return d


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TVILLING_SIMULATIONS", json.dumps([SIM]))
    monkeypatch.chdir(tmp_path)


def _args(data_dir: Path, *more: str) -> list[str]:
    return ["sim", "calibrate", "machine", "--data-dir", str(data_dir), "--twin", MACHINE, "--from", FIT_FROM,
            "--to", FIT_TO, *more]


def test_calibrate_prints_estimates_and_validation_and_promotes(data_dir: Path, env: None, tmp_path: Path) -> None:
    plot = tmp_path / "fit.png"
    result = CliRunner().invoke(main, _args(data_dir, "--parameters", ",".join(TRUTH), "--start-states",
                                            ",".join(START_STATES), "--promote", "--plot", str(plot)))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "reading history" in out and "fitting (evaluations)" in out  # the progress bars (stderr)
    assert f"calibrated machine on {MACHINE}: version 1 (promoted)" in out
    for name, true in TRUTH.items():
        m = re.search(rf"^{re.escape(name)}\s+(\S+) ± (\S+)", out, flags=re.M)
        assert m is not None, out
        value, stderr = float(m.group(1)), float(m.group(2))
        assert value == pytest.approx(true, rel=0.05) and 0 < stderr < 0.05 * true, (name, value, stderr)
    assert re.search(r"^de:wear\s+\S+ ± \S+\s+\(start value\)", out, flags=re.M)
    for name in MONITORED:
        m = re.search(rf"^{re.escape(name)}\s+([\d.]+) %\s+([\d.]+)$", out, flags=re.M)
        assert m is not None, out
        assert float(m.group(1)) < 5.0 and float(m.group(2)) > 0.95, m.group(0)
    if "plot not written" not in out:
        assert f"plot: {plot}" in out and plot.stat().st_size > 20_000
    # another process reads the promoted version from the data directory
    with build_platform(Settings(data_dir=data_dir)) as p:
        version = p.analytics_registry.promoted("sim:machine", MACHINE)
    assert version is not None and version.version == 1
    assert version.params["parameters"]["motorRise"] == pytest.approx(TRUTH["motorRise"], rel=0.05)


@pytest.mark.parametrize(("more", "error"), [
    (("--parameters", "tauNothing"), "error: machine has no parameter 'tauNothing'…"),
    (("--validate-to", FIT_FROM), "error: validate_to (…) must come after to (…)…"),
    (("--outputs", "motor.humidity"), "error: simulation 'machine' binds no output 'motor.humidity'…"),
    (("--start-values", "speed"), "error: start value 'speed' is not NAME=VALUE"),
])
def test_bad_input_is_one_error_line(data_dir: Path, env: None, more: tuple[str, ...], error: str) -> None:
    result = CliRunner().invoke(main, _args(data_dir, *more))
    assert result.exit_code == 1
    pattern = ".*".join(re.escape(p) for p in error.split("…"))
    assert re.search(pattern, result.output), result.output


def test_an_unknown_simulation_twin_or_window(data_dir: Path, env: None) -> None:
    cli = CliRunner()
    unknown = cli.invoke(main, ["sim", "calibrate", "pump", "--data-dir", str(data_dir), "--twin", MACHINE,
                                "--from", FIT_FROM, "--to", FIT_TO])
    assert unknown.exit_code == 1 and "error: no simulation named 'pump' is configured; there are machine" in \
        unknown.output
    twin = cli.invoke(main, [*_args(data_dir)[:6], "line-7-m01", *_args(data_dir)[7:]])
    assert twin.exit_code == 1 and "error: no twin 'line-7-m01'" in twin.output
    early = cli.invoke(main, [*_args(data_dir)[:8], iso(T0_MS - 3_600_000), "--to", iso(T0_MS - 1_800_000)])
    assert early.exit_code == 1 and "has no reading of any output" in early.output
    relative = cli.invoke(main, [*_args(data_dir)[:8], "-2h", "--to", "-1h"])  # now is long after the stored hour
    assert relative.exit_code == 1 and "has no reading of any output" in relative.output


def test_plot_is_drawn_here_not_through_a_server(env: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sim", "calibrate", "machine", "--server", "http://127.0.0.1:9", "--twin",
                                       MACHINE, "--from", "-2h", "--to", "-1h", "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "--plot draws here from the data directory" in result.output
