"""Lexical rules of DTDL documents: contexts, keys, names, identifiers, localized strings, @type.

Used by the parser modules; every check reports into a :class:`Problems` rather than raising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tvilling.core.ids import is_dtmi
from tvilling.models.problems import Problems
from tvilling.models.schema import Schema
from tvilling.models.units import QUANTITATIVE_TYPES_CONTEXT, SEMANTIC_TYPES

CONTEXT_V2 = "dtmi:dtdl:context;2"
CONTEXT_V3 = "dtmi:dtdl:context;3"
MAX_CONTEXT = 2048
MAX_ELEMENT_ID = 2048
MAX_INTERFACE_ID = 128
MAX_COMMENT = 512
MAX_DESCRIPTION = 512
MAX_DISPLAY_NAME = 64
MAX_ELEMENTS = 100_000  # elements in the contents hierarchy of one Interface (v3)

#: Adjunct types and keys of DTDL extensions this parser does not support, with their context.
EXTENSION_TYPES: Mapping[str, str] = {
    "Historized": "dtmi:dtdl:extension:historization;1",
    "ValueAnnotation": "dtmi:dtdl:extension:annotation;1",
    "Override": "dtmi:dtdl:extension:overriding;1",
}
EXTENSION_KEYS: Mapping[str, str] = {
    "annotates": "extension dtmi:dtdl:extension:annotation;1",
    "overrides": "extension dtmi:dtdl:extension:overriding;1",
    "nullable": "a DTDL v4 feature",
}
#: Material types of DTDL, to tell "misplaced" from "unknown" in messages.
MATERIAL_TYPES = frozenset(
    {
        "Interface",
        "Telemetry",
        "Property",
        "Command",
        "Relationship",
        "Component",
        "CommandRequest",
        "CommandResponse",
        "CommandPayload",
        "Array",
        "Enum",
        "EnumValue",
        "Map",
        "MapKey",
        "MapValue",
        "Object",
        "Field",
    }
)
COMMON_KEYS = frozenset({"@id", "@type", "comment", "description", "displayName"})

_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


@dataclass(slots=True)
class Ctx:
    """Parsing state of one Interface (shared by the Interfaces nested in it)."""

    version: int
    quantitative: bool
    problems: Problems
    commands: bool = False  # the Tvilling commands extension (tvilling.models.dtdl_care) is in @context
    elements: int = 0
    semantic_used: bool = False
    local_schemas: dict[str, tuple[Any, str]] = field(default_factory=dict)
    schema_cache: dict[str, Schema | None] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)

    @property
    def max_name(self) -> int:
        return 64 if self.version == 2 else 512


def child(path: str, key: str | int) -> str:
    """Return the JSON path of ``key`` under ``path``."""
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def check_keys(ctx: Ctx, raw: Mapping[str, Any], allowed: frozenset[str], path: str, what: str) -> None:
    """Report every key of ``raw`` outside ``allowed``."""
    for key in raw:
        if key in allowed:
            continue
        if key in EXTENSION_KEYS:
            message = f"key {key!r} is not supported ({EXTENSION_KEYS[key]})"
        elif key == "unit":
            message = 'key \'unit\' needs a semantic type in @type (e.g. ["Property", "Temperature"])'
        elif key == "@context":
            message = "'@context' is only allowed on an Interface"
        else:
            message = f"key {str(key)[:64]!r} is not supported on {what}"
        ctx.problems.add(child(path, str(key)[:64]), str(key)[:64], message)


def check_name(ctx: Ctx, raw: Mapping[str, Any], path: str) -> str | None:
    """Check the required ``name`` of an element; return it or ``None`` if missing/invalid."""
    name = raw.get("name")
    where = child(path, "name")
    if name is None:
        ctx.problems.add(where, "name", "'name' is required")
        return None
    if not isinstance(name, str):
        ctx.problems.add(where, "name", "'name' must be a string")
        return None
    if len(name) > ctx.max_name:
        ctx.problems.add(where, "name", f"name is longer than {ctx.max_name} characters")
        return None
    if not _NAME.fullmatch(name):
        ctx.problems.add(
            where,
            "name",
            f"name {name!r} must contain only letters, digits and '_', start with a "
            "letter and end with a letter or digit",
        )
        return None
    return name


def check_element_id(ctx: Ctx, raw: Mapping[str, Any], path: str) -> None:
    """Check the optional ``@id`` of a non-Interface element."""
    if "@id" in raw:
        check_dtmi(ctx, raw["@id"], child(path, "@id"), MAX_ELEMENT_ID)


def check_dtmi(ctx: Ctx, value: object, path: str, max_length: int) -> str | None:
    """Check that ``value`` is a user DTMI of at most ``max_length`` characters."""
    if not isinstance(value, str):
        ctx.problems.add(path, "dtmi", "must be a DTMI string")
        return None
    if len(value) > max_length:
        ctx.problems.add(path, "dtmi", f"DTMI is longer than {max_length} characters")
        return None
    if not is_dtmi(value):
        ctx.problems.add(path, "dtmi", f"{value!r} is not a valid DTMI")
        return None
    if any(seg.startswith("_") for seg in value.split(";")[0].split(":")[1:]):
        ctx.problems.add(path, "dtmi", f"{value!r} is a system DTMI; only user DTMIs are allowed in models")
        return None
    if value.startswith(("dtmi:dtdl:", "dtmi:standard:")):
        ctx.problems.add(path, "dtmi", f"{value!r} uses a prefix reserved by DTDL")
        return None
    return value


def check_descriptive(ctx: Ctx, raw: Mapping[str, Any], path: str) -> None:
    """Check ``comment``, ``description`` and ``displayName`` of an element."""
    comment = raw.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        ctx.problems.add(
            child(path, "comment"), "comment", f"must be a string of at most {MAX_COMMENT} characters"
        )
    for key, limit in (("description", MAX_DESCRIPTION), ("displayName", MAX_DISPLAY_NAME)):
        if key in raw:
            localized(ctx, raw[key], child(path, key), limit)


def localized(ctx: Ctx, value: object, path: str, limit: int) -> str | None:
    """Check a localizable string (a string or a language map); return its default-language text."""
    if isinstance(value, str):
        if len(value) > limit:
            ctx.problems.add(path, "max_length", f"longer than {limit} characters")
        return value
    if isinstance(value, Mapping) and value:
        for lang, text in value.items():
            if not isinstance(lang, str) or not _LANGUAGE.fullmatch(lang):
                ctx.problems.add(path, "language", f"{str(lang)[:32]!r} is not a language tag")
            elif not isinstance(text, str) or len(text) > limit:
                ctx.problems.add(
                    child(path, lang), "max_length", f"must be a string of at most {limit} characters"
                )
        text = value.get("en", next(iter(value.values())))
        return text if isinstance(text, str) else None
    ctx.problems.add(path, "localized", "must be a string or a map of language tags to strings")
    return None


def split_type(
    ctx: Ctx,
    raw: Mapping[str, Any],
    path: str,
    materials: frozenset[str],
    default: str | None,
    semantic: bool,
) -> tuple[str | None, str | None]:
    """Split ``@type`` into (material type, semantic type), reporting anything unsupported.

    ``default`` is the material type when ``@type`` is absent or lists only co-types (for
    elements whose ``@type`` is optional); ``semantic`` says whether a semantic type may co-type.
    """
    where = child(path, "@type")
    value = raw.get("@type")
    if value is None:
        if default is None:
            ctx.problems.add(where, "@type", f"'@type' is required (one of {', '.join(sorted(materials))})")
        return default, None
    types = [value] if isinstance(value, str) else value
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        ctx.problems.add(where, "@type", "'@type' must be a string or a non-empty list of strings")
        return None, None
    material: str | None = None
    semantic_type: str | None = None
    before = len(ctx.problems)
    for t in types:
        if t in materials and material is None:
            material = t
        elif t in SEMANTIC_TYPES and semantic and semantic_type is None:
            if ctx.version >= 3 and not ctx.quantitative:
                ctx.problems.add(
                    where,
                    t,
                    f"semantic type {t!r} requires the extension {QUANTITATIVE_TYPES_CONTEXT} in @context",
                )
            semantic_type = t
            ctx.semantic_used = True
        elif t in EXTENSION_TYPES:
            ctx.problems.add(where, t, f"{t!r} is not supported (extension {EXTENSION_TYPES[t]})")
        elif t in SEMANTIC_TYPES:
            ctx.problems.add(where, t, f"semantic type {t!r} is not allowed here")
        elif t in MATERIAL_TYPES:
            ctx.problems.add(
                where, t, f"{t!r} is not allowed here (expected {' or '.join(sorted(materials))})"
            )
        else:
            ctx.problems.add(where, t[:64], f"{t[:64]!r} is not supported (unknown type)")
    if material is None and len(ctx.problems) == before:
        ctx.problems.add(where, "@type", f"'@type' must include {' or '.join(sorted(materials))}")
    return material or default, semantic_type


def check_bool(ctx: Ctx, raw: Mapping[str, Any], key: str, path: str) -> bool:
    """Return the optional boolean ``key`` (default ``False``), reporting non-booleans."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        ctx.problems.add(child(path, key), key, f"'{key}' must be true or false")
        return False
    return value


def count_element(ctx: Ctx, path: str) -> None:
    """Count one element of the contents hierarchy against the DTDL limit."""
    ctx.elements += 1
    if ctx.elements == MAX_ELEMENTS + 1:
        ctx.problems.add(path, "max_elements", f"an Interface may have at most {MAX_ELEMENTS} elements")
