"""The tamper-evident audit chain: entries linked by SHA-256, sealed with Ed25519, and its verification.

Pure: values in, values out, no I/O (the stores live in :mod:`tvilling.backend.audit`).

An :class:`Entry` records who (``actor``, ``actor_kind``) did what (``action``) to what (``target``,
e.g. ``twin:line-1-m01``), whether it was done or ``refused``, the SHA-256 of the canonical request
(``request_hash``) and a small ``detail`` object. ``prev`` is the hash of the entry before (64 zeros
for the first) and ``hash`` the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of
every other field. A :class:`Seal` is an Ed25519 signature over the head of the chain
(``upto_seq``, ``head_hash``, ``time``, ``key_id``): rewriting entries and recomputing every hash
after them still breaks the seal, and only the holder of the private key can make a new one.

>>> from datetime import UTC, datetime
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> t = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
>>> first = chain(Record(actor="alice", action="twin.patch", target="twin:m1"), seq=1, prev=GENESIS, time=t)
>>> second = chain(Record(actor="bob", action="twin.delete", target="twin:m1"), seq=2, prev=first.hash, time=t)
>>> seal = make_seal(key, second, time=t)
>>> verify([first, second], [seal], key.public_key()).ok
True
>>> edited = msgspec.structs.replace(first, actor="mallory")
>>> report = verify([edited, second], [seal], key.public_key())
>>> report.problem.seq, report.problem.kind
(1, 'edited')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tvilling.core.errors import Invalid

GENESIS = "0" * 64
OUTCOMES = ("ok", "refused")
ACTOR_KINDS = ("user", "service", "device", "system", "anonymous")
MAX_TEXT = 512
MAX_DETAIL_BYTES = 8192
MAX_PROBLEMS = 20
#: Kinds of problem :func:`verify` names.
PROBLEM_KINDS = ("edited", "deleted", "inserted", "reordered", "seal_forged", "seal_unknown_key", "seal_mismatch",
                 "seal_missing")

_encoder = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    """The canonical JSON of ``value``: sorted keys, no spaces, UTF-8."""
    return _encoder.encode(value)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def request_hash(request: Any) -> str:
    """SHA-256 of the canonical JSON of a request, a command or a batch of them (msgspec structs allowed)."""
    return sha256_hex(canonical(msgspec.to_builtins(request, order="sorted")))


def format_time(when: datetime) -> str:
    """An entry's time: UTC, microseconds, ``Z`` (so that text order is time order)."""
    if when.tzinfo is None:
        raise Invalid("an audit time needs a time zone", field="time", rule="timezone")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """What happened, before it takes its place in the chain (see :func:`chain`)."""

    actor: str
    action: str
    target: str
    actor_kind: str = "user"
    outcome: str = "ok"
    request_hash: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One link of the chain (see the module docstring for the fields)."""

    seq: int
    time: str
    actor: str
    actor_kind: str
    action: str
    target: str
    outcome: str
    request_hash: str | None
    detail: dict[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The entry as plain JSON values."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class Seal(msgspec.Struct, frozen=True, kw_only=True):
    """An Ed25519 signature (hex) by the key ``key_id`` over the chain's head at ``upto_seq``."""

    upto_seq: int
    head_hash: str
    time: str
    key_id: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        """The seal as plain JSON values."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise Invalid(f"an audit {field} is a text of 1 to {MAX_TEXT} characters", field=field, rule="text")
    return value


def checked(record: Record) -> Record:
    """``record`` with its fields checked and its detail normalised to plain JSON; ``Invalid`` otherwise."""
    for field in ("actor", "action", "target"):
        _text(getattr(record, field), field)
    if record.actor_kind not in ACTOR_KINDS:
        raise Invalid(f"actor_kind must be one of {list(ACTOR_KINDS)}", field="actor_kind", rule="enum")
    if record.outcome not in OUTCOMES:
        raise Invalid(f"outcome must be one of {list(OUTCOMES)}", field="outcome", rule="enum")
    digest = record.request_hash
    if digest is not None and (len(digest) != 64 or digest.strip("0123456789abcdef")):
        raise Invalid("request_hash is 64 lower-case hex digits", field="request_hash", rule="sha256")
    if not isinstance(record.detail, dict):
        raise Invalid("an audit detail is a JSON object", field="detail", rule="type")
    try:
        encoded = canonical(record.detail)
    except (TypeError, msgspec.EncodeError) as exc:
        raise Invalid(f"an audit detail holds plain JSON values only: {exc}", field="detail", rule="json") from exc
    if len(encoded) > MAX_DETAIL_BYTES:
        raise Invalid(f"an audit detail is at most {MAX_DETAIL_BYTES} bytes of JSON", field="detail", rule="size")
    detail: dict[str, Any] = msgspec.json.decode(encoded)  # non-finite numbers become null, as when read back
    return msgspec.structs.replace(record, detail=detail)


def entry_hash(entry: Entry | Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every field of an entry but ``hash`` (``prev`` included)."""
    fields = entry.to_json() if isinstance(entry, Entry) else dict(entry)
    fields.pop("hash", None)
    return sha256_hex(canonical(fields))


