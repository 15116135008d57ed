from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shared_data import datasets_dir
from tvilling.app import build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.connect import replay as rp

DATASETS = datasets_dir()
needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"public data sets not found at {DATASETS} "
                                "(set TVILLING_DATASETS)")


def write_nab(path: Path, n: int = 50) -> None:
    lines = ["timestamp,value"] + [f"2014-02-14 14:{i // 60:02d}:{i % 60:02d},{60 + (i % 7) * 0.5}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_replay_a_nab_file_through_the_cli(tmp_path):
    f = tmp_path / "machine_temp.csv"
    write_nab(f, 120)
    runner = CliRunner()
    result = runner.invoke(main, ["replay", "--data-dir", str(tmp_path / "d"), str(f)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accepted 120" in result.stdout
    with build_platform(Settings(data_dir=tmp_path / "d")) as p:
        twin = p.twins.get("nab-machine_temp")
        assert twin.reported["value"] == 60 + (119 % 7) * 0.5
        assert twin.metadata["reported"]["value"]["time"] == "2014-02-14T14:01:59Z"
        assert twin.attributes["origin"] == str(f)


def test_replay_paces_by_speed(tmp_path):
    f = tmp_path / "x.csv"
    write_nab(f, 30)  # 29 s of data
    series = rp.load(f)
    slept: list[float] = []
    with build_platform(Settings(store="memory")) as p:
        from tvilling.models.builtin import builtin_documents

        p.models.add(builtin_documents("datasets"))
        p.twins.put(series[0].twin, {"model": series[0].model})
        res = rp.replay(p.pipeline, series, speed=10.0, sleep=slept.append)
    assert res.accepted == 30
    assert 2.0 < sum(slept) <= 2.95  # 29 s of data at 10× ≈ 2.9 s, less the time spent ingesting


def test_unknown_format_is_refused_clearly(tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text("a,b\n1,2\n")
    from tvilling.core.errors import Invalid

    with pytest.raises(Invalid, match="cannot tell its format"):
        rp.load(f)


@needs_data
def test_readers_understand_the_real_files():
    skab = rp.load(DATASETS / "skab" / "valve1" / "0.csv")[0]
    assert skab.twin == "skab-valve1-0" and set(skab.columns) == {
        "accelerometer1RMS", "accelerometer2RMS", "current", "pressure", "temperature", "thermocouple",
        "voltage", "volumeFlowRateRMS"}
    assert len(skab.ts) > 1000 and (skab.ts[1:] >= skab.ts[:-1]).all()
    nab = rp.load(DATASETS / "nab" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv")[0]
    assert len(nab.ts) == 22695
    engines = rp.load(DATASETS / "cmapss" / "train_FD001.txt")
    assert len(engines) == 100 and engines[0].twin == "cmapss-train-FD001-1"
    assert len(engines[0].columns) == 25


@needs_data
def test_replay_skab_folder_into_the_embedded_store(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["replay", "--data-dir", str(tmp_path / "d"), str(DATASETS / "skab" / "valve2")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rejected 0" in result.stdout
    with build_platform(Settings(data_dir=tmp_path / "d")) as p:
        twin = p.twins.get("skab-valve2-0")
        assert set(twin.reported) >= {"current", "pressure", "volumeFlowRateRMS"}
