"""Parsing DTDL documents (a v3 subset, v2 accepted) into :class:`Interface` values.

>>> [i.id for i in parse_models({
...     "@context": "dtmi:dtdl:context;3", "@id": "dtmi:com:example:Room;1", "@type": "Interface",
...     "contents": [{"@type": "Property", "name": "occupied", "schema": "boolean"}]})]
['dtmi:com:example:Room;1']

Anything the parser does not support is rejected, never ignored: every problem of the
document is collected and raised as one :class:`~tvilling.core.errors.Invalid` whose
``errors`` list the JSON path, the feature and a message for each.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from tvilling.core.errors import Invalid, TooLarge
from tvilling.core.ids import parse_dtmi
from tvilling.models.dtdl_care import COMMANDS_CONTEXT
from tvilling.models.dtdl_contents import parse_contents
from tvilling.models.dtdl_schema import parse_local_schemas
from tvilling.models.dtdl_syntax import (
    COMMON_KEYS,
    CONTEXT_V2,
    CONTEXT_V3,
    MAX_CONTEXT,
    MAX_DESCRIPTION,
    MAX_DISPLAY_NAME,
    MAX_INTERFACE_ID,
    Ctx,
    check_descriptive,
    check_dtmi,
    check_keys,
    child,
    localized,
    split_type,
)
from tvilling.models.interface import ComponentDef, Interface
from tvilling.models.problems import Problems
from tvilling.models.units import QUANTITATIVE_TYPES_CONTEXT

__all__ = ["MAX_INTERFACES", "MAX_INTERFACE_BYTES", "MAX_JSON_DEPTH", "Interface", "parse_models"]

MAX_JSON_DEPTH = 64
MAX_INTERFACE_BYTES = 1 << 20
MAX_INTERFACES = 1024
_INTERFACE_KEYS = COMMON_KEYS | {"@context", "contents", "extends", "schemas"}
_MAX_EXTENDS_V2 = 2


def parse_models(document: object) -> list[Interface]:
    """Parse one DTDL Interface (a JSON object) or a list of them.

    Returns every Interface, including those defined inline (in ``extends`` or as a
    Component ``schema``), each once, outer ones before the ones nested in them.
    Raises :class:`Invalid` listing every problem, or :class:`TooLarge` for documents
    beyond the size, depth or count bounds.
    """
    single = not isinstance(document, list)
    top: list[Any] = [document] if single else list(document)  # type: ignore[call-overload]
    if len(top) > MAX_INTERFACES:
        raise TooLarge(f"a document may hold at most {MAX_INTERFACES} Interfaces", rule="max_interfaces")
    _check_depth(document)
    problems = Problems()
    out: list[Interface] = []
    for i, raw in enumerate(top):
        path = "$" if single else f"$[{i}]"
        if not isinstance(raw, Mapping):
            problems.add(path, "Interface", "an Interface must be a JSON object")
            continue
        _check_size(raw, path)
        version = _context(raw.get("@context"), child(path, "@context"), problems, None)
        if version is not None:
            _interface(raw, path, version, problems, out)
    seen: dict[str, Interface] = {}
    for iface in out:
        if iface.id in seen and seen[iface.id].document != iface.document:
            problems.add("$", iface.id, f"Interface {iface.id!r} is defined more than once, differently")
        seen.setdefault(iface.id, iface)
    problems.raise_if_any()
    return list(seen.values())


def _check_depth(document: object) -> None:
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise TooLarge(f"the document is nested deeper than {MAX_JSON_DEPTH} levels", rule="max_depth")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _check_size(raw: Mapping[str, Any], path: str) -> None:
    try:
        size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{path}: the document is not JSON ({exc})", rule="json") from exc
    if size > MAX_INTERFACE_BYTES:
        raise TooLarge(f"{path}: an Interface may be at most 1 MiB of JSON ({size} bytes)", rule="max_size")


def _context(
    value: object, path: str, problems: Problems, inherited: tuple[int, bool, bool] | None
) -> tuple[int, bool, bool] | None:
    """(DTDL version, QuantitativeTypes enabled, Tvilling commands extension enabled) of an ``@context``.

    ``None`` when the context is unusable.
    """
    if value is None:
        if inherited is None:
            problems.add(path, "@context", "'@context' is required (\"dtmi:dtdl:context;3\")")
        return inherited
    specs = [value] if isinstance(value, str) else value
    if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
        problems.add(path, "@context", "'@context' must be a DTMI string or a list of them")
        return None
    if specs[0] not in (CONTEXT_V2, CONTEXT_V3):
        problems.add(
            child(path, 0),
            str(specs[0])[:64],
            f"context {str(specs[0])[:64]!r} is not supported "
            "(the first context must be dtmi:dtdl:context;3 or dtmi:dtdl:context;2)",
        )
        return None
    version = 3 if specs[0] == CONTEXT_V3 else 2
    quantitative = False
    commands = False
    for i, spec in enumerate(specs[1:], start=1):
        if spec == QUANTITATIVE_TYPES_CONTEXT and version == 3:
            quantitative = True
        elif spec == COMMANDS_CONTEXT and version == 3:
            commands = True
        elif spec == COMMANDS_CONTEXT:
            problems.add(child(path, i), spec, f"the extension {COMMANDS_CONTEXT} is for DTDL v3")
        elif spec == QUANTITATIVE_TYPES_CONTEXT:
            problems.add(
                child(path, i),
                spec,
                "the QuantitativeTypes extension is for DTDL v3; DTDL v2 has semantic types built in",
            )
        elif spec.startswith("dtmi:dtdl:extension:"):
            problems.add(child(path, i), spec[:MAX_CONTEXT], f"extension {spec[:128]} is not supported")
        elif spec not in (CONTEXT_V2, CONTEXT_V3):
            problems.add(child(path, i), spec[:128], f"context {spec[:128]!r} is not supported")
    if inherited is not None and inherited[0] != version:
        problems.add(path, "@context", "an inline Interface must use the DTDL version of its document")
    return version, quantitative, commands


def _interface(
    raw: Mapping[str, Any], path: str, context: tuple[int, bool, bool], problems: Problems, out: list[Interface]
) -> str | None:
    """Parse one Interface (and those inline in it) into ``out``; return its id when valid."""
    before = len(problems)
    ctx = Ctx(context[0], context[1], problems, commands=context[2])
    slot = len(out)
    split_type(ctx, raw, path, frozenset({"Interface"}), None, False)
    check_keys(ctx, raw, _INTERFACE_KEYS, path, "an Interface")
    iface_id = _interface_id(ctx, raw.get("@id"), child(path, "@id"))
    check_descriptive(ctx, raw, path)

    def inline(inner: Mapping[str, Any], where: str) -> str | None:
        inner_ctx = _context(inner.get("@context"), child(where, "@context"), problems, context)
        return _interface(inner, where, inner_ctx, problems, out) if inner_ctx is not None else None

    if "schemas" in raw:
        parse_local_schemas(ctx, raw["schemas"], child(path, "schemas"))
    contents = parse_contents(ctx, raw.get("contents", []), child(path, "contents"), inline)
    extends = _extends(ctx, raw.get("extends", []), child(path, "extends"), inline)
    if len(problems) != before or iface_id is None:
        return None
    name = localized(ctx, raw["displayName"], "", MAX_DISPLAY_NAME) if "displayName" in raw else None
    text = localized(ctx, raw["description"], "", MAX_DESCRIPTION) if "description" in raw else None
    document = _normalise(raw, extends, contents, ctx)
    out.insert(slot, Interface(iface_id, parse_dtmi(iface_id), extends, contents, name, text, document))
    return iface_id


def _interface_id(ctx: Ctx, value: object, path: str) -> str | None:
    if value is None:
        ctx.problems.add(path, "@id", "'@id' is required")
        return None
    iface_id = check_dtmi(ctx, value, path, MAX_INTERFACE_ID)
    if iface_id is not None and parse_dtmi(iface_id).version is None:
        ctx.problems.add(path, "@id", f"{iface_id!r} has no version; Interface ids must be versioned (;1)")
        return None
    return iface_id


def _extends(ctx: Ctx, value: object, path: str, inline: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if ctx.version == 2 and len(items) > _MAX_EXTENDS_V2:
        ctx.problems.add(path, "extends", f"DTDL v2 allows at most {_MAX_EXTENDS_V2} Interfaces in 'extends'")
    found: list[str] = []
    for i, item in enumerate(items):
        where = child(path, i) if isinstance(value, list) else path
        if isinstance(item, Mapping):
            base = inline(item, where)
        else:
            base = check_dtmi(ctx, item, where, MAX_INTERFACE_ID)
        if base is not None and base in found:
            ctx.problems.add(where, "extends", f"{base!r} is listed twice in 'extends'")
        elif base is not None:
            found.append(base)
    return tuple(found)


def _normalise(
    raw: Mapping[str, Any], extends: tuple[str, ...], contents: Mapping[str, Any], ctx: Ctx
) -> dict[str, Any]:
    """Return the DTDL v3 form of ``raw``: canonical context, inline Interfaces as references."""
    contexts = [CONTEXT_V3]
    if ctx.quantitative or ctx.semantic_used:
        contexts.append(QUANTITATIVE_TYPES_CONTEXT)
    if ctx.commands:
        contexts.append(COMMANDS_CONTEXT)
    doc: dict[str, Any] = {"@context": contexts if len(contexts) > 1 else CONTEXT_V3}
    doc.update(copy.deepcopy({k: v for k, v in raw.items() if k != "@context"}))
    if "extends" in doc:
        doc["extends"] = list(extends) if isinstance(doc["extends"], list) else extends[0]
    for item in doc.get("contents", []):
        declared = contents.get(item.get("name"))
        if isinstance(declared, ComponentDef):
            item["schema"] = declared.schema
        if ctx.version == 2:
            _upgrade_command(item)
    return doc


def _upgrade_command(item: dict[str, Any]) -> None:
    """Rewrite DTDL v2 spellings of a Command as DTDL v3 (drop ``commandType``, rename payload types)."""
    item.pop("commandType", None)
    for key, v3_type in (("request", "CommandRequest"), ("response", "CommandResponse")):
        payload = item.get(key)
        if isinstance(payload, dict) and "@type" in payload:
            types = payload["@type"] if isinstance(payload["@type"], list) else [payload["@type"]]
            payload["@type"] = [v3_type if t == "CommandPayload" else t for t in types]
            if len(payload["@type"]) == 1:
                payload["@type"] = payload["@type"][0]
