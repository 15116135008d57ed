"""The numeric columnar fast path of ``POST /api/ingest`` reads bodies exactly as the general reader does,
and leaves every body it cannot take whole to the general reader (which gives each rejection its reason)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from tvilling.core.readings import Readings
from tvilling.ingest import forms

T = 1_793_534_400_000  # epoch ms


def general(body: object) -> forms.Parsed:
    return forms.parse_body(msgspec.json.decode(msgspec.json.encode(body)))


def rows(parsed: forms.Parsed) -> list[tuple[object, ...]]:
    """Every reading of the parsed columns as (twin, prop, ts, value, source), in order."""
    out = []
    for r, source in parsed.columns:
        out += [(r.twin[i], r.prop[i], int(r.ts[i]), float(r.value[i]), source) for i in range(len(r))]
    return out


def test_a_numeric_columnar_body_reads_as_the_general_reader_reads_it():
    body = [
        {"twin": "B1", "ts": [T, T + 1000, T + 2000.5], "values": {"temperature": [71.5, None, 72], "vibration": [
            1.25, 1.5, None]}},
        {"twin": "B2", "ts": [T], "values": {"temperature": [-3]}, "source": "gw-7"},
        {"twin": "B3", "ts": [T, T + 1], "values": {"temperature": [None, None]}, "source": None},
        {"twin": "B1", "ts": [T + 3000], "values": {"vibration": [2**53 - 1]}},
    ]
    fast = forms.parse_numeric_columns(msgspec.json.encode(body))
    assert fast is not None and not fast.envelopes and not fast.rejects
    assert sorted(rows(fast), key=repr) == sorted(rows(general(body)), key=repr)
    assert {s for _, s in fast.columns} == {None, "gw-7"}
    one = forms.parse_numeric_columns(msgspec.json.encode(body[1]))  # a single item, not in a list
    assert one is not None and rows(one) == [("B2", "temperature", T * 1000, -3.0, "gw-7")]


@pytest.mark.parametrize("item, rule", [
    ({"twin": "B1", "ts": [T], "values": {"temperature": ["hot"]}}, None),  # text: checked against the model later
    ({"twin": "B1", "ts": [T], "values": {"temperature": [True]}}, None),
    ({"twin": "B1", "ts": [T], "values": {"temperature": [2**53 + 1]}}, "range"),
    ({"twin": "B1", "ts": ["2026-11-01T12:00:00Z"], "values": {"temperature": [1.0]}}, None),
    ({"twin": "B1", "ts": [T * 1000_000], "values": {"temperature": [1.0]}}, "ts"),
    ({"twin": "B1", "ts": [T, T + 1], "values": {"temperature": [1.0]}}, "length"),
    ({"twin": "B1", "ts": [T], "values": {"temperature": [1.0]}, "unit": "K"}, "unknown_key"),
    ({"twin": "", "ts": [T], "values": {"temperature": [1.0]}}, "required"),
    ({"twin": "B1", "ts": [T], "values": {}}, "required"),
    ({"twin": "B1", "ts": "2026-11-01T12:00:00Z", "values": {"temperature": 1.0}}, None),  # an envelope
])
def test_what_the_fast_path_does_not_take_is_left_to_the_general_reader(item, rule):
    assert forms.parse_numeric_columns(msgspec.json.encode([item])) is None
    parsed = general([item])
    if rule is None:
        assert not parsed.rejects
    else:
        assert [r for _, _, r in parsed.rejects] == [rule]


@pytest.mark.parametrize("raw", [b"", b"[", b"{}", b"[]", b'{"twin": "B\\u0000", "ts": [1], "values": {"t": [1]}}',
                                 b'[{"twin": "B1", "ts": [1e400], "values": {"t": [1]}}]'])
def test_bodies_that_are_not_plain_numeric_columns_are_not_taken(raw):
    assert forms.parse_numeric_columns(raw) is None


def test_columns_are_built_without_a_python_object_per_reading():
    n = 50_000
    body = {"twin": "B1", "ts": list(range(T, T + n)), "values": {"a": [float(i) for i in range(n)]}}
    fast = forms.parse_numeric_columns(msgspec.json.encode(body))
    assert fast is not None
    ((r, _),) = fast.columns
    assert isinstance(r, Readings) and len(r) == n and r.ts.dtype == np.int64 and r.value.dtype == np.float64
    assert r.ts[-1] == (T + n - 1) * 1000 and r.value[-1] == n - 1
