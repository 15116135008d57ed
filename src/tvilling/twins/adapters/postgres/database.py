"""The PostgreSQL database behind both stores: the pool, the schema and its migrations, errors.

Everything lives in one PostgreSQL schema (``search_path`` is set on each connection),
so several independent stores can share a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from tvilling.core.errors import Conflict, Invalid, TvillingError, Unavailable

CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10.0

# Each entry migrates the schema from the version before it; never edit a released entry.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE models (
                id text COLLATE "C" PRIMARY KEY,
                document json NOT NULL,
                uploaded timestamptz NOT NULL,
                decommissioned boolean NOT NULL DEFAULT false)""",
            """CREATE TABLE events (
                position bigint PRIMARY KEY,
                twin_id text COLLATE "C" NOT NULL,
                revision bigint NOT NULL,
                time timestamptz NOT NULL,
                actor text NOT NULL,
                type text NOT NULL,
                payload json NOT NULL,
                UNIQUE (twin_id, revision))""",
            """CREATE TABLE twins (
                id text COLLATE "C" PRIMARY KEY,
                model text COLLATE "C" NOT NULL,
                revision bigint NOT NULL,
                doc json NOT NULL,
                props jsonb NOT NULL)""",
            "CREATE INDEX twins_model_id ON twins (model, id)",
            """CREATE TABLE relationships (
                source text COLLATE "C" NOT NULL,
                rel_id text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                target text COLLATE "C" NOT NULL,
                properties json NOT NULL,
                PRIMARY KEY (source, rel_id))""",
            "CREATE INDEX relationships_target_name ON relationships (target, name)",
            "CREATE INDEX relationships_source_name ON relationships (source, name)",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def describe(dsn: str) -> str:
    """The server a DSN names, without its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


class Database:
    def __init__(self, dsn: str, schema: str, *, max_size: int = 10) -> None:
        if not schema or len(schema.encode()) > 63 or "\x00" in schema:
            raise Invalid("a PostgreSQL schema name has 1 to 63 bytes", field="schema", rule="identifier")
        self.schema = schema
        self.where = describe(dsn)
        # One advisory lock per store orders commits (and so feed positions) and migrations.
        self.lock_key = int.from_bytes(hashlib.sha256(f"tvilling:{schema}".encode()).digest()[:8], "big", signed=True)
        self._schema_sql = sql.Identifier(schema)
        # One direct connection first: an unreachable server fails here at once, with its reason,
        # instead of after the pool's retries.
        with translated("opening the store", self.where):
            psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S).close()
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "tvilling"},
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
            self._migrate()
        except BaseException:
            self.pool.close(timeout=0)
            raise

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(self._schema_sql))
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()

    @contextmanager
    def connection(self, what: str) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction: committed on exit, rolled back on error."""
        with translated(what, self.where):
            try:
                with self.pool.connection(timeout=POOL_TIMEOUT_S) as conn:
                    yield conn
            except PoolTimeout as exc:
                raise Unavailable(
                    f"{what}: no PostgreSQL connection to {self.where} within {POOL_TIMEOUT_S:g} s",
                    server=self.where,
                ) from exc

    def _migrate(self) -> None:
        with self.connection("preparing the schema") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema_sql))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise Unavailable(
                    f"schema {self.schema!r} has version {current}; this Tvilling knows up to {SCHEMA_VERSION}",
                    rule="schema_version",
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)  # our own literal SQL
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def close(self) -> None:
        self.pool.close()


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
