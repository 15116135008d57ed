"""The command store's change feed as a source for the live change hub (``tvilling.twins.changes``).

Items are ``{"kind": "command", ...record, "previous": ...}`` for every command
transition and ``{"kind": "desired", "twin", "model", "status", "properties",
"attempt", "time"}`` for every reconciliation step; both carry ``twin`` and ``model``
so the hub's twin and model filters apply.
"""

from __future__ import annotations

from typing import Any

from tvilling.decisions.store import CommandStore


class CommandFeedSource:
    """``hub`` source named ``commands``: reads :meth:`CommandStore.changes` (blocking; run in a thread)."""

    name = "commands"
    kind = "command"
    types = frozenset({"command", "desired"})

    def __init__(self, store: CommandStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        return self.store.changes(after, limit)
