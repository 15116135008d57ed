"""Composition root: reads the settings and wires adapters into services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tvilling.backend import Backend, open_settings_backend
from tvilling.config import Settings
from tvilling.models.service import ModelRegistry
from tvilling.twins.hooks import WriteHooks
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
    from tvilling.simulation.shadow_engine import ShadowEngine


@dataclass
class Platform:
    """The wired services of one Tvilling process.

    Every store comes from one :class:`~tvilling.backend.Backend`; history, dead letters and the
    ingest pipeline open on first use: the embedded history (DuckDB) admits one writing process,
    and a CLI command that only reads a twin must not need it.
    """

    settings: Settings
    model_store: ModelStore
    twin_store: TwinStore
    models: ModelRegistry
    twins: TwinService
    backend: Backend
    _stored_listeners: list[Any] = field(default_factory=list)

    def on_stored(self, callback: Any) -> Callable[[], None]:
        """Call ``callback(readings, models, transport)`` after each stored ingest batch (and its analytics).

        Returns the function that stops calling it (a runtime that stops calls it).
        """
        self._stored_listeners.append(callback)
        if "pipeline" in self.__dict__:
            self.pipeline.observers.append(callback)

        def remove() -> None:
            if callback in self._stored_listeners:
                self._stored_listeners.remove(callback)
            if "pipeline" in self.__dict__ and callback in self.pipeline.observers:
                self.pipeline.observers.remove(callback)

        return remove

    @property
    def history(self) -> HistoryStore:
        """Telemetry history (the backend opens it on first access)."""
        return self.backend.history

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Rejected input (opened on first access)."""
        return self.backend.dead_letters

    @property
    def command_store(self) -> CommandStore:
        """Commands and their change feed (opened on first access)."""
        return self.backend.command_store

    @property
    def alarm_store(self) -> AlarmStore:
        """Alarms and their change feed (opened on first access)."""
        return self.backend.alarm_store

    @property
    def analytics_registry(self) -> AnalyticRegistry:
        """Versions of trained analytics (opened on first access)."""
        return self.backend.analytics_registry

    def alarm_rule_docs(self) -> list[dict[str, Any]]:
        """The configured alarm rules, a drift warning per configured detector and the residual alarms of
        the simulations that configure them."""
        from tvilling.analytics.binding.spec import drift_rules, parse_specs
        from tvilling.simulation.spec import parse_simulations, residual_rules

        return [*self.settings.alarm_rules, *drift_rules(parse_specs(self.settings.analytics)),
                *residual_rules(parse_simulations(self.settings.simulations))]

    @cached_property
    def analytics(self) -> AnalyticsEngine:
        """The configured analytics; they observe every batch the pipeline stores (opening it opens them)."""
        from tvilling.analytics.binding import parse_specs
        from tvilling.analytics.binding.engine import AnalyticsEngine

        # outputs go through the pipeline's derived-value path; history opens only when a fleet model needs it
        return AnalyticsEngine(parse_specs(self.settings.analytics), self.models, self.analytics_registry,
                               writer=lambda readings, sources: self.pipeline.write_derived(
                                   readings, source=sources, actor="analytics"),
                               history=lambda: self.history, twins=self.twin_store)

    @cached_property
    def simulations(self) -> ShadowEngine:
        """The configured simulations in shadow mode; they observe every batch the pipeline stores."""
        from tvilling.simulation.shadow_engine import ShadowEngine
        from tvilling.simulation.spec import parse_simulations

        return ShadowEngine(parse_simulations(self.settings.simulations), self.models, self.twin_store,
                            self.analytics_registry, writer=lambda readings, sources: self.pipeline.write_derived(
                                readings, source=sources, actor="simulation"), history=lambda: self.history)

    @cached_property
    def pipeline(self) -> Pipeline:
        from tvilling.ingest.pipeline import IngestSettings, Pipeline

        s = self.settings
        settings = IngestSettings(max_future_s=s.ingest_max_future_s, reorder_window_s=s.ingest_reorder_window_s,
                                  stale_after_s=s.ingest_stale_after_s, spike_z=s.ingest_spike_z)
        pipeline = Pipeline(self.twins, self.history, self.dead_letters, settings)
        if s.analytics:
            pipeline.observers.append(self.analytics)
        if s.simulations:
            pipeline.observers.append(self.simulations)
        pipeline.observers.extend(self._stored_listeners)
        return pipeline

    @cached_property
    def ingest(self) -> IngestService:
        from tvilling.ingest.pipeline import IngestService

        return IngestService(self.pipeline)

    def close(self) -> None:
        """Close every store of the backend."""
        self.backend.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def require_postgres() -> None:
    """Server mode needs the ``postgres`` extra; say so plainly when it is missing."""
    from tvilling.backend import require_postgres as check

    check()


def build_platform(settings: Settings, backend: Backend | None = None, *,
                   hooks: WriteHooks | None = None) -> Platform:
    """The platform the settings describe, on ``backend`` (default: the one the settings name).

    ``hooks`` are where authorisation, guardrails and audit plug into the one write path
    (default: allow everything, record nothing; with the setting ``audit`` or ``auth = "required"`` the
    audit chain's hook follows them).
    """
    if backend is None:
        backend = open_settings_backend(settings)
    if settings.audit or settings.auth == "required":
        from tvilling.security.audit_hook import AuditHook
        from tvilling.twins.hooks import HookChain, OpenHooks

        hooks = HookChain([hooks or OpenHooks(), AuditHook(backend.audit)])
    models = ModelRegistry(backend.model_store)
    twins = TwinService(backend.twin_store, models, default_limit=settings.default_page_size,
                        max_limit=settings.max_page_size, hooks=hooks)
    return Platform(settings, backend.model_store, backend.twin_store, models, twins, backend)
