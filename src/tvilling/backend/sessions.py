"""Dashboard sessions in the backend: one row per session, its secret only as a SHA-256 hash.

Adapters, chosen in :mod:`tvilling.backend.stores`: :class:`MemorySessions`, and :class:`SqlSessions`
over the embedded SQLite file (``tvilling.db``) or a PostgreSQL schema (one class, the dialect's SQL).
A lookup by secret hashes the secret, finds the row by its hash and compares the stored hash in
constant time. Expired sessions are never returned as usable (see
:func:`tvilling.security.sessions.usable`) and :meth:`SessionStore.purge` deletes them.

>>> from datetime import UTC, datetime, timedelta
>>> from tvilling.core.principal import Principal
>>> from tvilling.security.sessions import hash_secret, open_session
>>> now = datetime(2026, 3, 2, tzinfo=UTC)
>>> store = MemorySessions()
>>> session, secret = open_session(Principal(id="eva", roles=("operator",)), now=now, hours=8)
>>> store.add(session, hash_secret(secret))
>>> store.find(secret).principal_id
'eva'
>>> store.purge(now + timedelta(hours=9)), store.find(secret)
(1, None)
"""

from __future__ import annotations

import hmac
import os
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Conflict
from tvilling.security.sessions import Session, hash_secret

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE = "dashboard_sessions"
_decoder = msgspec.json.Decoder(Session)
_encoder = msgspec.json.Encoder()


@runtime_checkable
class SessionStore(Protocol):
    """Dashboard sessions by the hash of their secret."""

    def add(self, session: Session, secret_hash: str) -> None:
        """Store a new session with the hash of its secret; ``Conflict`` when that hash or id is taken."""

    def find(self, secret: str) -> Session | None:
        """The session whose secret this is (expired ones included), or None."""
        ...

    def delete(self, secret: str) -> bool:
        """End the session whose secret this is; whether there was one."""
        ...

    def purge(self, now: datetime) -> int:
        """Delete the sessions expired at ``now``; how many."""
        ...

    def close(self) -> None:
        """Release what the store holds."""


def _taken() -> Conflict:
    return Conflict("a session with this id or secret exists already", rule="exists")


class MemorySessions:
    """Dashboard sessions in process memory (lost with the process: everyone signs in again)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}  # secret hash -> session
        self._lock = threading.Lock()

    def add(self, session: Session, secret_hash: str) -> None:
        with self._lock:
            if secret_hash in self._sessions or any(s.id == session.id for s in self._sessions.values()):
                raise _taken()
            self._sessions[secret_hash] = session

    def find(self, secret: str) -> Session | None:
        digest = hash_secret(secret)
        with self._lock:
            for stored, session in self._sessions.items():
                if hmac.compare_digest(stored, digest):
                    return session
        return None

    def delete(self, secret: str) -> bool:
        with self._lock:
            return self._sessions.pop(hash_secret(secret), None) is not None

    def purge(self, now: datetime) -> int:
        with self._lock:
            expired = [h for h, s in self._sessions.items() if s.expires <= now]
            for digest in expired:
                del self._sessions[digest]
            return len(expired)

    def close(self) -> None:
        """Nothing to release."""


class SqlSessions:
    """Dashboard sessions in the ``dashboard_sessions`` table of the embedded SQLite file or a PostgreSQL schema.

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
        if self._pg:
            self._table = '"' + self._db.schema.replace('"', '""') + '".' + TABLE  # type: ignore[union-attr]
        else:
            self._table = TABLE
        t = self._table
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {t} (secret_hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "expires TEXT NOT NULL, doc TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {t} (expires)",
            ], "preparing the dashboard session table")
        except BaseException:
            self.close()
            raise

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._pg else statement

    def add(self, session: Session, secret_hash: str) -> None:
        with self._db.write("cannot store the dashboard session") as conn:
            if conn.execute(self._sql(f"SELECT 1 FROM {self._table} WHERE secret_hash = ? OR id = ?"),
                            (secret_hash, session.id)).fetchall():
                raise _taken()
            conn.execute(self._sql(f"INSERT INTO {self._table} (secret_hash, id, expires, doc) VALUES (?, ?, ?, ?)"),
                         (secret_hash, session.id, _utc(session.expires), _encoder.encode(session).decode()))

    def find(self, secret: str) -> Session | None:
        digest = hash_secret(secret)
        rows: list[Any] = self._db.read("cannot look the dashboard session up", self._sql(
            f"SELECT secret_hash, doc FROM {self._table} WHERE secret_hash = ?"), (digest,))
        for stored, doc in rows:
            if hmac.compare_digest(str(stored), digest):
                return _decoder.decode(doc)
        return None

    def delete(self, secret: str) -> bool:
        with self._db.write("cannot end the dashboard session") as conn:
            cursor = conn.execute(self._sql(f"DELETE FROM {self._table} WHERE secret_hash = ?"), (hash_secret(secret),))
            return bool(cursor.rowcount)

    def purge(self, now: datetime) -> int:
        with self._db.write("cannot delete expired dashboard sessions") as conn:
            cursor = conn.execute(self._sql(f"DELETE FROM {self._table} WHERE expires <= ?"), (_utc(now),))
            return max(int(cursor.rowcount), 0)

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


def _utc(when: datetime) -> str:
    """``when`` as an ISO 8601 UTC string of fixed width, so that text order is time order."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["MemorySessions", "SessionStore", "SqlSessions"]
