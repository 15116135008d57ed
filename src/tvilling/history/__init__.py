"""Telemetry history: raw points, 1-minute and 1-hour rollups, retention.

``open_history`` picks the adapter from a URL or path:

>>> h = open_history("memory")
>>> type(h).__name__
'MemoryHistoryStore'
>>> h.close()
"""

from __future__ import annotations

from pathlib import Path

from tvilling.core.readings import Readings
from tvilling.history.ports import DAY_US, HOUR_US, MINUTE_US, Bucket, HistoryStore, Point, RetentionRule

__all__ = ["DAY_US", "HOUR_US", "MINUTE_US", "Bucket", "HistoryStore", "Point", "Readings", "RetentionRule",
           "open_history"]


def open_history(url_or_path: str | Path, *, schema: str = "tvilling_history") -> HistoryStore:
    """``"memory"`` → in memory; ``postgresql://…`` → PostgreSQL (tables in ``schema``); anything else is the
    path of a DuckDB file (a directory gets ``history.duckdb`` inside it)."""
    target = str(url_or_path)
    if target == "memory":
        from tvilling.history.memory import MemoryHistoryStore

        return MemoryHistoryStore()
    if target.startswith(("postgresql://", "postgres://")):
        from tvilling.history.postgres import PostgresHistoryStore

        return PostgresHistoryStore(target, schema=schema)
    path = Path(target)
    if path.is_dir():
        path = path / "history.duckdb"
    from tvilling.history.duckdb_store import DuckDBHistoryStore

    return DuckDBHistoryStore(path)
