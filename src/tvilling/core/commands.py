"""Typed twin commands: what someone asks to change, before it is decided.

A command names one twin and the change wanted. :func:`tvilling.core.decide.decide`
turns it, given the twin's current state, into the events that record it — or refuses
it. Values in a command are already checked against the twin's model (the twin service
does that, reading the model registry); deciding is then a pure function of state and
command.

``if_match`` is the optimistic-concurrency precondition (HTTP ``If-Match``): the
command applies only to that revision of the twin. ``stamp`` is the provenance of the
values a command writes (time, quality, source); each value's metadata records it.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Command(msgspec.Struct, frozen=True, kw_only=True):
    twin: str
    if_match: int | None = None


class _TwinBody(_Command, frozen=True, kw_only=True):
    model: str
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    reported: dict[str, Any] = msgspec.field(default_factory=dict)
    desired: dict[str, Any] = msgspec.field(default_factory=dict)
    stamp: dict[str, Any] | None = None  # the values' provenance: time, quality, source


class CreateTwin(_TwinBody, frozen=True, kw_only=True):
    """Create a twin that does not exist yet (``Conflict`` when it does)."""


class PutTwin(_TwinBody, frozen=True, kw_only=True):
    """Create the twin, or replace its whole state (same model: a model change is a migration)."""


class PatchTwin(_Command, frozen=True, kw_only=True):
    """Merge-patch attributes, reported and desired values (``None`` removes a key), with their metadata."""

    attributes: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None
    stamp: dict[str, Any] | None = None  # the values' provenance: time, quality, source


class RecordReported(_Command, frozen=True, kw_only=True):
    """Reported values as the ingest stages or the analytics derived them (checked per series there).

    ``metadata`` holds each value's time, source, quality and flags. A twin deleted
    meanwhile is skipped: its readings stay in history.
    """

    reported: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class SetDesired(_Command, frozen=True, kw_only=True):
    """Ask the asset for new values: a merge patch of the desired section."""

    desired: dict[str, Any]
    stamp: dict[str, Any] | None = None


class SetRelationship(_Command, frozen=True, kw_only=True):
    """Create or replace one outgoing relationship."""

    id: str
    name: str
    target: str
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class DeleteRelationship(_Command, frozen=True, kw_only=True):
    id: str


class DeleteTwin(_Command, frozen=True, kw_only=True):
    """Delete a twin; ``incoming`` lists the relationships that still point at it (they forbid it)."""

    incoming: tuple[str, ...] = ()


class MigrateTwin(_Command, frozen=True, kw_only=True):
    """Move a twin to another model version, dropping the values the new one does not declare."""

    to: str
    dropped: tuple[str, ...] = ()
    report: dict[str, Any] = msgspec.field(default_factory=dict)


Command = (CreateTwin | PutTwin | PatchTwin | RecordReported | SetDesired | SetRelationship | DeleteRelationship
           | DeleteTwin | MigrateTwin)

COMMAND_TYPES: tuple[type[_Command], ...] = (CreateTwin, PutTwin, PatchTwin, RecordReported, SetDesired,
                                              SetRelationship, DeleteRelationship, DeleteTwin, MigrateTwin)
