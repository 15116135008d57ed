"""The embedded store: models, twins, events and relationships in one SQLite file.

>>> import tempfile, pathlib
>>> models, twins = open_sqlite(pathlib.Path(tempfile.mkdtemp()) / "data" / "tvilling.db")
>>> twins.count()
0
>>> twins.close()
"""

from __future__ import annotations

import os

from tvilling.twins.adapters.sqlite.database import SCHEMA_VERSION, SqliteDatabase, prepare
from tvilling.twins.adapters.sqlite.stores import SqliteModelStore, SqliteTwinStore

__all__ = ["SCHEMA_VERSION", "SqliteModelStore", "SqliteTwinStore", "open_sqlite", "prepare"]


def open_sqlite(path: str | os.PathLike[str]) -> tuple[SqliteModelStore, SqliteTwinStore]:
    """Open (creating or migrating) the database at ``path``; both stores share it.

    WAL mode with ``synchronous=FULL``: a commit that returned survives a crash of the
    process or of the machine. Safe to use from many threads. ``TwinStore.close()``
    closes the database.
    """
    db = SqliteDatabase(path)
    try:
        prepare(db)
    except BaseException:
        db.close()
        raise
    return SqliteModelStore(db), SqliteTwinStore(db, owns=True)
