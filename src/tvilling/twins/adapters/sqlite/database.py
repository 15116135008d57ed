"""The twin tables in SQLite: their versioned migrations, and the JSON functions their queries use.

Connections, transactions and error translation are :mod:`tvilling.backend.sqlite`'s.
"""

from __future__ import annotations

from tvilling.backend.sqlite import SqliteDatabase, translated
from tvilling.core.errors import Unavailable
from tvilling.twins.adapters.sqlite.dialect import tv_get, tv_json_eq

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteDatabase", "prepare", "translated"]

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


def prepare(db: SqliteDatabase) -> None:
    """Register the query functions and create or migrate the model and twin tables."""
    db.add_function("tv_get", 2, tv_get)
    db.add_function("tv_json_eq", 2, tv_json_eq)
    with db.write(f"opening {db.path}") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise Unavailable(
                f"{db.path} has schema version {current}; this Tvilling knows up to {SCHEMA_VERSION}",
                rule="schema_version",
            )
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    db.schema_changed()
