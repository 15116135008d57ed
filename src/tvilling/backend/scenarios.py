"""What-if scenario records in the backend: one JSON document per scenario, and a feed of their changes.

A record is the document the scenario API answers with (``id``, ``twin``, ``status``, ``progress``,
``created``, ``request``, results once done). Every save also appends ``{"id", "status",
"progress"}`` to the change feed, which the change stream reads as the source ``scenarios``.
Three adapters, chosen in :mod:`tvilling.backend.stores`: memory, the ``scenarios`` and
``scenario_changes`` tables of the embedded SQLite file, and those of a PostgreSQL schema.

>>> store = MemoryScenarios()
>>> store.save({"id": "a", "twin": "m1", "status": "running", "progress": 0.5, "created": "2026-01-01T00:00:00Z"})
>>> store.get("a")["progress"], [r["id"] for r in store.newest()], store.changes(0, 10)
(0.5, ['a'], [(1, {'id': 'a', 'status': 'running', 'progress': 0.5})])
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Invalid

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE, CHANGES = "scenarios", "scenario_changes"
Record = dict[str, Any]


class ScenarioStore(Protocol):
    """Scenario records by id, newest first, and the feed of their status changes."""

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the record with ``record["id"]``; append its status to the change feed."""

    def get(self, scenario_id: str) -> Record | None:
        """The record ``scenario_id``, or None."""

    def newest(self, limit: int = 100) -> list[Record]:
        """The records, newest (by ``created``) first, at most ``limit``."""

    def changes(self, after: int, limit: int) -> list[tuple[int, Record]]:
        """Status changes with a position after ``after``, at most ``limit``, in order."""

    def close(self) -> None:
        """Release what the store holds."""


def _check(record: Mapping[str, Any]) -> tuple[str, str, str, Record]:
    sid, created = record.get("id"), record.get("created")
    if not isinstance(sid, str) or not sid:
        raise Invalid("a scenario record needs a non-empty string id", field="id", rule="required")
    if not isinstance(created, str):
        raise Invalid(f"scenario {sid!r}: the record needs 'created' (an ISO time)", field="created",
                      rule="required")
    item = {"id": sid, "status": record.get("status"), "progress": record.get("progress")}
    return sid, created, json.dumps(dict(record), allow_nan=False), item


class MemoryScenarios:
    """Records in process memory (lost with the process)."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._changes: list[Record] = []
        self._lock = threading.Lock()

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the record; append its status to the change feed."""
        sid, _, doc, item = _check(record)
        with self._lock:
            self._records[sid] = json.loads(doc)
            self._changes.append(item)

    def get(self, scenario_id: str) -> Record | None:
        """The record ``scenario_id`` (a copy), or None."""
        with self._lock:
            found = self._records.get(scenario_id)
            return None if found is None else json.loads(json.dumps(found))

    def newest(self, limit: int = 100) -> list[Record]:
        """The records, newest first."""
        with self._lock:
            rows = sorted(self._records.values(), key=lambda r: (r["created"], r["id"]), reverse=True)
            return [json.loads(json.dumps(r)) for r in rows[:limit]]

    def changes(self, after: int, limit: int) -> list[tuple[int, Record]]:
        """Status changes after ``after`` (positions count from 1)."""
        with self._lock:
            start = max(after, 0)
            return [(start + i + 1, dict(c)) for i, c in enumerate(self._changes[start:start + limit])]

    def close(self) -> None:
        """Nothing to release."""


class SqliteScenarios:
    """Records in the ``scenarios`` table of a SQLite database: the embedded ``tvilling.db``, or a file."""

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str]) -> None:
        self._db, self._owns = sqlite_database(target)
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, created TEXT NOT NULL, doc TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {CHANGES} "
                "(position INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL)",
            ], "preparing the scenario tables")
        except BaseException:
            self.close()
            raise

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the record; append its status to the change feed (one write)."""
        sid, created, doc, item = _check(record)
        with self._db.write(f"cannot save scenario {sid!r}") as conn:
            conn.execute(f"INSERT INTO {TABLE} (id, created, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                         "SET doc = excluded.doc", (sid, created, doc))
            conn.execute(f"INSERT INTO {CHANGES} (item) VALUES (?)", (json.dumps(item),))

    def get(self, scenario_id: str) -> Record | None:
        """The record ``scenario_id``, or None."""
        rows = self._db.read(f"cannot read scenario {scenario_id!r}", f"SELECT doc FROM {TABLE} WHERE id = ?",
                             (scenario_id,))
        return json.loads(rows[0][0]) if rows else None

    def newest(self, limit: int = 100) -> list[Record]:
        """The records, newest first."""
        rows = self._db.read("cannot list scenarios",
                             f"SELECT doc FROM {TABLE} ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        return [json.loads(r[0]) for r in rows]

    def changes(self, after: int, limit: int) -> list[tuple[int, Record]]:
        """Status changes after ``after``."""
        rows = self._db.read("cannot read the scenario changes",
                             f"SELECT position, item FROM {CHANGES} WHERE position > ? ORDER BY position LIMIT ?",
                             (after, limit))
        return [(int(p), json.loads(i)) for p, i in rows]

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


class PostgresScenarios:
    """Records in ``<schema>.scenarios`` of PostgreSQL (the backend's pool, or one of its own)."""

    def __init__(self, target: PostgresDatabase | str, *, schema: str = "tvilling") -> None:
        from psycopg import sql

        from tvilling.backend.postgres import postgres_database

        self._db, self._owns = postgres_database(target, schema)
        table, changes = self._db.table(TABLE), self._db.table(CHANGES)
        try:
            self._db.ensure([
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, created text NOT NULL, doc text NOT NULL)")
                .format(table),
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (position bigserial PRIMARY KEY, item text NOT NULL)")
                .format(changes)], "preparing the scenario tables")
        except BaseException:
            self.close()
            raise
        self._upsert = sql.SQL("INSERT INTO {} (id, created, doc) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
                               "SET doc = excluded.doc").format(table)
        self._append = sql.SQL("INSERT INTO {} (item) VALUES (%s)").format(changes)
        self._get = sql.SQL("SELECT doc FROM {} WHERE id = %s").format(table)
        self._list = sql.SQL("SELECT doc FROM {} ORDER BY created DESC, id DESC LIMIT %s").format(table)
        self._changes = sql.SQL("SELECT position, item FROM {} WHERE position > %s ORDER BY position LIMIT %s"
                                ).format(changes)

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the record; append its status to the change feed (one transaction)."""
        sid, created, doc, item = _check(record)
        with self._db.write(f"cannot save scenario {sid!r}") as conn:
            conn.execute(self._upsert, (sid, created, doc))
            conn.execute(self._append, (json.dumps(item),))

    def get(self, scenario_id: str) -> Record | None:
        """The record ``scenario_id``, or None."""
        rows = self._db.read(f"cannot read scenario {scenario_id!r}", self._get, (scenario_id,))
        return json.loads(rows[0][0]) if rows else None

    def newest(self, limit: int = 100) -> list[Record]:
        """The records, newest first."""
        return [json.loads(r[0]) for r in self._db.read("cannot list scenarios", self._list, (limit,))]

    def changes(self, after: int, limit: int) -> list[tuple[int, Record]]:
        """Status changes after ``after``."""
        rows = self._db.read("cannot read the scenario changes", self._changes, (after, limit))
        return [(int(p), json.loads(i)) for p, i in rows]

    def close(self) -> None:
        """Close the pool if this store opened it."""
        if self._owns:
            self._db.close()


__all__ = ["MemoryScenarios", "PostgresScenarios", "ScenarioStore", "SqliteScenarios"]
