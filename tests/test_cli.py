from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from tvilling import __version__
from tvilling.cli import main
from tvilling.models.builtin import builtin_dir

ROOT = Path(__file__).resolve().parents[1]
PLANT = builtin_dir("plant")
BEARING = "dtmi:tvilling:example:Bearing;1"
MACHINE = "dtmi:tvilling:example:Machine;1"


def test_version_and_help_from_the_installed_command():
    out = subprocess.run([sys.executable, "-m", "tvilling.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert __version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "tvilling.cli", "--help"], capture_output=True, text=True,
                         check=True)
    for command in ("serve", "models", "twins"):
        assert command in out.stdout


def invoke(runner: CliRunner, data: Path, *args: str) -> str:
    result = runner.invoke(main, [*args[:2], "--data-dir", str(data), *args[2:]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_models_and_twins_commands_on_the_embedded_store(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    out = invoke(runner, data, "models", "import", str(PLANT))
    assert BEARING in out and "registered" in out
    assert (data / "tvilling.db").exists()
    assert BEARING in invoke(runner, data, "models", "list")
    invoke(runner, data, "twins", "create", "B1", "--model", BEARING, "--reported", '{"temperature": 85.0}')
    invoke(runner, data, "twins", "create", "M1", "--model", MACHINE)
    invoke(runner, data, "twins", "relate", "M1", "r1", "--name", "hasBearing", "--target", "B1")
    twin = json.loads(invoke(runner, data, "twins", "patch", "B1", '{"reported": {"temperature": 91.5}}'))
    assert twin["reported"]["temperature"] == 91.5 and twin["revision"] == 2
    old = json.loads(invoke(runner, data, "twins", "get", "B1", "--revision", "1"))
    assert old["reported"]["temperature"] == 85.0
    q = json.dumps({"match": [{"model": MACHINE}, {"via": "hasBearing", "where": [["reported.temperature", ">", 90]]}]})
    rows = [json.loads(line) for line in invoke(runner, data, "twins", "query", q).splitlines()]
    assert [r["id"] for r in rows] == ["B1"]
    history = [json.loads(line) for line in invoke(runner, data, "twins", "history", "B1").splitlines()]
    assert [e["type"] for e in history] == ["TwinCreated", "TwinPatched"]


def test_errors_are_clear_and_exit_non_zero(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    invoke(runner, data, "models", "import", str(PLANT))
    invoke(runner, data, "twins", "create", "B1", "--model", BEARING)
    result = runner.invoke(main, ["twins", "patch", "--data-dir", str(data), "B1", '{"desired": {"temperature": 1.0}}'])
    assert result.exit_code == 1
    assert "B1" in result.stderr and "temperature" in result.stderr and "writable" in result.stderr
    result = runner.invoke(main, ["twins", "get", "--data-dir", str(data), "nope"])
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = runner.invoke(main, ["twins", "patch", "--data-dir", str(data), "B1", "{bad"])
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


def test_bulk_import_from_json_lines(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    invoke(runner, data, "models", "import", str(PLANT))
    lines = [{"id": f"B{i}", "model": BEARING, "reported": {"temperature": 50.0 + i}} for i in range(25)]
    lines.append({"id": "M1", "model": MACHINE,
                  "relationships": [{"id": f"r{i}", "name": "hasBearing", "target": f"B{i}"} for i in range(4)]})
    src = tmp_path / "twins.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = invoke(runner, data, "twins", "import", str(src), "--batch-size", "10")
    assert "imported 26" in out
    rels = json.loads(invoke(runner, data, "twins", "get", "M1"))["relationships"]
    assert len(rels) == 4
    # an invalid batch is refused as a whole and names the item
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "X1", "model": BEARING}) + "\n"
                   + json.dumps({"id": "X2", "model": BEARING, "reported": {"temperature": "hot"}}) + "\n")
    result = runner.invoke(main, ["twins", "import", "--data-dir", str(data), str(bad)])
    assert result.exit_code == 1 and "item 2" in result.stderr
    result = runner.invoke(main, ["twins", "get", "--data-dir", str(data), "X1"])
    assert result.exit_code == 1


def test_a_bad_file_in_a_folder_import_is_named(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "good.json").write_text((PLANT / "Asset.json").read_text())
    (folder / "odd.json").write_text(json.dumps({
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:Odd;1", "@type": "Interface",
        "contents": [{"@type": "Gizmo", "name": "g"}]}))
    result = CliRunner().invoke(main, ["models", "import", "--data-dir", str(tmp_path / "d"), str(folder)])
    assert result.exit_code == 1
    assert "odd.json" in result.stderr and "Gizmo" in result.stderr


# -- serve --example, replay and analytics through a running server, one writer -----------------------
def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    from serve_util import free_port, wait_healthy

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "data"),
                             "--port", str(port), *args], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout=60)
    except AssertionError:
        proc.kill()
        raise AssertionError((tmp_path / "serve.log").read_text()) from None
    return proc, base


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _nab_file(folder: Path, name: str, rows: int, bad_row: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    from datetime import datetime, timedelta

    t0 = datetime(2020, 1, 1)
    lines = ["timestamp,value"] + [f"{t0 + timedelta(seconds=i)},{20.0 + (i % 7) / 8}" for i in range(rows)]
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_serve_example_plant_replay_and_the_one_writer_line(tmp_path):
    from serve_util import call

    proc, base = _serve(tmp_path, "--example", "plant")
    try:
        status, body = call("GET", f"{base}/api/analytics")
        assert status == 200
        assert {"bearing-anomaly", "bearing-rul", "engine-rul"} <= {a["name"] for a in body["items"]}
        assert call("GET", f"{base}/api/twins/line-1-m02-de")[0] == 200
        status, problem = call("POST", f"{base}/api/twins/line-1-m02/commands/setSpeed", 900)
        assert status == 503 and "--broker mqtt://" in problem["detail"]
        # the server holds the history once it ingests; a replay opening the data directory stops with one line
        assert call("POST", f"{base}/api/ingest", {"twin": "line-1-m01-de", "ts": int(time.time() * 1000),
                                                   "values": {"temperature": 40.0}})[1]["accepted"] == 1
        csv = _nab_file(tmp_path / "nab", "cpu", 300)
        runner = CliRunner()
        local = runner.invoke(main, ["replay", "--data-dir", str(tmp_path / "data"), str(csv)])
        assert local.exit_code == 1
        errors = [line for line in local.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "--server http://" in errors[0] and "one writing process" in errors[0]
        assert "Traceback" not in local.output
        # through the server: the same readings, and the answer says why some were rejected
        out = runner.invoke(main, ["replay", "--server", base, str(csv)])
        assert out.exit_code == 0, out.output
        assert "accepted 300, rejected 0" in out.stdout
        unknown = _nab_file(tmp_path / "nab2", "ghost", 5)
        out = runner.invoke(main, ["replay", "--server", base, "--no-create", str(unknown)])
        assert out.exit_code == 0, out.output
        assert "accepted 0, rejected 5" in out.stdout
        assert "5 rejected by rule unknown_twin: " in out.stdout and "nab-ghost" in out.stdout
        status, hist = call("GET", f"{base}/api/twins/nab-cpu/history?property=value&from=2020-01-01T00:00:00Z"
                                   "&to=2020-01-01T01:00:00Z&every=1h&agg=count,max")
        assert status == 200 and hist["items"][0]["count"] == 300
    finally:
        _stop(proc)


def test_replay_through_a_server_splits_bodies_under_its_limit(tmp_path):
    from tvilling.connect import replay as rp

    csv = _nab_file(tmp_path / "nab", "big", 60_000)
    proc, base = _serve(tmp_path)
    try:
        api = rp.Server(base)
        series = rp.load(csv)
        from tvilling.models.builtin import builtin_documents

        assert rp.ensure_twins(api, series, builtin_documents("datasets")) == 1
        assert len(rp.columnar_body(series[0], 0, 60_000)) > 1_048_576  # one body would be refused (413)
        answer = rp.replay_to(api, series)
        assert (answer.accepted, answer.rejected, answer.rejections) == (60_000, 0, [])
        # again, in smaller bodies: the series has moved on, so most of it is too late now, and the answer says so
        again = rp.replay_to(api, series, max_bytes=200_000)
        assert again.accepted + again.rejected + again.duplicates == 60_000 and again.rejected > 50_000
        [why] = again.rejections
        assert why["rule"] == "too_late" and why["count"] == again.rejected and "nab-big.value" in why["reasons"][0]
        api.close()
    finally:
        _stop(proc)


def test_backtests_are_out_of_sample_unless_asked(tmp_path):
    from shared_data import datasets_dir

    train_file = datasets_dir() / "cmapss" / "train_FD001.txt"
    if not train_file.is_file():
        import pytest

        pytest.skip(f"C-MAPSS FD001 not found at {train_file} (set TVILLING_DATASETS)")
    small = tmp_path / "train_FD001.txt"  # twelve engines: units 1-12
    small.write_text("".join(line for line in train_file.read_text().splitlines(keepends=True)
                             if int(line.split()[0]) <= 12))
    config = tmp_path / "tvilling.toml"
    config.write_text('[[analytics]]\nname = "engine-rul"\nmodel = "dtmi:tvilling:datasets:TurbofanEngine"\n'
                      'method = "rul-fleet"\ninputs = ["setting1", "setting2", "setting3", '
                      + ", ".join(f'"s{i}"' for i in range(1, 22)) + ']\nparams = { members = 2 }\n')
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data"), "--config", str(config)]
    assert runner.invoke(main, ["replay", *base, str(small)]).exit_code == 0
    out = runner.invoke(main, ["analytics", "train", *base, "engine-rul", "--prefix", "cmapss-train-FD001-",
                               "--exclude", "cmapss-train-FD001-1"])
    assert out.exit_code == 0, out.output
    version = json.loads(out.stdout)
    assert version["metrics"]["units"] == 8  # 1 and 10-12 held out
    out = runner.invoke(main, ["analytics", "backtest", *base, "engine-rul", "1", "--prefix", "cmapss-train-FD001-"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert (report["twins"], report["out_of_sample"], report["left_out"], report["trained_on"]) == (4, True, 8, 8)
    assert sorted(report["per_twin"]) == ["cmapss-train-FD001-1", "cmapss-train-FD001-10", "cmapss-train-FD001-11",
                                          "cmapss-train-FD001-12"]
    refused = runner.invoke(main, ["analytics", "backtest", *base, "engine-rul", "1", "--twin", "cmapss-train-FD001-2"])
    assert refused.exit_code == 1 and "in sample" in refused.stderr
    out = runner.invoke(main, ["analytics", "backtest", *base, "engine-rul", "1", "--twin", "cmapss-train-FD001-2",
                               "--in-sample"])
    assert out.exit_code == 0 and json.loads(out.stdout)["out_of_sample"] is False
