"""Store fixtures: the same (model store, twin store) pair from every adapter.

PostgreSQL tests use the server at ``TVILLING_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a fresh schema dropped afterwards.
Without a server they are skipped, except when ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.twins.adapters.memory import MemoryModelStore, MemoryTwinStore
from tvilling.twins.adapters.postgres import open_postgres
from tvilling.twins.adapters.sqlite import open_sqlite

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema name; the schema is dropped (CASCADE) afterwards."""
    yield from fresh_schema()


def open_adapter(kind: str, tmp_path, request) -> tuple:
    if kind == "memory":
        return MemoryModelStore(), MemoryTwinStore()
    if kind == "sqlite":
        return open_sqlite(tmp_path / "data" / "tvilling.db")
    schema = request.getfixturevalue("pg_schema")
    return open_postgres(PG_DSN, schema=schema)


@pytest.fixture(params=ADAPTERS)
def stores(request, tmp_path) -> Iterator[tuple]:
    """``(model_store, twin_store)`` of one adapter, empty."""
    models, twins = open_adapter(request.param, tmp_path, request)
    yield models, twins
    twins.close()
