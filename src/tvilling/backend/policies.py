"""Authorisation policies in the backend: one row per policy, and a revision that moves on every change.

Adapters, chosen in :mod:`tvilling.backend.stores`: :class:`MemoryPolicies`, and :class:`SqlPolicies` over
the embedded SQLite file (``tvilling.db``) or a PostgreSQL schema (one class, the dialect's SQL). The
:meth:`PolicyStore.revision` lets a reader (the policy guard of every API process) see in one cheap
read whether anything changed since it compiled the policies.

>>> from tvilling.security.policies import Policy
>>> store = MemoryPolicies()
>>> p = Policy.from_json({"id": "ro", "subjects": ["role:viewer"],
...                       "entries": [{"effect": "revoke", "actions": ["read"], "resources": ["history"]}]})
>>> store.put(p), store.revision()
(True, 1)
>>> [q.id for q in store.list()], store.delete("ro").id, store.revision()
(['ro'], 'ro', 2)
"""

from __future__ import annotations

import builtins
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import NotFound
from tvilling.security.policies import Policy

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE = "policies"
REVISION_TABLE = "policies_revision"
_decoder = msgspec.json.Decoder(Policy)
_encoder = msgspec.json.Encoder()


@runtime_checkable
class PolicyStore(Protocol):
    """Policies by id, listed by id, with a revision counter."""

    def put(self, policy: Policy) -> bool:
        """Create or replace the policy with its id; True when it was created."""
        ...

    def get(self, policy_id: str) -> Policy:
        """The policy ``policy_id``; ``NotFound`` otherwise."""
        ...

    def list(self) -> builtins.list[Policy]:
        """Every policy, by id."""
        ...

    def delete(self, policy_id: str) -> Policy:
        """Remove the policy and return it; ``NotFound`` when there is none."""
        ...

    def revision(self) -> int:
        """A number that grows with every change (put or delete) of any policy."""
        ...

    def close(self) -> None:
        """Release what the store holds."""


def missing(policy_id: str) -> NotFound:
    return NotFound(f"there is no policy {policy_id!r}", policy=policy_id)


class MemoryPolicies:
    """Policies in process memory (lost with the process)."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}
        self._revision = 0
        self._lock = threading.Lock()

    def put(self, policy: Policy) -> bool:
        with self._lock:
            created = policy.id not in self._policies
            self._policies[policy.id] = policy
            self._revision += 1
            return created

    def get(self, policy_id: str) -> Policy:
        with self._lock:
            found = self._policies.get(policy_id)
        if found is None:
            raise missing(policy_id)
        return found

    def list(self) -> builtins.list[Policy]:
        with self._lock:
            return [self._policies[k] for k in sorted(self._policies)]

    def delete(self, policy_id: str) -> Policy:
        with self._lock:
            found = self._policies.pop(policy_id, None)
            if found is None:
                raise missing(policy_id)
            self._revision += 1
            return found

    def revision(self) -> int:
        return self._revision

    def close(self) -> None:
        """Nothing to release."""


class SqlPolicies:
    """Policies in the ``policies`` table of the embedded SQLite file or of a PostgreSQL schema.

    ``target`` is the backend's shared database, or a SQLite path / a ``postgresql://`` DSN, in which case the
    store opens a database of its own and closes it with itself.
    """

    def __init__(self, target: SqliteDatabase | PostgresDatabase | str | os.PathLike[str], *,
                 schema: str = "tvilling") -> None:
        self._db: SqliteDatabase | PostgresDatabase
        if (isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))) \
                or not isinstance(target, SqliteDatabase | str | os.PathLike):
            from tvilling.backend.postgres import postgres_database

            self._db, self._owns = postgres_database(target, schema)
        else:
            self._db, self._owns = sqlite_database(target)
        self._pg = self._db.dialect == "postgresql"
        prefix = '"' + self._db.schema.replace('"', '""') + '".' if self._pg else ""  # type: ignore[union-attr]
        self._table, self._rev = prefix + TABLE, prefix + REVISION_TABLE
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {self._table} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {self._rev} (one INTEGER PRIMARY KEY CHECK (one = 1), "
                "revision BIGINT NOT NULL)",
                f"INSERT INTO {self._rev} (one, revision) VALUES (1, 0) ON CONFLICT (one) DO NOTHING",
            ], "preparing the policy tables")
        except BaseException:
            self.close()
            raise

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._pg else statement

    def _bump(self, conn: Any) -> None:
        conn.execute(f"UPDATE {self._rev} SET revision = revision + 1 WHERE one = 1")

    def put(self, policy: Policy) -> bool:
        with self._db.write(f"cannot store the policy {policy.id!r}") as conn:
            created = not conn.execute(self._sql(f"SELECT 1 FROM {self._table} WHERE id = ?"),
                                       (policy.id,)).fetchall()
            conn.execute(self._sql(f"INSERT INTO {self._table} (id, doc) VALUES (?, ?) "
                                   "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"),
                         (policy.id, _encoder.encode(policy).decode()))
            self._bump(conn)
            return created

    def get(self, policy_id: str) -> Policy:
        rows = self._db.read("cannot read the policy", self._sql(f"SELECT doc FROM {self._table} WHERE id = ?"),
                             (policy_id,))
        if not rows:
            raise missing(policy_id)
        return _decoder.decode(rows[0][0])

    def list(self) -> builtins.list[Policy]:
        rows = self._db.read("cannot list the policies", f"SELECT doc FROM {self._table} ORDER BY id")
        return [_decoder.decode(r[0]) for r in rows]

    def delete(self, policy_id: str) -> Policy:
        with self._db.write(f"cannot delete the policy {policy_id!r}") as conn:
            rows = conn.execute(self._sql(f"SELECT doc FROM {self._table} WHERE id = ?"), (policy_id,)).fetchall()
            if not rows:
                raise missing(policy_id)
            conn.execute(self._sql(f"DELETE FROM {self._table} WHERE id = ?"), (policy_id,))
            self._bump(conn)
            return _decoder.decode(rows[0][0])

    def revision(self) -> int:
        rows = self._db.read("cannot read the policy revision", f"SELECT revision FROM {self._rev} WHERE one = 1")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


__all__ = ["MemoryPolicies", "PolicyStore", "SqlPolicies"]
