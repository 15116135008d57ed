"""Alarms, their change feed and cursors in the embedded SQLite database (``tvilling.db``, WAL, synchronous=FULL)."""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from tvilling.backend.sqlite import SqliteDatabase
from tvilling.decisions.alarms.record import OPEN, RAISED, Alarm, change_item
from tvilling.decisions.alarms.shelves import Shelf
from tvilling.decisions.alarms.store import (
    check_list_args,
    epoch,
    exists,
    missing,
    open_exists,
    shelf_exists,
    stale,
    unknown_cursor,
    unknown_shelf,
)
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
    "CREATE TABLE IF NOT EXISTS alarm_shelves (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " start_ts REAL NOT NULL, end_ts REAL NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alarm_shelves_end ON alarm_shelves (end_ts)",
]
_ADDED_COLUMNS = [("shelved_until", "REAL")]  # columns that stores made before shelving lack
_decoder = msgspec.json.Decoder(Alarm)
_shelf_decoder = msgspec.json.Decoder(Shelf)
_CHUNK = 500


class SqliteAlarmStore(SqliteBase):
    """An :class:`~tvilling.decisions.alarms.store.AlarmStore` in a SQLite database (shared, or a file of its own)."""

    noun = "alarms"

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str]) -> None:
        super().__init__(target, _SCHEMA)
        try:
            self._db.add_columns("alarms", _ADDED_COLUMNS)
        except BaseException:
            self.close()
            raise

    def add(self, alarm: Alarm) -> None:
        with self._write("store the alarm") as conn:
            if conn.execute("SELECT 1 FROM alarms WHERE id = ?", (alarm.id,)).fetchone():
                raise exists(alarm)
            try:
                conn.execute("INSERT INTO alarms (id, key, twin, state, severity, rule, source, version, doc,"
                             " shelved_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (alarm.id, alarm.key, alarm.twin, alarm.state, alarm.severity, alarm.rule,
                              alarm.source, alarm.version, _doc(alarm), epoch(alarm.shelved_until)))
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
            cur = conn.execute("UPDATE alarms SET state = ?, severity = ?, version = ?, doc = ?, source = ?,"
                               " shelved_until = ? WHERE id = ? AND version = ?",
                               (alarm.state, alarm.severity, alarm.version, _doc(alarm), alarm.source,
                                epoch(alarm.shelved_until), alarm.id, alarm.version - 1))
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
             rule: str | None = None, after: str | None = None, limit: int = 100, grouped: bool = False,
             shelved: bool | None = None, now: datetime | None = None) -> builtins.list[Alarm]:
        check_list_args(state, severity, limit)
        sql = "SELECT doc FROM alarms WHERE 1 = 1"
        args: list[Any] = []
        if after is not None:
            rows = self._read("SELECT seq FROM alarms WHERE id = ?", (after,))
            if not rows:
                raise unknown_cursor(after)
            sql += " AND seq < ?"
            args.append(int(rows[0][0]))
        if grouped:
            sql += " AND source IS NULL"
            if twin is not None:
                sql += " AND (twin = ? OR id IN (SELECT source FROM alarms WHERE twin = ? AND source IS NOT NULL))"
                args += [twin, twin]
        for column, value in (("state", state), ("twin", None if grouped else twin), ("severity", severity),
                              ("rule", rule)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if shelved is not None:
            held = f"(state IN ({_OPEN}) AND shelved_until IS NOT NULL AND shelved_until > ?)"
            sql += f" AND {held}" if shelved else f" AND NOT {held}"
            args.append((now or datetime.now(UTC)).timestamp())
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [_decoder.decode(r[0]) for r in self._read(sql, args)]

    def affected(self, source_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        out: dict[str, list[str]] = {}
        ids = list(dict.fromkeys(source_ids))
        for i in range(0, len(ids), _CHUNK):
            part = ids[i:i + _CHUNK]
            rows = self._read(f"SELECT source, twin FROM alarms WHERE source IN ({', '.join('?' * len(part))})"
                              " ORDER BY seq", part)
            for source, twin in rows:
                twins = out.setdefault(source, [])
                if twin not in twins:
                    twins.append(twin)
        return out

    def open_on(self, twins: Sequence[str]) -> builtins.list[Alarm]:
        out: list[Alarm] = []
        wanted = list(dict.fromkeys(twins))
        for i in range(0, len(wanted), _CHUNK):
            part = wanted[i:i + _CHUNK]
            rows = self._read(f"SELECT seq, doc FROM alarms WHERE state IN ({_OPEN})"
                              f" AND twin IN ({', '.join('?' * len(part))})", part)
            out += [a for _, a in sorted((int(seq), _decoder.decode(doc)) for seq, doc in rows)]
        return out

    def add_shelf(self, shelf: Shelf) -> None:
        with self._write("store the shelf") as conn:
            if conn.execute("SELECT 1 FROM alarm_shelves WHERE id = ?", (shelf.id,)).fetchone():
                raise shelf_exists(shelf)
            conn.execute("INSERT INTO alarm_shelves (id, start_ts, end_ts, doc) VALUES (?, ?, ?, ?)",
                         (shelf.id, shelf.start.timestamp(), shelf.end_time.timestamp(), _doc(shelf)))

    def get_shelf(self, shelf_id: str) -> Shelf:
        rows = self._read("SELECT doc FROM alarm_shelves WHERE id = ?", (shelf_id,))
        if not rows:
            raise unknown_shelf(shelf_id)
        return _shelf_decoder.decode(rows[0][0])

    def update_shelf(self, shelf: Shelf) -> None:
        with self._write("update the shelf") as conn:
            cur = conn.execute("UPDATE alarm_shelves SET start_ts = ?, end_ts = ?, doc = ? WHERE id = ?",
                               (shelf.start.timestamp(), shelf.end_time.timestamp(), _doc(shelf), shelf.id))
            if cur.rowcount != 1:
                raise unknown_shelf(shelf.id)

    def shelves(self, *, at: datetime | None = None, limit: int = 100) -> builtins.list[Shelf]:
        if at is None:
            rows = self._read("SELECT doc FROM alarm_shelves ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = self._read("SELECT doc FROM alarm_shelves WHERE start_ts <= ? AND end_ts > ?"
                              " ORDER BY seq DESC LIMIT ?", (at.timestamp(), at.timestamp(), limit))
        return [_shelf_decoder.decode(r[0]) for r in rows]

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


def _doc(value: Alarm | Shelf) -> str:
    return msgspec.json.encode(value).decode()


def _append(conn: sqlite3.Connection, item: dict[str, Any]) -> int:
    cur = conn.execute("INSERT INTO alarm_changes (item) VALUES (?)", (msgspec.json.encode(item).decode(),))
    return int(cur.lastrowid or 0)
