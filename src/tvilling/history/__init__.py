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
    path of a DuckDB file (a directory gets ``history.duckdb`` inside it). The adapter is chosen by
    :mod:`tvilling.backend`, like every store's."""
    from tvilling.backend.stores import EMBEDDED, HISTORY_FILE, history_store, kind_of

    target = str(url_or_path)
    kind = kind_of(target)
    if kind == EMBEDDED and Path(target).is_dir():
        target = str(Path(target) / HISTORY_FILE)
    store: HistoryStore = history_store(kind, target, schema=schema)
    return store
