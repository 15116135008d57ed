"""The server store: models, twins, events and relationships in one PostgreSQL schema.

Snapshots and payloads are kept as ``json`` (the exact text written, so they read back
unchanged), and the queryable sections of each twin as ``jsonb``.
"""

from __future__ import annotations

from tvilling.twins.adapters.postgres.database import SCHEMA_VERSION, PostgresDatabase, prepare
from tvilling.twins.adapters.postgres.stores import PostgresModelStore, PostgresTwinStore

__all__ = ["SCHEMA_VERSION", "PostgresModelStore", "PostgresTwinStore", "open_postgres", "prepare"]


def open_postgres(
    dsn: str, *, schema: str = "tvilling", max_connections: int = 10
) -> tuple[PostgresModelStore, PostgresTwinStore]:
    """Connect a pool to ``dsn`` and create or migrate the tables in ``schema``.

    Raises ``Unavailable`` when the server cannot be reached. Both stores share the
    pool; ``TwinStore.close()`` closes it.
    """
    db = PostgresDatabase(dsn, schema, max_size=max_connections)
    try:
        prepare(db)
    except BaseException:
        db.close()
        raise
    return PostgresModelStore(db), PostgresTwinStore(db, owns=True)
