"""``tvilling tokens create|list|revoke`` on the embedded store of a data directory."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tvilling.backend import open_backend
from tvilling.cli import main


def test_create_prints_the_secret_once_then_list_and_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    made = runner.invoke(main, ["tokens", "create", "ci", "--role", "operator", "--twins", "line-1-*",
                                "--expires", "30d", *data])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("tvl_") and "\n" not in secret
    assert "will not be shown again" in made.stderr
    listed = runner.invoke(main, ["tokens", "list", *data])
    assert listed.exit_code == 0 and secret not in listed.output
    (token,) = json.loads(listed.stdout)
    assert (token["name"], token["role"], token["twins"], token["revoked"]) == ("ci", "operator", "line-1-*", None)
    assert token["expires"] is not None
    with open_backend(tmp_path / "data") as backend:
        assert backend.tokens.find(secret) is not None  # the server's store sees it
    revoked = runner.invoke(main, ["tokens", "revoke", token["id"], *data])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert json.loads(runner.invoke(main, ["tokens", "list", *data]).stdout)[0]["revoked"] is not None
    missing = runner.invoke(main, ["tokens", "revoke", "nope", *data])
    assert missing.exit_code == 1 and "no API token 'nope'" in missing.output
    bad = runner.invoke(main, ["tokens", "create", "x", "--role", "operator", "--expires", "soon", *data])
    assert bad.exit_code == 1 and "duration" in bad.output
