"""Commands and their change feed in PostgreSQL, in the platform's schema.

Every write takes one transaction-scoped advisory lock, so change-feed positions are
handed out and become visible in order: a reader that saw position N never later
finds one below N (several API workers may share the database).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from tvilling.core.errors import Conflict
from tvilling.decisions.lifecycle import OPEN, CommandRecord, change_item
from tvilling.decisions.sql_base import PostgresBase
from tvilling.decisions.store import MAX_LIST, check_list_args, missing, stale, unknown_cursor

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

_decoder = msgspec.json.Decoder(CommandRecord)
_OPEN = sorted(OPEN)


class PostgresCommandStore(PostgresBase):
    """A :class:`~tvilling.decisions.store.CommandStore` in PostgreSQL (the shared pool, or one of its own)."""

    noun = "commands"

    def __init__(self, target: PostgresDatabase | str, *, schema: str = "tvilling") -> None:
        super().__init__(target, schema=schema, feed="command_changes")
        sql = self._sql
        self._commands = self._table("commands")
        self._changes = self._table("command_changes")
        self._ensure([
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigserial UNIQUE, id text COLLATE \"C\" PRIMARY KEY,"
                    " twin text COLLATE \"C\" NOT NULL, status text NOT NULL, deadline timestamptz NOT NULL,"
                    " doc json NOT NULL)").format(self._commands),
            sql.SQL("CREATE INDEX IF NOT EXISTS commands_twin ON {} (twin, seq)").format(self._commands),
            sql.SQL("CREATE INDEX IF NOT EXISTS commands_status ON {} (status, seq)").format(self._commands),
            sql.SQL("CREATE INDEX IF NOT EXISTS commands_open_deadline ON {} (deadline)"
                    " WHERE status IN ('acknowledged', 'pending', 'sent')").format(self._commands),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (position bigserial PRIMARY KEY,"
                    " item json NOT NULL)").format(self._changes),
        ])

    def add(self, record: CommandRecord) -> None:
        with self._write("store the command") as cur:
            cur.execute(self._sql.SQL("INSERT INTO {} (id, twin, status, deadline, doc) VALUES (%s, %s, %s, %s, %s)"
                                      " ON CONFLICT (id) DO NOTHING").format(self._commands),
                        (record.id, record.twin, record.status, record.deadline, _doc(record)))
            if cur.rowcount != 1:
                raise Conflict(f"command {record.id} exists already", command=record.id, rule="exists")
            self._append(cur, change_item(record, None))

    def get(self, command_id: str) -> CommandRecord:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE id = %s").format(self._commands),
                          (command_id,))
        if not rows:
            raise missing(command_id)
        return _decoder.decode(rows[0][0])

    def update(self, record: CommandRecord, expected_status: str) -> None:
        with self._write("update the command") as cur:
            cur.execute(self._sql.SQL("UPDATE {} SET status = %s, deadline = %s, doc = %s"
                                      " WHERE id = %s AND status = %s").format(self._commands),
                        (record.status, record.deadline, _doc(record), record.id, expected_status))
            if cur.rowcount != 1:
                cur.execute(self._sql.SQL("SELECT status FROM {} WHERE id = %s").format(self._commands),
                            (record.id,))
                row = cur.fetchone()
                if row is None:
                    raise missing(record.id)
                raise stale(record, expected_status, row[0])
            self._append(cur, change_item(record, expected_status))

    def list(self, *, twin: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> builtins.list[CommandRecord]:
        check_list_args(status, limit)
        start = 0
        if after is not None:
            rows = self._read(self._sql.SQL("SELECT seq FROM {} WHERE id = %s").format(self._commands), (after,))
            if not rows:
                raise unknown_cursor(after)
            start = int(rows[0][0])
        rows = self._read(self._sql.SQL(
            "SELECT doc::text FROM {} WHERE seq > %s AND (%s::text IS NULL OR twin = %s)"
            " AND (%s::text IS NULL OR status = %s) ORDER BY seq LIMIT %s").format(self._commands),
            (start, twin, twin, status, status, limit))
        return [_decoder.decode(r[0]) for r in rows]

    def pending_deadlines(self, now: datetime, *, limit: int = MAX_LIST) -> builtins.list[CommandRecord]:
        rows = self._read(self._sql.SQL(
            "SELECT doc::text FROM {} WHERE status = ANY(%s) AND deadline <= %s ORDER BY deadline, seq LIMIT %s")
            .format(self._commands), (_OPEN, now, limit))
        return [_decoder.decode(r[0]) for r in rows]

    def append_change(self, item: Mapping[str, Any]) -> int:
        with self._write("append to the command change feed") as cur:
            return self._append(cur, item)

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        rows = self._read(self._sql.SQL("SELECT position, item::text FROM {} WHERE position > %s"
                                        " ORDER BY position LIMIT %s").format(self._changes), (after, limit))
        return [(int(p), msgspec.json.decode(item)) for p, item in rows]

    def _append(self, cur: Any, item: Mapping[str, Any]) -> int:
        cur.execute(self._sql.SQL("INSERT INTO {} (item) VALUES (%s) RETURNING position").format(self._changes),
                    (msgspec.json.encode(item).decode(),))
        row = cur.fetchone()
        return int(row[0])


def _doc(record: CommandRecord) -> str:
    return msgspec.json.encode(record).decode()
