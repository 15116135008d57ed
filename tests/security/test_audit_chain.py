"""The pure audit chain: canonical hashing, records checked, seals, and verify naming the first bad entry."""

from __future__ import annotations

import doctest
import hashlib
import importlib
from datetime import UTC, datetime

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tvilling.core.errors import Invalid
from tvilling.security.audit import GENESIS, Entry, Record, chain, entry_hash, key_id, make_seal, request_hash, verify

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def build(n: int) -> list[Entry]:
    out: list[Entry] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = chain(Record(actor="alice", action="twin.patch", target=f"twin:m{i}", detail={"i": i}), seq=i, prev=prev,
                  time=T)
        out.append(e)
        prev = e.hash
    return out


@pytest.mark.parametrize("name", ["tvilling.security.audit", "tvilling.backend.audit"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_the_hash_covers_every_field_but_itself_in_canonical_json() -> None:
    e = build(1)[0]
    assert e.prev == GENESIS and e.time == "2026-03-02T08:00:00.000000Z"
    fields = e.to_json()
    del fields["hash"]
    body = msgspec.json.encode(fields, order="sorted")
    assert b" " not in body.replace(b"twin.patch", b"")  # no spaces
    assert e.hash == hashlib.sha256(body).hexdigest() == entry_hash(e)
    changes = (("actor", "bob"), ("prev", "1" * 64), ("seq", 2), ("detail", {"i": 2}), ("outcome", "refused"))
    for field, value in changes:
        assert entry_hash(msgspec.structs.replace(e, **{field: value})) != e.hash, field


def test_request_hash_is_canonical() -> None:
    assert request_hash({"b": 1, "a": [1, 2]}) == request_hash({"a": [1, 2], "b": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})


def test_records_are_checked_and_details_normalised() -> None:
    e = chain(Record(actor="a", action="x", target="t", detail={"v": float("nan"), "é": (1, 2)}), seq=1, prev=GENESIS,
              time=T)
    assert e.detail == {"v": None, "é": [1, 2]}  # as it reads back from a store
    assert entry_hash(e) == e.hash
    for bad in (Record(actor="", action="x", target="t"), Record(actor="a", action="x", target="t", outcome="?"),
                Record(actor="a", action="x", target="t", actor_kind="robot"),
                Record(actor="a", action="x", target="t", request_hash="xyz"),
                Record(actor="a", action="x", target="t", detail={"big": "x" * 10_000})):
        with pytest.raises(Invalid):
            chain(bad, seq=1, prev=GENESIS, time=T)
    with pytest.raises(Invalid):
        chain(Record(actor="a", action="x", target="t"), seq=1, prev=GENESIS, time=datetime(2026, 1, 1))


def test_an_intact_chain_with_an_unsealed_tail() -> None:
    entries = build(7)
    report = verify(entries, [make_seal(KEY, entries[4], time=T)], KEY.public_key(), seal_every=5)
    assert report.ok and (report.sealed_upto, report.unsealed, report.head_hash) == (5, 2, entries[-1].hash)
    assert "intact: 7 entries" in report.summary()
    assert verify([], [], None).ok


def test_entries_out_of_order_are_named() -> None:
    entries = build(6)
    swapped = [*entries[:2], entries[3], entries[2], *entries[4:]]
    problem = verify(swapped, [], None).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, "reordered")


def test_a_truncated_head_and_a_gap_are_deletions() -> None:
    entries = build(6)
    problem = verify(entries[2:], [], None).problem
    assert problem is not None and (problem.seq, problem.kind) == (1, "deleted")
    problem = verify(entries[:3] + entries[5:], [], None).problem
    assert problem is not None and (problem.seq, problem.kind) == (4, "deleted")
    assert "entries 4..5 are missing" in problem.reason


def test_seal_checks() -> None:
    entries = build(4)
    seal = make_seal(KEY, entries[3], time=T)
    assert seal.key_id == key_id(KEY.public_key())
    forged = msgspec.structs.replace(seal, upto_seq=3, head_hash=entries[2].hash)
    problem = verify(entries, [forged], KEY.public_key()).problem
    assert problem is not None and problem.kind == "seal_forged"
    problem = verify(entries, [seal], None).problem
    assert problem is not None and problem.kind == "seal_unknown_key"
    assert verify(entries, [seal], {seal.key_id: KEY.public_key()}).ok
    garbled = msgspec.structs.replace(seal, signature="zz")
    problem = verify(entries, [garbled], KEY.public_key()).problem
    assert problem is not None and problem.kind == "seal_forged"
