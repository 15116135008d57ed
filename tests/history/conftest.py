"""History store fixtures: the same store from every adapter (memory, DuckDB, PostgreSQL).

PostgreSQL tests use the server at ``TVILLING_TEST_PG`` in a fresh schema dropped afterwards;
without a server they are skipped, except when ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.history import HistoryStore, open_history

ADAPTERS = ["memory", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture(params=ADAPTERS)
def opener(request, tmp_path) -> Iterator[Callable[[], HistoryStore]]:
    """Opens the adapter's store; a second call reopens the same storage (memory: a new, empty store)."""
    kind = request.param
    opened: list[HistoryStore] = []

    def open_() -> HistoryStore:
        if kind == "memory":
            store = open_history("memory")
        elif kind == "duckdb":
            store = open_history(tmp_path / "history.duckdb")
        else:
            store = open_history(PG_DSN, schema=request.getfixturevalue("pg_schema"))
        opened.append(store)
        return store

    open_.kind = kind  # type: ignore[attr-defined]
    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(opener) -> HistoryStore:
    return opener()
