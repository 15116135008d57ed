"""The embedded store: models, twins, events and relationships in one SQLite file.

>>> import tempfile, pathlib
>>> models, twins = open_sqlite(pathlib.Path(tempfile.mkdtemp()) / "data" / "tvilling.db")
>>> twins.count()
0
>>> twins.close()
"""

from __future__ import annotations

import os

from tvilling.twins.adapters.sqlite.database import SCHEMA_VERSION, Database
from tvilling.twins.adapters.sqlite.stores import SqliteModelStore, SqliteTwinStore

__all__ = ["SCHEMA_VERSION", "SqliteModelStore", "SqliteTwinStore", "open_sqlite"]


def open_sqlite(path: str | os.PathLike[str]) -> tuple[SqliteModelStore, SqliteTwinStore]:
    """Open (creating or migrating) the database at ``path``; both stores share it.

    WAL mode with ``synchronous=FULL``: a commit that returned survives a crash of the
    process or of the machine. Safe to use from many threads. ``TwinStore.close()``
    closes the database.
    """
    db = Database(path)
    return SqliteModelStore(db), SqliteTwinStore(db)
