from __future__ import annotations

import json
import subprocess
import sys
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
