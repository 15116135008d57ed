"""``open_backend(url)``: every store the platform needs, from one URL.

>>> backend = open_backend("memory")
>>> backend.twin_store.count(), backend.dead_letters.count()
(0, 0)
>>> backend.close()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvilling.backend.stores import (
    DB_FILE,
    EMBEDDED,
    HISTORY_FILE,
    MEMORY,
    POSTGRES,
    STORES,
    build,
    history_store,
    kind_of,
)
from tvilling.backend.stores import require_postgres as require_postgres
from tvilling.twins.ports import ModelStore, TwinStore

if TYPE_CHECKING:
    from tvilling.analytics.binding.registry import AnalyticRegistry
    from tvilling.backend.audit import AuditStore
    from tvilling.backend.policies import PolicyStore
    from tvilling.backend.postgres import PostgresDatabase
    from tvilling.backend.production import ProductionStore
    from tvilling.backend.scenarios import ScenarioStore
    from tvilling.backend.sessions import SessionStore
    from tvilling.backend.sqlite import SqliteDatabase
    from tvilling.backend.tokens import TokenStore
    from tvilling.backend.workorders import WorkOrderStore
    from tvilling.config import Settings
    from tvilling.decisions.alarms.store import AlarmStore
    from tvilling.decisions.store import CommandStore
    from tvilling.history.ports import HistoryStore
    from tvilling.ingest.deadletter import DeadLetterStore
    from tvilling.streams.offsets import CursorStore


class Backend:
    """The stores of one world: models, twins, history, commands, alarms, dead letters, analytic versions,
    and the stream consumers' saved positions.

    Build it with :func:`open_backend`. The model and twin stores open at once; the others on
    first access (the embedded history, DuckDB, admits one writing process, so a command that
    only reads a twin must not open it). Relational stores share one database (:attr:`database`),
    so :meth:`transaction` can commit writes of several stores together.
    """

    def __init__(self, kind: str, *, location: str, schema: str, model_store: ModelStore, twin_store: TwinStore,
                 database: SqliteDatabase | PostgresDatabase | None = None) -> None:
        self.kind = kind
        self.location = location  # "memory", the data directory, or the DSN
        self.schema = schema
        self.database = database
        self.model_store = model_store
        self.twin_store = twin_store
        self._opened: list[Any] = []
        self._guard = threading.Lock()
        self._memory_tx = threading.RLock()

    @property
    def url(self) -> str:
        """What :func:`open_backend` was given (``memory``, a data directory or a ``postgresql://`` URL)."""
        return self.location

    @property
    def data_dir(self) -> Path | None:
        """The data directory of an embedded backend, else None."""
        return Path(self.location) if self.kind == EMBEDDED else None

    def _open(self, name: str) -> Any:
        with self._guard:
            store = build(name, self.kind, self.database, schema=self.schema)
            self._opened.append(store)
            return store

    @cached_property
    def history(self) -> HistoryStore:
        """Telemetry history (opened on first access)."""
        with self._guard:
            if self.kind == EMBEDDED:
                store = history_store(EMBEDDED, Path(self.location) / HISTORY_FILE, schema=self.schema)
            else:
                store = history_store(self.kind, self.location, schema=self.schema)
            self._opened.append(store)
            history: HistoryStore = store
            return history

    @cached_property
    def command_store(self) -> CommandStore:
        """Commands and their change feed (opened on first access)."""
        store: CommandStore = self._open("command_store")
        return store

    @cached_property
    def alarm_store(self) -> AlarmStore:
        """Alarms, shelves and their change feed (opened on first access)."""
        store: AlarmStore = self._open("alarm_store")
        return store

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        """Rejected input (opened on first access)."""
        store: DeadLetterStore = self._open("dead_letters")
        return store

    @cached_property
    def analytics_registry(self) -> AnalyticRegistry:
        """Versions of trained analytics (opened on first access)."""
        store: AnalyticRegistry = self._open("analytics_registry")
        return store

    @cached_property
    def cursors(self) -> CursorStore:
        """The stream consumers' saved positions (opened on first access); saves join :meth:`transaction`."""
        store: CursorStore = self._open("cursors")
        return store

    @cached_property
    def scenarios(self) -> ScenarioStore:
        """What-if scenario records and their change feed (opened on first access)."""
        store: ScenarioStore = self._open("scenarios")
        return store

    @cached_property
    def workorders(self) -> WorkOrderStore:
        """Maintenance work orders and their change feed (opened on first access)."""
        store: WorkOrderStore = self._open("workorders")
        return store

    @cached_property
    def production(self) -> ProductionStore:
        """Production orders and plans (opened on first access)."""
        store: ProductionStore = self._open("production")
        return store

    @cached_property
    def tokens(self) -> TokenStore:
        """API tokens, stored as hashes (opened on first access)."""
        store: TokenStore = self._open("tokens")
        return store

    @cached_property
    def sessions(self) -> SessionStore:
        """The dashboard's sign-in sessions, stored as hashes (opened on first access)."""
        store: SessionStore = self._open("sessions")
        return store

    @cached_property
    def policies(self) -> PolicyStore:
        """Authorisation policies (opened on first access)."""
        store: PolicyStore = self._open("policies")
        return store

    @cached_property
    def audit(self) -> AuditStore:
        """The tamper-evident audit chain and its seals (opened on first access)."""
        store: AuditStore = self._open("audit")
        return store

    @contextmanager
    def transaction(self) -> Iterator[Backend]:
        """Writes of this thread inside it, to any relational store, commit together or not at all.

        Embedded and PostgreSQL: one database transaction (a store's own write inside it is a
        savepoint). Memory: writes are serialised with other transactions but not undone on error.

        Every relational store is opened before the transaction begins, so no table is made inside it.
        """
        for name in STORES:
            getattr(self, name)
        if self.database is None:
            with self._memory_tx:
                yield self
            return
        with self.database.write("committing a transaction"):
            yield self

    def fork(self, *, at: datetime | None = None, history: tuple[int, int] | tuple[datetime, datetime] | None = None,
             twins: Sequence[str] | None = None) -> Backend:
        """An isolated in-memory backend seeded from this one: see :func:`tvilling.backend.fork.fork`."""
        from tvilling.backend.fork import fork

        return fork(self, at=at, history=history, twins=twins)

    def close(self) -> None:
        """Close every store that was opened, then the shared database."""
        with self._guard:
            opened, self._opened = self._opened, []
        for store in reversed(opened):
            store.close()
        self.twin_store.close()
        if self.database is not None:
            self.database.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(url: str | os.PathLike[str], *, schema: str = "tvilling", max_connections: int = 10) -> Backend:
    """Open the backend ``url`` names: ``memory``, a data directory (embedded) or ``postgresql://…``.

    ``schema`` is the PostgreSQL schema holding the tables (the ``pg_schema`` setting). An
    embedded data directory gets one SQLite file, ``tvilling.db``, for every relational store
    (files of the previous layout are migrated into it first) and ``history.duckdb``.
    """
    kind = kind_of(url)
    if kind == MEMORY:
        from tvilling.twins.adapters.memory import MemoryModelStore, MemoryTwinStore

        return Backend(MEMORY, location=MEMORY, schema=schema, model_store=MemoryModelStore(),
                       twin_store=MemoryTwinStore())
    if kind == POSTGRES:
        require_postgres()
        from tvilling.backend.postgres import PostgresDatabase
        from tvilling.twins.adapters.postgres import PostgresModelStore, PostgresTwinStore, prepare

        dsn = os.fspath(url)
        pg = PostgresDatabase(dsn, schema, max_size=max_connections)
        try:
            prepare(pg)
        except BaseException:
            pg.close()
            raise
        return Backend(POSTGRES, location=dsn, schema=schema, model_store=PostgresModelStore(pg),
                       twin_store=PostgresTwinStore(pg), database=pg)
    from tvilling.backend.legacy import migrate_data_dir
    from tvilling.backend.sqlite import SqliteDatabase
    from tvilling.twins.adapters.sqlite import SqliteModelStore, SqliteTwinStore
    from tvilling.twins.adapters.sqlite import prepare as prepare_sqlite

    data_dir = Path(url)
    migrate_data_dir(data_dir)
    db = SqliteDatabase(data_dir / DB_FILE)
    try:
        prepare_sqlite(db)
    except BaseException:
        db.close()
        raise
    return Backend(EMBEDDED, location=os.fspath(data_dir), schema=schema, model_store=SqliteModelStore(db),
                   twin_store=SqliteTwinStore(db), database=db)


def backend_url(settings: Settings) -> str:
    """The backend URL the settings name: ``store`` when set, else the data directory."""
    return settings.store if settings.store is not None else os.fspath(settings.data_dir)


def open_settings_backend(settings: Settings) -> Backend:
    """:func:`open_backend` for the settings' store (or data directory) and PostgreSQL schema."""
    return open_backend(backend_url(settings), schema=settings.pg_schema)
