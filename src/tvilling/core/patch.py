"""JSON merge patch (RFC 7396) and structural bounds on JSON values.

>>> merge_patch({"a": 1, "b": {"c": 2}}, {"b": {"c": None, "d": 3}})
{'a': 1, 'b': {'d': 3}}
>>> delta({"speed": 1500, "mode": "auto"}, {"speed": 1480, "mode": "auto"})
{'speed': 1500}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tvilling.core.errors import Invalid, TooLarge

MAX_DEPTH = 16


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` as RFC 7396 says; neither argument is modified."""
    if type(patch) is not dict and not _is_object(patch):
        return patch
    result: dict[str, Any] = dict(target) if type(target) is dict or _is_object(target) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif type(value) is dict or (not isinstance(value, _LEAVES) and isinstance(value, Mapping)):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = value  # a leaf replaces whatever was there (the hot path: no call)
    return result


_LEAVES = (str, int, float, list, tuple)


def _is_object(value: Any) -> bool:
    """A JSON object: a dict, or another mapping (checked last: the abstract check is slow)."""
    return isinstance(value, dict) or (not isinstance(value, _LEAVES) and isinstance(value, Mapping))


def diff_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch that turns ``old`` into ``new``."""
    out: dict[str, Any] = {}
    for key in old:
        if key not in new:
            out[key] = None
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = diff_patch(before, value)
            if sub:
                out[key] = sub
        elif before is _MISSING or before != value or type(before) is not type(value):
            out[key] = value
    return out


_MISSING = object()


def delta(desired: Mapping[str, Any], reported: Mapping[str, Any]) -> dict[str, Any]:
    """The desired values that the reported state does not match yet (nested per component)."""
    out: dict[str, Any] = {}
    for key, want in desired.items():
        have = reported.get(key, _MISSING)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            sub = delta(want, have)
            if sub:
                out[key] = sub
        elif have is _MISSING or have != want:
            out[key] = want
    return out


def check_json(value: Any, *, field: str, max_depth: int = MAX_DEPTH) -> None:
    """Reject values nested deeper than ``max_depth`` or holding NaN/infinity or non-JSON types."""
    stack: list[tuple[Any, int, str]] = [(value, 0, field)]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            raise TooLarge(
                f"{path} is nested more than {max_depth} levels deep", field=path, rule="max_depth"
            )
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise Invalid(f"{path} has a non-string key {key!r}", field=path, rule="type")
                if "\x00" in key:
                    raise Invalid(f"{path} has a key with a NUL character", field=path, rule="nul")
                stack.append((sub, depth + 1, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            for i, sub in enumerate(item):
                stack.append((sub, depth + 1, f"{path}[{i}]"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Invalid(f"{path} is {item}, which is not a finite number", field=path, rule="finite")
        elif isinstance(item, str):
            if "\x00" in item:
                raise Invalid(f"{path} holds a NUL character, which no store keeps", field=path, rule="nul")
        elif item is not None and not isinstance(item, int | bool):
            raise Invalid(
                f"{path} has a value of type {type(item).__name__}, which is not JSON", field=path, rule="type"
            )
