"""The command store's change feed as a source for the live change hub (``tvilling.streams``).

Items are ``{"kind": "command", ...record, "previous": ...}`` for every command
transition and ``{"kind": "desired", "twin", "model", "status", "properties",
"attempt", "time"}`` for every reconciliation step; both carry ``twin`` and ``model``
so the hub's twin and model filters apply. :func:`register` adds it to a source
registry under the name ``commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvilling.decisions.store import CommandStore

if TYPE_CHECKING:
    from tvilling.streams.registry import SourceRegistry


class CommandFeedSource:
    """``hub`` source named ``commands``: reads :meth:`CommandStore.changes` (blocking; run in a thread)."""

    name = "commands"
    kind = "command"
    types = frozenset({"command", "desired"})

    def __init__(self, store: CommandStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Command and desired-state items after ``after``, at most ``limit``."""
        return self.store.changes(after, limit)


def register(registry: SourceRegistry[Any]) -> None:
    """Register the command lifecycle feed as the source ``commands``, built from a context's ``command_store``."""
    registry.register("commands", lambda context: CommandFeedSource(context.command_store))
