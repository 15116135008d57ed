"""The HTTP ingest body: envelopes, or the compact columnar form, or a list mixing both.

Envelope: ``{"twin": "B1", "ts": "2026-11-01T12:00:00Z", "values": {"temperature": 71.5}}``.
Columnar (one twin, many instants): ``{"twin": "B1", "ts": [t0, t1, …], "values":
{"temperature": [71.5, 71.6, …], "vibration": [1.1, null, …]}}`` — ``ts`` as epoch ms or
ISO 8601, every value list as long as ``ts``; ``null`` means no reading at that instant.
An item that cannot be read is returned as a rejection (kept as a dead letter), never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvilling.core.envelope import Envelope, parse_envelope, parse_ts
from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.ingest.normalise import MAX_EXACT_INT, to_us

MAX_ITEMS = 100_000
#: Epoch milliseconds of 0001-01-01 and 9999-12-31: the times an ISO 8601 ``ts`` can name too.
MIN_EPOCH_MS, MAX_EPOCH_MS = -62_135_596_800_000, 253_402_300_799_999


@dataclass
class Parsed:
    envelopes: list[Envelope] = field(default_factory=list)
    columns: list[tuple[Readings, str | None]] = field(default_factory=list)
    rejects: list[tuple[Any, str, str]] = field(default_factory=list)  # (item, reason, rule)


def parse_body(body: Any) -> Parsed:
    items: Sequence[Any] = body if isinstance(body, list) else [body]
    if len(items) > MAX_ITEMS:
        raise Invalid(f"a batch may hold at most {MAX_ITEMS} items", field="body", rule="max_items")
    out = Parsed()
    for n, item in enumerate(items):
        try:
            if isinstance(item, Mapping) and isinstance(item.get("ts"), list):
                out.columns.append(_columnar(item))
            else:
                out.envelopes.append(parse_envelope(item))
        except Invalid as exc:
            out.rejects.append((item, f"item {n}: {exc.message}", str(exc.fields.get("rule", "invalid"))))
    return out


def _columnar(item: Mapping[str, Any]) -> tuple[Readings, str | None]:
    extra = sorted(set(item) - {"twin", "ts", "values", "source"})
    if extra:
        raise Invalid(f"columnar item: unknown key(s) {extra}", field=extra[0], rule="unknown_key")
    twin = item.get("twin")
    if not isinstance(twin, str) or not twin:
        raise Invalid("columnar item: 'twin' must be a twin id", field="twin", rule="required")
    source = item.get("source")
    if source is not None and not isinstance(source, str):
        raise Invalid("columnar item: 'source' must be a string", field="source", rule="type")
    ts_raw = item["ts"]
    if ts_raw and all(isinstance(t, int | float) and not isinstance(t, bool) for t in ts_raw):
        bad = next((t for t in ts_raw if not MIN_EPOCH_MS <= t <= MAX_EPOCH_MS), None)  # NaN too
        if bad is not None:
            raise Invalid(f"columnar item: ts holds {_show(bad)}, out of range for epoch milliseconds", field="ts",
                          rule="ts")
        ts = (np.asarray(ts_raw, dtype=np.float64) * 1000).astype(np.int64)
    else:
        ts = np.array([to_us(parse_ts(t, field="ts")) for t in ts_raw], dtype=np.int64)
    values = item.get("values")
    if not isinstance(values, Mapping) or not values:
        raise Invalid("columnar item: 'values' must map property → list", field="values", rule="required")
    parts = []
    for prop, column in values.items():
        if not isinstance(column, list) or len(column) != len(ts):
            raise Invalid(f"columnar item: values.{prop} must be a list as long as 'ts' ({len(ts)})",
                          field=f"values.{prop}", rule="length")
        present = np.array([v is not None for v in column], dtype=bool)
        rows = np.flatnonzero(present)
        picked = [column[i] for i in rows.tolist()]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in picked)
        big = next((v for v in picked if isinstance(v, int) and not -MAX_EXACT_INT <= v <= MAX_EXACT_INT), None)
        if numeric and big is not None:
            raise Invalid(f"columnar item: values.{prop} holds {_show(big)}, out of range (integers are stored "
                          "exactly up to ±2**53)", field=f"values.{prop}", rule="range")
        value = np.asarray(picked, dtype=np.float64) if numeric else np.full(len(rows), np.nan)
        text = None if numeric else np.array([json.dumps(v) for v in picked], dtype=object)
        parts.append(Readings(np.full(len(rows), twin, dtype=object), np.full(len(rows), prop, dtype=object),
                              ts[rows], value, text=text))
    return Readings.concat(parts), source


def _show(value: Any) -> str:
    if isinstance(value, int) and not -10**30 < value < 10**30:  # (str() refuses over 4300 digits)
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)
