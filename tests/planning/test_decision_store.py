"""One contract for the decision store over every backend: memory, the embedded SQLite file and PostgreSQL.

A record is stored and read back unchanged, saved again in place (its status moves on), listed newest
first by asset and by status, refused without its required fields, and — where the store is on disk —
still there when the backend is opened again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.core.errors import Invalid
from tvilling.planning.decision_store import DecisionStore, decision_store

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], DecisionStore]]:
    """Opens the backend (again) and gives its decision store; closes every backend, drops the schema."""
    opened: list[Any] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    url = {"memory": "memory", "sqlite": str(tmp_path / "data")}.get(request.param, PG_DSN)
    memory = open_backend("memory") if request.param == "memory" else None

    def open_store() -> DecisionStore:
        backend = memory if memory is not None else open_backend(url, **({"schema": schema} if schema else {}))
        opened.append(backend)
        return decision_store(backend)

    open_store.kind = request.param  # type: ignore[attr-defined]
    yield open_store
    for backend in {id(b): b for b in opened}.values():
        backend.close()
    if schemas is not None:
        next(schemas, None)


def record(did: str, created: str, asset: str = "b1", status: str = "proposed", **more: Any) -> dict[str, Any]:
    return {"id": did, "created": created, "asset": asset, "status": status,
            "options": [{"name": "run to failure", "expected_cost": 22000.0}], **more}


def test_stored_read_back_and_saved_again_in_place(opener: Callable[[], DecisionStore]) -> None:
    store = opener()
    first = record("d1", "2026-03-02T08:00:00Z", chosen={"name": "replace", "why": "cheapest"})
    store.save(first)
    assert store.get("d1") == first
    store.save({**first, "status": "approved"})
    assert store.get("d1") == {**first, "status": "approved"}
    assert store.get("nope") is None
    assert [d["id"] for d in store.list()] == ["d1"]


def test_listed_newest_first_by_asset_and_status(opener: Callable[[], DecisionStore]) -> None:
    store = opener()
    for did, created, asset, status in [("d1", "2026-03-02T08:00:00Z", "b1", "done"),
                                        ("d2", "2026-03-02T09:00:00Z", "b2", "proposed"),
                                        ("d3", "2026-03-02T10:00:00Z", "b1", "proposed")]:
        store.save(record(did, created, asset, status))
    assert [d["id"] for d in store.list()] == ["d3", "d2", "d1"]
    assert [d["id"] for d in store.list(asset="b1")] == ["d3", "d1"]
    assert [d["id"] for d in store.list(status="proposed")] == ["d3", "d2"]
    assert [d["id"] for d in store.list(asset="b1", status="done")] == ["d1"]
    assert [d["id"] for d in store.list(limit=1)] == ["d3"]


@pytest.mark.parametrize("missing", ["id", "created", "asset", "status"])
def test_a_record_without_a_required_field_is_refused_naming_it(opener: Callable[[], DecisionStore],
                                                                 missing: str) -> None:
    store = opener()
    bad = record("d9", "2026-03-02T08:00:00Z")
    del bad[missing]
    with pytest.raises(Invalid) as err:
        store.save(bad)
    assert err.value.fields["field"] == missing
    assert store.list() == []


def test_a_record_that_is_not_json_is_refused_and_nothing_is_stored(opener: Callable[[], DecisionStore]) -> None:
    store = opener()
    with pytest.raises(ValueError):
        store.save(record("d8", "2026-03-02T08:00:00Z", cost=float("nan")))
    assert store.get("d8") is None


def test_still_there_after_the_backend_is_opened_again(opener: Callable[[], DecisionStore]) -> None:
    if opener.kind == "memory":  # type: ignore[attr-defined]
        pytest.skip("the memory backend lives as long as its process")
    opener().save(record("d1", "2026-03-02T08:00:00Z", status="approved"))
    assert opener().get("d1") == record("d1", "2026-03-02T08:00:00Z", status="approved")
