"""What the decision stores (commands, alarms) share over the backend's SQL databases.

* SQLite: tables in the embedded database file (``tvilling.db``), shared with the twin store;
  writes take the database's write transaction (``BEGIN IMMEDIATE``, or a savepoint inside one).
* PostgreSQL: the platform's schema; every write takes one transaction-scoped advisory lock (keyed
  by ``<schema>.<feed table>``), so change-feed positions are handed out and become visible in order:
  a reader that saw position N never later finds one below N (several API workers may share a database).

A store is given the shared database (what the backend does) or a path / DSN, in which case it
opens a database of its own and closes it with itself.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase


class SqliteBase:
    """``noun`` names what the store keeps, in errors ("commands", "alarms")."""

    noun = "records"

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str], schema: Sequence[str]) -> None:
        self._db, self._owns = sqlite_database(target)
        try:
            self._db.ensure(schema, f"preparing the tables of {self.noun}")
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._db.write(f"cannot {action}") as conn:
            yield conn

    def _read(self, statement: str, args: Any = ()) -> list[Any]:
        return self._db.read(f"cannot read {self.noun}", statement, args)

    def close(self) -> None:
        if self._owns:
            self._db.close()


class PostgresBase:
    """Keys the advisory lock by ``feed`` in the database's schema; tables are schema-qualified."""

    noun = "records"

    def __init__(self, target: PostgresDatabase | str, *, schema: str, feed: str) -> None:
        from psycopg import sql

        from tvilling.backend.postgres import postgres_database

        self._db, self._owns = postgres_database(target, schema)
        self._lock_key = self._db.lock_key(feed)
        self._sql = sql
        self._ident = self._db.ident

    def _table(self, name: str) -> Any:
        return self._db.table(name)

    def _ensure(self, statements: Sequence[Any]) -> None:
        try:
            self._db.ensure(statements, f"preparing the tables of {self.noun}")
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _write(self, action: str) -> Iterator[Any]:
        with self._db.write(f"cannot {action}") as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield cur

    def _read(self, query: Any, args: Any) -> list[Any]:
        return self._db.read(f"cannot read {self.noun}", query, args)

    def close(self) -> None:
        if self._owns:
            self._db.close()