def chain(record: Record, *, seq: int, prev: str, time: datetime) -> Entry:
    """The entry ``record`` becomes at ``seq``, after the entry whose hash is ``prev``."""
    r = checked(record)
    fields: dict[str, Any] = {"seq": seq, "time": format_time(time), "actor": r.actor, "actor_kind": r.actor_kind,
              "action": r.action, "target": r.target, "outcome": r.outcome, "request_hash": r.request_hash,
              "detail": r.detail, "prev": prev}
    return Entry(**fields, hash=entry_hash(fields))


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return sha256_hex(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))[:16]


def seal_message(upto_seq: int, head_hash: str, time: str, key: str) -> bytes:
    """The bytes a seal signs: the canonical JSON of its fields but the signature."""
    return canonical({"upto_seq": upto_seq, "head_hash": head_hash, "time": time, "key_id": key})


def make_seal(private_key: Ed25519PrivateKey, head: Entry, *, time: datetime) -> Seal:
    """Seal the chain up to and including ``head``."""
    kid = key_id(private_key.public_key())
    stamp = format_time(time)
    signature = private_key.sign(seal_message(head.seq, head.hash, stamp, kid))
    return Seal(upto_seq=head.seq, head_hash=head.hash, time=stamp, key_id=kid, signature=signature.hex())


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """What is wrong, and the sequence number of the first entry it concerns."""

    seq: int
    kind: str
    reason: str


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`verify` found: ``ok``, the chain's extent and sealing, and the first problem (if any)."""

    ok: bool
    entries: int
    last_seq: int
    head_hash: str
    seals: int
    sealed_upto: int
    unsealed: int  # entries after the last seal: reported, not an error
    problem: Problem | None = None
    problems: list[Problem] = msgspec.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def summary(self) -> str:
        """One line for a person."""
        if self.problem is not None:
            return f"audit chain BROKEN at entry {self.problem.seq}: {self.problem.kind}: {self.problem.reason}"
        tail = f"; {self.unsealed} entries after the last seal (not yet sealed)" if self.unsealed else ""
        return (f"audit chain intact: {self.entries} entries (up to seq {self.last_seq}), {self.seals} seals "
                f"up to seq {self.sealed_upto}{tail}")


Keys = Ed25519PublicKey | Mapping[str, Ed25519PublicKey] | None


def _keys(public_key: Keys) -> dict[str, Ed25519PublicKey]:
    if public_key is None:
        return {}
    if isinstance(public_key, Ed25519PublicKey):
        return {key_id(public_key): public_key}
    return dict(public_key)


def _chain_problem(entries: Sequence[Entry]) -> tuple[Problem | None, int]:
    """The first broken link of the chain, and how many entries from the start are sound."""
    at = {e.hash: i for i, e in enumerate(entries)}
    seqs = {e.seq for e in entries}
    expected, prev = 1, GENESIS
    for i, e in enumerate(entries):
        if e.seq < expected:
            return Problem(seq=e.seq, kind="reordered", reason=f"entry {e.seq} comes after entry {expected - 1}"), i
        if e.seq > expected:
            if expected in seqs:
                return Problem(seq=expected, kind="reordered",
                               reason=f"entry {expected} comes after entry {e.seq}, out of order"), i
            missing = f"entry {expected} is" if e.seq == expected + 1 else f"entries {expected}..{e.seq - 1} are"
            return Problem(seq=expected, kind="deleted", reason=f"{missing} missing (the chain jumps to {e.seq})"), i
        linked = at.get(e.prev)
        if entry_hash(e) != e.hash:
            if linked is not None and linked > i:
                return Problem(seq=e.seq, kind="reordered",
                               reason=f"the entry at {e.seq} belongs after entry {entries[linked].seq}: entries "
                                      "were swapped"), i
            if linked is not None and linked < i - 1:
                return _inserted(entries, linked, i), linked + 1
            return Problem(seq=e.seq, kind="edited",
                           reason="its content does not match its hash: a field was changed"), i
        if e.prev != prev:
            if linked is not None and linked < i - 1:
                return _inserted(entries, linked, i), linked + 1
            if linked is not None and linked > i:
                return Problem(seq=e.seq, kind="reordered",
                               reason=f"entry {e.seq} links to entry {entries[linked].seq}, which comes later"), i
            if i == 0:
                return Problem(seq=e.seq, kind="edited", reason="the first entry does not start the chain"), i
            return Problem(seq=entries[i - 1].seq, kind="edited",
                           reason=f"entry {e.seq} links to a different hash: this entry was changed and its hash "
                                  "recomputed"), i - 1
        expected, prev = e.seq + 1, e.hash
    return None, len(entries)


