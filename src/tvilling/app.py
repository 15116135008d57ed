"""Composition root: reads the settings and wires adapters into services."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tvilling.config import Settings
from tvilling.models.service import ModelRegistry
from tvilling.twins.ports import ModelStore, TwinStore
from tvilling.twins.service import TwinService

if TYPE_CHECKING:
    from tvilling.analytics.binding.engine import AnalyticsEngine
    from tvilling.analytics.binding.registry import AnalyticRegistry
    from tvilling.decisions.alarms.store import AlarmStore
    from tvilling.decisions.store import CommandStore
    from tvilling.history.ports import HistoryStore
    from tvilling.ingest.deadletter import DeadLetterStore
    from tvilling.ingest.pipeline import IngestService, Pipeline


@dataclass
class Platform:
    """The wired services of one Tvilling process.

    History, dead letters and the ingest pipeline open on first use: the embedded
    history (DuckDB) admits one writing process, and a CLI command that only reads a twin
    must not need it.
    """

    settings: Settings
    model_store: ModelStore
    twin_store: TwinStore
    models: ModelRegistry
    twins: TwinService
    _opened: list[Any] = field(default_factory=list)
    commands: Any = None  # a CommandService, set by the server once a transport (MQTT) is connected
    _stored_listeners: list[Any] = field(default_factory=list)

    def on_stored(self, callback: Any) -> None:
        """Call ``callback(readings, models, transport)`` after each stored ingest batch (and its analytics)."""
        self._stored_listeners.append(callback)
        if "pipeline" in self.__dict__:
            self.pipeline.observers.append(callback)

    @cached_property
    def history(self) -> HistoryStore:
        from tvilling.history import open_history

        s = self.settings
        if s.store == "memory":
            store = open_history("memory")
        elif s.store is not None:
            store = open_history(s.store, schema=s.pg_schema)
        else:
            store = open_history(s.data_dir / "history.duckdb")
        self._opened.append(store)
        return store

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        from tvilling.ingest.deadletter import MemoryDeadLetters, PostgresDeadLetters, SqliteDeadLetters

        s = self.settings
        store: DeadLetterStore
        if s.store == "memory":
            store = MemoryDeadLetters()
        elif s.store is not None:
            store = PostgresDeadLetters(s.store, schema=s.pg_schema)
        else:
            store = SqliteDeadLetters(s.data_dir / "dead-letters.db")
        self._opened.append(store)
        return store

    @cached_property
    def command_store(self) -> CommandStore:
        from tvilling.decisions.store import open_command_store

        if self.settings.store is not None and self.settings.store != "memory":
            require_postgres()
        store = open_command_store(self.settings)
        self._opened.append(store)
        return store

    @cached_property
    def alarm_store(self) -> AlarmStore:
        from tvilling.decisions.alarms.store import open_alarm_store

        if self.settings.store is not None and self.settings.store != "memory":
            require_postgres()
        store = open_alarm_store(self.settings)
        self._opened.append(store)
        return store

    @cached_property
    def analytics_registry(self) -> AnalyticRegistry:
        from tvilling.analytics.binding.registry import open_registry

        s = self.settings
        if s.store is not None and s.store != "memory":
            require_postgres()
        registry = open_registry(s.store, s.data_dir, s.pg_schema)
        self._opened.append(registry)
        return registry

    def alarm_rule_docs(self) -> list[dict[str, Any]]:
        """The configured alarm rules plus a drift warning per configured detector."""
        from tvilling.analytics.binding.spec import drift_rules, parse_specs

        return [*self.settings.alarm_rules, *drift_rules(parse_specs(self.settings.analytics))]

    @cached_property
    def analytics(self) -> AnalyticsEngine:
        """The configured analytics; they observe every batch the pipeline stores (opening it opens them)."""
        from tvilling.analytics.binding import parse_specs
        from tvilling.analytics.binding.engine import AnalyticsEngine

        return AnalyticsEngine(parse_specs(self.settings.analytics), self.models, self.analytics_registry,
                               history=lambda: self.history)  # opened only when a fleet model needs it

    @cached_property
    def pipeline(self) -> Pipeline:
        from tvilling.ingest.pipeline import IngestSettings, Pipeline

        s = self.settings
        settings = IngestSettings(max_future_s=s.ingest_max_future_s, reorder_window_s=s.ingest_reorder_window_s,
                                  stale_after_s=s.ingest_stale_after_s, spike_z=s.ingest_spike_z)
        pipeline = Pipeline(self.twins, self.history, self.dead_letters, settings)
        if s.analytics:
            engine = self.analytics
            engine.writer = lambda readings, sources: pipeline.write_derived(readings, source=sources,
                                                                              actor="analytics")
            pipeline.observers.append(engine)
        pipeline.observers.extend(self._stored_listeners)
        return pipeline

    @cached_property
    def ingest(self) -> IngestService:
        from tvilling.ingest.pipeline import IngestService

        return IngestService(self.pipeline)

    def close(self) -> None:
        for store in reversed(self._opened):
            store.close()
        self._opened.clear()
        self.twin_store.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_stores(settings: Settings) -> tuple[ModelStore, TwinStore]:
    """The model and twin stores the settings name (embedded SQLite by default)."""
    if settings.store == "memory":
        from tvilling.twins.adapters.memory import MemoryModelStore, MemoryTwinStore

        return MemoryModelStore(), MemoryTwinStore()
    if settings.store is not None:
        require_postgres()
        from tvilling.twins.adapters.postgres import open_postgres

        return open_postgres(settings.store, schema=settings.pg_schema)
    from tvilling.twins.adapters.sqlite import open_sqlite

    return open_sqlite(settings.data_dir / "tvilling.db")


def require_postgres() -> None:
    """Server mode needs the ``postgres`` extra; say so plainly when it is missing."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        from tvilling.core.errors import Unavailable

        raise Unavailable("a postgresql:// store needs the PostgreSQL driver: pip install 'tvilling[postgres]'",
                          rule="missing_extra") from None


def build_platform(settings: Settings) -> Platform:
    model_store, twin_store = open_stores(settings)
    models = ModelRegistry(model_store)
    twins = TwinService(twin_store, models, default_limit=settings.default_page_size,
                        max_limit=settings.max_page_size)
    return Platform(settings, model_store, twin_store, models, twins)
