"""Filters: which items a subscriber wants (twins, models, properties, types), checked purely.

>>> f = Filter(properties=(("motor", "temperature"),))
>>> f.matches({"kind": "event", "payload": {"reported": {"motor": {"temperature": 71.5}}}})
True
>>> parse_filter(twins="B1,M1").twins == frozenset({"B1", "M1"})
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tvilling.core.errors import Malformed, TvillingError
from tvilling.core.ids import check_twin_id

MAX_TWINS = 1000
MAX_PROPERTIES = 100
_PROPERTY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?:\.[A-Za-z][A-Za-z0-9_]{0,63}){0,7}")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True, slots=True)
class Filter:
    """Which items a subscriber wants; ``None`` (or empty) means any. Pure: see :meth:`matches`.

    ``models`` holds model ids already expanded (a model and those extending it);
    ``properties`` dotted paths split into segments; ``types`` item types or kinds.
    """

    twins: frozenset[str] | None = None
    models: frozenset[str] | None = None
    properties: tuple[tuple[str, ...], ...] = ()
    types: frozenset[str] | None = None

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Does ``item`` pass every part of this filter?"""
        if self.types is not None and item.get("type") not in self.types and item.get("kind") not in self.types:
            return False
        if self.twins is not None and item.get("twin") not in self.twins:
            return False
        if self.models is not None and item.get("model") not in self.models:
            return False
        if self.properties:
            payload = item.get("payload")
            if not isinstance(payload, Mapping):
                return False
            sections = [s for s in (payload.get("reported"), payload.get("desired")) if isinstance(s, Mapping)]
            return any(_touches(s, path) for s in sections for path in self.properties)
        return True


def _touches(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Does a merge patch of ``values`` set or clear ``path`` (or a property above or below it)?"""
    node: Any = values
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, Mapping):
            return True
    return True


def parse_filter(
    *,
    twins: str | Iterable[str] | None = None,
    model: str | Iterable[str] | None = None,
    properties: str | Iterable[str] | None = None,
    types: str | Iterable[str] | None = None,
    expand: Callable[[str], frozenset[str]] | None = None,
    known_types: frozenset[str] | None = None,
) -> Filter:
    """Build a filter from comma-separated strings or lists; ``Malformed`` (400) when unreadable.

    ``expand`` turns a model id into the ids that match it (``ModelRegistry.expand``, which
    raises ``Invalid`` for an unknown model); ``known_types`` checks ``types`` when given.
    """
    twin_set = _names(twins, "twins")
    if twin_set is not None:
        if len(twin_set) > MAX_TWINS:
            raise Malformed(f"twins: at most {MAX_TWINS} ids", field="twins")
        for t in twin_set:
            try:
                check_twin_id(t)
            except TvillingError as exc:
                raise Malformed(f"twins: {exc.message}", field="twins") from None
    models: frozenset[str] | None = None
    model_set = _names(model, "model")
    if model_set is not None:
        if expand is None:
            models = frozenset(model_set)
        else:
            models = frozenset().union(*(expand(m) for m in sorted(model_set)))
    props = _names(properties, "properties")
    paths: tuple[tuple[str, ...], ...] = ()
    if props is not None:
        if len(props) > MAX_PROPERTIES:
            raise Malformed(f"properties: at most {MAX_PROPERTIES}", field="properties")
        for p in props:
            if not _PROPERTY.fullmatch(p):
                raise Malformed(f"properties: {p!r} is not a property name or dotted path such as "
                                "'temperature' or 'motor.current'", field="properties")
        paths = tuple(tuple(p.split(".")) for p in sorted(props))
    type_set = _names(types, "types")
    if type_set is not None:
        for t in sorted(type_set):
            if not _TYPE.fullmatch(t) or (known_types is not None and t not in known_types):
                allowed = f"; known: {', '.join(sorted(known_types))}" if known_types is not None else ""
                raise Malformed(f"types: unknown type or kind {t!r}{allowed}", field="types")
    return Filter(twins=twin_set, models=models, properties=paths, types=type_set)


def _names(value: str | Iterable[str] | None, field: str) -> frozenset[str] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(p, str) for p in parts):
        raise Malformed(f"{field}: a comma-separated string or a list of strings", field=field)
    out = frozenset(p.strip() for p in parts if p.strip())
    return out or None
