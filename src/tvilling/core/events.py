"""Events: immutable, past-tense facts about a twin, and the one pure ``apply`` that folds them.

>>> from datetime import datetime, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> created = Event(twin="m1", revision=1, time=t0, actor="test", type=TWIN_CREATED,
...                 payload={"model": "dtmi:x:M;1", "reported": {"speed": 10}})
>>> patched = Event(twin="m1", revision=2, time=t0, actor="test", type=TWIN_PATCHED,
...                 payload={"reported": {"speed": 12}})
>>> fold([created, patched]).reported
{'speed': 12}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from tvilling.core.errors import Conflict, Invalid
from tvilling.core.patch import merge_patch
from tvilling.core.twin import Relationship, Twin

TWIN_CREATED = "TwinCreated"
TWIN_REPLACED = "TwinReplaced"
TWIN_PATCHED = "TwinPatched"
TWIN_DELETED = "TwinDeleted"
TWIN_MIGRATED = "TwinMigrated"
RELATIONSHIP_SET = "RelationshipSet"
RELATIONSHIP_DELETED = "RelationshipDeleted"

EVENT_TYPES = frozenset(
    {TWIN_CREATED, TWIN_REPLACED, TWIN_PATCHED, TWIN_DELETED, TWIN_MIGRATED, RELATIONSHIP_SET,
     RELATIONSHIP_DELETED}
)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One change to one twin. ``position`` is its place in the global feed, set by the store."""

    twin: str
    revision: int
    time: datetime
    actor: str
    type: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def apply(state: Twin | None, event: Event) -> Twin | None:
    """Fold one event into a twin's state. Pure: the inputs are not changed.

    Returns ``None`` after a deletion. Raises ``Conflict`` when the event does not
    follow the state (wrong revision, or a change to a twin that does not exist).
    """
    # A twin that was deleted and is created again continues its revision count, so
    # when there is no state the store (which keeps the log) vouches for the number.
    expected = event.revision if state is None else state.revision + 1
    if event.revision != expected or event.revision < 1:
        raise Conflict(
            f"event for twin {event.twin!r} has revision {event.revision}, expected {expected}",
            twin=event.twin,
            rule="revision_order",
        )
    p = event.payload
    if event.type in (TWIN_CREATED, TWIN_REPLACED):
        if event.type == TWIN_CREATED and state is not None:
            raise Conflict(f"twin {event.twin!r} exists already", twin=event.twin, rule="exists")
        created = event.time if state is None else state.created
        rels = {} if state is None else state.relationships
        return Twin(
            id=event.twin,
            model=p["model"],
            revision=event.revision,
            created=created,
            updated=event.time,
            attributes=dict(p.get("attributes") or {}),
            reported=dict(p.get("reported") or {}),
            desired=dict(p.get("desired") or {}),
            metadata=dict(p.get("metadata") or {}),
            relationships=rels,
        )
    if state is None:
        raise Conflict(f"twin {event.twin!r} does not exist", twin=event.twin, rule="missing")
    if event.type == TWIN_PATCHED:
        return msgspec.structs.replace(
            state,
            revision=event.revision,
            updated=event.time,
            attributes=_merge(state.attributes, p.get("attributes")),
            reported=_merge(state.reported, p.get("reported")),
            desired=_merge(state.desired, p.get("desired")),
            metadata=_merge(state.metadata, p.get("metadata")),
        )
    if event.type == TWIN_MIGRATED:
        return msgspec.structs.replace(
            state,
            model=p["to"],
            revision=event.revision,
            updated=event.time,
            reported=_merge(state.reported, p.get("reported")),
            desired=_merge(state.desired, p.get("desired")),
            metadata=_merge(state.metadata, p.get("metadata")),
        )
    if event.type == RELATIONSHIP_SET:
        rel = Relationship(
            id=p["id"], name=p["name"], target=p["target"], properties=dict(p.get("properties") or {})
        )
        return msgspec.structs.replace(
            state,
            revision=event.revision,
            updated=event.time,
            relationships={**state.relationships, rel.id: rel},
        )
    if event.type == RELATIONSHIP_DELETED:
        rels = dict(state.relationships)
        rels.pop(p["id"], None)
        return msgspec.structs.replace(state, revision=event.revision, updated=event.time, relationships=rels)
    if event.type == TWIN_DELETED:
        return None
    raise Invalid(f"unknown event type {event.type!r}", twin=event.twin, field="type", rule="event_type")


def fold(events: Iterable[Event], state: Twin | None = None) -> Twin | None:
    """Fold a twin's events, in revision order, into its state."""
    for event in events:
        state = apply(state, event)
    return state


def fold_batch(
    events: Sequence[Event], revisions: Mapping[str, int], states: Mapping[str, Twin | None]
) -> tuple[dict[str, Twin | None], dict[str, int]]:
    """Check and fold a batch of events (several twins, in order) onto the twins' current state.

    ``revisions`` holds each twin's last logged revision (deleted twins included) and
    ``states`` its live state. Every twin's events must continue its log without a gap,
    else ``Conflict`` (rule ``stale_revision``): that is the optimistic-concurrency check
    every store applies. Returns the new state and last revision of each twin in the batch.
    """
    new: dict[str, Twin | None] = {}
    revs: dict[str, int] = {}
    for e in events:
        if e.twin not in revs:
            revs[e.twin] = revisions.get(e.twin, 0)
            new[e.twin] = states.get(e.twin)
        if e.revision != revs[e.twin] + 1:
            raise Conflict(
                f"twin {e.twin!r} is at revision {revs[e.twin]}; an event for revision {e.revision} cannot follow it",
                twin=e.twin,
                revision=revs[e.twin],
                rule="stale_revision",
            )
        new[e.twin] = apply(new[e.twin], e)
        revs[e.twin] = e.revision
    return new, revs


def _merge(current: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    if not patch:
        return current
    merged: dict[str, Any] = merge_patch(current, patch)
    return merged
