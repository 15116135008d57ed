"""The dead-letter store's contract over every adapter (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.ingest.deadletter import (
    MAX_PAYLOAD,
    DeadLetter,
    DeadLetterStore,
    MemoryDeadLetters,
    PostgresDeadLetters,
    SqliteDeadLetters,
)

T = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Iterator[DeadLetterStore]:
    if request.param == "memory":
        s: DeadLetterStore = MemoryDeadLetters()
    elif request.param == "sqlite":
        s = SqliteDeadLetters(tmp_path / "dead-letters.db")
    else:
        s = PostgresDeadLetters(PG_DSN, schema=request.getfixturevalue("pg_schema"))
    yield s
    s.close()


def letter(payload: bytes, **kw) -> DeadLetter:
    fields = {"transport": "mqtt", "address": "tvilling/B1/telemetry", "rule": "type", "reason": "bad",
              "received": T, "twin": "B1", "property": "temperature", "message_id": "m-1"} | kw
    return DeadLetter.of(payload, **fields)


def test_raw_payload_message_id_size_and_digest_are_kept(store):
    store.add([letter(b'{"ts": 1, "values": {"temperature": "hot"}, "id": "m-1"}')])
    [got] = store.list()
    doc = got.to_json()
    assert doc["payload"] == '{"ts": 1, "values": {"temperature": "hot"}, "id": "m-1"}'
    assert (doc["message_id"], doc["size"], doc["truncated"], doc["deliveries"]) == ("m-1", 56, False, 1)
    assert len(doc["digest"]) == 64 and got.received == T


def test_a_huge_payload_keeps_its_first_bytes_its_size_and_hash(store):
    big = b"x" * (MAX_PAYLOAD * 3)
    store.add([letter(big)])
    [got] = store.list()
    assert got.payload == big[:MAX_PAYLOAD] and got.size == len(big) and got.truncated
    assert got.digest == letter(big).digest


def test_binary_payload_comes_back_as_base64(store):
    store.add([letter(b"\xff\x00\xfe")])
    assert store.list()[0].to_json()["payload_encoding"] == "base64"


def test_a_redelivered_rejection_is_stored_once_and_counted(store):
    store.add([letter(b"{}", rule="depth")])
    store.add([letter(b"{}", rule="depth"), letter(b"{}", rule="depth")])
    store.add([letter(b"{}", rule="depth", message_id="m-2")])  # another message
    store.add([letter(b"{}", rule="depth", property="vibration")])  # the same message, another reading
    items = store.list()
    assert [d.deliveries for d in items] == [3, 1, 1] and store.count() == 3


def test_filters_and_paging(store):
    store.add([letter(b"a", twin="B1", rule="type"), letter(b"b", twin="B2", rule="type"),
               letter(b"c", twin="B2", rule="range")])
    assert [d.payload for d in store.list(twin="B2")] == [b"b", b"c"]
    assert [d.payload for d in store.list(rule="range")] == [b"c"]
    first = store.list(limit=1)
    assert [d.payload for d in store.list(after=first[0].id or 0)] == [b"b", b"c"]


def test_a_store_from_before_the_new_columns_is_upgraded_in_place(tmp_path):
    path = tmp_path / "dead-letters.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, transport TEXT NOT NULL,"
                 " address TEXT, twin TEXT, property TEXT, rule TEXT NOT NULL, reason TEXT NOT NULL,"
                 " received TEXT NOT NULL, payload BLOB, count INTEGER NOT NULL DEFAULT 1)")
    conn.execute("INSERT INTO dead_letters (transport, rule, reason, received, payload) VALUES"
                 " ('http', 'ts', 'old', ?, x'7b7d')", [T.isoformat()])
    conn.commit()
    conn.close()
    store = SqliteDeadLetters(path)
    store.add([letter(b"new")])
    old, new = store.list()
    assert (old.reason, old.message_id, old.deliveries) == ("old", None, 1)
    assert new.message_id == "m-1"
    store.close()
