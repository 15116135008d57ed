"""The audit chain in the backend: memory, the embedded SQLite file, or a PostgreSQL schema.

Appends are serialised, so ``seq`` and ``prev`` stay one unbroken chain: a lock in memory;
``BEGIN IMMEDIATE`` (one writer across threads and processes) in SQLite; a transaction-scoped
advisory lock in PostgreSQL, so two processes never read the same head. ``prev`` is also
``UNIQUE`` in the table: two entries can never follow the same one (a fork), whatever the writer.
An append made inside :meth:`~tvilling.backend.Backend.transaction` commits with the other writes.

Every ``seal_every`` entries (default 100; None: only on demand) the append also seals the head
with the signing key (:meth:`AuditStore.seal` seals on demand). The key is an Ed25519 private key
in PEM, made on first use with mode 0600:

* embedded: ``<data dir>/audit-signing.pem``;
* PostgreSQL: the file ``TVILLING_AUDIT_KEY`` names, else ``./tvilling-data/audit-signing.pem``
  (the current directory's data directory). Every process writing to one schema must use the
  same key file, or the others' seals are reported as signed by an unknown key;
* memory: a key in memory, unless a path is given.

The key file beside the database lets whoever can write both re-sign a rewritten chain: keep a
copy of the public key (``tvilling audit key``) elsewhere and verify against it
(``tvilling audit verify --public-key FILE``).

>>> store = MemoryAudit(seal_every=2)
>>> from tvilling.security.audit import Record
>>> [store.append(Record(actor="alice", action="twin.patch", target=f"twin:m{i}")).seq for i in range(3)]
[1, 2, 3]
>>> report = store.verify()
>>> report.ok, report.sealed_upto, report.unsealed
(True, 2, 1)
"""

from __future__ import annotations

import builtins
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Invalid, Unavailable
from tvilling.security.audit import GENESIS, Entry, Record, Report, Seal, chain, format_time, make_seal, verify

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

LOG, SEALS = "audit_log", "audit_seals"
KEY_FILE = "audit-signing.pem"
KEY_ENV = "TVILLING_AUDIT_KEY"
SEAL_EVERY = 100
MAX_LIST = 1000
PAGE = 5000
COLUMNS = ("seq", "time", "actor", "actor_kind", "action", "target", "outcome", "request_hash", "detail", "prev",
           "hash")


@runtime_checkable
class AuditStore(Protocol):
    """The append-only audit chain and its seals."""

    seal_every: int | None

    def append(self, record: Record) -> Entry:
        """Chain ``record`` after the head; the entry as stored."""
        ...

    def append_many(self, records: Sequence[Record]) -> builtins.list[Entry]:
        """Chain ``records`` in order, in one transaction."""
        ...

    def list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
             since: datetime | None = None, until: datetime | None = None, after: int = 0,
             limit: int = 100) -> builtins.list[Entry]:
        """Entries by seq, filtered (time in ``[since, until)``); ``after`` is the last seq of the previous page."""
        ...

    def seals(self) -> builtins.list[Seal]:
        """Every seal, by ``upto_seq``."""
        ...

    def seal(self) -> Seal | None:
        """Seal the head now; None when it is sealed already (or the chain is empty)."""
        ...

    def head(self) -> tuple[int, str]:
        """The last seq and its hash (0 and the genesis hash when empty)."""
        ...

    def public_key(self) -> Ed25519PublicKey | None:
        """The public half of the signing key, None while there is none yet."""
        ...

    def verify(self, *, public_key: Ed25519PublicKey | None = None) -> Report:
        """Verify the whole chain; seals against ``public_key`` (default: this store's own key)."""
        ...

    def close(self) -> None:
        """Release what the store holds."""


def key_path_for(data_dir: str | os.PathLike[str] | None) -> Path:
    """Where the signing key is: ``TVILLING_AUDIT_KEY``, else ``audit-signing.pem`` in the data directory
    (``./tvilling-data`` when none is given)."""
    named = os.environ.get(KEY_ENV)
    if named:
        return Path(named)
    return Path(data_dir if data_dir is not None else "tvilling-data") / KEY_FILE


