"""Saved consumer positions in the backend's database: a ``stream_cursors`` table, one row per consumer.

The SQL adapters of :class:`~tvilling.streams.offsets.CursorStore` (the in-memory one lives
beside the port, in :mod:`tvilling.streams.offsets`). Built on the backend's shared database,
a save is one write of that database: inside :meth:`~tvilling.backend.Backend.transaction` it
commits (or is undone) together with whatever else the consumer wrote there.

>>> import tempfile, pathlib
>>> cursors = SqliteCursors(pathlib.Path(tempfile.mkdtemp()) / "t.db")
>>> cursors.set_cursor("reconciler", 42)
>>> cursors.cursor("reconciler"), cursors.cursor("never-saved")
(42, 0)
>>> cursors.close()
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.streams.offsets import check_name, check_position

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE = "stream_cursors"
_UPSERT = ("INSERT INTO {} (name, position) VALUES ({p}, {p})"
           " ON CONFLICT (name) DO UPDATE SET position = excluded.position")


class SqliteCursors:
    """Positions in the ``stream_cursors`` table of a SQLite database: the embedded ``tvilling.db``, or a file."""

    def __init__(self, target: SqliteDatabase | str | os.PathLike[str]) -> None:
        self._db, self._owns = sqlite_database(target)
        try:
            self._db.ensure([f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"],
                            "preparing the stream cursor table")
        except BaseException:
            self.close()
            raise
        self._upsert = _UPSERT.format(TABLE, p="?")

    def cursor(self, name: str) -> int:
        """The position saved under ``name`` (0 when never saved)."""
        rows = self._db.read(f"cannot read the stream cursor {check_name(name)!r}",
                             f"SELECT position FROM {TABLE} WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, name: str, position: int) -> None:
        """Save ``position`` under ``name``; inside a backend transaction, with it."""
        args = (check_name(name), check_position(position))
        with self._db.write(f"cannot save the stream cursor {name!r}") as conn:
            conn.execute(self._upsert, args)

    def close(self) -> None:
        """Close the database if this store opened it (a shared one is the backend's to close)."""
        if self._owns:
            self._db.close()


class PostgresCursors:
    """Positions in ``<schema>.stream_cursors`` of PostgreSQL (the backend's pool, or one of its own)."""

    def __init__(self, target: PostgresDatabase | str, *, schema: str = "tvilling") -> None:
        from psycopg import sql

        from tvilling.backend.postgres import postgres_database

        self._db, self._owns = postgres_database(target, schema)
        table = self._db.table(TABLE)
        try:
            self._db.ensure([sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL)")
                             .format(table)], "preparing the stream cursor table")
        except BaseException:
            self.close()
            raise
        self._select = sql.SQL("SELECT position FROM {} WHERE name = %s").format(table)
        self._upsert = sql.SQL(_UPSERT.format("{}", p="%s")).format(table)

    def cursor(self, name: str) -> int:
        """The position saved under ``name`` (0 when never saved)."""
        rows = self._db.read(f"cannot read the stream cursor {check_name(name)!r}", self._select, (name,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, name: str, position: int) -> None:
        """Save ``position`` under ``name``; inside a backend transaction, with it."""
        args = (check_name(name), check_position(position))
        with self._db.write(f"cannot save the stream cursor {name!r}") as conn:
            conn.execute(self._upsert, args)

    def close(self) -> None:
        """Close the pool if this store opened it (a shared one is the backend's to close)."""
        if self._owns:
            self._db.close()
