"""Behaviour of the SQL adapters beyond the shared contract: lifecycle, schema, threads, errors."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from pgtest import PG_DSN
from tvilling.core.errors import Conflict, Invalid, Unavailable
from tvilling.core.events import TWIN_CREATED, TWIN_PATCHED, Event, fold
from tvilling.twins.adapters.postgres import open_postgres
from tvilling.twins.adapters.sqlite import SCHEMA_VERSION, open_sqlite

from .conftest import ADAPTERS, open_adapter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def created(twin: str, **reported) -> Event:
    return Event(
        twin=twin,
        revision=1,
        time=T0,
        actor="t",
        type=TWIN_CREATED,
        payload={"model": "dtmi:t:M;1", "reported": reported},
    )


def patched(twin: str, revision: int, **reported) -> Event:
    return Event(twin=twin, revision=revision, time=T0, actor="t", type=TWIN_PATCHED, payload={"reported": reported})


@pytest.mark.parametrize("kind", ADAPTERS)
def test_threads_write_and_read_concurrently(kind, tmp_path, request):
    _, twins = open_adapter(kind, tmp_path, request)
    try:
        twins.commit([created(f"c{i}", n=0) for i in range(8)])

        def work(i: int) -> None:
            for r in range(2, 27):
                twins.commit([patched(f"c{i}", r, n=r)])
                assert twins.get(f"c{i}").revision == r
                twins.feed(limit=10)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        for i in range(8):
            assert twins.get(f"c{i}").reported == {"n": 26}
            assert twins.get(f"c{i}") == fold(twins.history(f"c{i}"))
        positions = [e.position for e in twins.feed(limit=10_000)]
        assert len(positions) == 8 * 26 and positions == sorted(set(positions))
    finally:
        twins.close()


@pytest.mark.parametrize("kind", ADAPTERS)
def test_racing_writers_of_one_revision_one_wins(kind, tmp_path, request):
    _, twins = open_adapter(kind, tmp_path, request)
    try:
        twins.commit([created("race")])
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def write(i: int) -> None:
            barrier.wait()
            try:
                twins.commit([patched("race", 2, winner=i)])
                outcomes.append("ok")
            except Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
        assert [e.revision for e in twins.history("race")] == [1, 2]
    finally:
        twins.close()


def test_sqlite_reopens_with_its_data_and_schema_version(tmp_path):
    path = tmp_path / "nested" / "dir" / "t.db"
    _, twins = open_sqlite(path)
    twins.commit([created("a", x=1)])
    twins.close()
    _, twins = open_sqlite(path)
    assert twins.get("a").reported == {"x": 1}
    twins.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(Unavailable, match="schema version"):
        open_sqlite(path)


def test_sqlite_closed_store_is_unavailable(tmp_path):
    _, twins = open_sqlite(tmp_path / "t.db")
    twins.commit([created("a")])
    twins.close()
    with pytest.raises(Unavailable):
        twins.get("a")
    with pytest.raises(Unavailable):
        twins.commit([patched("a", 2)])


def test_postgres_unreachable_is_unavailable_with_the_server_named():
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1/test") as info:
        open_postgres("postgresql://postgres@127.0.0.1:1/test", schema="x")
    assert info.value.fields["server"] == "127.0.0.1:1/test"


@pytest.mark.postgres
def test_postgres_keeps_to_its_schema_and_reads_back_exact_json(pg_schema):
    _, twins = open_postgres(PG_DSN, schema=pg_schema)
    try:
        # key order and number spelling survive (jsonb alone would reorder keys and turn 1e20 into an int)
        twins.commit([created("a", zeta=1, alpha=1e20, mid=[1.5, {"b": 1, "a": 2}])])
        t = twins.get("a")
        assert list(t.reported) == ["zeta", "alpha", "mid"]
        assert isinstance(t.reported["alpha"], float)
        assert list(t.reported["mid"][1]) == ["b", "a"]
        with psycopg.connect(PG_DSN) as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
                )
            }
        assert {"events", "twins", "relationships", "models", "schema_version"} <= tables
    finally:
        twins.close()


@pytest.mark.postgres
def test_postgres_stores_are_independent_per_schema(pg_schema):
    other = pg_schema + "_b"
    _, one = open_postgres(PG_DSN, schema=pg_schema)
    _, two = open_postgres(PG_DSN, schema=other)
    try:
        one.commit([created("a")])
        assert two.count() == 0 and two.feed() == []
    finally:
        one.close()
        two.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


@pytest.mark.postgres
def test_postgres_value_it_cannot_store_is_invalid_and_nothing_is_stored(pg_schema):
    _, twins = open_postgres(PG_DSN, schema=pg_schema)
    try:
        with pytest.raises(Invalid):
            twins.commit([created("ok"), created("nul", text="a\x00b")])
        assert twins.feed() == [] and twins.count() == 0
    finally:
        twins.close()


@pytest.mark.postgres
def test_postgres_schema_name_is_an_identifier_not_sql(pg_schema):
    odd = f'{pg_schema}"; DROP TABLE x; --'[:63]
    _, twins = open_postgres(PG_DSN, schema=odd)
    try:
        twins.commit([created("a")])
        assert twins.count() == 1
    finally:
        twins.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(odd)))
