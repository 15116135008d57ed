"""Alarms, their change feed and cursors in their own SQLite file (WAL, synchronous=FULL) in the data dir."""

from __future__ import annotations

import builtins
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from tvilling.decisions.alarms.record import OPEN, RAISED, Alarm, change_item
from tvilling.decisions.alarms.store import check_list_args, exists, missing, open_exists, stale, unknown_cursor
from tvilling.decisions.sql_base import SqliteBase

_OPEN = ", ".join(f"'{s}'" for s in sorted(OPEN))
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS alarms (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " key TEXT NOT NULL, twin TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, rule TEXT NOT NULL,"
    " source TEXT, version INTEGER NOT NULL, doc TEXT NOT NULL)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS alarms_open_key ON alarms (key) WHERE state IN ({_OPEN})",
    "CREATE INDEX IF NOT EXISTS alarms_key ON alarms (key, seq)",
    "CREATE INDEX IF NOT EXISTS alarms_twin ON alarms (twin, seq)",
    "CREATE INDEX IF NOT EXISTS alarms_state ON alarms (state, seq)",
    "CREATE INDEX IF NOT EXISTS alarms_source ON alarms (source) WHERE source IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS alarm_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS alarm_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
]
_decoder = msgspec.json.Decoder(Alarm)


class SqliteAlarmStore(SqliteBase):
    """An :class:`~tvilling.decisions.alarms.store.AlarmStore` in one SQLite file."""

    noun = "alarms"
    passthrough = (sqlite3.IntegrityError,)  # the unique open-key index: a concurrent raise, handled below

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    def add(self, alarm: Alarm) -> None:
        with self._write("store the alarm") as conn:
            if conn.execute("SELECT 1 FROM alarms WHERE id = ?", (alarm.id,)).fetchone():
                raise exists(alarm)
            try:
                conn.execute("INSERT INTO alarms (id, key, twin, state, severity, rule, source, version, doc)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (alarm.id, alarm.key, alarm.twin, alarm.state, alarm.severity, alarm.rule,
                              alarm.source, alarm.version, _doc(alarm)))
            except sqlite3.IntegrityError:
                raise open_exists(alarm) from None
            _append(conn, change_item(alarm, RAISED))

    def get(self, alarm_id: str) -> Alarm:
        rows = self._read("SELECT doc FROM alarms WHERE id = ?", (alarm_id,))
        if not rows:
            raise missing(alarm_id)
        return _decoder.decode(rows[0][0])

    def update(self, alarm: Alarm, change_type: str) -> None:
        with self._write("update the alarm") as conn:
            cur = conn.execute("UPDATE alarms SET state = ?, severity = ?, version = ?, doc = ?"
                               " WHERE id = ? AND version = ?",
                               (alarm.state, alarm.severity, alarm.version, _doc(alarm), alarm.id,
                                alarm.version - 1))
            if cur.rowcount != 1:
                row = conn.execute("SELECT version FROM alarms WHERE id = ?", (alarm.id,)).fetchone()
                if row is None:
                    raise missing(alarm.id)
                raise stale(alarm, int(row[0]))
            _append(conn, change_item(alarm, change_type))

    def open_for(self, key: str) -> Alarm | None:
        rows = self._read(f"SELECT doc FROM alarms WHERE key = ? AND state IN ({_OPEN})", (key,))
        return _decoder.decode(rows[0][0]) if rows else None

    def last_for(self, key: str) -> Alarm | None:
        rows = self._read("SELECT doc FROM alarms WHERE key = ? ORDER BY seq DESC LIMIT 1", (key,))
        return _decoder.decode(rows[0][0]) if rows else None

    def derived(self, source_id: str) -> builtins.list[Alarm]:
        rows = self._read("SELECT doc FROM alarms WHERE source = ? ORDER BY seq", (source_id,))
        return [_decoder.decode(r[0]) for r in rows]

    def list(self, *, state: str | None = None, twin: str | None = None, severity: str | None = None,
             rule: str | None = None, after: str | None = None, limit: int = 100) -> builtins.list[Alarm]:
        check_list_args(state, severity, limit)
        sql = "SELECT doc FROM alarms WHERE 1 = 1"
        args: list[Any] = []
        if after is not None:
            rows = self._read("SELECT seq FROM alarms WHERE id = ?", (after,))
            if not rows:
                raise unknown_cursor(after)
            sql += " AND seq < ?"
            args.append(int(rows[0][0]))
        for column, value in (("state", state), ("twin", twin), ("severity", severity), ("rule", rule)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [_decoder.decode(r[0]) for r in self._read(sql, args)]

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        rows = self._read("SELECT position, item FROM alarm_changes WHERE position > ? ORDER BY position LIMIT ?",
                          (after, limit))
        return [(int(p), msgspec.json.decode(item)) for p, item in rows]

    def cursor(self, name: str) -> int:
        rows = self._read("SELECT position FROM alarm_cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, name: str, position: int) -> None:
        with self._write("save the alarm cursor") as conn:
            conn.execute("INSERT INTO alarm_cursors (name, position) VALUES (?, ?)"
                         " ON CONFLICT (name) DO UPDATE SET position = excluded.position", (name, int(position)))



def _doc(alarm: Alarm) -> str:
    return msgspec.json.encode(alarm).decode()


def _append(conn: sqlite3.Connection, item: dict[str, Any]) -> int:
    cur = conn.execute("INSERT INTO alarm_changes (item) VALUES (?)", (msgspec.json.encode(item).decode(),))
    return int(cur.lastrowid or 0)
