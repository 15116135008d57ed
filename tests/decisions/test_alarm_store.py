"""One contract for every alarm store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import msgspec
import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.alarms.postgres_store import PostgresAlarmStore
from tvilling.decisions.alarms.record import Alarm, acknowledge, clear, fold, new_alarm, shelve
from tvilling.decisions.alarms.shelves import end as end_shelf
from tvilling.decisions.alarms.shelves import new_shelf
from tvilling.decisions.alarms.sqlite_store import SqliteAlarmStore
from tvilling.decisions.alarms.store import AlarmStore, MemoryAlarmStore

from .conftest import T0

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ADAPTERS)
def opener(request, tmp_path) -> Iterator:
    """A function opening (again) the same store; every store opened is closed afterwards."""
    opened: list[AlarmStore] = []
    schema_gen = fresh_schema() if request.param == "postgres" else None
    schema = next(schema_gen) if schema_gen is not None else None
    memory = MemoryAlarmStore()

    def open_store() -> AlarmStore:
        store: AlarmStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqliteAlarmStore(tmp_path / "data" / "alarms.db")
        else:
            store = PostgresAlarmStore(PG_DSN, schema=schema or "")
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
    if schema_gen is not None:
        next(schema_gen, None)


@pytest.fixture
def store(opener) -> AlarmStore:
    return opener()


def _alarm(twin: str = "B1", rule: str = "hot", seconds: float = 0, severity: str = "major", **kw) -> Alarm:
    return new_alarm(twin=twin, model="dtmi:tvilling:example:Bearing;1", rule=rule, severity=severity,
                     message=f"{twin} is hot", prop="temperature", value=91.5, now=T0 + timedelta(seconds=seconds),
                     **kw)


def test_add_get_update_round_trip_every_field(store: AlarmStore) -> None:
    a = _alarm()
    store.add(a)
    assert store.get(a.id) == a
    b, kind = acknowledge(a, now=T0 + timedelta(seconds=3), actor="ann", note="on it — ünïcode")
    store.update(b, kind)
    assert store.get(a.id) == b
    assert store.get(a.id).to_json()["acknowledged"] == "2024-05-01T08:00:03Z"
    with pytest.raises(NotFound):
        store.get("nope")


def test_one_open_alarm_per_key_and_ids_are_unique(store: AlarmStore) -> None:
    a = _alarm()
    store.add(a)
    with pytest.raises(Conflict) as err:
        store.add(a)
    assert err.value.fields["rule"] == "exists"
    with pytest.raises(Conflict) as err:
        store.add(_alarm(seconds=5))
    assert err.value.fields["rule"] == "open_exists"
    store.add(_alarm(rule="cold"))  # another rule, another key
    store.add(_alarm(twin="M1", origin="B1"))  # a derived alarm of B1 on M1
    assert store.open_for(a.key) == a
    closed, kind = clear(a, now=T0 + timedelta(seconds=9), actor="rule")
    store.update(closed, kind)
    assert store.open_for(a.key) is None
    again = _alarm(seconds=20)
    store.add(again)  # once cleared, the key is free for a new alarm
    assert store.open_for(a.key) == again
    assert store.last_for(a.key) == again and store.last_for("no\x1fkey") is None
    store.update(*clear(again, now=T0 + timedelta(seconds=30), actor="ann"))
    assert store.open_for(a.key) is None and store.last_for(a.key).state == "cleared"


def test_update_is_compare_and_set_on_the_version(store: AlarmStore) -> None:
    a = _alarm()
    store.add(a)
    acked, kind = acknowledge(a, now=T0, actor="ann")
    store.update(acked, kind)
    with pytest.raises(Conflict) as err:  # a second writer that read the old version
        store.update(*clear(a, now=T0, actor="bob"))
    assert err.value.fields["rule"] == "stale_version"
    assert store.get(a.id).state == "acknowledged"
    with pytest.raises(NotFound):
        store.update(*acknowledge(_alarm(twin="B9"), now=T0, actor="x"))


def test_change_feed_has_every_step_in_order(opener) -> None:
    store = opener()
    a = _alarm()
    store.add(a)
    a2, k = fold(a, now=T0 + timedelta(seconds=1), value=99.0, severity="critical")
    store.update(a2, k)
    a3, k = acknowledge(a2, now=T0 + timedelta(seconds=2), actor="ann")
    store.update(a3, k)
    store.update(*clear(a3, now=T0 + timedelta(seconds=3), actor="rule", note="normal"))
    items = store.changes(0, 100)
    assert [i["type"] for _, i in items] == ["alarm.raised", "alarm.updated", "alarm.acknowledged", "alarm.cleared"]
    assert [p for p, _ in items] == sorted(p for p, _ in items)
    first = items[0][1]
    assert (first["kind"], first["twin"], first["model"]) == ("alarm", "B1", "dtmi:tvilling:example:Bearing;1")
    assert first["alarm"]["state"] == "active" and first["alarm"]["id"] == a.id
    assert items[1][1]["alarm"]["count"] == 2 and items[1][1]["alarm"]["severity"] == "critical"
    assert items[3][1]["alarm"]["note"] == "normal"
    assert store.changes(items[1][0], 2) == items[2:4]
    assert store.changes(items[-1][0], 10) == []
    assert opener().changes(0, 100) == items  # durable (same store reopened)


def test_list_filters_and_pages_newest_first(store: AlarmStore) -> None:
    made = []
    for i in range(7):
        a = _alarm(twin=f"B{i % 2}", rule=f"r{i}", seconds=i, severity="critical" if i % 3 == 0 else "minor")
        store.add(a)
        made.append(a)
    store.update(*acknowledge(made[2], now=T0, actor="ann"))
    ids = [a.id for a in reversed(made)]
    assert [a.id for a in store.list()] == ids
    page1 = store.list(limit=3)
    page2 = store.list(limit=3, after=page1[-1].id)
    page3 = store.list(limit=3, after=page2[-1].id)
    assert [a.id for a in page1 + page2 + page3] == ids
    assert [a.id for a in store.list(twin="B1")] == [a.id for a in reversed(made) if a.twin == "B1"]
    assert [a.id for a in store.list(state="acknowledged")] == [made[2].id]
    assert [a.id for a in store.list(state="active", severity="critical")] == [made[6].id, made[3].id, made[0].id]
    assert [a.id for a in store.list(rule="r4")] == [made[4].id]
    with pytest.raises(Invalid):
        store.list(state="open")
    with pytest.raises(Invalid):
        store.list(severity="fatal")
    with pytest.raises(Invalid):
        store.list(limit=0)
    with pytest.raises(Invalid):
        store.list(after="no-such-alarm")


def test_derived_alarms_are_found_by_source(store: AlarmStore) -> None:
    src = _alarm()
    store.add(src)
    m = _alarm(twin="M1", origin="B1", source=src.id)
    line = _alarm(twin="L1", origin="B1", source=src.id)
    store.add(m)
    store.add(line)
    assert [a.id for a in store.derived(src.id)] == [m.id, line.id]
    assert store.derived(m.id) == []


def test_cursors_are_saved_and_survive_reopening(opener) -> None:
    store = opener()
    assert store.cursor("engine") == 0
    store.set_cursor("engine", 41)
    store.set_cursor("engine", 42)
    store.set_cursor("other", 7)
    again = opener()
    assert (again.cursor("engine"), again.cursor("other")) == (42, 7)


def test_grouped_list_is_one_row_per_condition_and_names_the_affected_twins(store: AlarmStore) -> None:
    src = _alarm()
    store.add(src)
    copies = [_alarm(twin=t, origin="B1", source=src.id, seconds=1) for t in ("M1", "L1")]
    for c in copies:
        store.add(c)
    own = _alarm(twin="M1", rule="motor-hot", seconds=2)
    store.add(own)
    assert [a.id for a in store.list()] == [own.id, copies[1].id, copies[0].id, src.id]  # raw: every copy
    assert [a.id for a in store.list(grouped=True)] == [own.id, src.id]
    # an ancestor's filter finds its own conditions and those affecting it
    assert [a.id for a in store.list(grouped=True, twin="M1")] == [own.id, src.id]
    assert [a.id for a in store.list(grouped=True, twin="L1")] == [src.id]
    assert [a.id for a in store.list(twin="L1")] == [copies[1].id]
    assert [a.id for a in store.list(grouped=True, limit=1, after=own.id)] == [src.id]
    assert store.affected([src.id, own.id, "nope"]) == {src.id: ["M1", "L1"]}
    assert store.affected([]) == {}
    assert [a.id for a in store.open_on(["M1", "X"])] == [copies[0].id, own.id]
    store.update(*clear(own, now=T0 + timedelta(seconds=3), actor="ann"))
    assert [a.id for a in store.open_on(["M1"])] == [copies[0].id]


def test_shelved_alarms_are_filtered_by_the_time_their_shelf_holds_them(store: AlarmStore) -> None:
    held = _alarm(shelf="s1", shelved_until=T0 + timedelta(minutes=30))
    free = _alarm(twin="B2")
    store.add(held)
    store.add(free)
    during, after = T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
    assert [a.id for a in store.list(shelved=True, now=during)] == [held.id]
    assert [a.id for a in store.list(shelved=False, now=during)] == [free.id]
    assert [a.id for a in store.list(shelved=True, now=after)] == []  # a shelf ends by itself
    assert {a.id for a in store.list(shelved=False, now=after)} == {held.id, free.id}
    off, kind = shelve(held, shelf=None, until=None, now=during)
    store.update(off, kind)
    assert store.get(held.id) == off and [a.id for a in store.list(shelved=True, now=during)] == []
    on, kind = shelve(store.get(free.id), shelf="s2", until=T0 + timedelta(hours=1), now=during)
    store.update(on, kind)
    assert [a.id for a in store.list(shelved=True, now=after)] == [free.id]
    store.update(*clear(on, now=after, actor="ann"))  # a cleared alarm is not shelved
    assert store.list(shelved=True, now=after) == []


def test_shelves_are_stored_found_by_time_ended_and_survive_reopening(opener) -> None:
    store = opener()
    a = new_shelf(twin="M1", twins=["M1", "B1"], duration_s=1800, reason="planned stop — ünïcode", actor="ann",
                  now=T0)
    b = new_shelf(twin="L1", twins=["L1"], duration_s=60, reason="test", actor="bob", now=T0 + timedelta(minutes=5),
                  subtree=False)
    store.add_shelf(a)
    store.add_shelf(b)
    with pytest.raises(Conflict):
        store.add_shelf(a)
    assert store.get_shelf(a.id) == a
    with pytest.raises(NotFound):
        store.get_shelf("nope")
    assert [s.id for s in store.shelves()] == [b.id, a.id]
    assert [s.id for s in store.shelves(at=T0 + timedelta(minutes=5, seconds=30))] == [b.id, a.id]
    assert [s.id for s in store.shelves(at=T0 + timedelta(minutes=10))] == [a.id]
    assert store.shelves(at=T0 - timedelta(seconds=1)) == [] and store.shelves(at=a.until) == []
    done = end_shelf(a, now=T0 + timedelta(minutes=8), actor="eva")
    store.update_shelf(done)
    assert store.shelves(at=T0 + timedelta(minutes=9)) == []
    with pytest.raises(NotFound):
        store.update_shelf(new_shelf(twin="X", twins=[], duration_s=60, reason="r", actor="a", now=T0))
    again = opener()
    assert again.get_shelf(a.id) == done and [s.id for s in again.shelves(limit=1)] == [b.id]


def test_a_store_made_before_shelving_opens_and_gains_the_column(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old" / "alarms.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alarms (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
                 " key TEXT NOT NULL, twin TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL,"
                 " rule TEXT NOT NULL, source TEXT, version INTEGER NOT NULL, doc TEXT NOT NULL)")
    old = _alarm()
    conn.execute("INSERT INTO alarms (id, key, twin, state, severity, rule, source, version, doc)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (old.id, old.key, old.twin, old.state, old.severity,
                                                         old.rule, None, 1, msgspec.json.encode(old).decode()))
    conn.commit()
    conn.close()
    store = SqliteAlarmStore(path)
    try:
        assert store.get(old.id) == old and [a.id for a in store.list(shelved=False, now=T0)] == [old.id]
    finally:
        store.close()
