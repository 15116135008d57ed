"""How predicates read JSON in SQLite: ``json_type``/``json_extract`` on the snapshot text.

``json_type`` tells the JSON type apart where ``json_extract`` cannot (it returns 1 for
``true``), so every comparison is guarded by the type the Python semantics require.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tvilling.twins.adapters.sql_query import Params, is_number
from tvilling.twins.query import Predicate, lookup, matches

_NUMBER = "IN ('integer', 'real')"
_INT64 = (-(2**63), 2**63 - 1)


def _safe_segment(seg: str) -> bool:
    # SQLite before 3.45 compares a quoted path label with the key's raw JSON text, so a key
    # needing an escape there (quote, backslash, control character) goes through ``tv_get``.
    return not any(c in '"\\' or ord(c) < 0x20 or c == "\x7f" for c in seg)


def _num(v: Any) -> Any:
    # sqlite3 cannot bind integers outside 64 bits; SQLite reads such JSON numbers as REAL too.
    if isinstance(v, int) and not _INT64[0] <= v <= _INT64[1]:
        return float(v)
    return v


class SqliteDialect:
    step_join = "CROSS JOIN"
    param_style = "named"

    def doc(self, alias: str) -> str:
        return f"{alias}.doc"

    def starts_with(self, expr: str, prefix: str, ps: Params) -> str:
        return f"substr({expr}, 1, {ps.ref(len(prefix))}) = {ps.ref(prefix)}"

    def json_predicate(self, pred: Predicate, alias: str, ps: Params, *, rel: bool) -> str:
        column = f"{alias}.properties" if rel else f"{alias}.doc"
        if all(_safe_segment(s) for s in pred.path):
            path = ps.ref("$" + "".join(f'."{s}"' for s in pred.path))
            t, v = f"json_type({column}, {path})", f"json_extract({column}, {path})"
        else:
            x = f"tv_get({column}, {ps.ref(msgspec.json.encode(list(pred.path)).decode())})"
            t, v = f"json_type({x})", f"json_extract({x}, '$')"
        return _predicate(t, v, pred.op, pred.value, ps)


def _predicate(t: str, v: str, op: str, value: Any, ps: Params) -> str:
    if op == "exists":
        return f"({t} IS NOT NULL)" if value else f"({t} IS NULL)"
    if op == "=":
        return _eq(t, v, value, ps)
    if op == "!=":
        return f"({t} IS NOT NULL AND NOT coalesce({_eq(t, v, value, ps)}, FALSE))"
    if op == "in":
        nums = [_num(x) for x in value if is_number(x)]
        strs = [x for x in value if isinstance(x, str)]
        parts = [_eq(t, v, x, ps) for x in value if not (is_number(x) or isinstance(x, str))]
        if nums:
            parts.append(f"({t} {_NUMBER} AND {v} IN ({', '.join(ps.ref(x) for x in nums)}))")
        if strs:
            parts.append(f"({t} = 'text' AND {v} IN ({', '.join(ps.ref(x) for x in strs)}))")
        return f"({' OR '.join(parts)})" if parts else "FALSE"
    if op == "startswith":
        return f"({t} = 'text' AND substr({v}, 1, {ps.ref(len(value))}) = {ps.ref(value)})"
    if is_number(value):
        return f"({t} {_NUMBER} AND {v} {op} {ps.ref(_num(value))})"
    if isinstance(value, str):
        return f"({t} = 'text' AND {v} {op} {ps.ref(value)})"
    return "FALSE"


def _eq(t: str, v: str, value: Any, ps: Params) -> str:
    if isinstance(value, bool):
        return f"({t} = '{'true' if value else 'false'}')"
    if value is None:
        return f"({t} = 'null')"
    if is_number(value):
        return f"({t} {_NUMBER} AND {v} = {ps.ref(_num(value))})"
    if isinstance(value, str):
        return f"({t} = 'text' AND {v} = {ps.ref(value)})"
    kind = "array" if isinstance(value, list | tuple) else "object"
    return f"({t} = '{kind}' AND tv_json_eq({v}, {ps.ref(msgspec.json.encode(value).decode())}))"


# -- SQL functions registered on every connection --


def tv_get(doc: str | None, path: str) -> str | None:
    """The JSON text at ``path`` (a JSON list of keys) in ``doc``, or NULL when absent."""
    if doc is None:
        return None
    value = lookup(msgspec.json.decode(doc), msgspec.json.decode(path))
    if value is _ABSENT:
        return None
    return msgspec.json.encode(value).decode()


def tv_json_eq(a: object, b: object) -> int:
    """1 when two JSON texts are equal as JSON (numbers by value, ``true`` is not 1).

    SQLite may call it before the type guard beside it has ruled a row out, so any other
    argument (a number, NULL) is simply not equal.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        return 0
    try:
        return int(matches(msgspec.json.decode(a), "=", msgspec.json.decode(b)))
    except msgspec.DecodeError:
        return 0


_ABSENT = lookup({}, ("x",))
