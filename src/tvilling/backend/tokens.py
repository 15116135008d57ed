"""API tokens in the backend: one row per token, its secret only as a SHA-256 hash.

Adapters, chosen in :mod:`tvilling.backend.stores`: :class:`MemoryTokens`, and :class:`SqlTokens` over the
embedded SQLite file (``tvilling.db``) or a PostgreSQL schema (one class, the dialect's SQL). A name is
unique among the tokens that are not revoked. A lookup by secret hashes the secret, finds the row by its
hash and compares the stored hash in constant time.

>>> from datetime import UTC, datetime
>>> from tvilling.security.tokens import hash_secret, mint
>>> now = datetime(2026, 3, 2, tzinfo=UTC)
>>> store = MemoryTokens()
>>> token, secret = mint("ci", "viewer", by="alice", now=now)
>>> store.add(token, hash_secret(secret))
>>> store.find(secret).name
'ci'
>>> store.revoke(token.id, at=now).revoked == now
True
"""

from __future__ import annotations

import builtins
import hmac
import os
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Conflict, NotFound
from tvilling.security.tokens import Token, hash_secret

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE = "api_tokens"
_decoder = msgspec.json.Decoder(Token)
_encoder = msgspec.json.Encoder()


@runtime_checkable
class TokenStore(Protocol):
    """API tokens by id and by secret, listed by creation time."""

    def add(self, token: Token, secret_hash: str) -> None:
        """Store a new token with the hash of its secret; ``Conflict`` (rule ``exists``) when a token that is
        not revoked has its name."""

    def get(self, token_id: str) -> Token:
        """The token ``token_id``; ``NotFound`` otherwise."""
        ...

    def find(self, secret: str) -> Token | None:
        """The token whose secret this is (revoked and expired ones included), or None."""
        ...

    def list(self) -> builtins.list[Token]:
        """Every token, oldest first."""
        ...

    def revoke(self, token_id: str, *, at: datetime) -> Token:
        """Mark the token revoked at ``at`` (a revoked one keeps its first revocation time); the token."""
        ...

    def touch(self, token_id: str, *, at: datetime) -> None:
        """Record that the token was used at ``at``."""

    def close(self) -> None:
        """Release what the store holds."""


def missing(token_id: str) -> NotFound:
    return NotFound(f"there is no API token {token_id!r}", token=token_id)


def taken(name: str) -> Conflict:
    return Conflict(f"an API token named {name!r} exists already; revoke it or choose another name",
                    field="name", rule="exists")


class MemoryTokens:
    """API tokens in process memory (lost with the process)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._hashes: dict[str, str] = {}  # secret hash -> token id
        self._lock = threading.Lock()

    def add(self, token: Token, secret_hash: str) -> None:
        with self._lock:
            if token.id in self._tokens or any(t.name == token.name and t.revoked is None
                                               for t in self._tokens.values()):
                raise taken(token.name)
            self._tokens[token.id] = token
            self._hashes[secret_hash] = token.id

    def get(self, token_id: str) -> Token:
        with self._lock:
            found = self._tokens.get(token_id)
        if found is None:
            raise missing(token_id)
        return found

    def find(self, secret: str) -> Token | None:
        digest = hash_secret(secret)
        with self._lock:
            for stored, token_id in self._hashes.items():
                if hmac.compare_digest(stored, digest):
                    return self._tokens[token_id]
        return None

    def list(self) -> builtins.list[Token]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda t: (t.created, t.id))

    def revoke(self, token_id: str, *, at: datetime) -> Token:
        with self._lock:
            found = self._tokens.get(token_id)
            if found is None:
                raise missing(token_id)
            if found.revoked is None:
                found = msgspec.structs.replace(found, revoked=at)
                self._tokens[token_id] = found
            return found

    def touch(self, token_id: str, *, at: datetime) -> None:
        with self._lock:
            found = self._tokens.get(token_id)
            if found is not None:
                self._tokens[token_id] = msgspec.structs.replace(found, last_used=at)

    def close(self) -> None:
        """Nothing to release."""


class SqlTokens:
    """API tokens in the ``api_tokens`` table of the embedded SQLite file or of a PostgreSQL schema.

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
                f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "secret_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL, revoked TEXT, doc TEXT NOT NULL)",
                f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_active_name ON {t} (name) WHERE revoked IS NULL",
            ], "preparing the API token table")
        except BaseException:
            self.close()
            raise

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._pg else statement

    def _read(self, what: str, statement: str, params: Any = ()) -> list[Any]:
        return self._db.read(what, self._sql(statement), params)

    def add(self, token: Token, secret_hash: str) -> None:
        with self._db.write(f"cannot store the API token {token.name!r}") as conn:
            if conn.execute(self._sql(f"SELECT 1 FROM {self._table} WHERE name = ? AND revoked IS NULL"),
                            (token.name,)).fetchall():
                raise taken(token.name)
            conn.execute(self._sql(f"INSERT INTO {self._table} (id, name, secret_hash, created, revoked, doc) "
                                   "VALUES (?, ?, ?, ?, NULL, ?)"),
                         (token.id, token.name, secret_hash, token.created.isoformat(),
                          _encoder.encode(token).decode()))

    def get(self, token_id: str) -> Token:
        rows = self._read("cannot read the API token", f"SELECT doc FROM {self._table} WHERE id = ?", (token_id,))
        if not rows:
            raise missing(token_id)
        return _decoder.decode(rows[0][0])

    def find(self, secret: str) -> Token | None:
        digest = hash_secret(secret)
        rows = self._read("cannot look the API token up",
                          f"SELECT secret_hash, doc FROM {self._table} WHERE secret_hash = ?", (digest,))
        for stored, doc in rows:
            if hmac.compare_digest(str(stored), digest):
                return _decoder.decode(doc)
        return None

    def list(self) -> builtins.list[Token]:
        rows = self._read("cannot list the API tokens", f"SELECT doc FROM {self._table} ORDER BY created, id")
        return [_decoder.decode(r[0]) for r in rows]

    def _replace(self, token_id: str, what: str, change: dict[str, Any]) -> Token:
        with self._db.write(what) as conn:
            rows = conn.execute(self._sql(f"SELECT doc FROM {self._table} WHERE id = ?"), (token_id,)).fetchall()
            if not rows:
                raise missing(token_id)
            token = _decoder.decode(rows[0][0])
            if "revoked" in change and token.revoked is not None:
                return token
            token = msgspec.structs.replace(token, **change)
            conn.execute(self._sql(f"UPDATE {self._table} SET revoked = ?, doc = ? WHERE id = ?"),
                         (None if token.revoked is None else token.revoked.isoformat(),
                          _encoder.encode(token).decode(), token_id))
            return token

    def revoke(self, token_id: str, *, at: datetime) -> Token:
        return self._replace(token_id, f"cannot revoke the API token {token_id!r}", {"revoked": at})

    def touch(self, token_id: str, *, at: datetime) -> None:
        try:
            self._replace(token_id, "cannot record the API token's use", {"last_used": at})
        except NotFound:
            return

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


__all__ = ["MemoryTokens", "SqlTokens", "TokenStore"]
