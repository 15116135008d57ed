"""The twin tables in PostgreSQL: their versioned migrations, run on the shared database.

The pool, transactions and error translation are :mod:`tvilling.backend.postgres`'s.
"""

from __future__ import annotations

from tvilling.backend.postgres import PostgresDatabase, describe, translated
from tvilling.core.errors import Unavailable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresDatabase", "describe", "prepare", "translated"]

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


def prepare(db: PostgresDatabase) -> None:
    """Create or migrate the model and twin tables in the database's schema."""
    with db.write("preparing the schema") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (db.lock_key("events"),))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > SCHEMA_VERSION:
            raise Unavailable(
                f"schema {db.schema!r} has version {current}; this Tvilling knows up to {SCHEMA_VERSION}",
                rule="schema_version",
            )
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)  # our own literal SQL
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
