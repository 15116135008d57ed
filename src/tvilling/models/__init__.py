"""The model language of Tvilling: a DTDL v3 subset (DTDL v2 accepted), units, validation, export.

Entry points: :func:`~tvilling.models.dtdl.parse_models`, :class:`~tvilling.models.modelset.ModelSet`,
:mod:`tvilling.models.validate`, :mod:`tvilling.models.units` and :mod:`tvilling.models.export`.
"""

from tvilling.models.dtdl import parse_models
from tvilling.models.export import export_models, to_dtdl
from tvilling.models.interface import (
    CommandDef,
    CommandPayload,
    ComponentDef,
    Content,
    Interface,
    PropertyDef,
    RelationshipDef,
    TelemetryDef,
)
from tvilling.models.modelset import ModelSet, ResolvedModel
from tvilling.models.schema import ArraySchema, EnumSchema, MapSchema, ObjectSchema, PrimitiveSchema, Schema

__all__ = [
    "ArraySchema",
    "CommandDef",
    "CommandPayload",
    "ComponentDef",
    "Content",
    "EnumSchema",
    "Interface",
    "MapSchema",
    "ModelSet",
    "ObjectSchema",
    "PrimitiveSchema",
    "PropertyDef",
    "RelationshipDef",
    "ResolvedModel",
    "Schema",
    "TelemetryDef",
    "export_models",
    "parse_models",
    "to_dtdl",
]
