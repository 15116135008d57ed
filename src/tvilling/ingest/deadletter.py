"""The dead-letter store: every rejected message or reading, with its raw payload and the reason.

Nothing rejected disappears silently: a person can list dead letters through the API
(``GET /api/dead-letters``) and the CLI (``tvilling dead-letters``), see why, and fix the
device or the model.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec

from tvilling.core.errors import Unavailable


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    transport: str
    reason: str
    rule: str
    received: datetime
    payload: bytes = b""
    address: str | None = None
    twin: str | None = None
    property: str | None = None
    count: int = 1  # readings it holds (a rejected series batch holds several)
    id: int | None = None  # set by the store

    def to_json(self) -> dict[str, Any]:
        try:
            text: Any = self.payload.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            import base64

            text, encoding = base64.b64encode(self.payload).decode(), "base64"
        return {"id": self.id, "transport": self.transport, "address": self.address, "twin": self.twin,
                "property": self.property, "count": self.count, "rule": self.rule, "reason": self.reason,
                "received": self.received.isoformat().replace("+00:00", "Z"), "payload": text,
                "payload_encoding": encoding}


class DeadLetterStore(Protocol):
    def add(self, letters: Sequence[DeadLetter]) -> None:
        """Store durably."""

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        """Dead letters with id > after, oldest first."""

    def count(self) -> int: ...

    def close(self) -> None: ...


class MemoryDeadLetters:
    def __init__(self) -> None:
        self._items: list[DeadLetter] = []
        self._lock = threading.Lock()

    def add(self, letters: Sequence[DeadLetter]) -> None:
        with self._lock:
            for letter in letters:
                self._items.append(msgspec.structs.replace(letter, id=len(self._items) + 1))

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        out = [d for d in self._items[after:] if (twin is None or d.twin == twin) and (rule is None or d.rule == rule)]
        return out[:limit]

    def count(self) -> int:
        return len(self._items)

    def close(self) -> None:
        pass


_COLUMNS = "id, transport, address, twin, property, rule, reason, received, payload, count"


def _row(row: Sequence[Any], received: datetime) -> DeadLetter:
    return DeadLetter(id=row[0], transport=row[1], address=row[2], twin=row[3], property=row[4], rule=row[5],
                      reason=row[6], received=received, payload=bytes(row[8] or b""), count=int(row[9]))


class SqliteDeadLetters:
    """Dead letters in their own SQLite file (WAL, synchronous=FULL) beside the twin store."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, transport TEXT NOT NULL,"
            " address TEXT, twin TEXT, property TEXT, rule TEXT NOT NULL, reason TEXT NOT NULL,"
            " received TEXT NOT NULL, payload BLOB, count INTEGER NOT NULL DEFAULT 1)")
        self._conn.execute("CREATE INDEX IF NOT EXISTS dead_letters_twin ON dead_letters (twin, id)")

    def add(self, letters: Sequence[DeadLetter]) -> None:
        rows = [(d.transport, d.address, d.twin, d.property, d.rule, d.reason, d.received.isoformat(), d.payload,
                 d.count) for d in letters]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "INSERT INTO dead_letters (transport, address, twin, property, rule, reason, received, payload,"
                    " count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise Unavailable(f"cannot store dead letters: {exc}") from exc

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE id > ?"
        args: list[Any] = [after]
        if twin is not None:
            sql += " AND twin = ?"
            args.append(twin)
        if rule is not None:
            sql += " AND rule = ?"
            args.append(rule)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_row(r, datetime.fromisoformat(r[7])) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDeadLetters:
    """Dead letters in PostgreSQL, in the platform's schema."""

    def __init__(self, dsn: str, *, schema: str = "tvilling") -> None:
        import psycopg
        from psycopg import sql

        self._schema = schema
        self._dsn = dsn
        self._sql = sql
        try:
            self._conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"PostgreSQL is not reachable for dead letters: {exc}") from exc
        self._lock = threading.Lock()
        ident = sql.Identifier(schema)
        self._conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        self._conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.dead_letters (id bigserial PRIMARY KEY, transport text NOT NULL,"
            " address text, twin text, property text, rule text NOT NULL, reason text NOT NULL,"
            " received timestamptz NOT NULL, payload bytea, count integer NOT NULL DEFAULT 1)").format(ident))
        self._table = sql.SQL("{}.dead_letters").format(ident)

    def add(self, letters: Sequence[DeadLetter]) -> None:
        rows = [(d.transport, d.address, d.twin, d.property, d.rule, d.reason, d.received, d.payload, d.count)
                for d in letters]
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(self._sql.SQL(
                "INSERT INTO {} (transport, address, twin, property, rule, reason, received, payload, count)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)").format(self._table), rows)

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        q = self._sql.SQL(f"SELECT {_COLUMNS} FROM {{}} WHERE id > %s"
                          " AND (%s::text IS NULL OR twin = %s) AND (%s::text IS NULL OR rule = %s)"
                          " ORDER BY id LIMIT %s").format(self._table)
        with self._lock:
            rows = self._conn.execute(q, (after, twin, twin, rule, rule, limit)).fetchall()
        return [_row(r, r[7].astimezone(UTC)) for r in rows]

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute(self._sql.SQL("SELECT count(*) FROM {}").format(self._table)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
