"""The analytics step ``process(batch, state) -> outputs`` on plain values, and the engine as its I/O shell."""

from __future__ import annotations

import numpy as np
import pytest

from tvilling.analytics.binding import parse_specs
from tvilling.analytics.binding.engine import AnalyticsEngine
from tvilling.analytics.binding.outputs import Outputs
from tvilling.analytics.binding.registry import MemoryRegistry, dump_artifact
from tvilling.analytics.binding.runners import AnomalyRunner
from tvilling.analytics.binding.step import AnalyticsState, Batch, process
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents
from tvilling.models.service import ModelRegistry
from tvilling.twins.adapters.memory import MemoryModelStore

SKAB = "dtmi:tvilling:datasets:SkabTestbed;1"
T0 = 1_790_000_000_000_000  # µs
SEC = 1_000_000
INPUTS = ["accelerometer1RMS", "current", "pressure", "temperature"]
MEWMA = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
         "inputs": INPUTS, "train_rows": 50}
TREND = {"name": "pump-rul", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "rul-trend",
         "inputs": ["temperature"], "train_rows": 20, "params": {"failure_level": 200.0}}


def rows(twin: str, start: int, X: np.ndarray, names: list[str] = INPUTS) -> Readings:
    n, k = X.shape
    ts = np.repeat(T0 + (start + np.arange(n)) * SEC, k)
    return Readings(np.full(n * k, twin, dtype=object), np.tile(np.array(names, dtype=object), n),
                    ts.astype(np.int64), X.reshape(-1).astype(float))


def normal(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)) * [0.1, 0.2, 0.05, 0.3] + [1.0, 2.0, 0.5, 70.0]


def fleet_batch(start: int, n: int) -> Batch:
    return Batch(Readings.concat([rows("p1", start, normal(n, start)), rows("p2", start, normal(n, start + 1))]),
                 {"p1": SKAB, "p2": SKAB})


def as_tuples(out: Outputs) -> list[tuple[object, ...]]:
    derived = out.derived()
    assert derived is not None
    r, sources = derived
    text = [None] * len(r) if r.text is None else r.text.tolist()
    return list(zip(r.twin.tolist(), r.prop.tolist(), r.ts.tolist(), np.nan_to_num(r.value, nan=-1.0).tolist(),
                    text, sources.tolist(), strict=True))


def test_the_same_batch_from_the_same_state_gives_the_same_outputs():
    state = AnalyticsState(parse_specs([MEWMA, TREND]))
    process(fleet_batch(0, 40), state)  # the trend has learned (20 rows), the detector not yet (50)
    fork = state.copy()
    batch = fleet_batch(40, 60)  # the detector fits (per twin), then scores the rest
    a, b = process(batch, state), process(batch, fork)
    assert as_tuples(a) == as_tuples(b)
    assert {r[1] for r in as_tuples(a)} >= {"anomaly_score", "anomaly", "health", "analytics"}
    assert [(f.key, f.artifact, f.metrics) for f in a.fitted] == [(f.key, f.artifact, f.metrics) for f in b.fitted]
    assert sorted(f.key for f in a.fitted) == [("pump-anomaly", "p1"), ("pump-anomaly", "p2")]
    # the two states moved alike: the next batch too gives the same outputs
    after = fleet_batch(100, 30)
    assert as_tuples(process(after, state)) == as_tuples(process(after, fork))


def test_a_copy_leaves_the_original_state_as_it_was():
    state = AnalyticsState(parse_specs([MEWMA]))
    process(fleet_batch(0, 60), state)
    fork = state.copy()
    x = normal(20, 9)
    x[:, 2] -= 1.0  # a fault, seen by the fork only
    process(Batch(rows("p1", 60, x), {"p1": SKAB}), fork)
    assert fork.seen[("pump-anomaly", "p1")] == T0 + 79 * SEC
    assert state.seen[("pump-anomaly", "p1")] == T0 + 59 * SEC
    same = Batch(rows("p1", 60, normal(20, 10)), {"p1": SKAB})
    assert not any(r[1] == "anomaly" and r[4] == "true" for r in as_tuples(process(same, state)))


def test_process_needs_no_store_and_asks_the_shell_to_register_what_it_fitted():
    state = AnalyticsState(parse_specs([MEWMA]))
    assert not process(Batch(rows("p1", 0, normal(30, 1)), {"p1": SKAB}), state).fitted  # 30 of 50 rows
    out = process(Batch(rows("p1", 30, normal(40, 2)), {"p1": SKAB}), state)
    [fit] = out.fitted
    assert (fit.analytic, fit.scope, fit.metrics["train_rows"]) == ("pump-anomaly", "p1", 50)
    assert fit.fingerprint == state.specs[0].fingerprint
    # until the registry numbers the version, the outputs say it is new; settling gives them the number
    before = as_tuples(out)
    assert {r[5] for r in before if r[1] == "anomaly_score"} == {"analytics:pump-anomaly@new"}
    assert len([r for r in before if r[1] == "anomaly_score"]) == 20  # the 20 rows after the 50 it learned on
    out.settle(("pump-anomaly", "p1"), 7)
    state.settle(("pump-anomaly", "p1"), 7)
    after = as_tuples(out)
    assert {r[5] for r in after if r[1] == "anomaly_score"} == {"analytics:pump-anomaly@7"}
    [marker] = [r for r in after if r[1] == "analytics"]
    assert '"version": 7' in str(marker[4])
    assert state.runners[("pump-anomaly", "p1")].version == 7
    out.drop(("pump-anomaly", "p1"))
    assert out.derived() is None


