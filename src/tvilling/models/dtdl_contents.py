"""Parsing the ``contents`` of a DTDL Interface: Property, Telemetry, Command, Relationship, Component."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tvilling.models.dtdl_care import KEYS as CARE_KEYS
from tvilling.models.dtdl_care import Care, check_care, take_cotypes
from tvilling.models.dtdl_schema import check_quantity, parse_named, parse_schema
from tvilling.models.dtdl_syntax import (
    COMMON_KEYS,
    MAX_ELEMENT_ID,
    MAX_INTERFACE_ID,
    Ctx,
    check_bool,
    check_descriptive,
    check_dtmi,
    check_element_id,
    check_keys,
    check_name,
    child,
    count_element,
    split_type,
)
from tvilling.models.interface import (
    CommandDef,
    CommandPayload,
    ComponentDef,
    Content,
    PropertyDef,
    RelationshipDef,
    TelemetryDef,
)
from tvilling.models.schema import MAX_SCHEMA_DEPTH, Schema, contains_array, schema_depth

#: Parses an inline Interface (in a Component ``schema``) and returns its ``@id``.
InlineParser = Callable[[Mapping[str, Any], str], str | None]

_KINDS = frozenset({"Property", "Telemetry", "Command", "Relationship", "Component"})
_MAX_CONTENTS_V2 = 300


def parse_contents(ctx: Ctx, value: object, path: str, inline: InlineParser) -> dict[str, Content]:
    """Parse an Interface's ``contents`` list into contents by name (names must be unique)."""
    out: dict[str, Content] = {}
    if not isinstance(value, list):
        ctx.problems.add(path, "contents", "'contents' must be a list")
        return out
    if ctx.version == 2 and len(value) > _MAX_CONTENTS_V2:
        ctx.problems.add(path, "contents", f"DTDL v2 allows at most {_MAX_CONTENTS_V2} contents")
    for i, raw in enumerate(value):
        where = child(path, i)
        if not isinstance(raw, Mapping):
            ctx.problems.add(where, "contents", "a content element must be an object")
            continue
        content = parse_content(ctx, raw, where, inline)
        if content is None:
            continue
        if content.name in out:
            ctx.problems.add(
                child(where, "name"), "name", f"name {content.name!r} is not unique in this Interface"
            )
            continue
        out[content.name] = content
    return out


def parse_content(ctx: Ctx, raw: Mapping[str, Any], path: str, inline: InlineParser) -> Content | None:
    """Parse one element of ``contents``; ``None`` when it is invalid (problems recorded)."""
    count_element(ctx, path)
    raw, cotypes = take_cotypes(ctx, raw, path)
    kind, semantic = split_type(ctx, raw, path, _KINDS, None, True)
    if kind is None:
        return None
    care = check_care(ctx, raw, path, kind, cotypes)
    if cotypes and kind != "Command":
        raw = {k: v for k, v in raw.items() if k not in CARE_KEYS}  # reported by check_care already
    if semantic is not None and kind not in ("Property", "Telemetry"):
        ctx.problems.add(child(path, "@type"), semantic, f"a {kind} cannot have a semantic type")
    check_element_id(ctx, raw, path)
    check_descriptive(ctx, raw, path)
    name = check_name(ctx, raw, path)
    if kind == "Property":
        return _property(ctx, raw, path, name, semantic)
    if kind == "Telemetry":
        check_keys(ctx, raw, COMMON_KEYS | {"name", "schema"} | _unit(semantic), path, "a Telemetry")
        schema = _schema(ctx, raw, path)
        unit = check_quantity(ctx, raw, path, semantic, schema)
        return TelemetryDef(name, schema, unit, semantic) if name and schema else None
    if kind == "Command":
        return _command(ctx, raw, path, name, care)
    if kind == "Relationship":
        return _relationship(ctx, raw, path, name)
    check_keys(ctx, raw, COMMON_KEYS | {"name", "schema"}, path, "a Component")
    target = raw.get("schema")
    where = child(path, "schema")
    if isinstance(target, Mapping):
        schema_id = inline(target, where)
    elif target is None:
        ctx.problems.add(where, "schema", "'schema' is required")
        schema_id = None
    else:
        schema_id = check_dtmi(ctx, target, where, MAX_INTERFACE_ID)
    return ComponentDef(name, schema_id) if name and schema_id else None


def _unit(semantic: str | None) -> frozenset[str]:
    return frozenset({"unit"}) if semantic else frozenset()


