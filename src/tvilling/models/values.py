"""Checking JSON values against schemas (used on every write to a twin).

Problems are collected into an :class:`Issues` list of ``{"field", "rule", "message"}``.

>>> issues = Issues()
>>> check_value(PrimitiveSchema("integer"), 2.5, "reported.count", issues)
2.5
>>> issues.items[0]["rule"]
'type'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.models.schema import (
    ArraySchema,
    EnumSchema,
    MapSchema,
    ObjectSchema,
    PrimitiveSchema,
    Schema,
)
from tvilling.models.units import convert, unit_kind

MAX_STRING_VALUE = 65_536
MAX_MAP_KEY = 512
_FLOAT32_MAX = 3.4028234663852886e38
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = r"(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?"
_OFFSET = r"(?:[Zz]|[+-](\d{2}):(\d{2}))"
_TIME_RE = re.compile(f"{_TIME}{_OFFSET}?")
_DATETIME = re.compile(rf"(\d{{4}})-(\d{{2}})-(\d{{2}})[Tt]{_TIME}{_OFFSET}")
_DURATION = re.compile(
    r"P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:[.,]\d+)?S)?)?"
)


class Issues:
    """Collected validation problems; each is ``{"field", "rule", "message"}``."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, rule: str, text: str) -> None:
        """Record that ``field`` breaks ``rule``; ``text`` completes the sentence "<field> ..."."""
        self.items.append({"field": field, "rule": rule, "message": f"{field} {text} (rule: {rule})"})

    def raise_for(self, twin_id: str) -> None:
        """Raise one :class:`Invalid` naming the twin, the first field and rule, listing all problems."""
        if not self.items:
            return
        for item in self.items:
            item["message"] = f"twin {twin_id!r}: {item['message']}"
        first = self.items[0]
        more = len(self.items) - 1
        raise Invalid(
            first["message"] + (f" (and {more} more)" if more else ""),
            twin=twin_id,
            field=first["field"],
            rule=first["rule"],
            errors=list(self.items),
        )


def check_value(
    schema: Schema, value: Any, field: str, issues: Issues, *, unit: str | None = None, partial: bool = False
) -> Any:
    """Check ``value`` against ``schema`` and return it, with units converted.

    ``unit`` is the declared unit of the Property/Telemetry; a numeric value may then be
    written as ``{"value": 176.0, "unit": "degreeFahrenheit"}``. ``partial`` allows ``None``
    inside Objects and Maps (a merge patch deleting that entry).
    """
    if isinstance(schema, PrimitiveSchema):
        if isinstance(value, Mapping) and schema.name in ("double", "float", "integer", "long"):
            value = _with_unit(value, schema.name, unit, field, issues)
            if value is None:
                return None
        return _primitive(schema.name, value, field, issues)
    if isinstance(schema, EnumSchema):
        wanted = str if schema.value_schema == "string" else int
        if type(value) is not wanted or value not in schema.values.values():
            allowed = ", ".join(repr(v) for v in schema.values.values())
            issues.add(field, "enum", f"must be one of {allowed}; got {_show(value)}")
        return value
    if isinstance(schema, ArraySchema):
        if not isinstance(value, list):
            issues.add(field, "type", f"must be an array; got {_show(value)}")
            return value
        return [check_value(schema.element, v, f"{field}[{i}]", issues) for i, v in enumerate(value)]
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        issues.add(field, "type", f"must be an object; got {_show(value)}")
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{field}.{key}"
        if isinstance(schema, ObjectSchema) and key not in schema.fields:
            issues.add(
                where, "unknown_field", f"is not a field of the object (fields: {', '.join(schema.fields)})"
            )
            continue
        if isinstance(schema, MapSchema) and len(key) > MAX_MAP_KEY:
            issues.add(field, "max_length", f"has a map key longer than {MAX_MAP_KEY} characters")
            continue
        if item is None:
            if not partial:
                issues.add(where, "type", "must not be null")
            out[key] = None
            continue
        inner = schema.fields[key] if isinstance(schema, ObjectSchema) else schema.value
        out[key] = check_value(inner, item, where, issues, partial=partial)
    return out


