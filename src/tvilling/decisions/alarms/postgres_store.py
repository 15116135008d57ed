"""Alarms, their change feed and cursors in PostgreSQL, in the platform's schema.

Every write takes one transaction-scoped advisory lock, so change-feed positions are
handed out and become visible in order (several API workers may share the database).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

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
from tvilling.decisions.sql_base import PostgresBase

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

_decoder = msgspec.json.Decoder(Alarm)
_shelf_decoder = msgspec.json.Decoder(Shelf)
_OPEN = sorted(OPEN)


class PostgresAlarmStore(PostgresBase):
    """An :class:`~tvilling.decisions.alarms.store.AlarmStore` in PostgreSQL (the shared pool, or one of its own)."""

    noun = "alarms"

    def __init__(self, target: PostgresDatabase | str, *, schema: str = "tvilling") -> None:
        super().__init__(target, schema=schema, feed="alarm_changes")
        sql = self._sql
        self._alarms = self._table("alarms")
        self._changes = self._table("alarm_changes")
        self._cursors = self._table("alarm_cursors")
        self._shelves = self._table("alarm_shelves")
        open_list = sql.SQL(", ").join(sql.Literal(s) for s in _OPEN)
        self._ensure([
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigserial UNIQUE, id text COLLATE \"C\" PRIMARY KEY,"
                    " key text COLLATE \"C\" NOT NULL, twin text COLLATE \"C\" NOT NULL, state text NOT NULL,"
                    " severity text NOT NULL, rule text COLLATE \"C\" NOT NULL, source text COLLATE \"C\","
                    " version integer NOT NULL, doc json NOT NULL)").format(self._alarms),
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS alarms_open_key ON {} (key)"
                    " WHERE state IN ({})").format(self._alarms, open_list),
            *(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(sql.Identifier(name), self._alarms,
                                                                         sql.SQL(cols))
              for name, cols in (("alarms_key", "key, seq"), ("alarms_twin", "twin, seq"),
                                 ("alarms_state", "state, seq"), ("alarms_source", "source"))),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (position bigserial PRIMARY KEY,"
                    " item json NOT NULL)").format(self._changes),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY,"
                    " position bigint NOT NULL)").format(self._cursors),
            # shelving: a column that stores made before it lack, and the shelves
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS shelved_until double precision").format(self._alarms),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigserial UNIQUE,"
                    " id text COLLATE \"C\" PRIMARY KEY, start_ts double precision NOT NULL,"
                    " end_ts double precision NOT NULL, doc json NOT NULL)").format(self._shelves),
            sql.SQL("CREATE INDEX IF NOT EXISTS alarm_shelves_end ON {} (end_ts)").format(self._shelves),
        ])

    def add(self, alarm: Alarm) -> None:
        with self._write("store the alarm") as cur:
            cur.execute(self._sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(self._alarms), (alarm.id,))
            if cur.fetchone() is not None:
                raise exists(alarm)
            if alarm.is_open:
                cur.execute(self._sql.SQL("SELECT 1 FROM {} WHERE key = %s AND state = ANY(%s)")
                            .format(self._alarms), (alarm.key, _OPEN))
                if cur.fetchone() is not None:
                    raise open_exists(alarm)
            cur.execute(self._sql.SQL("INSERT INTO {} (id, key, twin, state, severity, rule, source, version, doc,"
                                      " shelved_until) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
                        .format(self._alarms),
                        (alarm.id, alarm.key, alarm.twin, alarm.state, alarm.severity, alarm.rule, alarm.source,
                         alarm.version, _doc(alarm), epoch(alarm.shelved_until)))
            self._append(cur, change_item(alarm, RAISED))

    def get(self, alarm_id: str) -> Alarm:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE id = %s").format(self._alarms), (alarm_id,))
        if not rows:
            raise missing(alarm_id)
        return _decoder.decode(rows[0][0])

    def update(self, alarm: Alarm, change_type: str) -> None:
        with self._write("update the alarm") as cur:
            cur.execute(self._sql.SQL("UPDATE {} SET state = %s, severity = %s, version = %s, doc = %s, source = %s,"
                                      " shelved_until = %s WHERE id = %s AND version = %s").format(self._alarms),
                        (alarm.state, alarm.severity, alarm.version, _doc(alarm), alarm.source,
                         epoch(alarm.shelved_until), alarm.id, alarm.version - 1))
            if cur.rowcount != 1:
                cur.execute(self._sql.SQL("SELECT version FROM {} WHERE id = %s").format(self._alarms), (alarm.id,))
                row = cur.fetchone()
                if row is None:
                    raise missing(alarm.id)
                raise stale(alarm, int(row[0]))
            self._append(cur, change_item(alarm, change_type))

    def open_for(self, key: str) -> Alarm | None:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE key = %s AND state = ANY(%s)")
                          .format(self._alarms), (key, _OPEN))
        return _decoder.decode(rows[0][0]) if rows else None

    def last_for(self, key: str) -> Alarm | None:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE key = %s ORDER BY seq DESC LIMIT 1")
                          .format(self._alarms), (key,))
        return _decoder.decode(rows[0][0]) if rows else None

    def derived(self, source_id: str) -> builtins.list[Alarm]:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE source = %s ORDER BY seq")
                          .format(self._alarms), (source_id,))
        return [_decoder.decode(r[0]) for r in rows]

    def list(self, *, state: str | None = None, twin: str | None = None, severity: str | None = None,
             rule: str | None = None, after: str | None = None, limit: int = 100, grouped: bool = False,
             shelved: bool | None = None, now: datetime | None = None) -> builtins.list[Alarm]:
        check_list_args(state, severity, limit)
        sql = self._sql
        before: int | None = None
        if after is not None:
            rows = self._read(sql.SQL("SELECT seq FROM {} WHERE id = %s").format(self._alarms), (after,))
            if not rows:
                raise unknown_cursor(after)
            before = int(rows[0][0])
        where = [sql.SQL("(%s::bigint IS NULL OR seq < %s)"), sql.SQL("(%s::text IS NULL OR state = %s)"),
                 sql.SQL("(%s::text IS NULL OR severity = %s)"), sql.SQL("(%s::text IS NULL OR rule = %s)")]
        args: list[Any] = [before, before, state, state, severity, severity, rule, rule]
        if grouped:
            where.append(sql.SQL("source IS NULL"))
            if twin is not None:
                where.append(sql.SQL("(twin = %s OR id IN (SELECT source FROM {} WHERE twin = %s"
                                     " AND source IS NOT NULL))").format(self._alarms))
                args += [twin, twin]
        elif twin is not None:
            where.append(sql.SQL("twin = %s"))
            args.append(twin)
        if shelved is not None:
            held = sql.SQL("(state = ANY(%s) AND shelved_until IS NOT NULL AND shelved_until > %s)")
            where.append(held if shelved else sql.SQL("NOT ") + held)
            args += [_OPEN, (now or datetime.now(UTC)).timestamp()]
        rows = self._read(sql.SQL("SELECT doc::text FROM {} WHERE {} ORDER BY seq DESC LIMIT %s")
                          .format(self._alarms, sql.SQL(" AND ").join(where)), (*args, limit))
        return [_decoder.decode(r[0]) for r in rows]

    def affected(self, source_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        out: dict[str, list[str]] = {}
        if not source_ids:
            return out
        rows = self._read(self._sql.SQL("SELECT source, twin FROM {} WHERE source = ANY(%s) ORDER BY seq")
                          .format(self._alarms), (list(source_ids),))
        for source, twin in rows:
            twins = out.setdefault(source, [])
            if twin not in twins:
                twins.append(twin)
        return out

    def open_on(self, twins: Sequence[str]) -> builtins.list[Alarm]:
        if not twins:
            return []
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE state = ANY(%s) AND twin = ANY(%s)"
                                        " ORDER BY seq").format(self._alarms), (_OPEN, list(twins)))
        return [_decoder.decode(r[0]) for r in rows]

    def add_shelf(self, shelf: Shelf) -> None:
        with self._write("store the shelf") as cur:
            cur.execute(self._sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(self._shelves), (shelf.id,))
            if cur.fetchone() is not None:
                raise shelf_exists(shelf)
            cur.execute(self._sql.SQL("INSERT INTO {} (id, start_ts, end_ts, doc) VALUES (%s, %s, %s, %s)")
                        .format(self._shelves),
                        (shelf.id, shelf.start.timestamp(), shelf.end_time.timestamp(), _doc(shelf)))

    def get_shelf(self, shelf_id: str) -> Shelf:
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE id = %s").format(self._shelves),
                          (shelf_id,))
        if not rows:
            raise unknown_shelf(shelf_id)
        return _shelf_decoder.decode(rows[0][0])

    def update_shelf(self, shelf: Shelf) -> None:
        with self._write("update the shelf") as cur:
            cur.execute(self._sql.SQL("UPDATE {} SET start_ts = %s, end_ts = %s, doc = %s WHERE id = %s")
                        .format(self._shelves),
                        (shelf.start.timestamp(), shelf.end_time.timestamp(), _doc(shelf), shelf.id))
            if cur.rowcount != 1:
                raise unknown_shelf(shelf.id)

    def shelves(self, *, at: datetime | None = None, limit: int = 100) -> builtins.list[Shelf]:
        ts = None if at is None else at.timestamp()
        rows = self._read(self._sql.SQL("SELECT doc::text FROM {} WHERE %s::double precision IS NULL"
                                        " OR (start_ts <= %s AND end_ts > %s) ORDER BY seq DESC LIMIT %s")
                          .format(self._shelves), (ts, ts, ts, limit))
        return [_shelf_decoder.decode(r[0]) for r in rows]

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        rows = self._read(self._sql.SQL("SELECT position, item::text FROM {} WHERE position > %s"
                                        " ORDER BY position LIMIT %s").format(self._changes), (after, limit))
        return [(int(p), msgspec.json.decode(item)) for p, item in rows]

    def cursor(self, name: str) -> int:
        rows = self._read(self._sql.SQL("SELECT position FROM {} WHERE name = %s").format(self._cursors), (name,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, name: str, position: int) -> None:
        with self._write("save the alarm cursor") as cur:
            cur.execute(self._sql.SQL("INSERT INTO {} (name, position) VALUES (%s, %s) ON CONFLICT (name)"
                                      " DO UPDATE SET position = EXCLUDED.position").format(self._cursors),
                        (name, int(position)))

    def _append(self, cur: Any, item: dict[str, Any]) -> int:
        cur.execute(self._sql.SQL("INSERT INTO {} (item) VALUES (%s) RETURNING position").format(self._changes),
                    (msgspec.json.encode(item).decode(),))
        row = cur.fetchone()
        return int(row[0])


def _doc(value: Alarm | Shelf) -> str:
    return msgspec.json.encode(value).decode()
