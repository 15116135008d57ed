"""Production orders and plans in the backend.

Orders: one row per order (its document, with the columns the queries need), updated compare-and-set on
``version``. Plans: one row per plan, never changed; the plan in force for a line is the newest one stored
for it, and a new plan is stored only if the plan in force is still the one it replaced
(``expected_current``), so that of two planners that started from the same plan one wins and the other gets
:class:`~tvilling.core.errors.Conflict`.

Adapters, chosen in :mod:`tvilling.backend.stores`: :class:`MemoryProduction`, and :class:`SqlProduction` over
the embedded SQLite file (``tvilling.db``) or a PostgreSQL schema (one class, the dialect's SQL; on PostgreSQL
every write takes a transaction-scoped advisory lock).

>>> from datetime import UTC, datetime
>>> from tvilling.planning.production import ProductionPlan
>>> store = MemoryProduction()
>>> t = datetime(2026, 3, 2, tzinfo=UTC)
>>> store.save_plan(ProductionPlan("p1", t, "line-1", (), (), {}), expected_current=None)
>>> store.current("line-1").id, store.current("line-2")
('p1', None)
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.planning.production import ProductionPlan
from tvilling.planning.production_json import iso, plan_from_json, plan_to_json
from tvilling.planning.production_orders import STATES, ProductionOrder

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

ORDERS, PLANS = "production_orders", "production_plans"
MAX_LIST = 1000
_decoder = msgspec.json.Decoder(ProductionOrder)
_encoder = msgspec.json.Encoder()


@runtime_checkable
class ProductionStore(Protocol):
    """Production orders by id and line, and each line's plans (the newest is the one in force)."""

    def add_order(self, order: ProductionOrder) -> None:
        """Store a new order; ``Conflict`` (rule ``exists``) if its id is taken."""

    def get_order(self, order_id: str) -> ProductionOrder:
        """The order ``order_id``; ``NotFound`` naming it otherwise."""
        ...

    def update_order(self, order: ProductionOrder, *, expected_version: int) -> None:
        """Replace the order if it is still at ``expected_version`` (else ``PreconditionFailed``)."""

    def list_orders(self, *, line: str | None = None, state: str | None = None, after: str | None = None,
                    limit: int = 100) -> builtins.list[ProductionOrder]:
        """Orders in the order they were created, filtered by line and state; ``after``: the previous page's
        last id."""
        ...

    def save_plan(self, plan: ProductionPlan, *, expected_current: str | None) -> None:
        """Store ``plan`` as its line's plan in force if the one in force is still ``expected_current``;
        ``Conflict`` (rule ``stale_plan``) otherwise, or when the id is taken."""

    def get_plan(self, plan_id: str) -> ProductionPlan:
        """The plan ``plan_id``; ``NotFound`` naming it otherwise."""
        ...

    def current(self, line: str) -> ProductionPlan | None:
        """The plan in force for ``line`` (the newest stored), or ``None``."""
        ...

    def plans(self, line: str, *, limit: int = 20) -> builtins.list[ProductionPlan]:
        """The line's plans, newest first."""
        ...

    def close(self) -> None:
        """Release what the store holds."""


def check_list(state: str | None, limit: int) -> None:
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {list(STATES)}; got {state!r}", field="state", rule="enum")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}; got {limit!r}", field="limit", rule="range")


def _missing_order(order_id: str) -> NotFound:
    return NotFound(f"there is no production order {order_id!r}", order=order_id)


def _missing_plan(plan_id: str) -> NotFound:
    return NotFound(f"there is no production plan {plan_id!r}", plan=plan_id)


def _stale_order(order_id: str, expected: int, actual: int) -> PreconditionFailed:
    return PreconditionFailed(f"production order {order_id} is at version {actual}, not {expected}: someone else "
                              "changed it; read it again", order=order_id, expected=expected, version=actual,
                              rule="stale_version")


def _stale_plan(line: str, expected: str | None, actual: str | None) -> Conflict:
    return Conflict(f"line {line}: the plan in force is {actual or 'none'}, not {expected or 'none'}: another plan "
                    "was made meanwhile; plan again", line=line, expected=expected, current=actual,
                    rule="stale_plan")


