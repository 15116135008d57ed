"""One contract for every analytic registry: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pgtest import PG_DSN, drop_schema, fresh_schema
from tvilling.analytics.binding.registry import (
    AnalyticRegistry,
    MemoryRegistry,
    SqlRegistry,
    dump_artifact,
    load_artifact,
)
from tvilling.core.errors import Conflict, NotFound


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request, tmp_path) -> Iterator[AnalyticRegistry]:
    if request.param == "memory":
        reg: AnalyticRegistry = MemoryRegistry()
        yield reg
        return
    if request.param == "sqlite":
        reg = SqlRegistry(tmp_path / "analytics.db")
        yield reg
        reg.close()
        return
    gen = fresh_schema()
    schema = next(gen)
    reg = SqlRegistry(PG_DSN, schema=schema)
    try:
        yield reg
    finally:
        reg.close()
        drop_schema(schema)


def test_versions_count_per_scope_and_one_is_promoted(registry):
    art = dump_artifact({"model": np.arange(3.0)})
    v1 = registry.add("a", "pump-1", art, fingerprint="f1", params={"alpha": 0.5}, metrics={"rows": 10}, promote=True)
    v2 = registry.add("a", "pump-1", art, fingerprint="f1", params={}, metrics={})
    other = registry.add("a", "pump-2", art, fingerprint="f1", params={}, metrics={})
    assert (v1.version, v1.status, v2.version, v2.status, other.version) == (1, "promoted", 2, "candidate", 1)
    assert registry.promoted("a", "pump-1").version == 1
    assert registry.promote("a", "pump-1", 2).status == "promoted"
    assert [(v.version, v.status) for v in registry.versions("a", "pump-1")] == [(1, "retired"), (2, "promoted")]
    with pytest.raises(Conflict, match="retired"):
        registry.promote("a", "pump-1", 1)
    with pytest.raises(NotFound):
        registry.get("a", "pump-1", 9)
    assert registry.get("a", "pump-1", 1).params == {"alpha": 0.5}
    np.testing.assert_array_equal(load_artifact(registry.artifact("a", "pump-1", 2))["model"], np.arange(3.0))


def test_backtest_and_drift_reports_stay_with_the_version(registry):
    registry.add("a", "*", dump_artifact({}), fingerprint="f", params={}, metrics={})
    registry.annotate("a", "*", 1, backtest={"rmse": 12.0})
    registry.annotate("a", "*", 1, drift={"drifting": True})
    v = registry.get("a", "*", 1)
    assert v.backtest == {"rmse": 12.0} and v.drift == {"drifting": True}
    assert [x.analytic for x in registry.versions()] == ["a"]
