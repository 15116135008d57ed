"""One contract for every audit store: memory, SQLite (the embedded ``tvilling.db``) and PostgreSQL.

Appended and listed back with filters and pages, the chain continuing across a reopen, writers on
several threads (and, for SQLite and PostgreSQL, several connections) never forking it, seals at the
interval and on demand; and, on the real tables, verification naming the first bad entry after each
tampering an attacker with raw SQL access could do.
"""

from __future__ import annotations

import itertools
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.backend.audit import AuditStore, MemoryAudit, SqlAudit
from tvilling.core.errors import Invalid
from tvilling.security.audit import GENESIS, Record, chain, entry_hash, make_seal

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SQL_ADAPTERS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Rig:
    """Opens (again) one store; runs raw SQL on its real tables."""

    def __init__(self, kind: str, folder: Path, schema: str) -> None:
        self.kind, self.folder, self.schema = kind, folder, schema
        self.memory: MemoryAudit | None = None
        self.opened: list[AuditStore] = []

    @property
    def key_path(self) -> Path:
        return self.folder / "data" / "audit-signing.pem"

    def open(self, seal_every: int | None = 10) -> AuditStore:
        store: AuditStore
        if self.kind == "memory":
            if self.memory is None:
                self.memory = MemoryAudit(key_path=self.key_path, seal_every=seal_every)
            store = self.memory
        elif self.kind == "sqlite":
            store = SqlAudit(self.folder / "data" / "tvilling.db", seal_every=seal_every)
        else:
            store = SqlAudit(PG_DSN, schema=self.schema, key_path=self.key_path, seal_every=seal_every)
        self.opened.append(store)
        return store

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement on the real tables, as an attacker with database access would run it."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "data" / "tvilling.db") as conn:
                return conn.execute(statement, params).fetchall()
        with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=ADAPTERS)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    schemas = fresh_schema() if request.param == "postgres" else None
    r = Rig(request.param, tmp_path, next(schemas) if schemas is not None else "")
    yield r
    r.close()
    if schemas is not None:
        next(schemas, None)


@pytest.fixture(params=SQL_ADAPTERS)
def sql_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    schemas = fresh_schema() if request.param == "postgres" else None
    r = Rig(request.param, tmp_path, next(schemas) if schemas is not None else "")
    yield r
    r.close()
    if schemas is not None:
        next(schemas, None)


def rec(i: int, actor: str = "alice", action: str = "twin.patch", **over: Any) -> Record:
    body: dict[str, Any] = {"actor": actor, "action": action, "target": f"twin:m{i % 3}",
                            "detail": {"i": i, "note": "ünïcode ✓", "x": 1.5}}
    body.update(over)
    return Record(**body)


def filled(rig: Rig, n: int = 25) -> AuditStore:
    store = rig.open(seal_every=10)
    store.append_many([rec(i) for i in range(1, n + 1)])
    return store


# -- append, list, filter ---------------------------------------------------------------------------------


def test_entries_are_chained_listed_and_filtered(rig: Rig) -> None:
    store = rig.open()
    first = store.append(rec(1, actor="alice", action="twin.create"))
    assert (first.seq, first.prev) == (1, GENESIS)
    assert first.hash == entry_hash(first) and first.detail == {"i": 1, "note": "ünïcode ✓", "x": 1.5}
    more = store.append_many([rec(2, actor="bob"), rec(3, action="twin.delete", outcome="refused"),
                              rec(4, actor="bob", actor_kind="service")])
    assert [e.seq for e in more] == [2, 3, 4]
    assert [e.prev for e in more] == [first.hash, more[0].hash, more[1].hash]
    assert store.head() == (4, more[-1].hash)
    assert store.list() == [first, *more]
    assert [e.seq for e in store.list(actor="bob")] == [2, 4]
    assert [e.seq for e in store.list(action="twin.delete")] == [3]
    assert store.list(action="twin.delete")[0].outcome == "refused"
    assert [e.seq for e in store.list(target="twin:m1")] == [1, 4]
    assert [e.seq for e in store.list(after=1, limit=2)] == [2, 3]
    assert [e.seq for e in store.list(actor="bob", after=2)] == [4]
    now = datetime.now(UTC)
    assert [e.seq for e in store.list(since=now - timedelta(minutes=5))] == [1, 2, 3, 4]
    assert store.list(since=now + timedelta(minutes=5)) == []
    assert store.list(until=now - timedelta(minutes=5)) == []
    with pytest.raises(Invalid):
        store.list(limit=0)
    with pytest.raises(Invalid):
        store.list(since=now, until=now - timedelta(seconds=1))
    with pytest.raises(Invalid):
        store.append(rec(5, outcome="maybe"))
    assert store.head()[0] == 4  # a refused record takes no place in the chain


