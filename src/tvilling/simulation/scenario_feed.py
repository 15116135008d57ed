"""The scenario store's change feed as the change stream's source ``scenarios``.

Items are ``{"kind": "scenario", "id", "status", "progress"}``: one each time a what-if run is
started, moves on, ends or fails, so SSE and WebSocket subscribers follow it live.
:func:`register` adds it to a source registry, built from a context's ``backend.scenarios``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvilling.backend.scenarios import ScenarioStore
    from tvilling.streams.registry import SourceRegistry


class ScenarioFeedSource:
    """Source ``scenarios``: reads :meth:`ScenarioStore.changes` (blocking; run in a thread)."""

    name = "scenarios"
    kind = "scenario"
    types = frozenset({"scenario"})

    def __init__(self, store: ScenarioStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Scenario status items after ``after``, at most ``limit``."""
        return [(p, {"kind": "scenario", **item}) for p, item in self.store.changes(after, limit)]


def register(registry: SourceRegistry[Any]) -> None:
    """Register the scenario feed as the source ``scenarios``, from a context's ``backend.scenarios``."""
    registry.register("scenarios", lambda context: ScenarioFeedSource(context.backend.scenarios))
