"""The canonical envelope: one message of readings from an asset, whatever transport carried it.

In JSON: ``{"twin": …, "ts": ISO-8601 or epoch ms, "values": {…}, "source": …, "id": …,
"quality": …}``; only ``twin``, ``ts`` and ``values`` are required. Every transport
(MQTT, OPC UA, HTTP, file replay) only translates its messages to and from this form.

>>> env = parse_envelope({"twin": "B1", "ts": 1767225600000, "values": {"temperature": 71.5}})
>>> env.ts.isoformat(), env.values
('2026-01-01T00:00:00+00:00', {'temperature': 71.5})
>>> parse_envelope({"twin": "B1", "values": {}})
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: envelope: 'ts' is required (ISO 8601 with a zone, or epoch milliseconds)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from tvilling.core.errors import Invalid
from tvilling.core.ids import MAX_TWIN_ID

QUALITIES = ("good", "uncertain", "bad")
MAX_SOURCE = 256
MAX_MESSAGE_ID = 256
ENVELOPE_KEYS = frozenset({"twin", "ts", "values", "source", "id", "quality"})


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Readings of one twin at one instant."""

    twin: str
    ts: datetime
    values: dict[str, Any]
    source: str | None = None
    id: str | None = None
    quality: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"twin": self.twin, "ts": format_ts(self.ts), "values": self.values}
        for key in ("source", "id", "quality"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def parse_ts(value: Any, *, field: str = "ts") -> datetime:
    """A timestamp from ISO 8601 (with a zone) or epoch milliseconds, as an aware UTC datetime."""
    if isinstance(value, bool):
        raise Invalid(f"{field} must be ISO 8601 or epoch milliseconds, not a boolean", field=field, rule="ts")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise Invalid(f"{field}: {value} is out of range for epoch milliseconds", field=field,
                          rule="ts") from None
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise Invalid(f"{field}: {value!r} is not an ISO 8601 time", field=field, rule="ts") from None
        if ts.tzinfo is None:
            raise Invalid(f"{field}: {value!r} has no time zone; add 'Z' or an offset", field=field, rule="ts")
        return ts.astimezone(UTC)
    raise Invalid(f"{field} must be ISO 8601 or epoch milliseconds, got {type(value).__name__}", field=field,
                  rule="ts")


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_envelope(doc: Any, *, default_twin: str | None = None) -> Envelope:
    """Read one envelope from decoded JSON, raising ``Invalid`` naming the field at fault."""
    if not isinstance(doc, Mapping):
        raise Invalid("envelope: must be a JSON object", field="envelope", rule="type")
    extra = sorted(set(doc) - ENVELOPE_KEYS)
    if extra:
        raise Invalid(f"envelope: unknown key(s) {extra}; allowed: {sorted(ENVELOPE_KEYS)}", field=extra[0],
                      rule="unknown_key")
    twin = doc.get("twin", default_twin)
    if not isinstance(twin, str) or not twin or len(twin) > MAX_TWIN_ID:
        raise Invalid("envelope: 'twin' must be a twin id string", field="twin", rule="required")
    if "ts" not in doc:
        raise Invalid("envelope: 'ts' is required (ISO 8601 with a zone, or epoch milliseconds)", field="ts",
                      rule="required", twin=twin)
    ts = parse_ts(doc["ts"])
    values = doc.get("values")
    if not isinstance(values, Mapping):
        raise Invalid("envelope: 'values' must be an object of property → value", field="values",
                      rule="required", twin=twin)
    source, msg_id, quality = doc.get("source"), doc.get("id"), doc.get("quality")
    if source is not None and (not isinstance(source, str) or len(source) > MAX_SOURCE):
        raise Invalid(f"envelope: 'source' must be a string of at most {MAX_SOURCE} characters", field="source",
                      rule="type", twin=twin)
    if msg_id is not None:
        if isinstance(msg_id, int) and not isinstance(msg_id, bool):
            msg_id = str(msg_id)
        if not isinstance(msg_id, str) or len(msg_id) > MAX_MESSAGE_ID:
            raise Invalid(f"envelope: 'id' must be a string of at most {MAX_MESSAGE_ID} characters", field="id",
                          rule="type", twin=twin)
    if quality is not None and quality not in QUALITIES:
        raise Invalid(f"envelope: 'quality' must be one of {list(QUALITIES)}", field="quality", rule="enum",
                      twin=twin)
    return Envelope(twin=twin, ts=ts, values=dict(values), source=source, id=msg_id, quality=quality)
