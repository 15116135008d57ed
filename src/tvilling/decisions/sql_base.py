"""What the decision stores (commands, alarms) share: one serialised connection, writes in a
transaction, reads and writes that name what failed.

* SQLite: its own file in the data dir, WAL and ``synchronous=FULL``; writes take ``BEGIN IMMEDIATE``.
* PostgreSQL: the platform's schema; every write takes one transaction-scoped advisory lock (keyed
  by ``<schema>.<feed table>``), so change-feed positions are handed out and become visible in order:
  a reader that saw position N never later finds one below N (several API workers may share a database).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tvilling.core.errors import Unavailable


class SqliteBase:
    """``noun`` names what the store keeps, in errors ("commands", "alarms")."""

    noun = "records"
    passthrough: tuple[type[BaseException], ...] = ()  # sqlite errors a subclass turns into its own

    def __init__(self, path: str | Path, schema: Sequence[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            for statement in schema:
                self._conn.execute(statement)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the store of {self.noun} {str(path)!r}: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, self.passthrough):
                    raise Unavailable(f"cannot {action}: {exc}") from exc
                raise

    def _read(self, sql: str, args: Any = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot read {self.noun}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresBase:
    """Connects (autocommit; transactions explicit) and keys the advisory lock by ``feed`` in ``schema``."""

    noun = "records"

    def __init__(self, dsn: str, *, schema: str, feed: str) -> None:
        import psycopg
        from psycopg import sql

        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"PostgreSQL is not reachable for {self.noun}: {exc}") from exc
        self._lock = threading.Lock()
        digest = hashlib.blake2b(f"{schema}.{feed}".encode(), digest_size=8).digest()
        self._lock_key = int.from_bytes(digest, "big", signed=True)
        self._sql = sql
        self._ident = sql.Identifier(schema)

    def _table(self, name: str) -> Any:
        return self._sql.SQL("{}.{}").format(self._ident, self._sql.Identifier(name))

    @contextmanager
    def _write(self, action: str) -> Iterator[Any]:
        with self._lock:
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    yield cur
            except self._psycopg.OperationalError as exc:
                raise Unavailable(f"cannot {action}: {exc}") from exc

    def _read(self, query: Any, args: Any) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(query, args).fetchall()
            except self._psycopg.OperationalError as exc:
                raise Unavailable(f"cannot read {self.noun}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
