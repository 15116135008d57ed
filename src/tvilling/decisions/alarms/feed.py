"""The alarm store's change feed as a source for the live change hub (``tvilling.streams``).

Items are ``{"kind": "alarm", "type": "alarm.raised" | "alarm.acknowledged" | "alarm.cleared" |
"alarm.updated", "twin", "model", "time", "alarm": {...}}``: ``/api/stream?types=alarm``
streams all of them, ``types=alarm.raised`` only new alarms; the twin and model
filters apply. :func:`register` adds it to a source registry under the name ``alarms``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvilling.decisions.alarms.record import CHANGE_TYPES
from tvilling.decisions.alarms.store import AlarmStore

if TYPE_CHECKING:
    from tvilling.streams.registry import SourceRegistry


class AlarmFeedSource:
    """``hub`` source named ``alarms``: reads :meth:`AlarmStore.changes` (blocking; run in a thread)."""

    name = "alarms"
    kind = "alarm"
    types = CHANGE_TYPES

    def __init__(self, store: AlarmStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Alarm changes after ``after``, at most ``limit``."""
        return self.store.changes(after, limit)


def register(registry: SourceRegistry[Any]) -> None:
    """Register the alarm change feed as the source ``alarms``, built from a context's ``alarm_store``."""
    registry.register("alarms", lambda context: AlarmFeedSource(context.alarm_store))