def _unknown_cursor(after: str) -> Invalid:
    return Invalid(f"after={after!r} is not the id of a stored production order", field="after", rule="cursor")


def _plan_doc(plan: ProductionPlan) -> str:
    return json.dumps(plan_to_json(plan), allow_nan=False)


class MemoryProduction:
    """Orders and plans in process memory (lost with the process)."""

    def __init__(self) -> None:
        self._orders: dict[str, ProductionOrder] = {}
        self._plans: dict[str, ProductionPlan] = {}
        self._by_line: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def add_order(self, order: ProductionOrder) -> None:
        with self._lock:
            if order.id in self._orders:
                raise Conflict(f"production order {order.id} exists already", order=order.id, field="id",
                               rule="exists")
            self._orders[order.id] = order

    def get_order(self, order_id: str) -> ProductionOrder:
        with self._lock:
            found = self._orders.get(order_id)
        if found is None:
            raise _missing_order(order_id)
        return found

    def update_order(self, order: ProductionOrder, *, expected_version: int) -> None:
        with self._lock:
            current = self._orders.get(order.id)
            if current is None:
                raise _missing_order(order.id)
            if current.version != expected_version:
                raise _stale_order(order.id, expected_version, current.version)
            self._orders[order.id] = order

    def list_orders(self, *, line: str | None = None, state: str | None = None, after: str | None = None,
                    limit: int = 100) -> builtins.list[ProductionOrder]:
        check_list(state, limit)
        with self._lock:
            ids = list(self._orders)
            if after is not None:
                if after not in self._orders:
                    raise _unknown_cursor(after)
                ids = ids[ids.index(after) + 1:]
            rows = [self._orders[i] for i in ids]
        out = [o for o in rows if (line is None or o.line == line) and (state is None or o.state == state)]
        return out[:limit]

    def save_plan(self, plan: ProductionPlan, *, expected_current: str | None) -> None:
        _plan_doc(plan)  # the same checks as the SQL adapters (finite KPIs)
        with self._lock:
            ids = self._by_line.setdefault(plan.line, [])
            current = ids[-1] if ids else None
            if current != expected_current:
                raise _stale_plan(plan.line, expected_current, current)
            if plan.id in self._plans:
                raise Conflict(f"production plan {plan.id} exists already", plan=plan.id, rule="exists")
            self._plans[plan.id] = plan
            ids.append(plan.id)

    def get_plan(self, plan_id: str) -> ProductionPlan:
        with self._lock:
            found = self._plans.get(plan_id)
        if found is None:
            raise _missing_plan(plan_id)
        return found

    def current(self, line: str) -> ProductionPlan | None:
        with self._lock:
            ids = self._by_line.get(line)
            return self._plans[ids[-1]] if ids else None

    def plans(self, line: str, *, limit: int = 20) -> builtins.list[ProductionPlan]:
        check_list(None, limit)
        with self._lock:
            return [self._plans[i] for i in reversed(self._by_line.get(line, []))][:limit]

    def close(self) -> None:
        """Nothing to release."""


