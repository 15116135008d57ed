"""PostgreSQL-only behaviour: several writers on one schema."""

from __future__ import annotations

import threading

import pytest

from pgtest import PG_DSN
from tvilling.history import Readings, open_history

T0 = 1_767_225_600_000_000
pytestmark = pytest.mark.postgres


def test_two_stores_on_one_schema_share_series_and_see_each_others_rows(pg_schema):
    a, b = open_history(PG_DSN, schema=pg_schema), open_history(PG_DSN, schema=pg_schema)
    try:
        def write(store, offset):
            for i in range(20):
                store.append(Readings.from_rows([(f"T{j}", "p", T0 + offset + i * 10, float(i)) for j in range(5)]))

        threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.count() == b.count() == 200
        assert len(a.range("T3", "p", T0, T0 + 1000)) == len(b.range("T3", "p", T0, T0 + 1000)) == 40
        b.append(Readings.from_rows([("NEW", "q", T0, 1.0)]))
        assert a.last("NEW", "q").value == 1.0 and a.properties("NEW") == ["q"]
    finally:
        a.close()
        b.close()
