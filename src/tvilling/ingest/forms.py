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

import msgspec
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
    """A body read: its envelopes, its columnar items (readings and their source), what could not be read."""

    envelopes: list[Envelope] = field(default_factory=list)
    columns: list[tuple[Readings, str | None]] = field(default_factory=list)
    rejects: list[tuple[Any, str, str]] = field(default_factory=list)  # (item, reason, rule)


class _Columnar(msgspec.Struct, forbid_unknown_fields=True):
    """A columnar item whose times are epoch milliseconds and whose values are all numbers or null."""

    twin: str
    ts: list[float]
    values: dict[str, list[float | None]]
    source: str | None = None


_NUMERIC_COLUMNS = msgspec.json.Decoder(list[_Columnar] | _Columnar)


def parse_numeric_columns(raw: bytes) -> Parsed | None:
    """The body read straight into columns, when it is columnar items of numbers only; else None.

    This is the fast path of ``POST /api/ingest``: no Python object per reading beyond the
    decoder's floats, no per-value checks in Python. Any body it does not take whole (an
    envelope, a string value, an integer beyond ±2**53, a time out of range, a length that
    does not match, invalid JSON …) is left to :func:`parse_body` over the decoded JSON,
    which gives every rejection its reason, so what the caller answers is the same.
    """
    try:
        decoded = _NUMERIC_COLUMNS.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items or len(items) > MAX_ITEMS:
        return None
    # every column of every item (per source) joined into flat lists first: NumPy is asked once per body,
    # not once per item and column (which cost more than the decoding for 1,000 columns of 100 values)
    by_source: dict[str | None, _Flat] = {}
    for item in items:
        if not item.twin or "\x00" in item.twin or (item.source is not None and "\x00" in item.source):
            return None
        if not item.ts or not item.values:
            return None
        flat = by_source.get(item.source)
        if flat is None:
            flat = by_source[item.source] = _Flat()
        n = len(item.ts)
        for prop, column in item.values.items():
            if len(column) != n or "\x00" in prop:
                return None
            flat.twins.append(item.twin)
            flat.props.append(prop)
            flat.counts.append(n)
            flat.ts.extend(item.ts)
            flat.values.extend(column)
    columns = []
    for source, flat in by_source.items():
        readings = flat.readings()
        if readings is None:
            return None
        columns.append((readings, source))
    return Parsed(columns=columns)


@dataclass
class _Flat:
    """The columns of one source's items, joined: a twin and property per column, a time and value per row."""

    twins: list[str] = field(default_factory=list)
    props: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # rows per column
    ts: list[float] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)

    def readings(self) -> Readings | None:
        """The readings (absent values left out), or None if a time or value needs the general reader."""
        ms = np.array(self.ts, dtype=np.float64)
        if not ((ms >= MIN_EPOCH_MS) & (ms <= MAX_EPOCH_MS)).all():
            return None
        value = np.array(self.values, dtype=np.float64)  # null → NaN (JSON has no NaN of its own)
        if (np.abs(value) >= MAX_EXACT_INT).any():  # maybe an integer beyond ±2**53: checked the long way
            return None
        counts = np.array(self.counts, dtype=np.int64)
        twins = np.empty(len(self.twins), dtype=object)
        props = np.empty(len(self.props), dtype=object)
        twins[:] = self.twins
        props[:] = self.props
        r = Readings(np.repeat(twins, counts), np.repeat(props, counts), (ms * 1000).astype(np.int64), value)
        present = ~np.isnan(value)
        return r if present.all() else r.take(np.flatnonzero(present))


def parse_body(body: Any) -> Parsed:
    """A decoded body's items: envelopes, columnar items, and the items that cannot be read (with why)."""
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
