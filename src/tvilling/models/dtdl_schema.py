"""Parsing DTDL schemas: primitives, Interface-local schema references, Array, Enum, Map, Object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tvilling.core.ids import is_dtmi
from tvilling.models.dtdl_syntax import (
    COMMON_KEYS,
    Ctx,
    check_descriptive,
    check_element_id,
    check_keys,
    check_name,
    child,
    count_element,
    split_type,
)
from tvilling.models.schema import (
    GEOSPATIAL,
    NUMERIC,
    PRIMITIVES,
    V4_PRIMITIVES,
    ArraySchema,
    EnumSchema,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    Schema,
)
from tvilling.models.units import SEMANTIC_TYPES, units_for

_COMPLEX = frozenset({"Array", "Enum", "Map", "Object"})
_KEYS = {
    "Array": COMMON_KEYS | {"elementSchema"},
    "Enum": COMMON_KEYS | {"valueSchema", "enumValues"},
    "Map": COMMON_KEYS | {"mapKey", "mapValue"},
    "Object": COMMON_KEYS | {"fields"},
}
_NAMED_KEYS = COMMON_KEYS | {"name", "schema"}
_INT32 = (-(2**31), 2**31 - 1)


def parse_schema(ctx: Ctx, value: object, path: str) -> Schema | None:
    """Parse the value of a ``schema``-like key; ``None`` when it is invalid (problems recorded)."""
    if isinstance(value, str):
        return _named_schema(ctx, value, path)
    if isinstance(value, Mapping):
        return _complex_schema(ctx, value, path)
    ctx.problems.add(path, "schema", "a schema must be a string or an object")
    return None


def _named_schema(ctx: Ctx, name: str, path: str) -> Schema | None:
    if name in PRIMITIVES:
        return PrimitiveSchema(name)
    if name in V4_PRIMITIVES:
        ctx.problems.add(path, name, f"schema {name!r} is not supported (a DTDL v4 primitive schema)")
        return None
    if name in GEOSPATIAL:
        ctx.problems.add(path, name, f"geospatial schema {name!r} is not supported")
        return None
    if name in ctx.local_schemas:
        return _local_schema(ctx, name, path)
    if is_dtmi(name):
        ctx.problems.add(path, "schema", f"schema {name!r} is not defined in this Interface's 'schemas'")
    else:
        ctx.problems.add(path, "schema", f"schema {name[:64]!r} is not supported (unknown schema)")
    return None


def _local_schema(ctx: Ctx, schema_id: str, path: str) -> Schema | None:
    if schema_id in ctx.schema_cache:
        return ctx.schema_cache[schema_id]
    if schema_id in ctx.resolving:
        ctx.problems.add(path, "schema", f"schema {schema_id!r} refers to itself")
        return None
    raw, raw_path = ctx.local_schemas[schema_id]
    ctx.resolving.add(schema_id)
    parsed = _complex_schema(ctx, raw, raw_path)
    ctx.resolving.discard(schema_id)
    ctx.schema_cache[schema_id] = parsed
    return parsed


def _complex_schema(ctx: Ctx, raw: Mapping[str, Any], path: str) -> Schema | None:
    count_element(ctx, path)
    kind, _ = split_type(ctx, raw, path, _COMPLEX, None, False)
    if kind is None:
        return None
    check_keys(ctx, raw, _KEYS[kind], path, f"an {kind}")
    check_element_id(ctx, raw, path)
    check_descriptive(ctx, raw, path)
    if kind == "Array":
        if "elementSchema" not in raw:
            ctx.problems.add(child(path, "elementSchema"), "elementSchema", "'elementSchema' is required")
            return None
        element = parse_schema(ctx, raw["elementSchema"], child(path, "elementSchema"))
        return ArraySchema(element) if element is not None else None
    if kind == "Enum":
        return _enum(ctx, raw, path)
    if kind == "Map":
        return _map(ctx, raw, path)
    return _object(ctx, raw, path)


def _enum(ctx: Ctx, raw: Mapping[str, Any], path: str) -> Schema | None:
    value_schema = raw.get("valueSchema")
    if value_schema not in ("integer", "string"):
        ctx.problems.add(
            child(path, "valueSchema"), "valueSchema", "'valueSchema' must be 'integer' or 'string'"
        )
        return None
    values: dict[str, int | str] = {}
    seen: set[int | str] = set()
    items = raw.get("enumValues", [])
    if not isinstance(items, list):
        ctx.problems.add(child(path, "enumValues"), "enumValues", "'enumValues' must be a list")
        return None
    for i, item in enumerate(items):
        where = child(child(path, "enumValues"), i)
        if not isinstance(item, Mapping):
            ctx.problems.add(where, "EnumValue", "an enum value must be an object")
            continue
        count_element(ctx, where)
        split_type(ctx, item, where, frozenset({"EnumValue"}), "EnumValue", False)
        check_keys(ctx, item, COMMON_KEYS | {"name", "enumValue"}, where, "an EnumValue")
        check_element_id(ctx, item, where)
        check_descriptive(ctx, item, where)
        name = check_name(ctx, item, where)
        value = _enum_value(item.get("enumValue"), value_schema)
        if value is None:
            ctx.problems.add(child(where, "enumValue"), "enumValue", f"'enumValue' must be a {value_schema}")
            continue
        if name is not None and name in values:
            ctx.problems.add(child(where, "name"), "name", f"enum value name {name!r} is not unique")
        elif value in seen:
            ctx.problems.add(child(where, "enumValue"), "enumValue", f"enum value {value!r} is not unique")
        elif name is not None:
            values[name] = value
        seen.add(value)
    return EnumSchema(value_schema, values)


def _enum_value(value: object, value_schema: str) -> int | str | None:
    if value_schema == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and _INT32[0] <= value <= _INT32[1]:
            return value
        return None
    return value if isinstance(value, str) and len(value) <= 512 else None


def _map(ctx: Ctx, raw: Mapping[str, Any], path: str) -> Schema | None:
    key = raw.get("mapKey")
    where = child(path, "mapKey")
    if not isinstance(key, Mapping):
        ctx.problems.add(where, "mapKey", "'mapKey' is required and must be an object")
        return None
    count_element(ctx, where)
    split_type(ctx, key, where, frozenset({"MapKey"}), "MapKey", False)
    check_keys(ctx, key, _NAMED_KEYS, where, "a MapKey")
    check_element_id(ctx, key, where)
    check_descriptive(ctx, key, where)
    key_name = check_name(ctx, key, where)
    if key.get("schema") != "string":
        ctx.problems.add(child(where, "schema"), "schema", "the schema of a MapKey must be 'string'")
    value = raw.get("mapValue")
    if not isinstance(value, Mapping):
        ctx.problems.add(child(path, "mapValue"), "mapValue", "'mapValue' is required and must be an object")
        return None
    parsed = parse_named(ctx, value, child(path, "mapValue"), "MapValue")
    if parsed is None or key_name is None:
        return None
    return MapSchema(key_name, parsed[0], parsed[1])


def _object(ctx: Ctx, raw: Mapping[str, Any], path: str) -> Schema | None:
    items = raw.get("fields", [])
    if not isinstance(items, list):
        ctx.problems.add(child(path, "fields"), "fields", "'fields' must be a list")
        return None
    fields: dict[str, Schema] = {}
    ok = True
    for i, item in enumerate(items):
        where = child(child(path, "fields"), i)
        if not isinstance(item, Mapping):
            ctx.problems.add(where, "Field", "a field must be an object")
            ok = False
            continue
        parsed = parse_named(ctx, item, where, "Field")
        if parsed is None:
            ok = False
        elif parsed[0] in fields:
            ctx.problems.add(child(where, "name"), "name", f"field name {parsed[0]!r} is not unique")
        else:
            fields[parsed[0]] = parsed[1]
    return ObjectSchema(fields) if ok else None


def parse_named(
    ctx: Ctx, raw: Mapping[str, Any], path: str, kind: str, extra: frozenset[str] = frozenset()
) -> tuple[str, Schema, str | None, str | None] | None:
    """Parse a named, optionally semantic-typed schema holder (Field, MapValue, CommandRequest...).

    Returns ``(name, schema, unit, semantic_type)`` or ``None`` when invalid.
    """
    count_element(ctx, path)
    materials = frozenset(
        {kind, "CommandPayload"} if ctx.version == 2 and kind.startswith("Command") else {kind}
    )
    _, semantic = split_type(ctx, raw, path, materials, kind, True)
    allowed = _NAMED_KEYS | extra | ({"unit"} if semantic else frozenset())
    check_keys(ctx, raw, allowed, path, f"a {kind}")
    check_element_id(ctx, raw, path)
    check_descriptive(ctx, raw, path)
    name = check_name(ctx, raw, path)
    if "schema" not in raw:
        ctx.problems.add(child(path, "schema"), "schema", "'schema' is required")
        return None
    schema = parse_schema(ctx, raw["schema"], child(path, "schema"))
    unit = check_quantity(ctx, raw, path, semantic, schema)
    if name is None or schema is None:
        return None
    return name, schema, unit, semantic


def check_quantity(
    ctx: Ctx, raw: Mapping[str, Any], path: str, semantic: str | None, schema: Schema | None
) -> str | None:
    """Check the ``unit`` of a semantic-typed element; return it (``None`` when absent)."""
    if semantic is None:
        return None
    if schema is not None and not (isinstance(schema, PrimitiveSchema) and schema.name in NUMERIC):
        ctx.problems.add(
            child(path, "schema"),
            "schema",
            f"semantic type {semantic!r} needs a numeric schema (double, float, integer or long)",
        )
    unit = raw.get("unit")
    if unit is None:
        return None
    if not isinstance(unit, str) or unit not in units_for(semantic):
        shown = unit[:64] if isinstance(unit, str) else unit
        ctx.problems.add(
            child(path, "unit"),
            "unit",
            f"unit {shown!r} is not a {SEMANTIC_TYPES[semantic]} "
            f"(allowed for {semantic}: {', '.join(sorted(units_for(semantic)))})",
        )
        return None
    return unit


def parse_local_schemas(ctx: Ctx, value: object, path: str) -> None:
    """Register and check an Interface's ``schemas`` (complex schemas referenced by ``@id``)."""
    if not isinstance(value, list):
        ctx.problems.add(path, "schemas", "'schemas' must be a list")
        return
    for i, raw in enumerate(value):
        where = child(path, i)
        schema_id = raw.get("@id") if isinstance(raw, Mapping) else None
        if not isinstance(schema_id, str) or not is_dtmi(schema_id):
            ctx.problems.add(child(where, "@id"), "@id", "an Interface schema needs an '@id' DTMI")
        elif schema_id in ctx.local_schemas:
            ctx.problems.add(child(where, "@id"), "@id", f"schema {schema_id!r} is defined twice")
        else:
            ctx.local_schemas[schema_id] = (raw, where)
    for schema_id in list(ctx.local_schemas):
        _local_schema(ctx, schema_id, ctx.local_schemas[schema_id][1])
