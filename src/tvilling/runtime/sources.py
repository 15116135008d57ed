"""The platform's stream sources: each capability registers its own, the twin events first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvilling.streams.hub import ChangeHub
from tvilling.streams.registry import SourceRegistry

if TYPE_CHECKING:
    from tvilling.app import Platform


def source_registry() -> SourceRegistry[Platform]:
    """The sources of a platform: twin events (``events``), command lifecycle (``commands``), alarm
    changes (``alarms``), what-if runs (``scenarios``), work orders (``workorders``), in that order (a bare
    cursor names a position in the first)."""
    from tvilling.decisions import feed as command_feed
    from tvilling.decisions.alarms import feed as alarm_feed
    from tvilling.planning import workorders_feed
    from tvilling.simulation import scenario_feed
    from tvilling.twins import feed as twin_feed

    registry: SourceRegistry[Platform] = SourceRegistry()
    twin_feed.register(registry)
    command_feed.register(registry)
    alarm_feed.register(registry)
    scenario_feed.register(registry)
    workorders_feed.register(registry)
    return registry


def hub_for(platform: Platform, **options: Any) -> ChangeHub:
    """The change hub of a platform, over every registered source (``options``: see :class:`ChangeHub`)."""
    return ChangeHub(source_registry().build(platform), **options)
