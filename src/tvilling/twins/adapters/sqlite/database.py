"""The SQLite database behind both stores: connections, pragmas, schema migrations, errors.

One connection per thread (reads run in parallel under WAL); writes are serialised by a
lock in this process and by ``BEGIN IMMEDIATE`` across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tvilling.core.errors import Conflict, Invalid, TvillingError, Unavailable
from tvilling.twins.adapters.sqlite.dialect import tv_get, tv_json_eq

BUSY_TIMEOUT_S = 10.0

# Each entry migrates the schema from the version before it; never edit a released entry.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE models (
                id TEXT PRIMARY KEY,
                document TEXT NOT NULL,
                uploaded TEXT NOT NULL,
                decommissioned INTEGER NOT NULL DEFAULT 0)""",
            """CREATE TABLE events (
                position INTEGER PRIMARY KEY,
                twin_id TEXT NOT NULL,
                revision INTEGER NOT NULL,
                time TEXT NOT NULL,
                actor TEXT NOT NULL,
                type TEXT NOT NULL,
                payload TEXT NOT NULL,
                UNIQUE (twin_id, revision))""",
            """CREATE TABLE twins (
                id TEXT PRIMARY KEY,
                model TEXT NOT NULL,
                revision INTEGER NOT NULL,
                doc TEXT NOT NULL)""",
            "CREATE INDEX twins_model_id ON twins (model, id)",
            """CREATE TABLE relationships (
                source TEXT NOT NULL,
                rel_id TEXT NOT NULL,
                name TEXT NOT NULL,
                target TEXT NOT NULL,
                properties TEXT NOT NULL,
                PRIMARY KEY (source, rel_id)) WITHOUT ROWID""",
            "CREATE INDEX relationships_target_name ON relationships (target, name)",
            "CREATE INDEX relationships_source_name ON relationships (source, name)",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn sqlite3 errors into Tvilling errors at the adapter boundary."""
    try:
        yield
    except TvillingError:
        raise
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"{what}: {exc}", rule="unique") from exc
    except sqlite3.OperationalError as exc:
        raise Unavailable(f"{what}: the SQLite database is not usable right now: {exc}") from exc
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            raise Unavailable(f"{what}: the store is closed") from exc
        raise
    except (sqlite3.DataError, OverflowError) as exc:
        raise Invalid(f"{what}: {exc}", rule="storable") from exc
    except sqlite3.DatabaseError as exc:
        raise Unavailable(f"{what}: the SQLite database failed: {exc}") from exc


class Database:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._registry = threading.Lock()
        self.write_lock = threading.Lock()
        self._closed = False
        with translated(f"opening {self.path}"):
            self._migrate(self.connection())

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._registry:
            if self._closed:
                raise Unavailable("the SQLite store is closed")
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self._all.append(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA cache_size=-32768")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.create_function("tv_get", 2, tv_get, deterministic=True)
        conn.create_function("tv_json_eq", 2, tv_json_eq, deterministic=True)
        self._local.conn = conn
        return conn

    def rows(self, what: str, statement: str, params: Any = ()) -> list[Any]:
        """All rows of one read statement, run on this thread's connection."""
        with translated(what):
            return self.connection().execute(statement, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and synced) on exit, rolled back on error."""
        with self.write_lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self.write():
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise Unavailable(
                    f"{self.path} has schema version {current}; this Tvilling knows up to {SCHEMA_VERSION}",
                    rule="schema_version",
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def close(self) -> None:
        with self._registry:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