def _inserted(entries: Sequence[Entry], linked: int, i: int) -> Problem:
    n = i - 1 - linked
    return Problem(seq=entries[linked + 1].seq, kind="inserted",
                   reason=f"{n} entr{'y' if n == 1 else 'ies'} inserted after entry {entries[linked].seq} "
                          f"(entry {entries[i].seq} links to entry {entries[linked].seq})")


def _seal_problems(seals: Sequence[Seal], entries: Sequence[Entry], sound: int,
                   keys: dict[str, Ed25519PublicKey], seal_every: int | None) -> list[Problem]:
    out: list[Problem] = []
    by_seq = {e.seq: e for e in entries[:sound]}
    last = entries[-1].seq if entries else 0
    before = 0
    for s in sorted(seals, key=lambda s: s.upto_seq):
        start = before + 1
        key = keys.get(s.key_id)
        if key is None:
            out.append(Problem(seq=start, kind="seal_unknown_key",
                               reason=f"the seal of entries {start}..{s.upto_seq} is signed by key {s.key_id}, "
                                      "which is not a trusted key"))
        else:
            try:
                key.verify(bytes.fromhex(s.signature), seal_message(s.upto_seq, s.head_hash, s.time, s.key_id))
            except (InvalidSignature, ValueError):
                out.append(Problem(seq=start, kind="seal_forged",
                                   reason=f"the seal of entries {start}..{s.upto_seq} has a bad signature"))
        entry = by_seq.get(s.upto_seq)
        if s.upto_seq > last:
            out.append(Problem(seq=last + 1, kind="deleted",
                               reason=f"a seal covers entries up to {s.upto_seq} but the chain ends at {last}"))
        elif entry is not None and entry.hash != s.head_hash:
            out.append(Problem(seq=start, kind="seal_mismatch",
                               reason=f"the seal of entries {start}..{s.upto_seq} does not match the chain: an "
                                      "entry in that range was rewritten and the hashes after it recomputed"))
        if seal_every is not None and s.upto_seq - before > seal_every:
            out.append(Problem(seq=start, kind="seal_missing",
                               reason=f"entries {start}..{s.upto_seq} span more than the {seal_every} entries "
                                      "between seals: a seal was removed"))
        before = max(before, s.upto_seq)
    if seal_every is not None and last - before > seal_every:
        out.append(Problem(seq=before + 1, kind="seal_missing",
                           reason=f"{last - before} entries after the last seal, more than the {seal_every} "
                                  "between seals: a seal was removed"))
    return out


def verify(entries: Sequence[Entry], seals: Sequence[Seal], public_key: Keys, *,
           seal_every: int | None = None) -> Report:
    """Check the whole chain (``entries`` in stored order, from seq 1) and its seals.

    ``public_key`` is the trusted sealing key, or trusted keys by :func:`key_id`. ``seal_every``,
    when given, is the most entries between two seals (a longer gap means a seal was removed).
    The report names the first bad entry and why: ``edited`` (hash mismatch), ``deleted`` (a gap),
    ``inserted``, ``reordered``, or a seal that is forged, signed by an unknown key, does not match
    the chain, or is missing. Entries after the last seal are counted in ``unsealed``, not an error.
    """
    chained, sound = _chain_problem(entries)
    problems = [] if chained is None else [chained]
    problems += _seal_problems(seals, entries, sound, _keys(public_key), seal_every)
    problems.sort(key=lambda p: p.seq)
    sealed_upto = max((s.upto_seq for s in seals), default=0)
    last = entries[-1] if entries else None
    last_seq = 0 if last is None else last.seq
    return Report(ok=not problems, entries=len(entries), last_seq=last_seq,
                  head_hash=GENESIS if last is None else last.hash, seals=len(seals), sealed_upto=sealed_upto,
                  unsealed=max(last_seq - sealed_upto, 0), problem=problems[0] if problems else None,
                  problems=problems[:MAX_PROBLEMS])


__all__ = ["GENESIS", "Entry", "Problem", "Record", "Report", "Seal", "canonical", "chain", "entry_hash", "key_id",
           "make_seal", "request_hash", "verify"]
