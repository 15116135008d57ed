"""The scenario records the API keeps, in each backend kind: saved, replaced, listed newest first, their
changes fed in order, and still there when the backend is opened again (a restart)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.core.errors import Invalid


@pytest.fixture(params=["memory", "embedded", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url_and_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "memory":
        yield "memory", "tvilling"
    elif request.param == "embedded":
        yield str(tmp_path / "data"), "tvilling"
    else:
        yield from ((PG_DSN, schema) for schema in fresh_schema())


def test_records_and_their_changes_are_kept(url_and_schema: tuple[str, str]) -> None:
    url, schema = url_and_schema
    backend = open_backend(url, schema=schema)
    store = backend.scenarios
    store.save({"id": "old", "twin": "m1", "status": "done", "progress": 1.0, "created": "2026-01-01T00:00:00Z"})
    store.save({"id": "new", "twin": "m2", "status": "running", "progress": 0.0, "created": "2026-01-02T00:00:00Z"})
    store.save({"id": "new", "twin": "m2", "status": "done", "progress": 1.0, "created": "2026-01-02T00:00:00Z",
                "kpis": {"keep": {"production": 12.5}}})
    assert [r["id"] for r in store.newest()] == ["new", "old"]
    assert store.get("new")["kpis"] == {"keep": {"production": 12.5}} and store.get("nope") is None
    changes = store.changes(0, 10)
    assert [item for _, item in changes] == [
        {"id": "old", "status": "done", "progress": 1.0}, {"id": "new", "status": "running", "progress": 0.0},
        {"id": "new", "status": "done", "progress": 1.0}]
    positions = [p for p, _ in changes]
    assert positions == sorted(positions) and store.changes(positions[1], 10) == changes[2:]
    with pytest.raises(Invalid, match="needs a non-empty string id"):
        store.save({"status": "done", "created": "x"})
    backend.close()
    if url != "memory":
        again = open_backend(url, schema=schema)
        try:
            assert again.scenarios.get("new")["status"] == "done"
            assert [r["id"] for r in again.scenarios.newest(limit=1)] == ["new"]
        finally:
            again.close()
