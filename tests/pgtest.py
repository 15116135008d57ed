"""PostgreSQL for tests: the server at ``TVILLING_TEST_PG``, a fresh schema per test.

Without a server the tests that need it are skipped with a clear message, except when
``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

PG_DSN = os.environ.get("TVILLING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


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


def fresh_schema() -> Iterator[str]:
    """A fresh, empty schema name (use as a context manager); dropped (CASCADE) afterwards."""
    require_postgres()
    name = f"t_{uuid.uuid4().hex}"
    yield name
    drop_schema(name)


def drop_schema(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
