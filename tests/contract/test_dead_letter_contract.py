"""The dead-letter store's contract (``add``, ``list``, ``count``, ``close``) over memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tvilling.ingest.deadletter import MAX_PAYLOAD, DeadLetter, DeadLetterStore

T = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)


def letter(payload: bytes = b"{}", **kw: object) -> DeadLetter:
    fields: dict[str, object] = {"transport": "mqtt", "address": "tvilling/B1/telemetry", "rule": "type",
                                 "reason": "temperature: expected a number", "received": T, "twin": "B1",
                                 "property": "temperature", "message_id": "m-1"} | kw
    return DeadLetter.of(payload, **fields)


def page_all(store: DeadLetterStore, size: int, **filters: str) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    after = 0
    while True:
        page = store.list(after=after, limit=size, **filters)
        if not page:
            return out
        out.extend(page)
        after = page[-1].id or 0


def test_an_empty_store_lists_nothing_and_counts_zero(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([])
    assert dead_letters.list() == [] and dead_letters.count() == 0


def test_every_field_comes_back_as_stored(dead_letters: DeadLetterStore) -> None:
    sent = letter(b'{"ts": 1, "values": {"temperature": "hot"}}', count=4, received=T)
    dead_letters.add([sent])
    [got] = dead_letters.list()
    assert got.id is not None and got.id > 0
    for name in ("transport", "address", "twin", "property", "rule", "reason", "payload", "count", "message_id",
                 "size", "digest"):
        assert getattr(got, name) == getattr(sent, name), name
    assert got.received == T and got.received.utcoffset() is not None
    assert got.deliveries == 1 and got.key == sent.key


def test_optional_fields_may_be_absent(dead_letters: DeadLetterStore) -> None:
    bare = DeadLetter(transport="http", reason="not JSON", rule="decode", received=T)
    dead_letters.add([bare])
    [got] = dead_letters.list()
    assert (got.address, got.twin, got.property, got.message_id, got.size, got.digest) == (None,) * 6
    assert (got.payload, got.count, got.deliveries) == (b"", 1, 1)


def test_a_time_in_another_zone_is_the_same_instant(dead_letters: DeadLetterStore) -> None:
    oslo = T.astimezone(timezone(timedelta(hours=1)))
    dead_letters.add([letter(received=oslo)])
    assert dead_letters.list()[0].received == T


def test_payloads_binary_and_truncated_come_back_byte_for_byte(dead_letters: DeadLetterStore) -> None:
    binary = bytes(range(256))
    big = bytes(i % 251 for i in range(MAX_PAYLOAD + 10))
    dead_letters.add([letter(binary, message_id="bin"), letter(big, message_id="big")])
    got_binary, got_big = dead_letters.list()
    assert got_binary.payload == binary and not got_binary.truncated
    assert got_big.payload == big[:MAX_PAYLOAD] and got_big.size == len(big) and got_big.truncated


def test_ids_grow_in_the_order_letters_were_added(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([letter(message_id="a"), letter(message_id="b")])
    dead_letters.add([letter(message_id="c")])
    items = dead_letters.list()
    assert [d.message_id for d in items] == ["a", "b", "c"]
    ids = [d.id or 0 for d in items]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_a_redelivery_counts_a_delivery_and_keeps_the_first(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([letter(reason="first words")])
    dead_letters.add([letter(reason="other words")])  # same message, same rule: the same rejection
    dead_letters.add([letter(), letter()])  # twice in one batch
    [got] = dead_letters.list()
    assert (got.deliveries, got.reason) == (4, "first words") and dead_letters.count() == 1


@pytest.mark.parametrize("change", [{"transport": "opcua"}, {"address": "tvilling/B2/telemetry"},
                                    {"message_id": "m-2"}, {"twin": "B2"}, {"property": "vibration"},
                                    {"rule": "range"}, {"payload": b"[]"}])
def test_a_letter_differing_in_any_part_of_its_identity_is_another(dead_letters: DeadLetterStore,
                                                                   change: dict[str, object]) -> None:
    fields = dict(change)  # (the parameter is shared by every adapter's run)
    payload = fields.pop("payload", b"{}")
    assert isinstance(payload, bytes)
    dead_letters.add([letter(), letter(payload, **fields)])
    assert [d.deliveries for d in dead_letters.list()] == [1, 1] and dead_letters.count() == 2


def test_filters_by_twin_by_rule_and_both(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([letter(b"1", twin="B1", rule="type"), letter(b"2", twin="B2", rule="type"),
                      letter(b"3", twin="B2", rule="range"), letter(b"4", twin=None, rule="decode")])
    assert [d.payload for d in dead_letters.list(twin="B2")] == [b"2", b"3"]
    assert [d.payload for d in dead_letters.list(rule="type")] == [b"1", b"2"]
    assert [d.payload for d in dead_letters.list(twin="B2", rule="range")] == [b"3"]
    assert dead_letters.list(twin="B9") == [] and dead_letters.list(rule="nope") == []


def test_paging_with_after_and_limit_visits_each_letter_once(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([letter(str(i).encode(), twin=f"B{i % 2}") for i in range(7)])
    assert [d.payload for d in page_all(dead_letters, 3)] == [str(i).encode() for i in range(7)]
    assert [d.payload for d in page_all(dead_letters, 2, twin="B1")] == [b"1", b"3", b"5"]
    assert dead_letters.list(limit=0) == []
    last = dead_letters.list()[-1].id or 0
    assert dead_letters.list(after=last) == []
    assert len(dead_letters.list(limit=4)) == 4


def test_count_counts_letters_not_readings(dead_letters: DeadLetterStore) -> None:
    dead_letters.add([letter(count=100, message_id="a"), letter(count=3, message_id="b")])
    dead_letters.add([letter(count=100, message_id="a")])
    assert dead_letters.count() == 2
    assert sum(d.count for d in dead_letters.list()) == 103


def test_concurrent_adds_lose_nothing(dead_letters: DeadLetterStore) -> None:
    def worker(w: int) -> None:
        for i in range(25):
            dead_letters.add([letter(message_id=f"{w}-{i}")])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = dead_letters.list(limit=1000)
    assert dead_letters.count() == 100 and len({d.message_id for d in items}) == 100
    ids = [d.id or 0 for d in items]
    assert ids == sorted(ids) and len(set(ids)) == 100


def test_letters_outlive_a_reopen(store_kind: str, open_dead_letters: Callable[[], DeadLetterStore]) -> None:
    if store_kind == "memory":
        pytest.skip("the memory store lives as long as its process, by design")
    first = open_dead_letters()
    first.add([letter(message_id="a"), letter(message_id="b")])
    first.close()
    again = open_dead_letters()
    again.add([letter(message_id="a"), letter(message_id="c")])  # a redelivery after the restart is known
    assert [(d.message_id, d.deliveries) for d in again.list()] == [("a", 2), ("b", 1), ("c", 1)]
    assert again.count() == 3
