"""The alarm store's change feed as a source for the live change hub (``tvilling.twins.changes``).

Items are ``{"kind": "alarm", "type": "alarm.raised" | "alarm.acknowledged" | "alarm.cleared" |
"alarm.updated", "twin", "model", "time", "alarm": {...}}``: ``/api/stream?types=alarm``
streams all of them, ``types=alarm.raised`` only new alarms; the twin and model
filters apply.
"""

from __future__ import annotations

from typing import Any

from tvilling.decisions.alarms.record import CHANGE_TYPES
from tvilling.decisions.alarms.store import AlarmStore


class AlarmFeedSource:
    """``hub`` source named ``alarms``: reads :meth:`AlarmStore.changes` (blocking; run in a thread)."""

    name = "alarms"
    kind = "alarm"
    types = CHANGE_TYPES

    def __init__(self, store: AlarmStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        return self.store.changes(after, limit)
