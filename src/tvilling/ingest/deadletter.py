"""The dead-letter store: every rejected message or reading, with its raw payload and the reason.

Nothing rejected disappears silently: a person can list dead letters through the API
(``GET /api/dead-letters``) and the CLI (``tvilling dead-letters``), see why, and fix the
device or the model.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

MAX_PAYLOAD = 64 * 1024  # bytes of a rejected payload kept; beyond, its first bytes, its size and its hash


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One rejection: what arrived (the raw payload, or its first bytes and a hash), where from, and why.

    Build it with :meth:`of`, which bounds the payload and fills ``size`` and ``digest``:

    >>> d = DeadLetter.of(b'{"ts": 1, "values": {}}', transport="mqtt", address="tvilling/B1/telemetry",
    ...                   rule="empty", reason="no values", received=datetime(2026, 1, 1, tzinfo=UTC), message_id="m-7")
    >>> d.size, d.digest[:12], d.truncated
    (23, '0be8c1870e6d', False)
    """

    transport: str
    reason: str
    rule: str
    received: datetime
    payload: bytes = b""  # the raw payload (its first MAX_PAYLOAD bytes where larger)
    address: str | None = None
    twin: str | None = None
    property: str | None = None
    count: int = 1  # readings it holds (a rejected series batch holds several)
    message_id: str | None = None  # the message's own id (envelope "id"), where it has one
    size: int | None = None  # bytes of the whole payload
    digest: str | None = None  # SHA-256 of the whole payload (hex)
    deliveries: int = 1  # how often the same message was rejected (redeliveries are not stored twice)
    id: int | None = None  # set by the store

    @classmethod
    def of(cls, payload: bytes, **fields: Any) -> DeadLetter:
        """A dead letter of this raw payload: kept whole up to :data:`MAX_PAYLOAD` bytes, with its size and hash."""
        data = bytes(payload)
        return cls(payload=data[:MAX_PAYLOAD], size=len(data), digest=hashlib.sha256(data).hexdigest(), **fields)

    @builtins.property  # (the field 'property' hides the builtin in this class body)
    def truncated(self) -> bool:
        return self.size is not None and self.size > len(self.payload)

    @builtins.property
    def key(self) -> str:
        """Identity of the rejection: the same message rejected for the same reason again (a redelivery) has it."""
        digest = self.digest or hashlib.sha256(self.payload).hexdigest()
        parts = (self.transport, self.address, self.message_id, digest, self.twin, self.property, self.rule)
        return hashlib.sha256("\x00".join("" if p is None else p for p in parts).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        try:
            text: Any = self.payload.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.payload).decode(), "base64"
        return {"id": self.id, "transport": self.transport, "address": self.address, "twin": self.twin,
                "property": self.property, "count": self.count, "rule": self.rule, "reason": self.reason,
                "received": self.received.isoformat().replace("+00:00", "Z"), "message_id": self.message_id,
                "payload": text, "payload_encoding": encoding, "size": self.size, "digest": self.digest,
                "truncated": self.truncated, "deliveries": self.deliveries}


class DeadLetterStore(Protocol):
    def add(self, letters: Sequence[DeadLetter]) -> None:
        """Store durably. A letter whose :attr:`DeadLetter.key` is stored already only counts one more delivery."""

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        """Dead letters with id > after, oldest first."""

    def count(self) -> int: ...

    def close(self) -> None: ...


class MemoryDeadLetters:
    def __init__(self) -> None:
        self._items: list[DeadLetter] = []
        self._by_key: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, letters: Sequence[DeadLetter]) -> None:
        with self._lock:
            for letter in letters:
                key = letter.key
                at = self._by_key.get(key)
                if at is not None:
                    old = self._items[at]
                    self._items[at] = msgspec.structs.replace(old, deliveries=old.deliveries + 1)
                    continue
                self._by_key[key] = len(self._items)
                self._items.append(msgspec.structs.replace(letter, id=len(self._items) + 1))

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        out = [d for d in self._items[after:] if (twin is None or d.twin == twin) and (rule is None or d.rule == rule)]
        return out[:limit]

    def count(self) -> int:
        return len(self._items)

    def close(self) -> None:
        pass


_COLUMNS = "id, transport, address, twin, property, rule, reason, received, payload, count, message_id, size, digest," \
           " deliveries"
_INSERT = ("INSERT INTO {} (transport, address, twin, property, rule, reason, received, payload, count, message_id,"
           " size, digest, key) VALUES ({}) ON CONFLICT (key) DO UPDATE SET deliveries = {}.deliveries + 1")
# columns added after the first release, for stores created before
_ADDED = (("message_id", "TEXT"), ("size", "BIGINT"), ("digest", "TEXT"), ("key", "TEXT"),
          ("deliveries", "INTEGER NOT NULL DEFAULT 1"))


def _row(row: Sequence[Any], received: datetime) -> DeadLetter:
    return DeadLetter(id=row[0], transport=row[1], address=row[2], twin=row[3], property=row[4], rule=row[5],
                      reason=row[6], received=received, payload=bytes(row[8] or b""), count=int(row[9]),
                      message_id=row[10], size=row[11], digest=row[12], deliveries=int(row[13] or 1))


