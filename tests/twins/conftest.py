"""Store fixtures: the same (model store, twin store) pair from every adapter.

PostgreSQL tests use the server at ``TVILLING_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a fresh schema dropped afterwards.
Without a server they are skipped, except when ``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tvilling.twins.adapters.memory import MemoryModelStore, MemoryTwinStore
from tvilling.twins.adapters.postgres import open_postgres
from tvilling.twins.adapters.sqlite import open_sqlite

PG_DSN = os.environ.get("TVILLING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@functools.cache
def _pg_problem() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} is not reachable ({exc}); set TVILLING_TEST_PG"
    return None


def require_postgres() -> None:
    problem = _pg_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema name; the schema is dropped (CASCADE) afterwards."""
    require_postgres()
    name = f"t_{uuid.uuid4().hex}"
    yield name
    drop_schema(name)


def drop_schema(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


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