def test_seals_come_at_the_interval_and_on_demand(rig: Rig) -> None:
    store = filled(rig, 25)
    assert [s.upto_seq for s in store.seals()] == [10, 20]
    sealed = store.seal()
    assert sealed is not None and sealed.upto_seq == 25 and sealed.head_hash == store.head()[1]
    assert store.seal() is None  # the head is sealed already
    report = store.verify()
    assert report.ok, report
    assert (report.entries, report.seals, report.sealed_upto, report.unsealed) == (25, 3, 25, 0)
    store.append(rec(26))
    report = store.verify()
    assert report.ok and report.unsealed == 1  # an unsealed tail is reported, not an error
    mode = stat.S_IMODE(rig.key_path.stat().st_mode)
    assert mode == 0o600


def test_the_chain_continues_across_a_reopen(rig: Rig) -> None:
    first = rig.open()
    head = first.append_many([rec(i) for i in range(1, 4)])[-1]
    first.close()
    again = rig.open()
    nxt = again.append(rec(4))
    assert (nxt.seq, nxt.prev) == (4, head.hash)
    assert again.verify().ok


@pytest.mark.parametrize("writers", ["threads", "connections"])
def test_concurrent_writers_never_fork_the_chain(rig: Rig, writers: str) -> None:
    stores = [rig.open(seal_every=7)]
    if writers == "connections":
        if rig.kind == "memory":
            pytest.skip("one process memory has no second connection")
        stores.append(rig.open(seal_every=7))  # a database (pool) of its own, as a second process has
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(k: int) -> None:
        store = stores[k % len(stores)]
        try:
            start.wait()
            for i in range(30):
                if i % 3:
                    store.append(rec(i, actor=f"w{k}"))
                else:
                    store.append_many([rec(i, actor=f"w{k}"), rec(i + 100, actor=f"w{k}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = stores[0].list(limit=1000)
    assert [e.seq for e in entries] == list(range(1, 161))
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    report = stores[-1].verify()
    assert report.ok, report
    assert [s.upto_seq for s in stores[0].seals()] == list(range(7, 161, 7))


def test_an_append_inside_a_backend_transaction_is_undone_with_it(tmp_path: Path) -> None:
    with open_backend(tmp_path / "data") as backend:
        backend.audit.append(rec(1))
        with pytest.raises(RuntimeError), backend.transaction():
            backend.audit.append(rec(2))
            raise RuntimeError("the write failed")
        assert backend.audit.head()[0] == 1
        assert not (tmp_path / "data" / "audit-signing.pem").exists()  # made on the first seal, not before
        assert backend.audit.seal() is not None
        assert (tmp_path / "data" / "audit-signing.pem").exists()


# -- tampering with raw SQL on the real tables -------------------------------------------------------------


def problem(store: AuditStore, **kw: Any) -> tuple[int, str]:
    report = store.verify(**kw)
    assert not report.ok and report.problem is not None
    return report.problem.seq, report.problem.kind


def test_an_edited_field_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    sql_rig.sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7")
    assert problem(store) == (7, "edited")


def test_an_edited_detail_with_its_own_hash_recomputed_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    row = next(e for e in store.list(limit=100) if e.seq == 7).to_json()
    row["detail"] = {"i": 700}
    sql_rig.sql("UPDATE audit_log SET detail = ?, hash = ? WHERE seq = 7", ('{"i":700}', entry_hash(row)))
    assert problem(store) == (7, "edited")


def test_a_rewritten_chain_breaks_its_seal(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    entries = store.list(limit=100)
    prev = entries[2].prev
    for e in entries[2:]:  # entry 3 changed, then every hash after it recomputed
        row = e.to_json()
        row["actor"] = "mallory" if e.seq == 3 else e.actor
        row["prev"] = prev
        row["hash"] = entry_hash(row)
        sql_rig.sql("UPDATE audit_log SET actor = ?, prev = ?, hash = ? WHERE seq = ?",
                    (row["actor"], "tmp" + str(e.seq), row["hash"], e.seq))
        sql_rig.sql("UPDATE audit_log SET prev = ? WHERE seq = ?", (prev, e.seq))
        prev = row["hash"]
    report = store.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(1, "seal_mismatch"), (11, "seal_mismatch")]


def test_a_deleted_row_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    sql_rig.sql("DELETE FROM audit_log WHERE seq = 12")
    assert problem(store) == (12, "deleted")


def test_rows_deleted_from_the_end_are_caught_by_the_seal(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    sql_rig.sql("DELETE FROM audit_log WHERE seq >= 18")
    assert problem(store) == (18, "deleted")


def test_an_inserted_row_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    four = store.list(limit=4)[-1]
    forged = chain(rec(99, actor="mallory"), seq=5, prev=four.hash, time=datetime.now(UTC))
    # the attacker drops the table's UNIQUE(prev) (which refuses a second entry after entry 4), then
    # shifts the entries from 5 on by one and puts a well-formed entry at 5
    sql_rig.sql("CREATE TABLE audit_copy AS SELECT * FROM audit_log")
    sql_rig.sql("DROP TABLE audit_log")
    sql_rig.sql("ALTER TABLE audit_copy RENAME TO audit_log")
    sql_rig.sql("UPDATE audit_log SET seq = -seq - 1 WHERE seq >= 5")
    sql_rig.sql("UPDATE audit_log SET seq = -seq WHERE seq < 0")
    sql_rig.sql("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (5, forged.time, forged.actor, forged.actor_kind, forged.action, forged.target, forged.outcome,
                 None, '{"i":99,"note":"ünïcode ✓","x":1.5}', forged.prev, forged.hash))
    assert problem(store) == (5, "inserted")


def test_the_unique_prev_refuses_a_fork(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    four = store.list(limit=4)[-1]
    forged = chain(rec(99), seq=26, prev=four.hash, time=datetime.now(UTC))
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        sql_rig.sql("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (26, forged.time, forged.actor, forged.actor_kind, forged.action, forged.target,
                     forged.outcome, None, "{}", forged.prev, forged.hash))


def test_two_swapped_rows_are_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    sql_rig.sql("UPDATE audit_log SET seq = -1 WHERE seq = 14")
    sql_rig.sql("UPDATE audit_log SET seq = 14 WHERE seq = 15")
    sql_rig.sql("UPDATE audit_log SET seq = 15 WHERE seq = -1")
    assert problem(store) == (14, "reordered")


def test_a_forged_seal_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    other = store.seals()[1].signature
    sql_rig.sql("UPDATE audit_seals SET signature = ? WHERE upto_seq = 10", (other,))
    assert problem(store) == (1, "seal_forged")


def test_a_chain_resealed_with_another_key_fails_against_the_pinned_key(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    pinned = store.public_key()
    assert pinned is not None
    mallory = Ed25519PrivateKey.generate()
    sql_rig.sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 25")
    head = next(e for e in store.list(after=24))
    row = head.to_json()
    row["actor"] = "mallory"
    sql_rig.sql("UPDATE audit_log SET hash = ? WHERE seq = 25", (entry_hash(row),))
    head = next(e for e in store.list(after=24))
    seal = make_seal(mallory, head, time=datetime.now(UTC))
    sql_rig.sql("INSERT INTO audit_seals VALUES (?, ?, ?, ?, ?)",
                (seal.upto_seq, seal.head_hash, seal.time, seal.key_id, seal.signature))
    assert problem(store, public_key=pinned) == (21, "seal_unknown_key")


def test_a_deleted_seal_is_named(sql_rig: Rig) -> None:
    store = filled(sql_rig)
    sql_rig.sql("DELETE FROM audit_seals WHERE upto_seq = 10")
    assert problem(store) == (1, "seal_missing")


def test_a_store_opened_without_a_key_does_not_make_one_to_verify(sql_rig: Rig) -> None:
    store: Callable[[], AuditStore] = sql_rig.open
    s = store()
    s.append(rec(1))
    assert s.verify().ok
    assert not sql_rig.key_path.exists()
