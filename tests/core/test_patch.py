from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvilling.core.errors import Invalid, TooLarge
from tvilling.core.patch import check_json, delta, diff_patch, merge_patch

# The examples of RFC 7396, appendix A: (target, patch, result).
RFC_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_CASES)
def test_merge_patch_follows_rfc_7396(target, patch, result):
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before  # the input is not modified


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_obj = st.recursive(
    st.dictionaries(st.text(max_size=3), json_leaf.filter(lambda v: v is not None), max_size=4),
    lambda children: st.dictionaries(st.text(max_size=3), children | json_leaf.filter(lambda v: v is not None),
                                     max_size=4),
    max_leaves=12,
)


@given(json_obj, json_obj)
def test_diff_patch_turns_old_into_new(old, new):
    assert merge_patch(old, diff_patch(old, new)) == new


def test_delta_lists_desired_values_not_reported():
    desired = {"speed": 1500, "mode": "auto", "motor": {"limit": 20, "fan": True}}
    reported = {"speed": 1480, "mode": "auto", "motor": {"limit": 20}}
    assert delta(desired, reported) == {"speed": 1500, "motor": {"fan": True}}
    assert delta(desired, {**reported, "speed": 1500, "motor": {"limit": 20, "fan": True}}) == {}


def test_check_json_bounds_depth_and_rejects_non_finite():
    deep: dict = {}
    cur = deep
    for _ in range(20):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(TooLarge) as err:
        check_json(deep, field="reported", max_depth=16)
    assert err.value.fields["rule"] == "max_depth"
    with pytest.raises(Invalid) as err2:
        check_json({"t": [1.0, math.nan]}, field="reported")
    assert err2.value.fields["field"] == "reported.t[1]"
    check_json({"a": [1, 2.5, "x", None, True, {"b": []}]}, field="ok")


def test_check_json_rejects_nul_characters():
    with pytest.raises(Invalid) as err:
        check_json({"name": "a\x00b"}, field="attributes")
    assert err.value.fields == {"field": "attributes.name", "rule": "nul"}
    with pytest.raises(Invalid):
        check_json({"a\x00": 1}, field="attributes")
