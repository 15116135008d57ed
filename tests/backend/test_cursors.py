"""The backend's stream cursor store: one table beside the other stores, in their transaction, migrated from JSON."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from backend_helpers import command, created, open_kind, patched
from test_legacy import old_layout

from tvilling.app import build_platform
from tvilling.backend import open_backend, open_store
from tvilling.config import Settings
from tvilling.core.errors import NotFound, Unavailable
from tvilling.runtime import Runtime
from tvilling.streams.offsets import MemoryCursors

SQL_KINDS = ["embedded", pytest.param("postgresql", marks=pytest.mark.postgres)]
JSON_FILE = "stream-cursors.json"


class Boom(Exception):
    pass


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_position_saved_in_a_transaction_commits_or_fails_with_what_the_consumer_wrote(kind, tmp_path,
                                                                                        request) -> None:
    b = open_kind(kind, tmp_path, request)
    try:
        b.twin_store.commit([created("P1", speed=1)])
        b.cursors.set_cursor("copier", 1)
        cmd = command()
        with pytest.raises(Boom), b.transaction():
            b.command_store.add(cmd)
            b.cursors.set_cursor("copier", 2)
            assert b.cursors.cursor("copier") == 2  # this thread sees its own save
            raise Boom
        assert b.cursors.cursor("copier") == 1  # undone with the command
        with pytest.raises(NotFound):
            b.command_store.get(cmd.id)

        with b.transaction():
            b.twin_store.commit([patched("P1", 2, 1, speed=2)])
            b.cursors.set_cursor("copier", 2)
        assert b.cursors.cursor("copier") == 2 and b.twin_store.last_revision("P1") == 2
    finally:
        b.close()


def test_embedded_positions_live_in_tvilling_db_and_no_json_file_is_written(tmp_path) -> None:
    data = tmp_path / "data"
    with open_backend(data) as b:
        b.cursors.set_cursor("reconciler", 7)
    assert not (data / JSON_FILE).exists()
    with sqlite3.connect(data / "tvilling.db") as conn:
        assert conn.execute("SELECT name, position FROM stream_cursors").fetchall() == [("reconciler", 7)]


def test_the_memory_backend_keeps_positions_in_memory_and_a_fork_starts_with_none(tmp_path) -> None:
    with open_backend("memory") as b:
        assert isinstance(b.cursors, MemoryCursors)
        b.cursors.set_cursor("reconciler", 3)
        with b.fork() as forked:
            assert forked.cursors.cursor("reconciler") == 0  # its own feed, its own positions
            forked.cursors.set_cursor("reconciler", 9)
        assert b.cursors.cursor("reconciler") == 3


def test_open_store_gives_the_cursor_store_alone(tmp_path) -> None:
    store = open_store("cursors", None, data_dir=tmp_path / "d")
    store.set_cursor("alone", 5)
    store.close()
    with open_backend(tmp_path / "d") as b:
        assert b.cursors.cursor("alone") == 5


def test_the_runtime_uses_the_backends_cursor_store(tmp_path) -> None:
    platform = build_platform(Settings(data_dir=tmp_path / "d"))
    try:
        assert Runtime(platform).cursors is platform.backend.cursors
    finally:
        platform.close()


def _json_cursors(data: Path, positions: object) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / JSON_FILE).write_text(json.dumps(positions), encoding="utf-8")
    (data / (JSON_FILE + ".lock")).touch()  # left by the previous release's writers


def test_a_json_cursor_file_is_migrated_into_the_table_once(tmp_path, caplog) -> None:
    data = tmp_path / "data"
    _json_cursors(data, {"reconciler": 41, "analytics": 9})
    with caplog.at_level(logging.WARNING, logger="tvilling.backend"), open_backend(data) as b:
        assert (b.cursors.cursor("reconciler"), b.cursors.cursor("analytics")) == (41, 9)
        b.cursors.set_cursor("reconciler", 42)
    [line] = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert JSON_FILE in line and "2 rows" in line
    names = {p.name for p in data.iterdir()}
    assert JSON_FILE + ".migrated" in names and not names & {JSON_FILE, JSON_FILE + ".lock"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tvilling.backend"), open_backend(data) as again:
        assert again.cursors.cursor("reconciler") == 42  # the migrated file is not read again
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]


def test_the_json_file_is_migrated_with_the_other_old_files_in_one_go(tmp_path) -> None:
    data = tmp_path / "data"
    old = old_layout(data)
    _json_cursors(data, {"reconciler": 5})
    with open_backend(data) as b:
        assert b.cursors.cursor("reconciler") == 5 and b.alarm_store.cursor("alarms") == 7
        assert b.command_store.get(old["command"].id) == old["command"]  # type: ignore[attr-defined]
    assert {f"{n}.migrated" for n in ("commands.db", "alarms.db", JSON_FILE)} <= {p.name for p in data.iterdir()}


def test_a_copy_interrupted_before_the_rename_keeps_the_positions_saved_since(tmp_path) -> None:
    data = tmp_path / "data"
    with open_backend(data) as b:
        b.cursors.set_cursor("reconciler", 50)  # already in the table (a copy that was not renamed)
    _json_cursors(data, {"reconciler": 41, "analytics": 9})
    with open_backend(data) as again:
        assert (again.cursors.cursor("reconciler"), again.cursors.cursor("analytics")) == (50, 9)


@pytest.mark.parametrize("content", ['{"alarms": -3}', "not json", '["a"]', '{"a b": 1}', '{"x": 1.5}'])
def test_a_damaged_json_file_is_refused_with_what_to_do_and_left_in_place(tmp_path, content) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / JSON_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(Unavailable) as err:
        open_backend(data)
    message = str(err.value)
    assert JSON_FILE in message and f"python -m tvilling.backend.migrate {data}" in message
    assert (data / JSON_FILE).read_text(encoding="utf-8") == content
    assert not (data / (JSON_FILE + ".migrated")).exists()


def test_the_migrate_command_merges_a_json_cursor_file(tmp_path) -> None:
    data = tmp_path / "data"
    _json_cursors(data, {"reconciler": 3})
    run = subprocess.run([sys.executable, "-m", "tvilling.backend.migrate", str(data)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"{JSON_FILE} (1 rows)" in run.stdout and (data / (JSON_FILE + ".migrated")).exists()
    with open_backend(data) as b:
        assert b.cursors.cursor("reconciler") == 3


@pytest.mark.parametrize("name", ["tvilling.backend.cursors", "tvilling.backend.factory", "tvilling.backend.sqlite",
                                  "tvilling.streams.offsets"])
def test_the_examples_in_the_docstrings_run(name) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
