"""Maintenance work orders in the backend, and the feed of their changes.

One row per order (its document, with the columns the queries need: state, asset, planned
window, version) and one item per change in ``work_order_changes``, written in the same
transaction; the change stream reads that feed as the source ``workorders``. Updates are
compare-and-set on ``version``: of two writers that read the same version, one wins and the
other gets :class:`~tvilling.core.errors.PreconditionFailed`.

Adapters, chosen in :mod:`tvilling.backend.stores`: :class:`MemoryWorkOrders`, and
:class:`SqlWorkOrders` over the embedded SQLite file (``tvilling.db``) or a PostgreSQL schema
(one class, the dialect's SQL). On PostgreSQL every write takes a transaction-scoped advisory
lock, so feed positions become visible in order.

>>> from datetime import UTC, datetime
>>> from tvilling.planning.workorders import APPROVED, propose, transition
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> store = MemoryWorkOrders()
>>> order = propose({"task": "lube", "asset": "M1", "planned_start": "2026-03-03T06:00:00Z",
...                  "planned_end": "2026-03-03T07:00:00Z", "id": "wo-1"}, now=t0, by="planner")
>>> store.add(order, by="planner")
>>> store.update(transition(order, APPROVED, now=t0, by="alice"), expected_version=1, by="alice")
>>> [(item["state"], item["previous"]) for _, item in store.changes(0, 10)]
[('proposed', None), ('approved', 'proposed')]
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.planning.workorders import STATES, WorkOrder, change_item, sort_key

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

TABLE, CHANGES = "work_orders", "work_order_changes"
MAX_LIST = 1000
_decoder = msgspec.json.Decoder(WorkOrder)
_encoder = msgspec.json.Encoder()


@runtime_checkable
class WorkOrderStore(Protocol):
    """Work orders by id, queried by state, asset and planned window, and the feed of their changes."""

    def add(self, order: WorkOrder, *, by: str) -> None:
        """Store a new order and its change item; ``Conflict`` (rule ``exists``) if the id is taken."""

    def get(self, order_id: str) -> WorkOrder:
        """The order ``order_id``; ``NotFound`` naming it otherwise."""
        ...

    def update(self, order: WorkOrder, *, expected_version: int, by: str) -> None:
        """Replace the order if it is still at ``expected_version``; append its change item.

        ``NotFound`` when there is no such order, ``PreconditionFailed`` (rule ``stale_version``)
        when another writer changed it since.
        """

    def list(self, *, state: str | None = None, asset: str | None = None, start: datetime | None = None,
             end: datetime | None = None, after: str | None = None, limit: int = 100) -> builtins.list[WorkOrder]:
        """Orders by planned start (then id), filtered: ``state``, ``asset``, and a planned window that
        overlaps ``[start, end)``; ``after`` is the id of the last order of the previous page."""
        ...

    def changes(self, after: int, limit: int) -> builtins.list[tuple[int, dict[str, Any]]]:
        """Change items with a position after ``after``, at most ``limit``, in order."""
        ...

    def close(self) -> None:
        """Release what the store holds."""


def check_list_args(state: str | None, start: datetime | None, end: datetime | None, limit: int) -> None:
    """The checks every adapter's :meth:`WorkOrderStore.list` makes on its arguments."""
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {list(STATES)}; got {state!r}", field="state", rule="enum")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}; got {limit!r}", field="limit", rule="range")
    if start is not None and end is not None and end <= start:
        raise Invalid("the time range's end must be after its start", field="end", rule="order")


def missing(order_id: str) -> NotFound:
    return NotFound(f"there is no work order {order_id!r}", workorder=order_id)


def stale(order_id: str, expected: int, actual: int) -> PreconditionFailed:
    return PreconditionFailed(f"work order {order_id} is at version {actual}, not {expected}: someone else changed "
                              "it; read it again", workorder=order_id, expected=expected, version=actual,
                              rule="stale_version")


def exists(order_id: str) -> Conflict:
    return Conflict(f"work order {order_id} exists already", workorder=order_id, field="id", rule="exists")