def test_only_twins_of_a_bound_model_are_processed_and_late_rows_are_left_out():
    state = AnalyticsState(parse_specs([MEWMA]))
    r = Readings.concat([rows("p1", 0, normal(60, 1)), rows("other", 0, normal(60, 2))])
    out = process(Batch(r, {"p1": SKAB, "other": "dtmi:tvilling:datasets:Turbofan;1"}), state)
    assert [f.scope for f in out.fitted] == ["p1"]
    late = process(Batch(rows("p1", 10, normal(20, 3)), {"p1": SKAB}), state)  # all at or before the newest scored
    assert late.derived() is None and not late.fitted


def test_one_failing_analytic_does_not_stop_the_others():
    specs = parse_specs([MEWMA, TREND])
    state = AnalyticsState(specs)

    class Broken(AnomalyRunner):
        def run(self, ts, X):  # type: ignore[no-untyped-def]
            raise RuntimeError("detector state is corrupt")

    broken = Broken(specs[0], "p1")
    broken.model = object()
    state.runners[("pump-anomaly", "p1")] = broken
    out = process(Batch(rows("p1", 0, normal(30, 1)), {"p1": SKAB}), state)
    assert [f.key for f in out.failed] == [("pump-anomaly", "p1")]
    assert state.failures[("pump-anomaly", "p1")] == "RuntimeError: detector state is corrupt"
    assert [f.key for f in out.fitted] == [("pump-rul", "p1")]  # the trend analytic learned all the same
    again = process(Batch(rows("p1", 30, normal(5, 2)), {"p1": SKAB}), state)
    assert not again.failed  # the same failure is reported once


def engine(writer=None, registry=None):  # type: ignore[no-untyped-def]
    models = ModelRegistry(MemoryModelStore())
    models.add(builtin_documents("datasets"))
    return AnalyticsEngine(parse_specs([MEWMA]), models, registry or MemoryRegistry(), writer=writer)


def test_the_engine_registers_promotes_and_writes_through_its_writer():
    written: list[tuple[Readings, np.ndarray]] = []
    e = engine(lambda r, s: written.append((r, s)) or len(r))
    e(rows("p1", 0, normal(70, 1)), {"p1": SKAB}, "test")
    [v] = e.registry.versions("pump-anomaly")
    assert (v.scope, v.version, v.status) == ("p1", 1, "promoted")
    [(r, sources)] = written
    assert set(sources[r.prop == "anomaly_score"].tolist()) == {"analytics:pump-anomaly@1"}
    assert (r.prop == "anomaly_score").sum() == 20
    e(rows("p1", 70, normal(5, 2)), {"p1": SKAB}, "analytics")  # its own outputs coming back: ignored
    assert len(written) == 1
    with pytest.raises(AttributeError):
        e.writer = print  # type: ignore[misc]  # wired once, at construction


def test_a_version_promoted_meanwhile_wins_over_the_one_just_fitted():
    registry = MemoryRegistry()
    written: list[tuple[Readings, np.ndarray]] = []
    e = engine(lambda r, s: written.append((r, s)) or len(r), registry)
    e(rows("p1", 0, normal(30, 1)), {"p1": SKAB}, "test")  # learning
    spec = e.spec("pump-anomaly")
    assert spec is not None
    other = AnalyticsState([spec])  # another worker fitted and promoted one
    out = process(Batch(rows("p1", 0, normal(60, 5)), {"p1": SKAB}), other)
    registry.add("pump-anomaly", "p1", out.fitted[0].artifact, fingerprint=spec.fingerprint, params={},
                 metrics={}, promote=True)
    e(rows("p1", 30, normal(40, 2)), {"p1": SKAB}, "test")  # fits: registered as a candidate, nothing written
    assert [(v.version, v.status) for v in registry.versions("pump-anomaly")] == [(1, "promoted"), (2, "candidate")]
    assert not written
    e(rows("p1", 70, normal(5, 3)), {"p1": SKAB}, "test")  # the promoted version runs
    [(r, sources)] = written
    assert set(sources[r.prop == "anomaly_score"].tolist()) == {"analytics:pump-anomaly@1"}
    assert (r.prop == "anomaly_score").sum() == 5


def test_the_artifact_registered_is_the_model_as_fitted():
    e = engine()
    e(rows("p1", 0, normal(70, 1)), {"p1": SKAB}, "test")  # fitted on 50 rows, then scored 20 more
    state = AnalyticsState([e.specs[0]])
    out = process(Batch(rows("p1", 0, normal(50, 1)), {"p1": SKAB}), state)  # the same 50 rows, nothing after
    assert e.registry.artifact("pump-anomaly", "p1", 1) == out.fitted[0].artifact
    assert out.fitted[0].artifact != dump_artifact(e.state.runners[("pump-anomaly", "p1")].artifact())
