"""The PostgreSQL database every server-mode store shares: the pool, transactions, schema, errors.

Everything lives in one PostgreSQL schema (``search_path`` is set on each connection), so
several independent platforms can share a database. Pooled connections run in autocommit;
:meth:`PostgresDatabase.write` opens a transaction. A write opened while the same thread is
already inside one joins it as a savepoint, so several stores' writes commit together, and
reads of that thread inside it see its uncommitted rows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from tvilling.core.errors import Conflict, Invalid, TvillingError, Unavailable

CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10.0


def describe(dsn: str) -> str:
    """The server a DSN names, without its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


@contextmanager
def translated(what: str, where: str) -> Iterator[None]:
    """Turn psycopg errors into Tvilling errors at the adapter boundary."""
    try:
        yield
    except TvillingError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"{what}: {exc.diag.message_primary or exc}", rule="unique") from exc
    except psycopg.errors.IntegrityError as exc:
        raise Conflict(f"{what}: {exc.diag.message_primary or exc}", rule="integrity") from exc
    except psycopg.DataError as exc:
        raise Invalid(f"{what}: PostgreSQL cannot store this value: {exc}", rule="storable") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"{what}: PostgreSQL at {where} is not reachable or failed: {exc}", server=where) from exc
    except psycopg.InterfaceError as exc:
        raise Unavailable(f"{what}: the PostgreSQL store is not usable: {exc}", server=where) from exc


def check_schema_name(schema: str) -> None:
    """``Invalid`` unless ``schema`` can name a PostgreSQL schema."""
    if not schema or len(schema.encode()) > 63 or "\x00" in schema:
        raise Invalid("a PostgreSQL schema name has 1 to 63 bytes", field="schema", rule="identifier")


class PostgresDatabase:
    """A pool of connections to one schema of one PostgreSQL database."""

    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, dsn: str, schema: str = "tvilling", *, max_size: int = 10) -> None:
        check_schema_name(schema)
        self.dsn = dsn
        self.schema = schema
        self.where = describe(dsn)
        self.ident = sql.Identifier(schema)
        self._local = threading.local()
        # One direct connection first: an unreachable server fails here at once, with its reason,
        # instead of after the pool's retries.
        with translated("opening the store", self.where):
            psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S).close()
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "tvilling", "autocommit": True},
            configure=self._configure,
            name=f"tvilling-{schema}",
        )
        try:
            self.pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        except PoolTimeout as exc:
            self.pool.close(timeout=0)
            raise Unavailable(
                f"cannot connect to PostgreSQL at {self.where} within {POOL_TIMEOUT_S:g} s; "
                "is the server running and the DSN right?",
                server=self.where,
            ) from exc
        try:
            with self.write("creating the schema") as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key("ddl"),))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self.ident))
        except BaseException:
            self.pool.close(timeout=0)
            raise

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(self.ident))
        conn.execute("SET TIME ZONE 'UTC'")

    def lock_key(self, name: str) -> int:
        """The advisory-lock key of ``name`` in this schema (stable across processes)."""
        digest = hashlib.blake2b(f"{self.schema}.{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def table(self, name: str) -> sql.Composed:
        """``schema.name``, quoted."""
        return sql.SQL("{}.{}").format(self.ident, sql.Identifier(name))

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside a write of this database."""
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def connection(self, what: str) -> Iterator[psycopg.Connection]:
        """A connection for reads: this thread's open transaction, else a pooled one (autocommit)."""
        current: psycopg.Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            with translated(what, self.where):
                yield current
            return
        with translated(what, self.where), self._pooled(what) as conn:
            yield conn

    @contextmanager
    def _pooled(self, what: str) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection(timeout=POOL_TIMEOUT_S) as conn:
                yield conn
        except PoolTimeout as exc:
            raise Unavailable(
                f"{what}: no PostgreSQL connection to {self.where} within {POOL_TIMEOUT_S:g} s",
                server=self.where,
            ) from exc

    def read(self, what: str, statement: Any, params: Any = ()) -> list[Any]:
        """All rows of one read statement."""
        with self.connection(what) as conn:
            return conn.execute(statement, params).fetchall()

    @contextmanager
    def write(self, what: str = "writing") -> Iterator[psycopg.Connection]:
        """One transaction: committed on exit, rolled back on error; a savepoint inside another one."""
        current: psycopg.Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            with translated(what, self.where), current.transaction():
                yield current
            return
        with translated(what, self.where), self._pooled(what) as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield conn
            finally:
                self._local.conn = None

    def ensure(self, statements: Sequence[Any], what: str = "preparing the tables") -> None:
        """Run idempotent schema statements (``CREATE … IF NOT EXISTS``) in one transaction, under a lock."""
        with self.write(what) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key("ddl"),))
            for statement in statements:
                conn.execute(statement)

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()


def postgres_database(target: PostgresDatabase | str, schema: str) -> tuple[PostgresDatabase, bool]:
    """The database a store was given, and whether the store owns it (opened it from a DSN)."""
    if isinstance(target, PostgresDatabase):
        return target, False
    return PostgresDatabase(target, schema), True