def unknown_cursor(after: str) -> Invalid:
    return Invalid(f"after={after!r} is not the id of a stored work order", field="after", rule="cursor")


def _doc(order: WorkOrder) -> str:
    return _encoder.encode(order).decode()


class MemoryWorkOrders:
    """Work orders in process memory (lost with the process)."""

    def __init__(self) -> None:
        self._orders: dict[str, WorkOrder] = {}
        self._changes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, order: WorkOrder, *, by: str) -> None:
        with self._lock:
            if order.id in self._orders:
                raise exists(order.id)
            self._orders[order.id] = order
            self._changes.append(change_item(order, None, by))

    def get(self, order_id: str) -> WorkOrder:
        with self._lock:
            found = self._orders.get(order_id)
        if found is None:
            raise missing(order_id)
        return found

    def update(self, order: WorkOrder, *, expected_version: int, by: str) -> None:
        with self._lock:
            current = self._orders.get(order.id)
            if current is None:
                raise missing(order.id)
            if current.version != expected_version:
                raise stale(order.id, expected_version, current.version)
            self._orders[order.id] = order
            self._changes.append(change_item(order, current.state, by))

    def list(self, *, state: str | None = None, asset: str | None = None, start: datetime | None = None,
             end: datetime | None = None, after: str | None = None, limit: int = 100) -> builtins.list[WorkOrder]:
        check_list_args(state, start, end, limit)
        with self._lock:
            rows = sorted(self._orders.values(), key=lambda o: (sort_key(o.planned_start), o.id))
            if after is not None:
                cursor = self._orders.get(after)
                if cursor is None:
                    raise unknown_cursor(after)
                key = (sort_key(cursor.planned_start), cursor.id)
                rows = [o for o in rows if (sort_key(o.planned_start), o.id) > key]
        out = [o for o in rows if (state is None or o.state == state) and (asset is None or o.asset == asset)
               and (end is None or o.planned_start < end) and (start is None or o.planned_end > start)]
        return out[:limit]

    def changes(self, after: int, limit: int) -> builtins.list[tuple[int, dict[str, Any]]]:
        with self._lock:
            first = max(after, 0)
            return [(first + i + 1, dict(c)) for i, c in enumerate(self._changes[first:first + limit])]

    def close(self) -> None:
        """Nothing to release."""


