"""One contract for every work order store: memory, SQLite (the embedded ``tvilling.db``) and PostgreSQL.

Stored and read back unchanged, duplicate ids refused, updates compare-and-set on the version (of two
writers at the same version exactly one wins, also from two threads), queries by state, asset and
planned window with pages, the change feed in order, and everything still there after a reopen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.backend.workorders import MemoryWorkOrders, SqlWorkOrders, WorkOrderStore
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.planning.workorders import APPROVED, CANCELLED, PROPOSED, SCHEDULED, WorkOrder, propose, transition

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], WorkOrderStore]]:
    """Opens (again) the same store; every store opened is closed, a PostgreSQL schema dropped, afterwards."""
    opened: list[WorkOrderStore] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    memory = MemoryWorkOrders()

    def open_store() -> WorkOrderStore:
        store: WorkOrderStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqlWorkOrders(tmp_path / "data" / "tvilling.db")
        else:
            store = SqlWorkOrders(PG_DSN, schema=schema)
        opened.append(store)
        return store

    open_store.kind = request.param  # type: ignore[attr-defined]
    yield open_store
    for store in opened:
        store.close()
    if schemas is not None:
        next(schemas, None)


@pytest.fixture
def store(opener: Callable[[], WorkOrderStore]) -> WorkOrderStore:
    return opener()


def order(order_id: str, asset: str = "M1", start_h: float = 0, hours: float = 2, **over: Any) -> WorkOrder:
    start = T0 + timedelta(days=1, hours=start_h)
    end = start + timedelta(hours=hours)
    body: dict[str, Any] = {"id": order_id, "task": "replace-bearing", "asset": asset,
                            "planned_start": start.isoformat(), "planned_end": end.isoformat(),
                            "crew": ["t1"], "parts": {"6205-2RS": 2}, "rationale": {"chosen": "w1", "é": [1.5, None]}}
    body.update(over)
    return propose(body, now=T0, by="planner", model="dtmi:x:Machine;1")


def move(store: WorkOrderStore, current: WorkOrder, to: str, by: str = "alice") -> WorkOrder:
    new = transition(current, to, now=current.updated + timedelta(minutes=1), by=by)
    store.update(new, expected_version=current.version, by=by)
    return new


def test_an_order_is_stored_and_read_back_unchanged(store: WorkOrderStore) -> None:
    wo = order("wo-1", notes="ünïcode ✓")
    store.add(wo, by="planner")
    assert store.get("wo-1") == wo
    approved = move(store, wo, APPROVED)
    assert store.get("wo-1") == approved and store.get("wo-1").approved_by == "alice"
    with pytest.raises(NotFound, match="no work order 'nope'"):
        store.get("nope")


def test_a_taken_id_is_a_conflict_and_changes_nothing(store: WorkOrderStore) -> None:
    store.add(order("wo-1"), by="planner")
    with pytest.raises(Conflict) as caught:
        store.add(order("wo-1", asset="M2"), by="planner")
    assert caught.value.fields["rule"] == "exists" and caught.value.status == 409
    assert store.get("wo-1").asset == "M1" and len(store.changes(0, 10)) == 1


def test_an_update_at_a_stale_version_is_refused(store: WorkOrderStore) -> None:
    wo = order("wo-1")
    store.add(wo, by="planner")
    move(store, wo, APPROVED, by="alice")
    late = transition(wo, CANCELLED, now=T0 + timedelta(hours=1), by="bob")
    with pytest.raises(PreconditionFailed) as caught:
        store.update(late, expected_version=1, by="bob")
    assert caught.value.fields == {"workorder": "wo-1", "expected": 1, "version": 2, "rule": "stale_version"}
    assert store.get("wo-1").state == APPROVED and len(store.changes(0, 10)) == 2
    with pytest.raises(NotFound):
        store.update(order("ghost"), expected_version=1, by="bob")


def test_of_two_threads_moving_the_same_version_exactly_one_wins(store: WorkOrderStore) -> None:
    wo = order("wo-1")
    store.add(wo, by="planner")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approve(who: str) -> None:
        new = transition(wo, APPROVED, now=T0 + timedelta(minutes=5), by=who)
        barrier.wait()
        try:
            store.update(new, expected_version=1, by=who)
            outcomes[who] = "won"
        except PreconditionFailed:
            outcomes[who] = "stale"

    threads = [threading.Thread(target=approve, args=(who,)) for who in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["stale", "won"]
    winner = next(who for who, o in outcomes.items() if o == "won")
    assert store.get("wo-1").approved_by == winner and store.get("wo-1").version == 2
    assert [item["by"] for _, item in store.changes(0, 10)] == ["planner", winner]


def test_queries_by_state_asset_and_planned_window(store: WorkOrderStore) -> None:
    a = order("wo-a", asset="M1", start_h=0)       # day 1, 08:00-10:00
    b = order("wo-b", asset="M2", start_h=5)       # 13:00-15:00
    c = order("wo-c", asset="M1", start_h=24)      # day 2, 08:00-10:00
    d = order("wo-d", asset="M2", start_h=-20)     # day 0, 12:00-14:00
    for wo in (c, a, d, b):
        store.add(wo, by="planner")
    move(store, b, APPROVED)
    cancelled = move(store, c, CANCELLED)
    assert [o.id for o in store.list()] == ["wo-d", "wo-a", "wo-b", "wo-c"]  # by planned start
    assert [o.id for o in store.list(state=PROPOSED)] == ["wo-d", "wo-a"]
    assert [o.id for o in store.list(state=CANCELLED)] == ["wo-c"] and store.list(state=SCHEDULED) == []
    assert [o.id for o in store.list(asset="M1")] == ["wo-a", "wo-c"]
    assert [o.id for o in store.list(asset="M2", state=APPROVED)] == ["wo-b"]
    day1 = T0 + timedelta(days=1)
    # overlapping [09:00, 13:00): a (08-10) overlaps, b (13-15) starts at the end, so not
    assert [o.id for o in store.list(start=day1 + timedelta(hours=1), end=day1 + timedelta(hours=5))] == ["wo-a"]
    assert [o.id for o in store.list(start=day1 + timedelta(hours=2))] == ["wo-b", "wo-c"]  # a ends exactly then
    assert [o.id for o in store.list(end=day1)] == ["wo-d"]
    assert store.list(asset="M3") == []
    assert store.get("wo-c") == cancelled


def test_pages_follow_the_planned_start(store: WorkOrderStore) -> None:
    for i in range(7):
        store.add(order(f"wo-{i}", start_h=(i * 5) % 7), by="planner")  # starts out of id order
    seen: list[str] = []
    after = None
    while True:
        page = store.list(limit=3, after=after)
        seen += [o.id for o in page]
        if len(page) < 3:
            break
        after = page[-1].id
    assert seen == [o.id for o in store.list()] and len(seen) == 7
    starts = [store.get(i).planned_start for i in seen]
    assert starts == sorted(starts)
    with pytest.raises(Invalid) as caught:
        store.list(after="no-such-order")
    assert caught.value.fields["field"] == "after"


@pytest.mark.parametrize(("kwargs", "field"), [({"state": "finished"}, "state"), ({"limit": 0}, "limit"),
                                               ({"limit": 5000}, "limit"),
                                               ({"start": T0, "end": T0 - timedelta(hours=1)}, "end")])
def test_bad_query_arguments_name_the_field(store: WorkOrderStore, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as caught:
        store.list(**kwargs)
    assert caught.value.fields["field"] == field


def test_the_feed_holds_every_change_in_order(store: WorkOrderStore) -> None:
    wo = order("wo-1")
    store.add(wo, by="planner")
    other = order("wo-2", asset="M2")
    store.add(other, by="planner")
    approved = move(store, wo, APPROVED, by="alice")
    move(store, approved, SCHEDULED, by="bob")
    move(store, other, CANCELLED, by="carol")
    feed = store.changes(0, 100)
    assert [(i["id"], i["previous"], i["state"], i["version"], i["by"]) for _, i in feed] == [
        ("wo-1", None, PROPOSED, 1, "planner"), ("wo-2", None, PROPOSED, 1, "planner"),
        ("wo-1", PROPOSED, APPROVED, 2, "alice"), ("wo-1", APPROVED, SCHEDULED, 3, "bob"),
        ("wo-2", PROPOSED, CANCELLED, 2, "carol")]
    assert all(i["kind"] == "workorder" and i["twin"] in ("M1", "M2") and i["model"] == "dtmi:x:Machine;1"
               for _, i in feed)
    positions = [p for p, _ in feed]
    assert positions == sorted(set(positions))
    assert store.changes(positions[1], 2) == feed[2:4]
    assert store.changes(positions[-1], 10) == []


def test_everything_survives_a_reopen(opener: Callable[[], WorkOrderStore]) -> None:
    first = opener()
    wo = order("wo-1")
    first.add(wo, by="planner")
    approved = move(first, wo, APPROVED)
    feed = first.changes(0, 10)
    if opener.kind != "memory":  # type: ignore[attr-defined]
        first.close()
    again = opener()
    assert again.get("wo-1") == approved and again.changes(0, 10) == feed
    move(again, approved, SCHEDULED)
    assert [i["state"] for _, i in again.changes(0, 10)] == [PROPOSED, APPROVED, SCHEDULED]


@pytest.fixture(params=["memory", "embedded", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "memory":
        yield "memory", "tvilling"
    elif request.param == "embedded":
        yield str(tmp_path / "data"), "tvilling"
    else:
        yield from ((PG_DSN, schema) for schema in fresh_schema())


def test_the_backend_serves_the_store_in_its_one_database(backend_url: tuple[str, str]) -> None:
    url, schema = backend_url
    backend = open_backend(url, schema=schema)
    try:
        wo = order("wo-1")
        with backend.transaction():  # the store joins the backend's transaction like the others
            backend.workorders.add(wo, by="planner")
        assert backend.workorders.get("wo-1") == wo
        if backend.kind == "embedded":
            assert backend.data_dir is not None
            assert [p.name for p in backend.data_dir.glob("*.db")] == ["tvilling.db"]
    finally:
        backend.close()
    if url != "memory":
        again = open_backend(url, schema=schema)
        try:
            assert again.workorders.get("wo-1") == wo
        finally:
            again.close()


def test_a_failed_transaction_takes_the_order_and_its_change_back(tmp_path: Path) -> None:
    backend = open_backend(tmp_path / "data")
    try:
        with pytest.raises(RuntimeError), backend.transaction():
            backend.workorders.add(order("wo-1"), by="planner")
            raise RuntimeError("something else failed")
        assert backend.workorders.list() == [] and backend.workorders.changes(0, 10) == []
    finally:
        backend.close()