def _schema(ctx: Ctx, raw: Mapping[str, Any], path: str, property_schema: bool = False) -> Schema | None:
    where = child(path, "schema")
    if "schema" not in raw:
        ctx.problems.add(where, "schema", "'schema' is required")
        return None
    schema = parse_schema(ctx, raw["schema"], where)
    if schema is None:
        return None
    if schema_depth(schema) > MAX_SCHEMA_DEPTH:
        ctx.problems.add(
            where, "schema", f"complex schemas may be nested at most {MAX_SCHEMA_DEPTH} levels deep"
        )
        return None
    if property_schema and ctx.version == 2 and contains_array(schema):
        ctx.problems.add(where, "Array", "an Array in a Property schema needs DTDL v3")
        return None
    return schema


def _property(
    ctx: Ctx, raw: Mapping[str, Any], path: str, name: str | None, semantic: str | None
) -> Content | None:
    check_keys(ctx, raw, COMMON_KEYS | {"name", "schema", "writable"} | _unit(semantic), path, "a Property")
    writable = check_bool(ctx, raw, "writable", path)
    schema = _schema(ctx, raw, path, property_schema=True)
    unit = check_quantity(ctx, raw, path, semantic, schema)
    return PropertyDef(name, schema, writable, unit, semantic) if name and schema else None


def _command(ctx: Ctx, raw: Mapping[str, Any], path: str, name: str | None, care: Care) -> Content | None:
    keys = COMMON_KEYS | {"name", "request", "response"} | ({"commandType"} if ctx.version == 2 else set())
    keys |= CARE_KEYS.keys()  # checked by check_care
    check_keys(ctx, raw, frozenset(keys), path, "a Command")
    payloads: dict[str, CommandPayload | None] = {"request": None, "response": None}
    ok = True
    for key, kind in (("request", "CommandRequest"), ("response", "CommandResponse")):
        value = raw.get(key)
        if value is None:
            continue
        where = child(path, key)
        if not isinstance(value, Mapping):
            ctx.problems.add(where, key, f"'{key}' must be an object")
            ok = False
            continue
        parsed = parse_named(ctx, value, where, kind)
        if parsed is None:
            ok = False
        elif schema_depth(parsed[1]) > MAX_SCHEMA_DEPTH:
            ctx.problems.add(child(where, "schema"), "schema", "complex schemas nest too deep")
            ok = False
        else:
            payloads[key] = CommandPayload(parsed[0], parsed[1], False, parsed[2], parsed[3])
    if not (name and ok):
        return None
    return CommandDef(name, payloads["request"], payloads["response"], care.disruptive, care.disruption, care.affects)


def _relationship(ctx: Ctx, raw: Mapping[str, Any], path: str, name: str | None) -> Content | None:
    keys = COMMON_KEYS | {"name", "target", "minMultiplicity", "maxMultiplicity", "properties", "writable"}
    check_keys(ctx, raw, keys, path, "a Relationship")
    writable = check_bool(ctx, raw, "writable", path)
    target = raw.get("target")
    if target is not None:
        target = check_dtmi(ctx, target, child(path, "target"), MAX_ELEMENT_ID)
    low = raw.get("minMultiplicity", 0)
    if not isinstance(low, int) or isinstance(low, bool) or low != 0:
        ctx.problems.add(child(path, "minMultiplicity"), "minMultiplicity", "'minMultiplicity' must be 0")
    high = raw.get("maxMultiplicity")
    if high is not None and (not isinstance(high, int) or isinstance(high, bool) or high < 1):
        ctx.problems.add(
            child(path, "maxMultiplicity"), "maxMultiplicity", "'maxMultiplicity' must be an integer >= 1"
        )
        high = None
    properties: dict[str, PropertyDef] = {}
    items = raw.get("properties", [])
    if not isinstance(items, list):
        ctx.problems.add(child(path, "properties"), "properties", "'properties' must be a list")
        items = []
    for i, item in enumerate(items):
        where = child(child(path, "properties"), i)
        if not isinstance(item, Mapping):
            ctx.problems.add(where, "Property", "a relationship property must be an object")
            continue
        count_element(ctx, where)
        kind, semantic = split_type(ctx, item, where, frozenset({"Property"}), None, True)
        if kind is None:
            continue
        check_element_id(ctx, item, where)
        check_descriptive(ctx, item, where)
        prop = _property(ctx, item, where, check_name(ctx, item, where), semantic)
        if isinstance(prop, PropertyDef):
            if prop.name in properties:
                ctx.problems.add(child(where, "name"), "name", f"property name {prop.name!r} is not unique")
            properties[prop.name] = prop
    return RelationshipDef(name, target, high, properties, writable) if name else None
