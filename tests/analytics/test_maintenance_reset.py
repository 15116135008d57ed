"""Maintenance resets of the analytics: the registry retires a twin's version (every adapter), the engine drops
what it learned and relearns from the rows after the reset, a fleet model's twin history starts again (after a
restart too), and ``POST /api/analytics/reset`` does it by hand with clear errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pgtest import PG_DSN, drop_schema, fresh_schema
from tvilling.analytics.binding import parse_specs
from tvilling.analytics.binding.engine import AnalyticsEngine
from tvilling.analytics.binding.lifecycle import train
from tvilling.analytics.binding.maintenance import MaintenanceReset, iso_us, maintained_twins, parse_us
from tvilling.analytics.binding.registry import AnalyticRegistry, MemoryRegistry, SqlRegistry
from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, NotFound
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents

T0 = 1_790_000_000_000_000  # µs
SEC = 1_000_000
STREAM = "dtmi:tvilling:datasets:NabStream;1"
DETECTOR = {"name": "stream-anomaly", "model": "dtmi:tvilling:datasets:NabStream", "method": "univariate",
            "inputs": ["value"], "train_rows": 50}
PUMP = "dtmi:tvilling:datasets:SkabTestbed;1"
PUMP_INPUTS = ["accelerometer1RMS", "current", "pressure", "temperature"]
PUMP_DETECTOR = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
                 "inputs": PUMP_INPUTS, "train_rows": 50}
ENGINE = "dtmi:tvilling:datasets:TurbofanEngine;1"
SENSORS = ["setting1", "setting2", "setting3", "s2", "s3", "s4"]
FLEET = {"name": "engine-rul", "model": "dtmi:tvilling:datasets:TurbofanEngine", "method": "rul-fleet",
         "inputs": SENSORS, "params": {"n_features": 200, "members": 3, "windows": [5, 10]}}


def readings(twin: str, start: int, X: np.ndarray, names: list[str]) -> Readings:
    n, k = X.shape
    ts = np.repeat(T0 + (start + np.arange(n)) * SEC, k)
    return Readings(np.full(n * k, twin, dtype=object), np.tile(np.array(names, dtype=object), n),
                    ts.astype(np.int64), X.reshape(-1).astype(float))


def platform_with(analytics: list[dict[str, Any]]) -> Platform:
    p = build_platform(Settings(store="memory", analytics=analytics))
    p.models.add(builtin_documents("datasets"))
    return p


# -- the registry: one contract over every adapter ------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request: Any, tmp_path: Any) -> Iterator[AnalyticRegistry]:
    if request.param == "memory":
        yield MemoryRegistry()
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


def test_retire_leaves_a_twin_without_a_promoted_version_until_one_is_fitted(registry: AnalyticRegistry) -> None:
    kw: dict[str, Any] = {"fingerprint": "f", "params": {}, "metrics": {}}
    registry.add("a", "t1", b"v1", promote=True, **kw)
    registry.add("a", "t2", b"other", promote=True, **kw)
    retired = registry.retire("a", "t1")
    assert retired is not None and (retired.version, retired.status) == (1, "retired")
    assert registry.promoted("a", "t1") is None and registry.promoted("a", "t2") is not None  # only that twin
    assert registry.retire("a", "t1") is None  # nothing promoted: nothing to retire
    again = registry.add("a", "t1", b"v2", promote=registry.promoted("a", "t1") is None, **kw)
    assert again.version == 2 and registry.promoted("a", "t1").version == 2  # type: ignore[union-attr]
    assert [v.status for v in registry.versions("a", "t1")] == ["retired", "promoted"]


# -- the engine: a per-twin detector -------------------------------------------------------------------------------
def pump(rng: np.random.Generator, n: int, pressure: float) -> np.ndarray:
    return rng.normal(size=(n, 4)) * [0.1, 0.2, 0.05, 0.3] + [1.0, 2.0, pressure, 70.0]


def test_a_reset_detector_drops_its_baseline_and_relearns_from_the_rows_after_it() -> None:
    p = platform_with([PUMP_DETECTOR])
    p.twins.put("p1", {"model": PUMP})
    rng = np.random.default_rng(4)
    old = pump(rng, 120, 0.5)  # the old part
    p.pipeline.ingest_readings(readings("p1", 0, old, PUMP_INPUTS), transport="test")
    assert p.twins.get("p1").reported["analytics"]["pump-anomaly"]["version"] == 1
    new = pump(rng, 120, 1.0)  # after maintenance the pressure sits higher: ten deviations of the old part

    done = MaintenanceReset(p.analytics, p.twins)("p1", reason="impeller replaced", by="tech-1",
                                                  at=datetime(2026, 3, 1, tzinfo=UTC))
    assert done["twins"] == ["p1"] and done["at"] == "2026-03-01T00:00:00Z"
    cut = iso_us(T0 + 119 * SEC)  # the newest row analysed before the reset
    assert done["analytics"] == [{"analytic": "pump-anomaly", "twin": "p1", "retired_version": 1, "after": cut}]
    rep = p.twins.get("p1").reported
    assert not {"anomaly_score", "anomaly", "contributions"} & set(rep)
    marker = rep["analytics"]["pump-anomaly"]
    assert marker["status"] == "learning" and "version" not in marker and "drift" not in marker
    assert marker["reset"] == {"at": "2026-03-01T00:00:00Z", "reason": "impeller replaced", "by": "tech-1",
                               "retired_version": 1, "after": cut}
    assert parse_us(marker["reset"]["after"]) == T0 + 119 * SEC
    # a late row of the old part (older than the cut) is not learned from
    p.pipeline.ingest_readings(readings("p1", 100, pump(rng, 1, 0.5), PUMP_INPUTS), transport="test")
    p.pipeline.ingest_readings(readings("p1", 120, new[:49], PUMP_INPUTS), transport="test")
    assert "anomaly_score" not in p.twins.get("p1").reported  # 49 of 50 rows: still learning
    p.pipeline.ingest_readings(readings("p1", 169, new[49:], PUMP_INPUTS), transport="test")
    rep = p.twins.get("p1").reported
    assert rep["analytics"]["pump-anomaly"]["status"] == "running" and rep["analytics"]["pump-anomaly"]["version"] == 2
    assert rep["anomaly"] is False and rep["anomaly_score"] < 1.0  # the new level is the new normal
    v2 = p.analytics_registry.get("pump-anomaly", "p1", 2)
    assert v2.status == "promoted" and v2.metrics["train_rows"] == 50
    # the old level is now the anomaly: the baseline is the new part's
    p.pipeline.ingest_readings(readings("p1", 240, pump(rng, 30, 0.5), PUMP_INPUTS), transport="test")
    assert p.twins.get("p1").reported["anomaly"] is True
    # without the reset the first version flags the repaired pump instead
    fresh = platform_with([PUMP_DETECTOR])
    fresh.twins.put("p1", {"model": PUMP})
    fresh.pipeline.ingest_readings(readings("p1", 0, old, PUMP_INPUTS), transport="test")
    fresh.pipeline.ingest_readings(readings("p1", 120, new[:30], PUMP_INPUTS), transport="test")
    assert fresh.twins.get("p1").reported["anomaly"] is True


def test_a_twin_without_analytics_or_parts_resets_nothing_and_bad_input_is_named() -> None:
    p = platform_with([DETECTOR])
    p.twins.put("s1", {"model": STREAM})
    reset = MaintenanceReset(p.analytics, p.twins)
    assert reset("s1", reason="nothing learned yet")["analytics"] == [
        {"analytic": "stream-anomaly", "twin": "s1", "retired_version": None, "after": None}]
    with pytest.raises(NotFound, match="'ghost'"):
        reset("ghost", reason="x")
    with pytest.raises(Invalid, match="reason") as caught:
        reset("s1", reason="  ")
    assert caught.value.fields["field"] == "reason"
    with pytest.raises(Invalid, match="at most 500"):
        reset("s1", reason="x" * 501)


def test_maintenance_covers_the_asset_and_its_parts_one_level_deep() -> None:
    from tvilling.plant.plant import MODEL_SET, Plant
    from tvilling.twins.importer import import_twins

    p = platform_with([])
    p.models.add(builtin_documents(MODEL_SET))
    import_twins(p.twins, Plant(machines=1, seed=1, scenario=None).twins())
    assert maintained_twins(p.twins, "line-1-m01") == ["line-1-m01", "line-1-m01-de", "line-1-m01-nde",
                                                       "line-1-m01-spindle"]
    assert maintained_twins(p.twins, "line-1-m01", {"hasBearing"}) == ["line-1-m01", "line-1-m01-de",
                                                                       "line-1-m01-nde"]
    assert maintained_twins(p.twins, "line-1") == ["line-1", "line-1-m01"]  # not the machine's bearings


# -- the engine: a fleet model ---------------------------------------------------------------------------------------
def engine_rows(life: int, rng: np.random.Generator | None = None) -> np.ndarray:
    cyc = np.arange(life, dtype=float)
    noise = (lambda s: rng.normal(scale=s, size=life)) if rng is not None else (lambda s: np.zeros(life))
    return np.column_stack([np.zeros(life), np.zeros(life), np.full(life, 100.0),
                            600 + 0.02 * np.exp(cyc / life * 4) + noise(0.05),
                            1500 + 5 * (cyc / life) ** 2 + noise(0.2), noise(1.0)])


def test_a_fleet_model_starts_the_twins_history_again_after_a_reset_and_after_a_restart() -> None:
    p = platform_with([FLEET])
    rng = np.random.default_rng(3)
    twins = []
    for u in range(10):  # run-to-failure units to train the fleet model on
        twin = f"eng-{u}"
        p.twins.put(twin, {"model": ENGINE})
        p.pipeline.ingest_readings(readings(twin, 0, engine_rows(int(rng.integers(80, 140)), rng), SENSORS),
                                   transport="test")
        twins.append(twin)
    train(p.analytics.spec("engine-rul"), p.analytics_registry, p.history, twins, promote=True)
    p.analytics.reload("engine-rul")
    p.twins.put("eng-new", {"model": ENGINE})
    worn = engine_rows(120)
    p.pipeline.ingest_readings(readings("eng-new", 0, worn[:110], SENSORS), transport="test")
    assert p.twins.get("eng-new").reported["rul"] < 60  # near its end

    done = MaintenanceReset(p.analytics, p.twins)("eng-new", reason="overhaul")
    assert done["analytics"][0]["retired_version"] is None  # the fleet version stays promoted
    assert p.analytics_registry.promoted("engine-rul", "*") is not None
    assert "rul" not in p.twins.get("eng-new").reported
    overhauled = engine_rows(120)[:15]  # as good as new: the start of a life
    p.pipeline.ingest_readings(readings("eng-new", 200, overhauled[:10], SENSORS), transport="test")
    after_reset = p.twins.get("eng-new").reported["rul"]
    assert after_reset > 90  # a long life ahead again
    key = ("engine-rul", "eng-new")
    assert p.analytics.state.runners[key].cycles == 10  # type: ignore[attr-defined]  # counted from the overhaul

    # a restart: a new engine over the same stores seeds the twin from history after the reset only
    restarted = AnalyticsEngine(parse_specs([FLEET]), p.models, p.analytics_registry, history=p.history,
                                twins=p.twin_store)
    assert rul_of(restarted, readings("eng-new", 210, overhauled[10:], SENSORS)) > 90
    assert restarted.state.runners[key].cycles == 15  # type: ignore[attr-defined]  # 10 from history, 5 new
    # without the reset's record (no twin store to read it from) the worn life would be counted in
    blind = AnalyticsEngine(parse_specs([FLEET]), p.models, p.analytics_registry, history=p.history)
    rul_of(blind, readings("eng-new", 210, overhauled[10:], SENSORS))
    assert blind.state.runners[key].cycles == 125  # type: ignore[attr-defined]


def rul_of(engine: AnalyticsEngine, batch: Readings) -> float:
    """The last remaining life ``engine`` derives from ``batch`` (of eng-new), without writing it."""
    derived = engine.outputs(batch, {"eng-new": ENGINE}).derived()
    assert derived is not None
    values = [v for name, v in zip(derived[0].prop.tolist(), derived[0].value.tolist(), strict=True) if name == "rul"]
    assert values
    return float(values[-1])


# -- the API ---------------------------------------------------------------------------------------------------------
def test_post_api_analytics_reset_resets_by_hand_and_names_bad_input() -> None:
    p = platform_with([DETECTOR])
    try:
        with TestClient(create_app(platform=p)) as client:
            assert client.put("/api/twins/s1", json={"model": STREAM}).status_code == 201
            p.pipeline.ingest_readings(readings("s1", 0, 10 + np.zeros((60, 1)), ["value"]), transport="test")
            assert p.twins.get("s1").reported["analytics"]["stream-anomaly"]["version"] == 1
            r = client.post("/api/analytics/reset", json={"twins": ["s1"], "reason": "pump overhauled"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["twins"] == ["s1"] and body["reason"] == "pump overhauled"
            assert body["analytics"][0]["retired_version"] == 1
            got = client.get("/api/twins/s1").json()["reported"]
            assert got["analytics"]["stream-anomaly"]["status"] == "learning" and "anomaly_score" not in got
            assert client.get("/api/analytics/stream-anomaly").json()["promoted"] == {}  # learning, as at first
            for doc, status, field in [({"twins": ["ghost"], "reason": "x"}, 404, None),
                                       ({"twins": [], "reason": "x"}, 422, "twins"),
                                       ({"twins": ["s1"]}, 422, "reason"),
                                       ({"twins": ["s1"], "reason": "x", "parts": "yes"}, 422, "parts")]:
                r = client.post("/api/analytics/reset", json=doc)
                assert r.status_code == status, (doc, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                if field is not None:
                    assert field in r.text
    finally:
        p.close()
