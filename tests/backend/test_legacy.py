"""A data directory of the previous layout (a SQLite file per store) is merged into tvilling.db on open."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from backend_helpers import T0, alarm, command, letter

from tvilling.backend import open_backend
from tvilling.core.errors import Unavailable
from tvilling.twins.adapters.sqlite import open_sqlite

# The schemas of the previous release, as its stores created them.
OLD_SCHEMAS = {
    "dead-letters.db": [
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, transport TEXT NOT NULL, address TEXT,"
        " twin TEXT, property TEXT, rule TEXT NOT NULL, reason TEXT NOT NULL, received TEXT NOT NULL, payload BLOB,"
        " count INTEGER NOT NULL DEFAULT 1, message_id TEXT, size BIGINT, digest TEXT, key TEXT,"
        " deliveries INTEGER NOT NULL DEFAULT 1)",
        "CREATE UNIQUE INDEX dead_letters_key ON dead_letters (key)"],
    "commands.db": [
        "CREATE TABLE commands (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, twin TEXT NOT NULL,"
        " status TEXT NOT NULL, deadline_us INTEGER NOT NULL, doc TEXT NOT NULL)",
        "CREATE TABLE command_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL)"],
    "alarms.db": [  # from before shelving: no shelved_until, no shelves table
        "CREATE TABLE alarms (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, key TEXT NOT NULL,"
        " twin TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, rule TEXT NOT NULL, source TEXT,"
        " version INTEGER NOT NULL, doc TEXT NOT NULL)",
        "CREATE TABLE alarm_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL)",
        "CREATE TABLE alarm_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"],
    "analytics.db": [
        "CREATE TABLE analytic_versions (analytic text NOT NULL, scope text NOT NULL, version integer NOT NULL,"
        " status text NOT NULL, doc text NOT NULL, artifact blob NOT NULL, PRIMARY KEY (analytic, scope, version))"],
}


def _old_file(path: Path, statements: list[str], rows: list[tuple[str, tuple]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    for s in statements:
        conn.execute(s)
    for sql, args in rows:
        conn.execute(sql, args)
    conn.commit()
    conn.close()


def old_layout(data: Path) -> dict[str, object]:
    """A data dir as the previous release left it: tvilling.db with a twin, and a file per other store."""
    data.mkdir(parents=True)
    _, twins = open_sqlite(data / "tvilling.db")
    from backend_helpers import created

    twins.commit([created("P1", speed=3)])
    twins.close()
    cmd, al, dl = command(), alarm(), letter(b"raw")
    enc = msgspec.json.encode
    _old_file(data / "commands.db", OLD_SCHEMAS["commands.db"], [
        ("INSERT INTO commands (id, twin, status, deadline_us, doc) VALUES (?, ?, ?, ?, ?)",
         (cmd.id, cmd.twin, cmd.status, 1, enc(cmd).decode())),
        ("INSERT INTO command_changes (item) VALUES (?)", ('{"kind": "command", "id": "c"}',)),
        ("INSERT INTO command_changes (item) VALUES (?)", ('{"kind": "desired"}',))])
    _old_file(data / "alarms.db", OLD_SCHEMAS["alarms.db"], [
        ("INSERT INTO alarms (id, key, twin, state, severity, rule, source, version, doc)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
         (al.id, al.key, al.twin, al.state, al.severity, al.rule, None, al.version, enc(al).decode())),
        ("INSERT INTO alarm_changes (item) VALUES (?)", ('{"type": "alarm.raised"}',)),
        ("INSERT INTO alarm_cursors (name, position) VALUES (?, ?)", ("alarms", 7))])
    _old_file(data / "dead-letters.db", OLD_SCHEMAS["dead-letters.db"], [
        ("INSERT INTO dead_letters (transport, address, twin, property, rule, reason, received, payload, count,"
         " message_id, size, digest, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
         (dl.transport, dl.address, dl.twin, dl.property, dl.rule, dl.reason, T0.isoformat(), dl.payload, 1,
          dl.message_id, dl.size, dl.digest, dl.key))])
    _old_file(data / "analytics.db", OLD_SCHEMAS["analytics.db"], [
        ("INSERT INTO analytic_versions VALUES (?, ?, ?, ?, ?, ?)",
         ("z", "P1", 1, "promoted", '{"analytic": "z", "scope": "P1", "version": 1, "status": "promoted",'
          ' "created": "2026-03-01T12:00:00Z", "fingerprint": "f"}', b"artifact"))])
    return {"command": cmd, "alarm": al, "letter": dl}


def test_every_row_of_the_old_files_survives_and_a_second_open_does_nothing(tmp_path, caplog) -> None:
    data = tmp_path / "data"
    old = old_layout(data)
    with caplog.at_level(logging.WARNING, logger="tvilling.backend"), open_backend(data) as b:
        assert b.twin_store.get("P1").reported == {"speed": 3}
        assert b.command_store.get(old["command"].id) == old["command"]  # type: ignore[attr-defined]
        assert [i for _, i in b.command_store.changes(0, 10)] == [{"kind": "command", "id": "c"}, {"kind": "desired"}]
        assert b.alarm_store.get(old["alarm"].id) == old["alarm"]  # type: ignore[attr-defined]
        assert b.alarm_store.cursor("alarms") == 7 and len(b.alarm_store.changes(0, 10)) == 1
        [d] = b.dead_letters.list()
        assert (d.payload, d.key, d.deliveries) == (b"raw", old["letter"].key, 1)  # type: ignore[attr-defined]
        assert b.analytics_registry.artifact("z", "P1", 1) == b"artifact"
        # new rows continue after the copied ones
        b.command_store.append_change({"kind": "desired", "n": 2})
        assert [p for p, _ in b.command_store.changes(0, 10)] == [1, 2, 3]
    migrated = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert len(migrated) == 4 and any("commands.db" in m and "3 rows" in m for m in migrated)
    names = {p.name for p in data.iterdir()}
    assert {"commands.db.migrated", "alarms.db.migrated", "dead-letters.db.migrated",
            "analytics.db.migrated"} <= names
    assert not names & {"commands.db", "alarms.db", "dead-letters.db", "analytics.db"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tvilling.backend"), open_backend(data) as again:
        assert len(again.command_store.changes(0, 10)) == 3 and again.dead_letters.count() == 1
        assert len(again.alarm_store.list()) == 1 and len(again.analytics_registry.versions()) == 1
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]


def test_a_file_it_cannot_merge_is_refused_with_the_command_that_migrates(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _old_file(data / "commands.db", [OLD_SCHEMAS["commands.db"][0].replace("doc TEXT NOT NULL)",
                                                                         "doc TEXT NOT NULL, future TEXT)")], [])
    with pytest.raises(Unavailable) as err:
        open_backend(data)
    assert f"python -m tvilling.backend.migrate {data}" in str(err.value)
    assert "future" in str(err.value) and (data / "commands.db").exists()  # nothing renamed, nothing lost


def test_the_migrate_command_merges_a_data_dir(tmp_path) -> None:
    data = tmp_path / "data"
    old_layout(data)
    run = subprocess.run([sys.executable, "-m", "tvilling.backend.migrate", str(data)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "commands.db (3 rows)" in run.stdout and (data / "commands.db.migrated").exists()
    again = subprocess.run([sys.executable, "-m", "tvilling.backend.migrate", str(data)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
