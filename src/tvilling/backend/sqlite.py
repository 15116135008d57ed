"""The SQLite database every embedded store shares: connections, transactions, schema, errors.

One connection per thread (reads run in parallel under WAL); writes are serialised by a
lock in this process and by ``BEGIN IMMEDIATE`` across processes. WAL with
``synchronous=FULL``: a commit that returned survives a crash of the process or the machine.

A write opened while the same thread is already inside one joins it as a savepoint, so
several stores' writes commit together in one transaction:

>>> import tempfile, pathlib
>>> db = SqliteDatabase(pathlib.Path(tempfile.mkdtemp()) / "t.db")
>>> db.ensure(["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])
>>> with db.write("outer") as conn:
...     _ = conn.execute("INSERT INTO t VALUES (1)")
...     with db.write("inner") as inner:
...         _ = inner.execute("INSERT INTO t VALUES (2)")
>>> db.read("counting", "SELECT count(*) FROM t")[0][0]
2
>>> db.close()
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tvilling.core.errors import Conflict, Invalid, TvillingError, Unavailable

BUSY_TIMEOUT_S = 10.0


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


class SqliteDatabase:
    """One SQLite file, shared by every store that keeps its tables in it."""

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create the directory of {self.path}: {exc}", path=str(self.path)) from exc
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._registry = threading.Lock()
        self._functions: list[tuple[str, int, Callable[..., Any]]] = []
        self.write_lock = threading.Lock()
        self._closed = False
        # Bumped by every schema change: another thread's connection then reloads its schema before its
        # next statement (SQLite prepares an upsert against the schema it has, and a stale one lacks the
        # index the upsert names).
        self._generation = 0
        with translated(f"opening {self.path}"):
            self.connection()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._registry:
            if self._closed:
                raise Unavailable(f"the SQLite store {self.path} is closed")
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self._all.append(conn)
            functions = list(self._functions)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA cache_size=-32768")
        conn.execute("PRAGMA temp_store=MEMORY")
        for name, n, fn in functions:
            conn.create_function(name, n, fn, deterministic=True)
        self._local.conn = conn
        self._local.generation = self._generation
        return conn

    def _current(self) -> sqlite3.Connection:
        """This thread's connection, its schema reloaded if another connection changed the schema since."""
        conn = self.connection()
        if self._local.generation != self._generation:
            self._local.generation = self._generation
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # runs the schema-cookie check
        return conn

    def schema_changed(self) -> None:
        """Tell the other threads' connections that the schema changed (after a ``CREATE`` or ``ALTER``)."""
        self._generation += 1
        self._local.generation = self._generation

    def add_function(self, name: str, n_args: int, fn: Callable[..., Any]) -> None:
        """Register a deterministic SQL function on every connection, present and future."""
        with self._registry:
            if any(f[0] == name for f in self._functions):
                return
            self._functions.append((name, n_args, fn))
            conns = list(self._all)
        for conn in conns:
            conn.create_function(name, n_args, fn, deterministic=True)

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside a write of this database."""
        return getattr(self._local, "depth", 0) > 0

    def read(self, what: str, statement: str, params: Any = ()) -> list[Any]:
        """All rows of one read statement, run on this thread's connection."""
        with translated(what):
            return self._current().execute(statement, params).fetchall()

    rows = read  # the name the twin stores use

    @contextmanager
    def write(self, what: str = "writing") -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and synced) on exit, rolled back on error.

        Inside another write of the same thread it is a savepoint of that transaction:
        undone on error, committed only with the outer one.
        """
        depth = getattr(self._local, "depth", 0)
        if depth:
            conn = self.connection()
            name = f"tv_{depth}"
            conn.execute(f"SAVEPOINT {name}")
            self._local.depth = depth + 1
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            finally:
                self._local.depth = depth
            conn.execute(f"RELEASE {name}")
            return
        with self.write_lock, translated(what):
            conn = self._current()
            conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.depth = 0
            conn.execute("COMMIT")

    def ensure(self, statements: Sequence[str], what: str = "preparing the tables") -> None:
        """Run idempotent schema statements (``CREATE … IF NOT EXISTS``) in one transaction."""
        with self.write(what) as conn:
            for statement in statements:
                conn.execute(statement)
        self.schema_changed()

    def add_columns(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        """Add the columns a table made by an earlier release lacks."""
        with self.write(f"upgrading the table {table}") as conn:
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        self.schema_changed()

    def close(self) -> None:
        """Close every connection; the database cannot be used afterwards."""
        with self._registry:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def sqlite_database(target: SqliteDatabase | str | os.PathLike[str]) -> tuple[SqliteDatabase, bool]:
    """The database a store was given, and whether the store owns it (opened it from a path)."""
    if isinstance(target, SqliteDatabase):
        return target, False
    return SqliteDatabase(target), True