def _with_unit(value: Mapping[str, Any], schema: str, unit: str | None, field: str, issues: Issues) -> Any:
    if set(value) != {"value", "unit"}:
        issues.add(
            field, "type", f'must be a number or {{"value": number, "unit": name}}; got {_show(value)}'
        )
        return None
    number, given = value["value"], value["unit"]
    if not isinstance(given, str) or unit_kind(given) is None:
        issues.add(field, "unit", f"has unknown unit {_show(given)}")
        return None
    if unit is None:
        issues.add(field, "unit", f"declares no unit, so a value in {given!r} cannot be converted")
        return None
    if not _is_number(number):
        issues.add(field, "type", f"must be a number; got {_show(number)}")
        return None
    try:
        converted = convert(float(number), given, unit)
    except Invalid:
        issues.add(
            field,
            "unit",
            f"is in {unit!r} ({unit_kind(unit)}); {given!r} ({unit_kind(given)}) is of another kind",
        )
        return None
    if schema in _INT_RANGE:
        nearest = round(converted)
        if abs(converted - nearest) > 1e-9 * max(1.0, abs(converted)):
            issues.add(
                field, "unit", f"is an {schema}; {number} {given} is {converted} {unit}, not a whole number"
            )
            return None
        return nearest
    return converted


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _primitive(name: str, value: Any, field: str, issues: Issues) -> Any:
    if name == "boolean":
        if not isinstance(value, bool):
            issues.add(field, "type", f"must be a boolean; got {_show(value)}")
    elif name in _INT_RANGE:
        if not isinstance(value, int) or isinstance(value, bool):
            issues.add(field, "type", f"must be an {name} (a whole number); got {_show(value)}")
        elif not _INT_RANGE[name][0] <= value <= _INT_RANGE[name][1]:
            issues.add(field, "range", f"is outside the range of an {name}")
    elif name in ("double", "float"):
        if not _is_number(value):
            issues.add(field, "type", f"must be a number; got {_show(value)}")
        elif not _finite(value, _FLOAT32_MAX if name == "float" else None):
            issues.add(field, "range", f"must be a finite {name}; got {_show(value)}")
    elif not isinstance(value, str):
        issues.add(field, "type", f"must be a string ({name}); got {_show(value)}")
    elif len(value) > MAX_STRING_VALUE:
        issues.add(field, "max_length", f"is longer than {MAX_STRING_VALUE} characters")
    elif name != "string" and not _FORMATS[name](value):
        issues.add(field, "format", f"must be an ISO 8601 {name}; got {_show(value)}")
    return value


def _finite(value: int | float, limit: float | None) -> bool:
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and (limit is None or abs(number) <= limit)


def _valid_date(year: str, month: str, day: str) -> bool:
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def _valid_clock(hour: str, minute: str, second: str, off_h: str | None, off_m: str | None) -> bool:
    clock_ok = int(hour) < 24 and int(minute) < 60 and int(second) <= 60
    return clock_ok and (off_h is None or (int(off_h) < 24 and int(off_m or 0) < 60))


def _is_date(text: str) -> bool:
    m = _DATE.fullmatch(text)
    return m is not None and _valid_date(*m.groups())


def _is_time(text: str) -> bool:
    m = _TIME_RE.fullmatch(text)
    return m is not None and _valid_clock(*m.groups())


def _is_datetime(text: str) -> bool:
    m = _DATETIME.fullmatch(text)
    return m is not None and _valid_date(*m.groups()[:3]) and _valid_clock(*m.groups()[3:])


def _is_duration(text: str) -> bool:
    return _DURATION.fullmatch(text) is not None


_FORMATS = {"date": _is_date, "dateTime": _is_datetime, "time": _is_time, "duration": _is_duration}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
