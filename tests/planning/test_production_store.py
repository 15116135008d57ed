"""One contract for every production store: memory, SQLite (the embedded ``tvilling.db``) and PostgreSQL.

Orders stored and read back unchanged, duplicate ids refused, updates compare-and-set on the version, lists
by line and state with pages; plans stored unchanged, the newest one of a line in force, a plan stored only
over the plan it replaced; everything still there after a reopen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.backend.production import MemoryProduction, ProductionStore, SqlProduction
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.planning.production import PlannedOperation, ProductionPlan, current_plan
from tvilling.planning.production_orders import ProductionOrder, cancel, parse_order

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ProductionStore]]:
    """Opens (again) the same store; every store opened is closed, a PostgreSQL schema dropped, afterwards."""
    opened: list[ProductionStore] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    memory = MemoryProduction()

    def open_store() -> ProductionStore:
        store: ProductionStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqlProduction(tmp_path / "data" / "tvilling.db")
        else:
            store = SqlProduction(PG_DSN, schema=schema)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
    if schemas is not None:
        next(schemas, None)


@pytest.fixture
def store(opener: Callable[[], ProductionStore]) -> ProductionStore:
    return opener()


def make_order(oid: str, line: str = "line-1") -> ProductionOrder:
    return parse_order({"id": oid, "line": line, "product": "shaft", "quantity": 40, "priority": 3,
                        "routing": [["m1", "m2"], []], "due": "2026-03-02T12:00:00Z"}, now=T0, by="alice")


def make_plan(pid: str, line: str = "line-1", previous: str | None = None) -> ProductionPlan:
    op = PlannedOperation("o1", 0, "m1", T0, T0 + timedelta(minutes=20), 40, 1500.0)
    down = {"machine": "m2", "start": T0, "end": T0 + timedelta(hours=1), "reason": "maintenance", "work_order": "w1"}
    return ProductionPlan(pid, T0, line, (op,), (down,), {"makespan_h": 1 / 3, "lost_production": 0.0},
                          previous=previous, reason="initial" if previous is None else "breakdown")


def test_orders_round_trip_and_ids_are_unique(store: ProductionStore) -> None:
    o = make_order("o1")
    store.add_order(o)
    assert store.get_order("o1") == o
    with pytest.raises(Conflict):
        store.add_order(make_order("o1"))
    with pytest.raises(NotFound) as err:
        store.get_order("nope")
    assert "nope" in err.value.message


def test_order_updates_compare_and_set(store: ProductionStore) -> None:
    o = make_order("o1")
    store.add_order(o)
    done = cancel(o, now=T0)
    store.update_order(done, expected_version=1)
    assert store.get_order("o1").state == "cancelled" and store.get_order("o1").version == 2
    with pytest.raises(PreconditionFailed):
        store.update_order(msgspec.structs.replace(done, version=3), expected_version=1)
    with pytest.raises(NotFound):
        store.update_order(make_order("ghost"), expected_version=1)


def test_orders_list_by_line_state_and_pages(store: ProductionStore) -> None:
    for i in range(5):
        store.add_order(make_order(f"o{i}", line="line-1" if i % 2 == 0 else "line-2"))
    store.update_order(cancel(store.get_order("o2"), now=T0), expected_version=1)
    assert [o.id for o in store.list_orders()] == ["o0", "o1", "o2", "o3", "o4"]
    assert [o.id for o in store.list_orders(line="line-1")] == ["o0", "o2", "o4"]
    assert [o.id for o in store.list_orders(line="line-1", state="open")] == ["o0", "o4"]
    assert [o.id for o in store.list_orders(limit=2, after="o1")] == ["o2", "o3"]
    with pytest.raises(Invalid):
        store.list_orders(after="nope")
    with pytest.raises(Invalid):
        store.list_orders(state="paused")
    with pytest.raises(Invalid):
        store.list_orders(limit=0)


def test_the_newest_plan_of_a_line_is_in_force(store: ProductionStore) -> None:
    assert store.current("line-1") is None
    p1 = make_plan("p1")
    store.save_plan(p1, expected_current=None)
    assert store.current("line-1") == p1 and store.get_plan("p1") == p1
    p2 = make_plan("p2", previous="p1")
    store.save_plan(p2, expected_current="p1")
    store.save_plan(make_plan("q1", line="line-2"), expected_current=None)
    assert store.current("line-1") == p2 and current_plan(store, "line-1") == p2
    assert [p.id for p in store.plans("line-1")] == ["p2", "p1"]
    with pytest.raises(NotFound):
        store.get_plan("p9")


def test_a_plan_is_stored_only_over_the_plan_it_replaced(store: ProductionStore) -> None:
    store.save_plan(make_plan("p1"), expected_current=None)
    store.save_plan(make_plan("p2", previous="p1"), expected_current="p1")
    with pytest.raises(Conflict) as err:
        store.save_plan(make_plan("p3", previous="p1"), expected_current="p1")  # another planner was first
    assert err.value.fields == {"line": "line-1", "expected": "p1", "current": "p2", "rule": "stale_plan"}
    with pytest.raises(Conflict):
        store.save_plan(make_plan("p3"), expected_current=None)
    with pytest.raises(Conflict):
        store.save_plan(make_plan("p1", previous="p2"), expected_current="p2")  # an id is used once
    assert store.current("line-1") is not None and store.current("line-1").id == "p2"  # type: ignore[union-attr]


def test_everything_is_there_after_a_reopen(opener: Callable[[], ProductionStore]) -> None:
    first = opener()
    first.add_order(make_order("o1"))
    first.save_plan(make_plan("p1"), expected_current=None)
    again = opener()
    assert again.get_order("o1") == make_order("o1")
    assert again.current("line-1") == make_plan("p1")


def test_the_backend_keeps_them_in_the_one_sqlite_file(tmp_path: Path) -> None:
    backend = open_backend(tmp_path / "data")
    try:
        backend.production.add_order(make_order("o1"))
        backend.production.save_plan(make_plan("p1"), expected_current=None)
        assert current_plan(backend, "line-1") == make_plan("p1")
    finally:
        backend.close()
    with sqlite3.connect(tmp_path / "data" / "tvilling.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"production_orders", "production_plans"} <= tables


@pytest.mark.postgres
def test_the_backend_on_postgresql() -> None:
    for schema in fresh_schema():
        backend = open_backend(PG_DSN, schema=schema)
        try:
            backend.production.save_plan(make_plan("p1"), expected_current=None)
            assert current_plan(backend, "line-1") == make_plan("p1")
        finally:
            backend.close()
