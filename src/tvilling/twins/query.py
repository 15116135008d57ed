"""The twin query form: filter by model, property predicates, multi-hop traversal.

A query is a JSON object. Its ``match`` is a chain of steps: the first step selects
twins, each later step follows relationships from the twins the step before selected.
The result is the twins selected by the last step, ordered by id, one page at a time::

    {
      "match": [
        {"model": "dtmi:tvilling:example:ProductionLine;1", "where": [["id", "=", "L1"]]},
        {"via": "hasMachine"},
        {"via": "hasBearing", "model": "dtmi:tvilling:example:Bearing",
         "where": [["reported.temperature", ">", 80]]}
      ],
      "limit": 100,
      "cursor": null
    }

Step keys: ``model`` (a DTMI; twins of that model *or of any model extending it*; an
unversioned DTMI matches every version; ``"exact": true`` turns extension off),
``where`` (a list of ``[path, op, value]``), ``via`` (relationship name to follow from
the previous step), ``direction`` (``"out"`` default, or ``"in"`` to follow
relationships backwards), ``rel_where`` (predicates on the relationship's own
properties; paths without prefix). A query with only one step may be written without
``match``: ``{"model": ..., "where": [...]}``.

Paths: ``id``, ``model``, ``revision``, or ``reported.X``, ``desired.X``,
``attributes.X`` (dotted, into components and objects). Operators: ``=`` ``!=`` ``<``
``<=`` ``>`` ``>=`` (ordering only between two numbers or two strings; a value of
another type does not match), ``in`` (value is a list), ``exists`` (value true/false),
``startswith`` (strings).

``limit`` defaults to 100 and may not exceed 1000; ``cursor`` is the ``next`` value of
the previous page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tvilling.core.errors import Invalid, Malformed, TooLarge
from tvilling.core.patch import check_json
from tvilling.core.twin import Twin

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_STEPS = 8
MAX_PREDICATES = 32

OPS = frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "exists", "startswith"})
ROOTS = frozenset({"id", "model", "revision", "attributes", "reported", "desired"})
SCALAR_ROOTS = frozenset({"id", "model", "revision"})


class Predicate(msgspec.Struct, frozen=True):
    path: tuple[str, ...]
    op: str
    value: Any


class Step(msgspec.Struct, frozen=True, kw_only=True):
    via: str | None = None
    direction: str = "out"
    rel_where: tuple[Predicate, ...] = ()
    model: str | None = None
    exact: bool = False
    where: tuple[Predicate, ...] = ()
    # Filled in by the service: the model ids that satisfy ``model`` (None = any model).
    models: frozenset[str] | None = None


class Query(msgspec.Struct, frozen=True, kw_only=True):
    steps: tuple[Step, ...]
    limit: int = DEFAULT_LIMIT
    after: str | None = None  # the last id of the previous page


def parse_query(doc: Any, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT) -> Query:
    """Read the JSON query form, raising ``Malformed`` naming what is wrong."""
    if not isinstance(doc, Mapping):
        raise Malformed("a query must be a JSON object", field="query")
    known = {"match", "model", "exact", "where", "limit", "cursor"}
    _no_unknown(doc, known, "query")
    if "match" in doc:
        if any(k in doc for k in ("model", "where", "exact")):
            raise Malformed("give either 'match' or a single step's 'model'/'where', not both", field="query")
        raw_steps = doc["match"]
        if not isinstance(raw_steps, list) or not raw_steps:
            raise Malformed("'match' must be a non-empty list of steps", field="match")
        if len(raw_steps) > MAX_STEPS:
            raise TooLarge(f"a query may have at most {MAX_STEPS} steps", field="match", rule="max_steps")
    else:
        raw_steps = [{k: doc[k] for k in ("model", "exact", "where") if k in doc}]
    steps = tuple(_step(s, i) for i, s in enumerate(raw_steps))
    limit = doc.get("limit", default_limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise Malformed("'limit' must be a positive integer", field="limit")
    if limit > max_limit:
        raise TooLarge(f"'limit' may be at most {max_limit}", field="limit", rule="max_limit")
    cursor = doc.get("cursor")
    return Query(steps=steps, limit=limit, after=decode_cursor(cursor) if cursor is not None else None)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> str:
    if not isinstance(cursor, str) or len(cursor) > 512:
        raise Malformed("'cursor' must be the 'next' string of a previous page", field="cursor")
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Malformed("'cursor' is not a cursor returned by this server", field="cursor") from exc


def _step(raw: Any, index: int) -> Step:
    where_field = f"match[{index}]"
    if not isinstance(raw, Mapping):
        raise Malformed(f"{where_field} must be an object", field=where_field)
    _no_unknown(raw, {"via", "direction", "rel_where", "model", "exact", "where"}, where_field)
    via = raw.get("via")
    if index == 0 and via is not None:
        raise Malformed("the first step selects twins; it cannot have 'via'", field=f"{where_field}.via")
    if index > 0 and not isinstance(via, str):
        raise Malformed(f"{where_field}.via must name the relationship to follow", field=f"{where_field}.via")
    direction = raw.get("direction", "out")
    if direction not in ("out", "in"):
        raise Malformed(f"{where_field}.direction must be 'out' or 'in'", field=f"{where_field}.direction")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise Malformed(f"{where_field}.model must be a DTMI string", field=f"{where_field}.model")
    exact = raw.get("exact", False)
    if not isinstance(exact, bool):
        raise Malformed(f"{where_field}.exact must be true or false", field=f"{where_field}.exact")
    where = _predicates(raw.get("where", []), f"{where_field}.where", twin_paths=True)
    rel_where = _predicates(raw.get("rel_where", []), f"{where_field}.rel_where", twin_paths=False)
    if rel_where and index == 0:
        raise Malformed("'rel_where' needs 'via'", field=f"{where_field}.rel_where")
    return Step(via=via, direction=direction, rel_where=rel_where, model=model, exact=exact, where=where)


def _predicates(raw: Any, field: str, *, twin_paths: bool) -> tuple[Predicate, ...]:
    if not isinstance(raw, list):
        raise Malformed(f"{field} must be a list of [path, op, value]", field=field)
    if len(raw) > MAX_PREDICATES:
        raise TooLarge(f"{field} may hold at most {MAX_PREDICATES} predicates", field=field)
    out = []
    for i, item in enumerate(raw):
        f = f"{field}[{i}]"
        if not isinstance(item, list | tuple) or len(item) != 3 or not isinstance(item[0], str):
            raise Malformed(f"{f} must be [path, op, value]", field=f)
        path_s, op, value = item
        if not isinstance(op, str) or op not in OPS:
            raise Malformed(f"{f}: unknown operator {_show(op)}; use one of {sorted(OPS)}", field=f)
        path = tuple(path_s.split("."))
        if any(not part for part in path):
            raise Malformed(f"{f}: path {path_s!r} has an empty segment", field=f)
        if twin_paths:
            if path[0] not in ROOTS:
                raise Malformed(
                    f"{f}: path must start with one of {sorted(ROOTS)}, got {path_s!r}", field=f
                )
            if path[0] in SCALAR_ROOTS and len(path) > 1:
                raise Malformed(f"{f}: {path[0]!r} has no sub-fields", field=f)
            if path[0] not in SCALAR_ROOTS and len(path) < 2:
                raise Malformed(f"{f}: name a property, e.g. '{path[0]}.temperature'", field=f)
        if op == "in" and not isinstance(value, list):
            raise Malformed(f"{f}: 'in' needs a list", field=f)
        if op == "exists" and not isinstance(value, bool):
            raise Malformed(f"{f}: 'exists' needs true or false", field=f)
        if op == "startswith" and not isinstance(value, str):
            raise Malformed(f"{f}: 'startswith' needs a string", field=f)
        if op in ("<", "<=", ">", ">=") and not (_is_number(value) or isinstance(value, str)):
            raise Malformed(f"{f}: {op!r} compares numbers or strings", field=f)
        if isinstance(value, Mapping):
            raise Malformed(f"{f}: values to compare must be scalars or lists", field=f)
        try:
            check_json(value, field=f)
        except Invalid as exc:
            raise Malformed(exc.message, field=f) from exc
        out.append(Predicate(path, op, value))
    return tuple(out)


def _no_unknown(doc: Mapping[str, Any], known: set[str], field: str) -> None:
    extra = sorted(set(doc) - known)
    if extra:
        raise Malformed(f"{field}: unknown key(s) {extra}; allowed: {sorted(known)}", field=field)


def _show(value: Any, limit: int = 60) -> str:
    """A value read from JSON, for a message: its JSON, shortened."""
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- evaluation in Python (the in-memory adapter, and the reference for the SQL adapters) --

_MISSING = object()


def lookup(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def matches(value: Any, op: str, operand: Any) -> bool:
    """The semantics every adapter must reproduce for one predicate on one value."""
    if op == "exists":
        return (value is not _MISSING) is operand
    if value is _MISSING:
        return False  # a property that is absent matches nothing but ["exists", false]
    if op == "=":
        return _json_eq(value, operand)
    if op == "!=":
        return not _json_eq(value, operand)
    if op == "in":
        return any(_json_eq(value, o) for o in operand)
    if op == "startswith":
        return isinstance(value, str) and value.startswith(operand)
    if _is_number(operand):
        if not _is_number(value):
            return False
    elif not (isinstance(operand, str) and isinstance(value, str)):
        return False
    if op == "<":
        return bool(value < operand)
    if op == "<=":
        return bool(value <= operand)
    if op == ">":
        return bool(value > operand)
    return bool(value >= operand)


def _json_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    # Containers compare element by element with these same rules, so [true] != [1] as in JSON.
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def twin_value(twin: Any, path: Sequence[str]) -> Any:
    """The value a predicate path names on a twin (``_MISSING`` when absent)."""
    root = path[0]
    if root in SCALAR_ROOTS:
        return getattr(twin, root)
    return lookup(getattr(twin, root), path[1:])


def twin_matches(twin: Any, preds: Sequence[Predicate]) -> bool:
    return all(matches(twin_value(twin, p.path), p.op, p.value) for p in preds)


def rel_matches(properties: Mapping[str, Any], preds: Sequence[Predicate]) -> bool:
    return all(matches(lookup(properties, p.path), p.op, p.value) for p in preds)


def page_of(items: list[Twin], limit: int) -> tuple[list[Twin], str | None]:
    """Split ``limit + 1`` fetched items into the page and its ``next`` id."""
    if len(items) > limit:
        return items[:limit], items[limit - 1].id
    return items, None
