"""One contract for every command store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.lifecycle import (
    ACKNOWLEDGED,
    FAILED,
    PENDING,
    SENT,
    SUCCEEDED,
    TIMED_OUT,
    CommandRecord,
    new_command,
    transition,
)
from tvilling.decisions.postgres_store import PostgresCommandStore
from tvilling.decisions.sqlite_store import SqliteCommandStore
from tvilling.decisions.store import CommandStore, MemoryCommandStore

from .conftest import T0

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ADAPTERS)
def opener(request, tmp_path) -> Iterator:
    """A function opening (again) the same store; every store opened is closed afterwards."""
    opened: list[CommandStore] = []
    schema_gen = fresh_schema() if request.param == "postgres" else None
    schema = next(schema_gen) if schema_gen is not None else None
    memory = MemoryCommandStore()

    def open_store() -> CommandStore:
        store: CommandStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqliteCommandStore(tmp_path / "data" / "commands.db")
        else:
            store = PostgresCommandStore(PG_DSN, schema=schema or "")
        opened.append(store)
        return store

    open_store.kind = request.param  # type: ignore[attr-defined]
    yield open_store
    for store in opened:
        store.close()
    if schema_gen is not None:
        next(schema_gen, None)


@pytest.fixture
def store(opener) -> CommandStore:
    return opener()


def _cmd(twin: str = "M1", seconds: float = 0, timeout_s: float = 30, name: str = "setSpeed") -> CommandRecord:
    return new_command(twin, name, {"rpm": 900.0} if name == "setSpeed" else None,
                       now=T0 + timedelta(seconds=seconds), timeout_s=timeout_s)


def _move(store: CommandStore, rec: CommandRecord, to: str, seconds: float = 1, **kw) -> CommandRecord:
    new, _ = transition(rec, to, now=rec.updated + timedelta(seconds=seconds), **kw)
    store.update(new, rec.status)
    return new


def test_add_then_get_returns_the_same_record(store: CommandStore) -> None:
    rec = _cmd()
    store.add(rec)
    assert store.get(rec.id) == rec
    done = _move(store, _move(store, rec, SENT), SUCCEEDED, response={"accepted": True, "note": "ünïcode"})
    got = store.get(rec.id)
    assert got == done and got.sent_at == rec.created + timedelta(seconds=1)
    assert got.deadline.tzinfo is not None


def test_get_of_an_unknown_id_is_not_found(store: CommandStore) -> None:
    with pytest.raises(NotFound) as err:
        store.get("no-such-command")
    assert err.value.fields["command"] == "no-such-command"


def test_adding_an_id_twice_is_a_conflict_and_changes_nothing(store: CommandStore) -> None:
    rec = _cmd()
    store.add(rec)
    with pytest.raises(Conflict):
        store.add(rec)
    assert len(store.changes(0, 100)) == 1


def test_update_is_compare_and_set_on_the_status(store: CommandStore) -> None:
    rec = _cmd()
    store.add(rec)
    sent = _move(store, rec, SENT)
    failed, _ = transition(rec, FAILED, now=T0, error="late writer")  # built from the stale pending copy
    with pytest.raises(Conflict) as err:
        store.update(failed, PENDING)
    assert (err.value.fields["rule"], err.value.fields["status"]) == ("stale_status", SENT)
    assert store.get(rec.id) == sent
    ghost, _ = transition(_cmd(), SENT, now=T0)
    with pytest.raises(NotFound):
        store.update(ghost, PENDING)


def test_every_transition_is_a_change_item_in_order(store: CommandStore) -> None:
    a, b = _cmd("M1"), _cmd("M2", name="stop")
    store.add(a)
    store.add(b)
    a = _move(store, a, SENT)
    b = _move(store, b, FAILED, error="broker down")
    a = _move(store, _move(store, a, ACKNOWLEDGED), SUCCEEDED, response={"accepted": True})
    feed = store.changes(0, 100)
    assert [p for p, _ in feed] == sorted(p for p, _ in feed) and len({p for p, _ in feed}) == 6
    assert [(i["kind"], i["twin"], i["previous"], i["status"]) for _, i in feed] == [
        ("command", "M1", None, PENDING), ("command", "M2", None, PENDING), ("command", "M1", PENDING, SENT),
        ("command", "M2", PENDING, FAILED), ("command", "M1", SENT, ACKNOWLEDGED),
        ("command", "M1", ACKNOWLEDGED, SUCCEEDED)]
    assert feed[3][1]["error"] == "broker down" and feed[5][1]["response"] == {"accepted": True}
    assert feed[5][1]["id"] == a.id and feed[5][1]["time"] == a.to_json()["updated"]


def test_change_feed_pages_and_takes_desired_items(store: CommandStore) -> None:
    rec = _cmd()
    store.add(rec)
    item = {"kind": "desired", "twin": "M1", "status": "sent", "properties": {"speedSetpoint": 900.0},
            "attempt": 1, "time": "2024-05-01T08:00:00Z"}
    pos = store.append_change(item)
    _move(store, rec, SENT)
    feed = store.changes(0, 100)
    assert len(feed) == 3 and feed[1] == (pos, item)
    first = store.changes(0, 2)
    rest = store.changes(first[-1][0], 2)
    assert first + rest == feed
    assert store.changes(feed[-1][0], 10) == []


def test_list_filters_by_twin_and_status_and_pages_with_after(store: CommandStore) -> None:
    recs = [_cmd("M1" if i % 2 == 0 else "M2", seconds=i) for i in range(7)]
    for rec in recs:
        store.add(rec)
    _move(store, recs[0], SENT)
    _move(store, recs[2], SENT)
    assert [r.id for r in store.list()] == [r.id for r in recs]
    assert [r.id for r in store.list(twin="M2")] == [recs[1].id, recs[3].id, recs[5].id]
    assert [r.id for r in store.list(status=SENT)] == [recs[0].id, recs[2].id]
    assert [r.id for r in store.list(twin="M1", status=PENDING)] == [recs[4].id, recs[6].id]
    page1 = store.list(twin="M1", limit=2)
    page2 = store.list(twin="M1", after=page1[-1].id, limit=2)
    page3 = store.list(twin="M1", after=page2[-1].id, limit=2)
    assert [r.id for r in page1 + page2 + page3] == [recs[i].id for i in (0, 2, 4, 6)]
    assert store.list(twin="nobody") == []


def test_list_refuses_a_bad_status_limit_or_cursor(store: CommandStore) -> None:
    for kwargs, field in (({"status": "exploded"}, "status"), ({"limit": 0}, "limit"),
                          ({"limit": 100_000}, "limit"), ({"after": "no-such-id"}, "after")):
        with pytest.raises(Invalid) as err:
            store.list(**kwargs)
        assert err.value.fields["field"] == field


def test_pending_deadlines_are_the_overdue_commands_not_yet_final(store: CommandStore) -> None:
    soon, later, done, acked, timed = (_cmd(timeout_s=5), _cmd(timeout_s=60), _cmd(timeout_s=5), _cmd(timeout_s=3),
                                       _cmd(timeout_s=1))
    for rec in (soon, later, done, acked, timed):
        store.add(rec)
    _move(store, _move(store, done, SENT), SUCCEEDED)
    _move(store, _move(store, acked, SENT), ACKNOWLEDGED)
    _move(store, timed, TIMED_OUT, seconds=2)
    assert store.pending_deadlines(T0) == []
    assert [r.id for r in store.pending_deadlines(T0 + timedelta(seconds=5))] == [acked.id, soon.id]
    assert [r.id for r in store.pending_deadlines(T0 + timedelta(seconds=61))] == [acked.id, soon.id, later.id]
    assert len(store.pending_deadlines(T0 + timedelta(seconds=61), limit=1)) == 1


def test_what_was_stored_survives_reopening(opener) -> None:
    if opener.kind == "memory":
        pytest.skip("memory does not outlive its process")
    first = opener()
    rec = _cmd()
    first.add(rec)
    sent = _move(first, rec, SENT)
    first.append_change({"kind": "desired", "twin": "M1", "status": "sent"})
    first.close()
    again = opener()
    assert again.get(rec.id) == sent
    assert [i["status"] for _, i in again.changes(0, 10)] == [PENDING, "sent", SENT]
    again.add(_cmd("M2"))
    assert [p for p, _ in again.changes(0, 10)] == sorted(p for p, _ in again.changes(0, 10))


def test_two_stores_on_one_database_share_one_ordered_feed(opener) -> None:
    if opener.kind == "memory":
        pytest.skip("one memory store per process")
    a, b = opener(), opener()
    ra, rb = _cmd("M1"), _cmd("M2")
    a.add(ra)
    b.add(rb)
    _move(a, ra, SENT)
    with pytest.raises(Conflict):  # b races with a stale copy
        b.update(transition(ra, FAILED, now=T0)[0], PENDING)
    feed = b.changes(0, 10)
    assert [(i["twin"], i["status"]) for _, i in feed] == [("M1", PENDING), ("M2", PENDING), ("M1", SENT)]


def test_sqlite_file_is_wal_with_full_sync(tmp_path) -> None:
    store = SqliteCommandStore(tmp_path / "commands.db")
    try:
        conn = sqlite3.connect(tmp_path / "commands.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert store._db.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()
