"""Referential integrity of relationships, checked by every store inside its commit.

Two writers racing — one relating a twin to a target, one deleting that target — must
not leave a relationship pointing at nothing. The service checks first (for clear
errors); the store checks again under its write lock, where no race is possible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tvilling.core.errors import Conflict
from tvilling.core.events import RELATIONSHIP_SET, Event
from tvilling.core.twin import Twin


def check_links(
    events: Sequence[Event],
    states: Mapping[str, Twin | None],
    live: Callable[[Sequence[str]], set[str]],
    incoming: Callable[[Sequence[str]], list[tuple[str, str, str]]],
) -> None:
    """Raise ``Conflict`` if the batch would leave a relationship whose target does not exist.

    ``states`` is every batch twin's state after the batch (None: deleted); ``live(ids)``
    returns which of ``ids`` exist in the store now; ``incoming(ids)`` the stored
    relationships ``(source, target, relationship id)`` pointing at ``ids``.
    """
    sets = [e for e in events if e.type == RELATIONSHIP_SET]
    if sets:
        targets = {str(e.payload["target"]) for e in sets}
        outside = sorted(t for t in targets if t not in states)
        present = live(outside) if outside else set()
        for e in sets:
            target = str(e.payload["target"])
            exists = states[target] is not None if target in states else target in present
            source_state = states.get(e.twin)
            still_there = source_state is not None and e.payload["id"] in source_state.relationships
            if not exists and still_there:
                raise Conflict(
                    f"relationship {e.twin}/{e.payload['id']} targets twin {target!r}, which does not exist "
                    "(it was deleted meanwhile)",
                    twin=e.twin, field=f"relationships.{e.payload['id']}.target", rule="target_exists",
                )
    deleted = sorted(t for t, s in states.items() if s is None)
    if not deleted:
        return
    gone = set(deleted)
    for source, state in states.items():
        if state is None:
            continue
        for rel in state.relationships.values():
            if rel.target in gone:
                raise _in_use(rel.target, source, rel.id)
    for source, target, rel_id in incoming(deleted):
        if source in states:
            continue  # its state after the batch was checked above
        raise _in_use(target, source, rel_id)


def _in_use(target: str, source: str, rel_id: str) -> Conflict:
    return Conflict(
        f"twin {target!r} is the target of relationship {source}/{rel_id}; delete that first",
        twin=target, rule="has_incoming", relationships=[f"{source}/{rel_id}"],
    )
