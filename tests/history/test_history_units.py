"""Pure pieces of the history package: doctests, the aggregation plan, the COPY encoder."""

from __future__ import annotations

import doctest
import importlib
import struct

import numpy as np
import pytest

from tvilling.history.pgcopy import SIGNATURE, TRAILER, encode
from tvilling.history.rollup import plan

MODULES = ["tvilling.history", "tvilling.history.rollup", "tvilling.history.series", "tvilling.history.memory",
           "tvilling.history.duckdb_store", "tvilling.history.pgcopy", "tvilling.history.ports",
           "tvilling.core.readings"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_plan_covers_the_range_exactly_with_aligned_rollup_pieces():
    tiers = [("1h", 3600), ("1m", 60)]
    for start, end, every in [(0, 86400, 3600), (17, 86399, 900), (5, 50, 60), (-7200, 7201, 7200), (0, 0, 60)]:
        pieces = plan(start, end, every, tiers)
        covered = [(lo, hi) for _, lo, hi in pieces]
        assert covered == sorted(covered)
        assert sum(hi - lo for lo, hi in covered) == end - start
        for name, lo, hi in pieces:
            res = dict(tiers).get(name, 1)
            assert lo % res == 0 and hi % res == 0 and every % res == 0
    assert plan(0, 86400, 90, tiers) == [("raw", 0, 86400)]  # 60 s does not divide 90 s


def test_copy_payload_is_the_postgres_binary_format():
    data = encode({"a": ("i4", np.array([1, -2], dtype=np.int32)), "b": ("f8", np.array([0.5, 2.0]))},
                  np.array([None, "hé"], dtype=object))
    assert data.startswith(SIGNATURE) and data.endswith(TRAILER)
    body = data[len(SIGNATURE):-2]
    row1 = struct.pack(">hii", 3, 4, 1) + struct.pack(">id", 8, 0.5) + struct.pack(">i", -1)
    row2 = struct.pack(">hii", 3, 4, -2) + struct.pack(">id", 8, 2.0) + struct.pack(">i", 3) + "hé".encode()
    assert body == row1 + row2
