from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgtest import PG_DSN, fresh_schema
from tvilling.cli import main
from tvilling.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_file_environment_and_flags_in_that_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == Path("tvilling-data") and Settings().port == 8000
    (tmp_path / "tvilling.toml").write_text('port = 9001\ndata_dir = "/srv/twins"\nmax_body_bytes = 4096\n')
    s = load_settings()
    assert (s.port, s.data_dir, s.max_body_bytes) == (9001, Path("/srv/twins"), 4096)
    monkeypatch.setenv("TVILLING_PORT", "9002")
    assert load_settings().port == 9002
    assert load_settings(port=9003).port == 9003
    assert load_settings(port=None).port == 9002  # a flag not given does not override


def test_bad_settings_are_refused_with_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="store"):
        Settings(store="mysql://x")
    (tmp_path / "tvilling.toml").write_text("porrt = 1\n")
    with pytest.raises(ValueError, match="porrt"):
        load_settings()
    monkeypatch.setenv("TVILLING_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        load_settings()


@pytest.mark.postgres
def test_cli_in_server_mode_uses_postgresql(monkeypatch):
    for schema in fresh_schema():
        monkeypatch.setenv("TVILLING_PG_SCHEMA", schema)
        runner = CliRunner()
        for args in (["models", "import", "--store", PG_DSN, "plant"],
                     ["twins", "create", "--store", PG_DSN, "B1", "--model", "dtmi:tvilling:example:Bearing;1"]):
            result = runner.invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["twins", "get", "--store", PG_DSN, "B1"])
        assert result.exit_code == 0 and '"revision": 1' in result.stdout
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            n = conn.execute(f'SELECT count(*) FROM "{schema}".twins').fetchone()[0]
        assert n == 1
