"""Data change notifications → envelope readings. Pure functions, no I/O.

A notification carries a ``DataValue``: a Variant, a status code and two timestamps.
The reading's time is the source timestamp, else the server timestamp, else the time
the notification was received; its quality is the status code's severity.

>>> from datetime import UTC, datetime
>>> dv = ua.DataValue(ua.Variant(71.5, ua.VariantType.Double),
...                   SourceTimestamp=datetime(2026, 1, 1, tzinfo=UTC))
>>> r = read_data_value(dv, received=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
>>> r.value, r.ts.isoformat(), r.quality
(71.5, '2026-01-01T00:00:00+00:00', 'good')
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from asyncua import ua

from tvilling.connect.opcua.status import OVERFLOW_BIT, quality_of
from tvilling.core.envelope import Envelope

SUPPORTED = frozenset({
    ua.VariantType.Boolean, ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
    ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64, ua.VariantType.Float,
    ua.VariantType.Double, ua.VariantType.String,
})
_EPOCH_1601 = datetime(1601, 1, 2, tzinfo=UTC)


class Reading(msgspec.Struct, frozen=True):
    value: Any
    ts: datetime
    quality: str
    overflow: bool = False  # the server discarded older values of this item (its queue overflowed)


class Unsupported(msgspec.Struct, frozen=True):
    reason: str


def read_data_value(dv: ua.DataValue, *, received: datetime) -> Reading | Unsupported:
    """The reading a DataValue carries, or why it cannot become one."""
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    quality = quality_of(code)
    variant = dv.Value
    vtype = variant.VariantType if variant is not None else ua.VariantType.Null
    if variant is not None and variant.is_array:
        return Unsupported(f"arrays are not supported (got {vtype.name}[{_length(variant.Value)}]); "
                           "bind single numbers, booleans or strings")
    if vtype == ua.VariantType.Null or variant is None or variant.Value is None:
        if quality == "good":
            return Unsupported("a null value with a Good status")
        value: Any = None
    elif vtype in SUPPORTED:
        value = variant.Value
    else:
        return Unsupported(f"OPC UA type {vtype.name} is not supported (numbers, booleans and strings are)")
    return Reading(value, _timestamp(dv, received), quality, bool(code & OVERFLOW_BIT))


def _timestamp(dv: ua.DataValue, received: datetime) -> datetime:
    for ts in (dv.SourceTimestamp, dv.ServerTimestamp):
        if ts is not None:
            ts = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
            if ts > _EPOCH_1601:
                return ts
    return received


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple) else 0


def to_envelopes(readings: Iterable[tuple[str, str, Reading]], *, source: str | None) -> list[Envelope]:
    """Group (twin, property, reading) into envelopes: one per twin, instant and quality, in arrival order.

    Two readings of the same property at the same instant stay in separate envelopes.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> envs = to_envelopes([("M1", "speed", Reading(1.0, t, "good")), ("M1", "load", Reading(2.0, t, "good")),
    ...                      ("B1", "temperature", Reading(70.0, t, "bad"))], source="opcua:test")
    >>> [(e.twin, e.values, e.quality) for e in envs]
    [('M1', {'speed': 1.0, 'load': 2.0}, 'good'), ('B1', {'temperature': 70.0}, 'bad')]
    """
    open_: dict[tuple[str, datetime, str], dict[str, Any]] = {}
    order: list[tuple[tuple[str, datetime, str], dict[str, Any]]] = []
    for twin, prop, r in readings:
        key = (twin, r.ts, r.quality)
        values = open_.get(key)
        if values is None or prop in values:
            values = {}
            open_[key] = values
            order.append((key, values))
        values[prop] = r.value
    return [Envelope(twin=twin, ts=ts, values=values, source=source, quality=quality)
            for (twin, ts, quality), values in order]