class SigningKey:
    """The Ed25519 sealing key: in memory, or a PEM file made on first use (mode 0600, never overwritten)."""

    def __init__(self, path: str | os.PathLike[str] | None, key: Ed25519PrivateKey | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._key = key
        self._lock = threading.Lock()

    def private(self) -> Ed25519PrivateKey:
        """The private key: loaded, or made (and saved when there is a path) on first use."""
        with self._lock:
            if self._key is None:
                self._key = self._load() if self.path is not None and self.path.exists() else self._make()
            return self._key

    def public(self) -> Ed25519PublicKey | None:
        """The public key, without making a key when there is none yet."""
        with self._lock:
            if self._key is None and (self.path is None or not self.path.exists()):
                return None
            if self._key is None:
                self._key = self._load()
            return self._key.public_key()

    def _load(self) -> Ed25519PrivateKey:
        path = Path(self.path or "")
        try:
            mode = path.stat().st_mode
            if os.name == "posix" and mode & 0o077:
                raise Unavailable(f"the audit signing key {path} is readable by others (mode {mode & 0o777:o}); "
                                  "make it 0600 (chmod 600)", path=str(path), rule="key_permissions")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise Unavailable(f"cannot read the audit signing key {path}: {exc}", path=str(path)) from exc
        except (ValueError, TypeError) as exc:
            raise Unavailable(f"{path} is not a PEM private key: {exc}", path=str(path)) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise Unavailable(f"{path} is not an Ed25519 key", path=str(path), rule="key_type")
        return key

    def _make(self) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        if self.path is None:
            return key
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temp, self.path)  # atomic, and never replaces a key another process made first
            except FileExistsError:
                return self._load()
        except OSError as exc:
            raise Unavailable(f"cannot make the audit signing key {self.path}: {exc}", path=str(self.path)) from exc
        finally:
            temp.unlink(missing_ok=True)
        return key


