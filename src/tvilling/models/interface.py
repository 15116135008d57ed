"""Parsed Interfaces and their contents (Property, Telemetry, Command, Relationship, Component).

These are plain immutable values produced by :func:`tvilling.models.dtdl.parse_models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tvilling.core.ids import Dtmi
from tvilling.models.schema import Schema


@dataclass(frozen=True, slots=True)
class PropertyDef:
    """A Property: state of a twin; ``writable`` ones may be set through ``desired``."""

    name: str
    schema: Schema
    writable: bool = False
    unit: str | None = None
    semantic_type: str | None = None


@dataclass(frozen=True, slots=True)
class TelemetryDef:
    """A Telemetry: a stream of values emitted by the twin's asset."""

    name: str
    schema: Schema
    unit: str | None = None
    semantic_type: str | None = None


@dataclass(frozen=True, slots=True)
class CommandPayload:
    """The request or response of a Command.

    ``nullable`` is always ``False`` for DTDL v2/v3 documents (the key is a DTDL v4 feature).
    """

    name: str
    schema: Schema
    nullable: bool = False
    unit: str | None = None
    semantic_type: str | None = None


@dataclass(frozen=True, slots=True)
class CommandDef:
    """A Command with an optional request and response payload.

    ``disruptive``, ``disruption`` and ``affects`` come from Tvilling's commands extension
    (:mod:`tvilling.models.dtdl_care`): whether a person must confirm it, what it does in
    words, and which Properties or Telemetry it changes.
    """

    name: str
    request: CommandPayload | None = None
    response: CommandPayload | None = None
    disruptive: bool = False
    disruption: str | None = None
    affects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RelationshipDef:
    """A Relationship to other twins; ``target`` ``None`` means any model."""

    name: str
    target: str | None = None
    max_multiplicity: int | None = None
    properties: Mapping[str, PropertyDef] = field(default_factory=dict)
    writable: bool = False


@dataclass(frozen=True, slots=True)
class ComponentDef:
    """A Component: the contents of Interface ``schema`` included by value under ``name``."""

    name: str
    schema: str


Content = PropertyDef | TelemetryDef | CommandDef | RelationshipDef | ComponentDef


@dataclass(frozen=True, slots=True)
class Interface:
    """One DTDL Interface.

    ``contents`` holds only the Interface's own contents, by name; inherited ones
    are merged by :meth:`tvilling.models.modelset.ModelSet.resolve`.
    ``document`` is the Interface's DTDL v3 JSON, normalised: ``@context`` in
    canonical form, inline Interfaces (in ``extends`` or Component ``schema``)
    replaced by their ``@id`` (they are parsed into separate Interfaces), and
    DTDL v2 spellings upgraded to v3.
    """

    id: str
    dtmi: Dtmi
    extends: tuple[str, ...]
    contents: Mapping[str, Content]
    display_name: str | None
    description: str | None
    document: Mapping[str, Any]

    @property
    def component_schemas(self) -> tuple[str, ...]:
        """DTMIs of the Interfaces used by this Interface's own Components."""
        return tuple(c.schema for c in self.contents.values() if isinstance(c, ComponentDef))
