"""Decision records in the backend: one JSON document per decision, found by id or by asset.

A record is what ``GET /api/decisions/{id}`` answers (``id``, ``created``, ``asset``, ``status``, the
trigger, the options, the choice, the work order, the production plans). :func:`decision_store`
gives a backend's store: in memory for a memory backend, else the ``decisions`` table of the
backend's shared database (the embedded ``tvilling.db`` or the PostgreSQL schema, whose
``search_path`` names the schema), made on first use.

>>> store = MemoryDecisions()
>>> store.save({"id": "d1", "created": "2026-01-01T00:00:00Z", "asset": "b1", "status": "proposed"})
>>> store.get("d1")["status"], [d["id"] for d in store.list(asset="b1")], store.get("nope")
('proposed', ['d1'], None)
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from tvilling.core.errors import Invalid

TABLE = "decisions"
Record = dict[str, Any]


class DecisionStore(Protocol):
    """Decisions by id; the newest first, by asset or status."""

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the record ``record["id"]``."""

    def get(self, decision_id: str) -> Record | None:
        """The record, or None."""

    def list(self, *, asset: str | None = None, status: str | None = None, limit: int = 100) -> list[Record]:
        """Records, newest first."""


def _check(record: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    did, created, asset, status = (record.get(k) for k in ("id", "created", "asset", "status"))
    for name, value in (("id", did), ("created", created), ("asset", asset), ("status", status)):
        if not isinstance(value, str) or not value:
            raise Invalid(f"a decision record needs a non-empty string {name}", field=name, rule="required")
    return str(did), str(created), str(asset), str(status), json.dumps(dict(record), allow_nan=False)


class MemoryDecisions:
    """Decision records in process memory."""

    def __init__(self) -> None:
        self._rows: dict[str, Record] = {}
        self._lock = threading.Lock()

    def save(self, record: Mapping[str, Any]) -> None:
        did, *_, doc = _check(record)
        with self._lock:
            self._rows[did] = json.loads(doc)

    def get(self, decision_id: str) -> Record | None:
        with self._lock:
            found = self._rows.get(decision_id)
            return None if found is None else json.loads(json.dumps(found))

    def list(self, *, asset: str | None = None, status: str | None = None, limit: int = 100) -> list[Record]:
        with self._lock:
            rows = [r for r in self._rows.values() if (asset is None or r["asset"] == asset)
                    and (status is None or r["status"] == status)]
            rows.sort(key=lambda r: (r["created"], r["id"]), reverse=True)
            return [json.loads(json.dumps(r)) for r in rows[:limit]]


class SqlDecisions:
    """Decision records in the ``decisions`` table of the backend's SQLite file or PostgreSQL schema."""

    def __init__(self, database: Any) -> None:
        self._db = database
        self._pg = database.dialect == "postgresql"
        self._db.ensure([
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, created TEXT NOT NULL, asset TEXT NOT NULL, "
            "status TEXT NOT NULL, doc TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_asset ON {TABLE} (asset, created)"], "preparing the decisions table")

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._pg else statement

    def save(self, record: Mapping[str, Any]) -> None:
        did, created, asset, status, doc = _check(record)
        with self._db.write(f"cannot save decision {did!r}") as conn:
            conn.execute(self._sql(f"INSERT INTO {TABLE} (id, created, asset, status, doc) VALUES (?, ?, ?, ?, ?) "
                                   "ON CONFLICT (id) DO UPDATE SET status = excluded.status, doc = excluded.doc"),
                         (did, created, asset, status, doc))

    def get(self, decision_id: str) -> Record | None:
        rows = self._db.read(f"cannot read decision {decision_id!r}",
                             self._sql(f"SELECT doc FROM {TABLE} WHERE id = ?"), (decision_id,))
        return json.loads(rows[0][0]) if rows else None

    def list(self, *, asset: str | None = None, status: str | None = None, limit: int = 100) -> list[Record]:
        where, args = [], []
        if asset is not None:
            where.append("asset = ?")
            args.append(asset)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.read("cannot list decisions", self._sql(
            f"SELECT doc FROM {TABLE}{clause} ORDER BY created DESC, id DESC LIMIT ?"), (*args, limit))
        return [json.loads(r[0]) for r in rows]


_STORES: weakref.WeakKeyDictionary[Any, DecisionStore] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def decision_store(backend: Any) -> DecisionStore:
    """The decision store of ``backend`` (made once per backend)."""
    with _GUARD:
        store = _STORES.get(backend)
        if store is None:
            store = MemoryDecisions() if backend.database is None else SqlDecisions(backend.database)
            _STORES[backend] = store
        return store


__all__ = ["DecisionStore", "MemoryDecisions", "SqlDecisions", "decision_store"]