class SqlWorkOrders:
    """Work orders in the ``work_orders`` table of the embedded SQLite file or of a PostgreSQL schema.

    ``target`` is the backend's shared database (a :class:`SqliteDatabase` or a ``PostgresDatabase``), or a
    SQLite path / a ``postgresql://`` DSN, in which case the store opens a database of its own and closes it
    with itself.
    """

    def __init__(self, target: SqliteDatabase | PostgresDatabase | str | os.PathLike[str], *,
                 schema: str = "tvilling") -> None:
        self._db: SqliteDatabase | PostgresDatabase
        if (isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))) \
                or not isinstance(target, SqliteDatabase | str | os.PathLike):
            from tvilling.backend.postgres import postgres_database

            self._db, self._owns = postgres_database(target, schema)
        else:
            self._db, self._owns = sqlite_database(target)
        self._pg = self._db.dialect == "postgresql"
        if self._pg:
            quoted = '"' + self._db.schema.replace('"', '""') + '"'  # type: ignore[union-attr]
            self._orders, self._feed = f"{quoted}.{TABLE}", f"{quoted}.{CHANGES}"
            serial = "bigserial PRIMARY KEY"
            self._lock_key = self._db.lock_key(CHANGES)  # type: ignore[union-attr]
        else:
            self._orders, self._feed = TABLE, CHANGES
            serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        o = self._orders
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {o} (seq {serial}, id TEXT NOT NULL UNIQUE, asset TEXT NOT NULL, "
                "state TEXT NOT NULL, planned_start TEXT NOT NULL, planned_end TEXT NOT NULL, "
                "version INTEGER NOT NULL, doc TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_start ON {o} (planned_start, id)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_asset ON {o} (asset, planned_start, id)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_state ON {o} (state, planned_start, id)",
                f"CREATE TABLE IF NOT EXISTS {self._feed} (position {serial}, item TEXT NOT NULL)",
            ], "preparing the work order tables")
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

    def _read(self, what: str, statement: str, params: Any = ()) -> list[Any]:
        return self._db.read(what, self._sql(statement), params)

    def _append(self, conn: Any, item: dict[str, Any]) -> None:
        conn.execute(self._sql(f"INSERT INTO {self._feed} (item) VALUES (?)"), (_encoder.encode(item).decode(),))

    def add(self, order: WorkOrder, *, by: str) -> None:
        with self._write(f"cannot store work order {order.id!r}") as conn:
            if conn.execute(self._sql(f"SELECT 1 FROM {self._orders} WHERE id = ?"), (order.id,)).fetchall():
                raise exists(order.id)
            conn.execute(self._sql(f"INSERT INTO {self._orders} (id, asset, state, planned_start, planned_end, "
                                   "version, doc) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                         (order.id, order.asset, order.state, sort_key(order.planned_start),
                          sort_key(order.planned_end), order.version, _doc(order)))
            self._append(conn, change_item(order, None, by))

    def get(self, order_id: str) -> WorkOrder:
        rows = self._read(f"cannot read work order {order_id!r}", f"SELECT doc FROM {self._orders} WHERE id = ?",
                          (order_id,))
        if not rows:
            raise missing(order_id)
        return _decoder.decode(rows[0][0])

    def update(self, order: WorkOrder, *, expected_version: int, by: str) -> None:
        with self._write(f"cannot update work order {order.id!r}") as conn:
            rows = conn.execute(self._sql(f"SELECT state, version FROM {self._orders} WHERE id = ?"),
                                (order.id,)).fetchall()
            if not rows:
                raise missing(order.id)
            previous, version = rows[0][0], int(rows[0][1])
            if version != expected_version:
                raise stale(order.id, expected_version, version)
            conn.execute(self._sql(f"UPDATE {self._orders} SET asset = ?, state = ?, planned_start = ?, "
                                   "planned_end = ?, version = ?, doc = ? WHERE id = ?"),
                         (order.asset, order.state, sort_key(order.planned_start), sort_key(order.planned_end),
                          order.version, _doc(order), order.id))
            self._append(conn, change_item(order, previous, by))

    def list(self, *, state: str | None = None, asset: str | None = None, start: datetime | None = None,
             end: datetime | None = None, after: str | None = None, limit: int = 100) -> builtins.list[WorkOrder]:
        check_list_args(state, start, end, limit)
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            found = self._read("cannot list work orders", f"SELECT planned_start FROM {self._orders} WHERE id = ?",
                               (after,))
            if not found:
                raise unknown_cursor(after)
            where.append("(planned_start, id) > (?, ?)")
            args += [found[0][0], after]
        for clause, value in (("state = ?", state), ("asset = ?", asset),
                              ("planned_start < ?", None if end is None else sort_key(end)),
                              ("planned_end > ?", None if start is None else sort_key(start))):
            if value is not None:
                where.append(clause)
                args.append(value)
        text = f"SELECT doc FROM {self._orders}"
        if where:
            text += " WHERE " + " AND ".join(where)
        rows = self._read("cannot list work orders", text + " ORDER BY planned_start, id LIMIT ?", (*args, limit))
        return [_decoder.decode(r[0]) for r in rows]

    def changes(self, after: int, limit: int) -> builtins.list[tuple[int, dict[str, Any]]]:
        rows = self._read("cannot read the work order changes",
                          f"SELECT position, item FROM {self._feed} WHERE position > ? ORDER BY position LIMIT ?",
                          (after, limit))
        return [(int(p), msgspec.json.decode(i)) for p, i in rows]

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


__all__ = ["MAX_LIST", "MemoryWorkOrders", "SqlWorkOrders", "WorkOrderStore"]
