"""Which adapter serves each store, per kind of backend: the one place a store is chosen.

Kinds: ``memory`` (process memory), ``embedded`` (one SQLite file ``tvilling.db`` in a data
directory, plus DuckDB ``history.duckdb`` for telemetry) and ``postgresql`` (one schema of a
PostgreSQL database). Relational stores are built on a shared database object (see
:mod:`tvilling.backend.sqlite` and :mod:`tvilling.backend.postgres`); :func:`open_store`
builds one store alone, on a database of its own that it closes with itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tvilling.core.errors import Invalid, Unavailable

MEMORY, EMBEDDED, POSTGRES = "memory", "embedded", "postgresql"
DB_FILE = "tvilling.db"
HISTORY_FILE = "history.duckdb"
STORES = ("command_store", "alarm_store", "dead_letters", "analytics_registry", "cursors", "scenarios",
          "workorders", "production", "tokens", "audit", "policies", "sessions")


def kind_of(url: str | os.PathLike[str]) -> str:
    """``memory``, ``postgresql`` (a ``postgresql://`` or ``postgres://`` URL) or ``embedded`` (a data directory)."""
    text = os.fspath(url)
    if text == MEMORY:
        return MEMORY
    if text.startswith(("postgresql://", "postgres://")):
        return POSTGRES
    if not text or "://" in text:
        raise Invalid(f"a store URL is 'memory', postgresql://… or a data directory; got {text!r}",
                      field="store", rule="url")
    return EMBEDDED


def require_postgres() -> None:
    """Server mode needs the ``postgres`` extra; say so plainly when it is missing."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise Unavailable("a postgresql:// store needs the PostgreSQL driver: pip install 'tvilling[postgres]'",
                          rule="missing_extra") from None


def build(name: str, kind: str, target: Any, *, schema: str = "tvilling") -> Any:
    """The store ``name`` of a ``kind`` of backend on ``target``: a shared database, a path or a DSN.

    A path or DSN gives the store a database of its own; ``target`` is ignored for ``memory``.
    """
    if name not in STORES:
        raise Invalid(f"unknown store {name!r}; one of {list(STORES)}", rule="store")
    if kind == MEMORY:
        return _memory(name)
    if kind == POSTGRES:
        require_postgres()
        return _postgres(name, target, schema)
    return _sqlite(name, target)


def _memory(name: str) -> Any:
    if name == "command_store":
        from tvilling.decisions.store import MemoryCommandStore

        return MemoryCommandStore()
    if name == "alarm_store":
        from tvilling.decisions.alarms.store import MemoryAlarmStore

        return MemoryAlarmStore()
    if name == "dead_letters":
        from tvilling.ingest.deadletter import MemoryDeadLetters

        return MemoryDeadLetters()
    if name == "cursors":
        from tvilling.streams.offsets import MemoryCursors

        return MemoryCursors()
    if name == "scenarios":
        from tvilling.backend.scenarios import MemoryScenarios

        return MemoryScenarios()
    if name == "workorders":
        from tvilling.backend.workorders import MemoryWorkOrders

        return MemoryWorkOrders()
    if name == "production":
        from tvilling.backend.production import MemoryProduction

        return MemoryProduction()
    if name == "tokens":
        from tvilling.backend.tokens import MemoryTokens

        return MemoryTokens()
    if name == "sessions":
        from tvilling.backend.sessions import MemorySessions

        return MemorySessions()
    if name == "policies":
        from tvilling.backend.policies import MemoryPolicies

        return MemoryPolicies()
    if name == "audit":
        from tvilling.backend.audit import MemoryAudit

        return MemoryAudit()
    from tvilling.analytics.binding.registry import MemoryRegistry

    return MemoryRegistry()


def _sqlite(name: str, target: Any) -> Any:
    if name == "command_store":
        from tvilling.decisions.sqlite_store import SqliteCommandStore

        return SqliteCommandStore(target)
    if name == "alarm_store":
        from tvilling.decisions.alarms.sqlite_store import SqliteAlarmStore

        return SqliteAlarmStore(target)
    if name == "dead_letters":
        from tvilling.ingest.deadletter import SqliteDeadLetters

        return SqliteDeadLetters(target)
    if name == "cursors":
        from tvilling.backend.cursors import SqliteCursors

        return SqliteCursors(target)
    if name == "scenarios":
        from tvilling.backend.scenarios import SqliteScenarios

        return SqliteScenarios(target)
    if name == "workorders":
        from tvilling.backend.workorders import SqlWorkOrders

        return SqlWorkOrders(target)
    if name == "production":
        from tvilling.backend.production import SqlProduction

        return SqlProduction(target)
    if name == "tokens":
        from tvilling.backend.tokens import SqlTokens

        return SqlTokens(target)
    if name == "sessions":
        from tvilling.backend.sessions import SqlSessions

        return SqlSessions(target)
    if name == "policies":
        from tvilling.backend.policies import SqlPolicies

        return SqlPolicies(target)
    if name == "audit":
        from tvilling.backend.audit import SqlAudit

        return SqlAudit(target)
    from tvilling.analytics.binding.registry import SqlRegistry

    return SqlRegistry(target)


def _postgres(name: str, target: Any, schema: str) -> Any:
    if name == "command_store":
        from tvilling.decisions.postgres_store import PostgresCommandStore

        return PostgresCommandStore(target, schema=schema)
    if name == "alarm_store":
        from tvilling.decisions.alarms.postgres_store import PostgresAlarmStore

        return PostgresAlarmStore(target, schema=schema)
    if name == "dead_letters":
        from tvilling.ingest.deadletter import PostgresDeadLetters

        return PostgresDeadLetters(target, schema=schema)
    if name == "cursors":
        from tvilling.backend.cursors import PostgresCursors

        return PostgresCursors(target, schema=schema)
    if name == "scenarios":
        from tvilling.backend.scenarios import PostgresScenarios

        return PostgresScenarios(target, schema=schema)
    if name == "workorders":
        from tvilling.backend.workorders import SqlWorkOrders

        return SqlWorkOrders(target, schema=schema)
    if name == "production":
        from tvilling.backend.production import SqlProduction

        return SqlProduction(target, schema=schema)
    if name == "tokens":
        from tvilling.backend.tokens import SqlTokens

        return SqlTokens(target, schema=schema)
    if name == "sessions":
        from tvilling.backend.sessions import SqlSessions

        return SqlSessions(target, schema=schema)
    if name == "policies":
        from tvilling.backend.policies import SqlPolicies

        return SqlPolicies(target, schema=schema)
    if name == "audit":
        from tvilling.backend.audit import SqlAudit

        return SqlAudit(target, schema=schema)
    from tvilling.analytics.binding.registry import SqlRegistry

    return SqlRegistry(target, schema=schema)


def history_store(kind: str, target: str | os.PathLike[str], *, schema: str) -> Any:
    """The telemetry history of a kind of backend: memory, DuckDB at the path ``target``, or PostgreSQL."""
    if kind == MEMORY:
        from tvilling.history.memory import MemoryHistoryStore

        return MemoryHistoryStore()
    if kind == POSTGRES:
        require_postgres()
        from tvilling.history.postgres import PostgresHistoryStore

        return PostgresHistoryStore(os.fspath(target), schema=schema)
    from tvilling.history.duckdb_store import DuckDBHistoryStore

    return DuckDBHistoryStore(Path(target))


def open_store(name: str, url: str | os.PathLike[str] | None, *, data_dir: str | os.PathLike[str] = "tvilling-data",
               schema: str = "tvilling") -> Any:
    """One store alone, on a database of its own (closing the store closes it).

    ``url`` is ``memory``, ``postgresql://…`` or None for the embedded database in ``data_dir``
    (whose files of the previous layout are migrated first).
    """
    target: str | os.PathLike[str] = data_dir if url is None else url
    kind = kind_of(target)
    if kind == EMBEDDED:
        from tvilling.backend.legacy import migrate_data_dir

        migrate_data_dir(Path(target))
        return build(name, kind, Path(target) / DB_FILE)
    return build(name, kind, target, schema=schema)
