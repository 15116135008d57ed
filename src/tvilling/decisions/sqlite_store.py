"""Commands and their change feed in the embedded SQLite database (``tvilling.db``, WAL, synchronous=FULL)."""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tvilling.backend.sqlite import SqliteDatabase
from tvilling.core.errors import Conflict
from tvilling.decisions.lifecycle import OPEN, CommandRecord, change_item
from tvilling.decisions.sql_base import SqliteBase
from tvilling.decisions.store import MAX_LIST, check_list_args, missing, stale, unknown_cursor

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPEN = ", ".join(f"'{s}'" for s in sorted(OPEN))
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS commands (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " twin TEXT NOT NULL, status TEXT NOT NULL, deadline_us INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS commands_twin ON commands (twin, seq)",
    "CREATE INDEX IF NOT EXISTS commands_status ON commands (status, seq)",
    f"CREATE INDEX IF NOT EXISTS commands_open_deadline ON commands (deadline_us) WHERE status IN ({_OPEN})",
    "CREATE TABLE IF NOT EXISTS command_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL)",
]
_decoder = msgspec.json.Decoder(CommandRecord)


def micros(ts: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (ts - _EPOCH) // timedelta(microseconds=1)


class SqliteCommandStore(SqliteBase):
    """A :class:`~tvilling.decisions.store.CommandStore` in a SQLite database (shared, or a file of its own)."""

    noun = "commands"

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str]) -> None:
        super().__init__(target, _SCHEMA)

    def add(self, record: CommandRecord) -> None:
        with self._write("store the command") as conn:
            try:
                conn.execute("INSERT INTO commands (id, twin, status, deadline_us, doc) VALUES (?, ?, ?, ?, ?)",
                             (record.id, record.twin, record.status, micros(record.deadline), _doc(record)))
            except sqlite3.IntegrityError:
                raise Conflict(f"command {record.id} exists already", command=record.id, rule="exists") from None
            _append(conn, change_item(record, None))

    def get(self, command_id: str) -> CommandRecord:
        rows = self._read("SELECT doc FROM commands WHERE id = ?", (command_id,))
        if not rows:
            raise missing(command_id)
        return _decoder.decode(rows[0][0])

    def update(self, record: CommandRecord, expected_status: str) -> None:
        with self._write("update the command") as conn:
            cur = conn.execute("UPDATE commands SET status = ?, deadline_us = ?, doc = ? WHERE id = ? AND status = ?",
                               (record.status, micros(record.deadline), _doc(record), record.id, expected_status))
            if cur.rowcount != 1:
                row = conn.execute("SELECT status FROM commands WHERE id = ?", (record.id,)).fetchone()
                if row is None:
                    raise missing(record.id)
                raise stale(record, expected_status, row[0])
            _append(conn, change_item(record, expected_status))

    def list(self, *, twin: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> builtins.list[CommandRecord]:
        check_list_args(status, limit)
        start = 0
        if after is not None:
            rows = self._read("SELECT seq FROM commands WHERE id = ?", (after,))
            if not rows:
                raise unknown_cursor(after)
            start = int(rows[0][0])
        sql = "SELECT doc FROM commands WHERE seq > ?"
        args: list[Any] = [start]
        if twin is not None:
            sql += " AND twin = ?"
            args.append(twin)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [_decoder.decode(r[0]) for r in self._read(sql, args)]

    def pending_deadlines(self, now: datetime, *, limit: int = MAX_LIST) -> builtins.list[CommandRecord]:
        rows = self._read(f"SELECT doc FROM commands WHERE status IN ({_OPEN}) AND deadline_us <= ?"
                          " ORDER BY deadline_us, seq LIMIT ?", (micros(now), limit))
        return [_decoder.decode(r[0]) for r in rows]

    def append_change(self, item: Mapping[str, Any]) -> int:
        with self._write("append to the command change feed") as conn:
            return _append(conn, item)

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        rows = self._read("SELECT position, item FROM command_changes WHERE position > ? ORDER BY position LIMIT ?",
                          (after, limit))
        return [(int(p), msgspec.json.decode(item)) for p, item in rows]



def _doc(record: CommandRecord) -> str:
    return msgspec.json.encode(record).decode()


def _append(conn: sqlite3.Connection, item: Mapping[str, Any]) -> int:
    cur = conn.execute("INSERT INTO command_changes (item) VALUES (?)", (msgspec.json.encode(item).decode(),))
    return int(cur.lastrowid or 0)