class SqlProduction:
    """Orders and plans in tables of the embedded SQLite file or of a PostgreSQL schema.

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
            self._o, self._p = f"{quoted}.{ORDERS}", f"{quoted}.{PLANS}"
            serial = "bigserial PRIMARY KEY"
            self._lock_key = self._db.lock_key(PLANS)  # type: ignore[union-attr]
        else:
            self._o, self._p = ORDERS, PLANS
            serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {self._o} (seq {serial}, id TEXT NOT NULL UNIQUE, line TEXT NOT NULL, "
                "state TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {ORDERS}_line ON {self._o} (line, seq)",
                f"CREATE TABLE IF NOT EXISTS {self._p} (seq {serial}, id TEXT NOT NULL UNIQUE, line TEXT NOT NULL, "
                "created TEXT NOT NULL, previous TEXT, reason TEXT NOT NULL, doc TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {PLANS}_line ON {self._p} (line, seq)",
            ], "preparing the production tables")
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

    def add_order(self, order: ProductionOrder) -> None:
        with self._write(f"cannot store production order {order.id!r}") as conn:
            if conn.execute(self._sql(f"SELECT 1 FROM {self._o} WHERE id = ?"), (order.id,)).fetchall():
                raise Conflict(f"production order {order.id} exists already", order=order.id, field="id",
                               rule="exists")
            conn.execute(self._sql(f"INSERT INTO {self._o} (id, line, state, version, doc) VALUES (?, ?, ?, ?, ?)"),
                         (order.id, order.line, order.state, order.version, _encoder.encode(order).decode()))

    def get_order(self, order_id: str) -> ProductionOrder:
        rows = self._read(f"cannot read production order {order_id!r}",
                          f"SELECT doc FROM {self._o} WHERE id = ?", (order_id,))
        if not rows:
            raise _missing_order(order_id)
        return _decoder.decode(rows[0][0])

    def update_order(self, order: ProductionOrder, *, expected_version: int) -> None:
        with self._write(f"cannot update production order {order.id!r}") as conn:
            rows = conn.execute(self._sql(f"SELECT version FROM {self._o} WHERE id = ?"), (order.id,)).fetchall()
            if not rows:
                raise _missing_order(order.id)
            if int(rows[0][0]) != expected_version:
                raise _stale_order(order.id, expected_version, int(rows[0][0]))
            conn.execute(self._sql(f"UPDATE {self._o} SET line = ?, state = ?, version = ?, doc = ? WHERE id = ?"),
                         (order.line, order.state, order.version, _encoder.encode(order).decode(), order.id))

    def list_orders(self, *, line: str | None = None, state: str | None = None, after: str | None = None,
                    limit: int = 100) -> builtins.list[ProductionOrder]:
        check_list(state, limit)
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            found = self._read("cannot list production orders", f"SELECT seq FROM {self._o} WHERE id = ?", (after,))
            if not found:
                raise _unknown_cursor(after)
            where.append("seq > ?")
            args.append(int(found[0][0]))
        for clause, value in (("line = ?", line), ("state = ?", state)):
            if value is not None:
                where.append(clause)
                args.append(value)
        text = f"SELECT doc FROM {self._o}" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read("cannot list production orders", text + " ORDER BY seq LIMIT ?", (*args, limit))
        return [_decoder.decode(r[0]) for r in rows]

    def save_plan(self, plan: ProductionPlan, *, expected_current: str | None) -> None:
        doc = _plan_doc(plan)
        with self._write(f"cannot store production plan {plan.id!r}") as conn:
            rows = conn.execute(self._sql(f"SELECT id FROM {self._p} WHERE line = ? ORDER BY seq DESC LIMIT 1"),
                                (plan.line,)).fetchall()
            current = rows[0][0] if rows else None
            if current != expected_current:
                raise _stale_plan(plan.line, expected_current, current)
            if conn.execute(self._sql(f"SELECT 1 FROM {self._p} WHERE id = ?"), (plan.id,)).fetchall():
                raise Conflict(f"production plan {plan.id} exists already", plan=plan.id, rule="exists")
            conn.execute(self._sql(f"INSERT INTO {self._p} (id, line, created, previous, reason, doc) "
                                   "VALUES (?, ?, ?, ?, ?, ?)"),
                         (plan.id, plan.line, iso(plan.created), plan.previous, plan.reason, doc))

    def get_plan(self, plan_id: str) -> ProductionPlan:
        rows = self._read(f"cannot read production plan {plan_id!r}", f"SELECT doc FROM {self._p} WHERE id = ?",
                          (plan_id,))
        if not rows:
            raise _missing_plan(plan_id)
        return plan_from_json(json.loads(rows[0][0]))

    def current(self, line: str) -> ProductionPlan | None:
        rows = self._read(f"cannot read the plan of line {line!r}",
                          f"SELECT doc FROM {self._p} WHERE line = ? ORDER BY seq DESC LIMIT 1", (line,))
        return plan_from_json(json.loads(rows[0][0])) if rows else None

    def plans(self, line: str, *, limit: int = 20) -> builtins.list[ProductionPlan]:
        check_list(None, limit)
        rows = self._read(f"cannot list the plans of line {line!r}",
                          f"SELECT doc FROM {self._p} WHERE line = ? ORDER BY seq DESC LIMIT ?", (line, limit))
        return [plan_from_json(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns:
            self._db.close()


__all__ = ["MAX_LIST", "MemoryProduction", "ProductionStore", "SqlProduction"]
