"""One contract for every alarm store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.alarms.postgres_store import PostgresAlarmStore
from tvilling.decisions.alarms.record import Alarm, acknowledge, clear, fold, new_alarm
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
