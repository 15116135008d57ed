"""The decision half of the core: ``decide(state, command) -> events``, beside ``apply``.

Pure: given a twin's current state (``None`` when it does not exist) and a command whose
values are already checked against the model, it returns the events that record the
change, or raises the error that refuses it. Nothing is read or written here; the twin
service reads the state, decides, and commits the events.

>>> from datetime import datetime, timezone
>>> from tvilling.core.commands import CreateTwin, PatchTwin
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> [created] = decide(None, CreateTwin(twin="m1", model="dtmi:x:M;1"), actor="a", time=t0)
>>> twin = apply(None, created)
>>> [e.type for e in decide(twin, PatchTwin(twin="m1", reported={"speed": 3}), actor="a", time=t0)]
['TwinPatched']
>>> decide(twin, PatchTwin(twin="m1"), actor="a", time=t0)  # nothing to change: no event
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tvilling.core import events as ev
from tvilling.core.commands import (
    Command,
    CreateTwin,
    DeleteRelationship,
    DeleteTwin,
    MigrateTwin,
    PatchTwin,
    PutTwin,
    RecordReported,
    SetDesired,
    SetRelationship,
)
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.core.events import Event, apply
from tvilling.core.twin import Twin


def decide(state: Twin | None, command: Command, *, actor: str, time: datetime,
           last_revision: int = 0) -> list[Event]:
    """The events that carry out ``command`` on ``state`` (``[]`` when nothing changes).

    ``last_revision`` is the revision of the twin's last event when ``state`` is ``None``:
    a twin deleted and created again continues its count.
    """
    twin = command.twin
    if command.if_match is not None and (state is None or state.revision != command.if_match):
        raise stale(twin, command.if_match, 0 if state is None else state.revision)
    revision = (last_revision if state is None else state.revision) + 1

    def event(kind: str, payload: dict[str, Any]) -> list[Event]:
        return [Event(twin=twin, revision=revision, time=time, actor=actor, type=kind, payload=payload)]

    if isinstance(command, CreateTwin | PutTwin):
        stamp = command.stamp
        meta = {} if stamp is None else {s: {k: stamp for k in v} for s, v in (("reported", command.reported),
                                                                                 ("desired", command.desired))}
        body = {"model": command.model, "attributes": command.attributes, "reported": command.reported,
                "desired": command.desired, "metadata": meta}
        if state is None:
            return event(ev.TWIN_CREATED, body)
        if isinstance(command, CreateTwin):
            raise Conflict(f"twin {twin!r} exists already", twin=twin, revision=state.revision, rule="exists")
        if state.model != command.model:
            raise Conflict(f"twin {twin!r} has model {state.model}; change it with a migration, not a replace",
                           twin=twin, field="model", rule="model_change")
        return event(ev.TWIN_REPLACED, body)
    if isinstance(command, RecordReported):
        if state is None or not (command.reported or command.metadata):
            return []  # deleted meanwhile: the readings stay in history
        payload: dict[str, Any] = {"metadata": command.metadata}
        if command.reported:
            payload["reported"] = command.reported
        return event(ev.TWIN_PATCHED, payload)
    if state is None:
        raise NotFound(f"twin {twin!r} does not exist", twin=twin)
    if isinstance(command, PatchTwin | SetDesired):
        sections = {"desired": command.desired} if isinstance(command, SetDesired) else {
            "attributes": command.attributes, "reported": command.reported, "desired": command.desired}
        payload = {k: v for k, v in sections.items() if v is not None}
        if not payload:
            return []
        meta = {s: _stamped(payload[s], command.stamp) for s in ("reported", "desired") if s in payload}
        if meta and command.stamp is not None:
            payload["metadata"] = meta
        return event(ev.TWIN_PATCHED, payload)
    if isinstance(command, SetRelationship):
        return event(ev.RELATIONSHIP_SET, {"id": command.id, "name": command.name, "target": command.target,
                                           "properties": command.properties})
    if isinstance(command, DeleteRelationship):
        if command.id not in state.relationships:
            raise NotFound(f"twin {twin!r} has no relationship {command.id!r}", twin=twin, relationship=command.id)
        return event(ev.RELATIONSHIP_DELETED, {"id": command.id})
    if isinstance(command, DeleteTwin):
        if command.incoming:
            raise has_incoming(twin, command.incoming)
        return event(ev.TWIN_DELETED, {})
    if isinstance(command, MigrateTwin):
        return event(ev.TWIN_MIGRATED, {
            "from": state.model,
            "to": command.to,
            "reported": {k: None for k in command.dropped if k in state.reported},
            "desired": {k: None for k in command.dropped if k in state.desired},
            "report": command.report,
        })
    raise Invalid(f"unknown command {type(command).__name__}", twin=twin, rule="command_type")


def decide_all(states: dict[str, Twin | None], commands: Sequence[Command], *, actor: str, time: datetime,
               last_revisions: dict[str, int] | None = None) -> list[Event]:
    """Decide a batch in order; later commands see the state the earlier ones left.

    ``states`` (and ``last_revisions``, when given) are updated as the batch goes.
    """
    out: list[Event] = []
    last = {} if last_revisions is None else last_revisions
    for command in commands:
        state = states.get(command.twin)
        events = decide(state, command, actor=actor, time=time, last_revision=last.get(command.twin, 0))
        for e in events:
            state = apply(state, e)
        if events:
            states[command.twin] = state
            last[command.twin] = events[-1].revision
        out.extend(events)
    return out


def _stamped(values: dict[str, Any], stamp: dict[str, Any] | None) -> dict[str, Any]:
    """Each written value's metadata: the command's stamp (``None`` for a removed value)."""
    return {k: (None if v is None else stamp) for k, v in values.items()}


def stale(twin: str, expected: int, actual: int) -> PreconditionFailed:
    """The If-Match precondition failed: the twin is at another revision."""
    return PreconditionFailed(
        f"twin {twin!r} is at revision {actual}, not {expected} (If-Match); read it again",
        twin=twin, expected=expected, revision=actual, rule="if_match",
    )


def has_incoming(twin: str, incoming: Sequence[str]) -> Conflict:
    names = ", ".join(incoming[:5])
    return Conflict(f"twin {twin!r} is the target of {len(incoming)} relationship(s) ({names}); delete them first",
                    twin=twin, rule="has_incoming", relationships=list(incoming))
