"""Data schemas of the model language: primitives, Object, Map, Enum and Array.

A schema says what a value of a Property, Telemetry, Command payload or
Relationship property looks like on the wire (JSON).

>>> ObjectSchema({"x": PrimitiveSchema("double")}).fields["x"].name
'double'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Primitive schemas of DTDL v2 and v3.
PRIMITIVES: frozenset[str] = frozenset(
    {"boolean", "date", "dateTime", "double", "duration", "float", "integer", "long", "string", "time"}
)
#: Primitive schemas that a semantic type (unit) may be applied to.
NUMERIC: frozenset[str] = frozenset({"double", "float", "integer", "long"})
#: Primitive schemas that only DTDL v4 defines; rejected by this v2/v3 parser.
V4_PRIMITIVES: frozenset[str] = frozenset(
    {
        "byte",
        "bytes",
        "decimal",
        "short",
        "unsignedByte",
        "unsignedShort",
        "unsignedInteger",
        "unsignedLong",
        "uuid",
        "scaledDecimal",
    }
)
#: GeoJSON schemas of DTDL; not supported here.
GEOSPATIAL: frozenset[str] = frozenset(
    {"point", "lineString", "polygon", "multiPoint", "multiLineString", "multiPolygon"}
)
#: Deepest nesting of complex schemas that DTDL allows.
MAX_SCHEMA_DEPTH = 5


@dataclass(frozen=True, slots=True)
class PrimitiveSchema:
    """One of :data:`PRIMITIVES`, e.g. ``PrimitiveSchema("double")``."""

    name: str


@dataclass(frozen=True, slots=True)
class ObjectSchema:
    """A structure of named fields; ``fields`` maps field name to schema."""

    fields: Mapping[str, Schema]


@dataclass(frozen=True, slots=True)
class MapSchema:
    """String keys to values of one schema; the key and value names are metadata only."""

    key_name: str
    value_name: str
    value: Schema


@dataclass(frozen=True, slots=True)
class EnumSchema:
    """Named labels (``values``: name to value) over ``value_schema`` ``"integer"`` or ``"string"``."""

    value_schema: str
    values: Mapping[str, int | str]


@dataclass(frozen=True, slots=True)
class ArraySchema:
    """A list whose elements all have schema ``element``."""

    element: Schema


Schema = PrimitiveSchema | ObjectSchema | MapSchema | EnumSchema | ArraySchema


def schema_depth(schema: Schema) -> int:
    """Return how many complex schemas are nested in ``schema`` (0 for a primitive)."""
    if isinstance(schema, PrimitiveSchema):
        return 0
    if isinstance(schema, EnumSchema):
        return 1
    if isinstance(schema, ArraySchema):
        return 1 + schema_depth(schema.element)
    if isinstance(schema, MapSchema):
        return 1 + schema_depth(schema.value)
    return 1 + max((schema_depth(s) for s in schema.fields.values()), default=0)


def contains_array(schema: Schema) -> bool:
    """Return whether an Array appears anywhere in ``schema``."""
    if isinstance(schema, ArraySchema):
        return True
    if isinstance(schema, MapSchema):
        return contains_array(schema.value)
    if isinstance(schema, ObjectSchema):
        return any(contains_array(s) for s in schema.fields.values())
    return False