def check_list_args(after: int, limit: int, since: datetime | None, until: datetime | None) -> None:
    """The checks every adapter's :meth:`AuditStore.list` makes on its arguments."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}; got {limit!r}", field="limit", rule="range")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise Invalid(f"after must be a sequence number ≥ 0; got {after!r}", field="after", rule="range")
    if since is not None and until is not None and until <= since:
        raise Invalid("the time range's end must be after its start", field="to", rule="order")


def _now() -> datetime:
    return datetime.now(UTC)


class _Chain(ABC):
    """What every adapter shares: chaining, sealing at the interval, verifying."""

    seal_every: int | None

    def __init__(self, key: SigningKey, seal_every: int | None) -> None:
        if seal_every is not None and seal_every < 1:
            raise Invalid("seal_every is at least 1 (or None: seal on demand only)", field="seal_every",
                          rule="range")
        self.key = key
        self.seal_every = seal_every

    def _chain(self, records: Sequence[Record], seq: int, prev: str,
               sealed: int) -> tuple[builtins.list[Entry], builtins.list[Seal]]:
        """The entries ``records`` become after the head (``seq``, ``prev``), and the seals due among them."""
        when = _now()
        entries: builtins.list[Entry] = []
        seals: builtins.list[Seal] = []
        for record in records:
            seq += 1
            entry = chain(record, seq=seq, prev=prev, time=when)
            entries.append(entry)
            prev = entry.hash
            if self.seal_every is not None and seq - sealed >= self.seal_every:
                seals.append(make_seal(self.key.private(), entry, time=when))
                sealed = seq
        return entries, seals

    def _seal_head(self, seq: int, head: Entry | None, sealed: int) -> Seal | None:
        if head is None or seq <= sealed:
            return None
        return make_seal(self.key.private(), head, time=_now())

    def public_key(self) -> Ed25519PublicKey | None:
        return self.key.public()

    @abstractmethod
    def _all(self) -> builtins.list[Entry]:
        """Every entry, by sequence number (each store reads its own)."""

    @abstractmethod
    def seals(self) -> builtins.list[Seal]:
        """Every seal, by the sequence number it seals up to."""

    def verify(self, *, public_key: Ed25519PublicKey | None = None) -> Report:
        trusted = public_key if public_key is not None else self.key.public()
        return verify(self._all(), self.seals(), trusted, seal_every=self.seal_every)


class MemoryAudit(_Chain):
    """The audit chain in process memory (lost with the process)."""

    def __init__(self, *, key_path: str | os.PathLike[str] | None = None,
                 private_key: Ed25519PrivateKey | None = None, seal_every: int | None = SEAL_EVERY) -> None:
        super().__init__(SigningKey(key_path, private_key), seal_every)
        self._entries: builtins.list[Entry] = []
        self._seals: builtins.list[Seal] = []
        self._lock = threading.Lock()

    def append(self, record: Record) -> Entry:
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[Record]) -> builtins.list[Entry]:
        with self._lock:
            seq, prev = self._head()
            entries, seals = self._chain(records, seq, prev, self._sealed())
            self._entries.extend(entries)
            self._seals.extend(seals)
            return entries

    def _head(self) -> tuple[int, str]:
        return (self._entries[-1].seq, self._entries[-1].hash) if self._entries else (0, GENESIS)

    def _sealed(self) -> int:
        return self._seals[-1].upto_seq if self._seals else 0

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._head()

    def list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
             since: datetime | None = None, until: datetime | None = None, after: int = 0,
             limit: int = 100) -> builtins.list[Entry]:
        check_list_args(after, limit, since, until)
        start = None if since is None else format_time(since)
        end = None if until is None else format_time(until)
        with self._lock:
            rows = self._entries[after:] if after else list(self._entries)
        out = [e for e in rows if (actor is None or e.actor == actor) and (action is None or e.action == action)
               and (target is None or e.target == target) and (start is None or e.time >= start)
               and (end is None or e.time < end)]
        return out[:limit]

    def seal(self) -> Seal | None:
        with self._lock:
            seal = self._seal_head(self._head()[0], self._entries[-1] if self._entries else None, self._sealed())
            if seal is not None:
                self._seals.append(seal)
            return seal

    def seals(self) -> builtins.list[Seal]:
        with self._lock:
            return list(self._seals)

    def _all(self) -> builtins.list[Entry]:
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        """Nothing to release."""


class SqlAudit(_Chain):
    """The audit chain in the tables ``audit_log`` and ``audit_seals`` of the embedded SQLite file or of a
    PostgreSQL schema.

    ``target`` is the backend's shared database, or a SQLite path / a ``postgresql://`` DSN (the store then
    opens a database of its own and closes it with itself). ``key_path`` defaults as the module says.
    """

    def __init__(self, target: SqliteDatabase | PostgresDatabase | str | os.PathLike[str], *,
                 schema: str = "tvilling", key_path: str | os.PathLike[str] | None = None,
                 seal_every: int | None = SEAL_EVERY) -> None:
        self._db: SqliteDatabase | PostgresDatabase
        if (isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))) \
                or not isinstance(target, SqliteDatabase | str | os.PathLike):
            from tvilling.backend.postgres import postgres_database

            self._db, self._owns = postgres_database(target, schema)
        else:
            self._db, self._owns = sqlite_database(target)
        self._pg = self._db.dialect == "postgresql"
        if key_path is None:
            key_path = key_path_for(None if self._pg else self._db.path.parent)  # type: ignore[union-attr]
        super().__init__(SigningKey(key_path), seal_every)
        if self._pg:
            quoted = '"' + self._db.schema.replace('"', '""') + '"'  # type: ignore[union-attr]
            self._log, self._seal_table = f"{quoted}.{LOG}", f"{quoted}.{SEALS}"
            self._lock_key = self._db.lock_key(LOG)  # type: ignore[union-attr]
        else:
            self._log, self._seal_table = LOG, SEALS
        log = self._log
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {log} (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, "
                "actor_kind TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, "
                "request_hash TEXT, detail TEXT NOT NULL, prev TEXT NOT NULL UNIQUE, hash TEXT NOT NULL UNIQUE)",
                f"CREATE INDEX IF NOT EXISTS {LOG}_actor ON {log} (actor, seq)",
                f"CREATE INDEX IF NOT EXISTS {LOG}_action ON {log} (action, seq)",
                f"CREATE INDEX IF NOT EXISTS {LOG}_target ON {log} (target, seq)",
                f"CREATE INDEX IF NOT EXISTS {LOG}_time ON {log} (time, seq)",
                f"CREATE TABLE IF NOT EXISTS {self._seal_table} (upto_seq BIGINT PRIMARY KEY, head_hash TEXT NOT NULL, "
                "time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)",
            ], "preparing the audit tables")
        except BaseException:
            self.close()
            raise

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._pg else statement

    @contextmanager
    def _write(self, what: str) -> Iterator[Any]:
        with self._db.write(what) as conn:
            if self._pg:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield conn

    def _state(self, conn: Any) -> tuple[Entry | None, int]:
        """The head entry and the last sealed seq, read inside the write."""
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {self._log} ORDER BY seq DESC LIMIT 1").fetchall()
        sealed = conn.execute(f"SELECT max(upto_seq) FROM {self._seal_table}").fetchall()
        return (_entry(rows[0]) if rows else None), int(sealed[0][0] or 0)

    def _insert_seals(self, conn: Any, seals: Sequence[Seal]) -> None:
        if seals:
            _many(conn, self._sql(f"INSERT INTO {self._seal_table} (upto_seq, head_hash, time, key_id, signature) "
                                  "VALUES (?, ?, ?, ?, ?)"),
                  [(s.upto_seq, s.head_hash, s.time, s.key_id, s.signature) for s in seals])

    def append(self, record: Record) -> Entry:
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[Record]) -> builtins.list[Entry]:
        if not records:
            return []
        with self._write("cannot append to the audit chain") as conn:
            head, sealed = self._state(conn)
            entries, seals = self._chain(records, 0 if head is None else head.seq,
                                         GENESIS if head is None else head.hash, sealed)
            marks = ", ".join("?" * len(COLUMNS))
            _many(conn, self._sql(f"INSERT INTO {self._log} ({', '.join(COLUMNS)}) VALUES ({marks})"),
                  [_row(e) for e in entries])
            self._insert_seals(conn, seals)
        return entries

    def seal(self) -> Seal | None:
        with self._write("cannot seal the audit chain") as conn:
            head, sealed = self._state(conn)
            seal = self._seal_head(0 if head is None else head.seq, head, sealed)
            if seal is not None:
                self._insert_seals(conn, [seal])
            return seal

    def head(self) -> tuple[int, str]:
        rows = self._db.read("cannot read the audit chain",
                             f"SELECT seq, hash FROM {self._log} ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS)

    def list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
             since: datetime | None = None, until: datetime | None = None, after: int = 0,
             limit: int = 100) -> builtins.list[Entry]:
        check_list_args(after, limit, since, until)
        where: builtins.list[str] = ["seq > ?"]
        args: builtins.list[Any] = [after]
        for clause, value in (("actor = ?", actor), ("action = ?", action), ("target = ?", target),
                              ("time >= ?", None if since is None else format_time(since)),
                              ("time < ?", None if until is None else format_time(until))):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self._db.read("cannot list the audit chain",
                             self._sql(f"SELECT {', '.join(COLUMNS)} FROM {self._log} WHERE {' AND '.join(where)} "
                                       "ORDER BY seq LIMIT ?"), (*args, limit))
        return [_entry(r) for r in rows]

    def seals(self) -> builtins.list[Seal]:
        rows = self._db.read("cannot read the audit seals",
                             f"SELECT upto_seq, head_hash, time, key_id, signature FROM {self._seal_table} "
                             "ORDER BY upto_seq")
        return [Seal(upto_seq=int(r[0]), head_hash=r[1], time=r[2], key_id=r[3], signature=r[4]) for r in rows]

    def _all(self) -> builtins.list[Entry]:
        out: builtins.list[Entry] = []
        while True:
            rows = self._db.read("cannot read the audit chain",
                                 self._sql(f"SELECT {', '.join(COLUMNS)} FROM {self._log} WHERE seq > ? "
                                           "ORDER BY seq LIMIT ?"), (out[-1].seq if out else -1 << 62, PAGE))
            out.extend(_entry(r) for r in rows)
            if len(rows) < PAGE:
                return out

    def close(self) -> None:
        """Close the database if this store opened it."""
        if getattr(self, "_owns", False):
            self._db.close()


def _many(conn: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if hasattr(conn, "executemany"):
        conn.executemany(statement, rows)
    else:
        with conn.cursor() as cur:
            cur.executemany(statement, rows)


def _row(e: Entry) -> tuple[Any, ...]:
    return (e.seq, e.time, e.actor, e.actor_kind, e.action, e.target, e.outcome, e.request_hash,
            msgspec.json.encode(e.detail, order="sorted").decode(), e.prev, e.hash)


def _entry(r: Sequence[Any]) -> Entry:
    try:
        detail = msgspec.json.decode(r[8])
    except msgspec.DecodeError:
        detail = {"unreadable": str(r[8])[:200]}  # a tampered row: verify reports it as edited
    return Entry(seq=int(r[0]), time=r[1], actor=r[2], actor_kind=r[3], action=r[4], target=r[5], outcome=r[6],
                 request_hash=r[7], detail=detail, prev=r[9], hash=r[10])


__all__ = ["KEY_FILE", "MAX_LIST", "SEAL_EVERY", "AuditStore", "MemoryAudit", "SigningKey", "SqlAudit", "key_path_for"]
