"""Shelving a twin's alarms, and those of the twins below it, in one call over the twin graph.

:func:`shelve_twin` checks that the twin exists, walks its relationships (unless ``subtree`` is off) and
records the shelf; the answer is the shelf's JSON plus how many active alarms it took.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.alarms.shelves import descendants


class TwinGraph(Protocol):
    """What shelving reads of the twins: that a twin exists, and the targets of its relationships."""

    def get(self, twin_id: str, /) -> Any:
        """The twin (raises ``NotFound`` when there is none)."""

    def relationships(self, twin_id: str, /) -> Iterable[Any]:
        """The twin's outgoing relationships (each with a ``target``)."""


def covered_twins(graph: TwinGraph, twin_id: str, *, subtree: bool = True) -> list[str]:
    """``twin_id`` (which must exist) and, with ``subtree``, every twin below it."""
    graph.get(twin_id)
    if not subtree:
        return [twin_id]
    return descendants(twin_id, lambda t: [r.target for r in graph.relationships(t)])


def shelve_twin(alarms: AlarmService, graph: TwinGraph, twin_id: str, *, duration_s: float, reason: str,
                actor: str, subtree: bool = True) -> dict[str, Any]:
    """Shelve the alarms of ``twin_id`` (and its subtree's) for ``duration_s``; the shelf as JSON, with
    ``shelved``: how many active alarms it took."""
    covered = covered_twins(graph, twin_id, subtree=subtree)
    shelf, taken = alarms.shelve(twin_id, twins=covered, duration_s=duration_s, reason=reason, actor=actor,
                                 subtree=subtree)
    return {**shelf.to_json(alarms.clock()), "shelved": taken}
