"""Backends of every kind for the backend tests; PostgreSQL ones in a fresh schema, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from backend_helpers import open_kind

from pgtest import fresh_schema
from tvilling.backend import Backend

KINDS = ["memory", "embedded", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture(params=KINDS)
def backend(request, tmp_path) -> Iterator[Backend]:
    b = open_kind(request.param, tmp_path, request)
    try:
        yield b
    finally:
        b.close()