def _values(d: DeadLetter, received: Any) -> tuple[Any, ...]:
    return (d.transport, d.address, d.twin, d.property, d.rule, d.reason, received, d.payload, d.count, d.message_id,
            d.size, d.digest, d.key)


class SqliteDeadLetters:
    """Dead letters in a SQLite database: the embedded ``tvilling.db`` (shared), or a file of its own."""

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str]) -> None:
        self._db, self._owns = sqlite_database(target)
        try:
            self._db.ensure([
                "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " transport TEXT NOT NULL, address TEXT, twin TEXT, property TEXT, rule TEXT NOT NULL,"
                " reason TEXT NOT NULL, received TEXT NOT NULL, payload BLOB, count INTEGER NOT NULL DEFAULT 1)"],
                "preparing the dead-letter table")
            self._db.add_columns("dead_letters", _ADDED)
            self._db.ensure(["CREATE INDEX IF NOT EXISTS dead_letters_twin ON dead_letters (twin, id)",
                             "CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_key ON dead_letters (key)"],
                            "preparing the dead-letter table")
        except BaseException:
            self.close()
            raise
        self._insert = _INSERT.format("dead_letters", ", ".join("?" * 13), "dead_letters")

    def add(self, letters: Sequence[DeadLetter]) -> None:
        rows = [_values(d, d.received.isoformat()) for d in letters]
        with self._db.write("cannot store dead letters") as conn:
            conn.executemany(self._insert, rows)

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
        rows = self._db.read("cannot read dead letters", sql, args)
        return [_row(r, datetime.fromisoformat(r[7])) for r in rows]

    def count(self) -> int:
        return int(self._db.read("cannot count dead letters", "SELECT count(*) FROM dead_letters")[0][0])

    def close(self) -> None:
        if self._owns:
            self._db.close()


class PostgresDeadLetters:
    """Dead letters in PostgreSQL, in the platform's schema (the shared pool, or one of its own)."""

    def __init__(self, target: PostgresDatabase | str, *, schema: str = "tvilling") -> None:
        from psycopg import sql

        from tvilling.backend.postgres import postgres_database

        self._db, self._owns = postgres_database(target, schema)
        self._sql = sql
        table = self._db.table("dead_letters")
        try:
            self._db.ensure([
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, transport text NOT NULL,"
                        " address text, twin text, property text, rule text NOT NULL, reason text NOT NULL,"
                        " received timestamptz NOT NULL, payload bytea, count integer NOT NULL DEFAULT 1)"
                        ).format(table),
                *(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(table, sql.Identifier(name))
                  for name, kind in _ADDED),
                sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_key ON {} (key)").format(table),
            ], "preparing the dead-letter table")
        except BaseException:
            self.close()
            raise
        self._table = table
        self._insert = sql.SQL(_INSERT.format("{}", ", ".join(["%s"] * 13), "{}")).format(
            table, sql.Identifier("dead_letters"))

    def add(self, letters: Sequence[DeadLetter]) -> None:
        rows = [_values(d, d.received) for d in letters]
        with self._db.write("cannot store dead letters") as conn, conn.cursor() as cur:
            cur.executemany(self._insert, rows)

    def list(self, *, after: int = 0, limit: int = 100, twin: str | None = None,
             rule: str | None = None) -> list[DeadLetter]:
        q = self._sql.SQL(f"SELECT {_COLUMNS} FROM {{}} WHERE id > %s"
                          " AND (%s::text IS NULL OR twin = %s) AND (%s::text IS NULL OR rule = %s)"
                          " ORDER BY id LIMIT %s").format(self._table)
        rows = self._db.read("cannot read dead letters", q, (after, twin, twin, rule, rule, limit))
        return [_row(r, r[7].astimezone(UTC)) for r in rows]

    def count(self) -> int:
        rows = self._db.read("cannot count dead letters", self._sql.SQL("SELECT count(*) FROM {}").format(self._table))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        if self._owns:
            self._db.close()


REASONS_SHOWN = 3  # reasons an answer shows per rule; the dead letters keep every one


def summarise(letters: Sequence[DeadLetter]) -> list[dict[str, Any]]:
    """Rejections by rule, most readings first: ``{"rule", "count", "reasons": [first reasons]}``."""
    by_rule: dict[str, dict[str, Any]] = {}
    for d in letters:
        entry = by_rule.setdefault(d.rule, {"rule": d.rule, "count": 0, "reasons": []})
        entry["count"] += d.count
        reason = _reason(d)
        if len(entry["reasons"]) < REASONS_SHOWN and reason not in entry["reasons"]:
            entry["reasons"].append(reason)
    return sorted(by_rule.values(), key=lambda e: -e["count"])


def _reason(d: DeadLetter) -> str:
    """The letter's reason, prefixed by its series (``B1.temperature: …``) where the reason does not name it."""
    if d.twin is None or repr(d.twin) in d.reason or f"twin {d.twin}" in d.reason:
        return d.reason
    series = d.twin if d.property is None else f"{d.twin}.{d.property}"
    return f"{series}: {d.reason}"
