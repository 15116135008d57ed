"""The twin's analytics on a scenario's simulated series (issue 12, item 4): the demo's bearing detector and
remaining-life trend, trained live on the simulated plant, run on each option's simulated rows from a copy of
their live state. With a growing drive-end defect the detector flags keeping on before slowing down, the
trend's time to failure agrees with the physics' and a replaced bearing ends with more life; the live
analytics, registry and history are exactly as they were. Through the scenario service the KPIs appear next
to the physics', labelled by source, in the API's record and in the CLI's table."""

from __future__ import annotations

import dataclasses
import math
import pickle
from typing import Any

import numpy as np
import pytest

from tvilling.analytics.binding import parse_specs
from tvilling.analytics.binding.engine import AnalyticsEngine
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.demo import BEARING, DemoOptions, demo_analytics, demo_simulations, make_plant, seed_twins
from tvilling.simulation.demo_whatif import WhatIfSettings, bearing_scenario, machine_reported
from tvilling.simulation.machine import MachineModel
from tvilling.simulation.scenario_analytics import (
    AnalyticsFork,
    analyse,
    analytic_kpis,
    fork_analytics,
    ttf_of,
)
from tvilling.simulation.scenario_kpis import kpis
from tvilling.simulation.scenario_machine import MACHINE as WORDS
from tvilling.simulation.scenario_runner import ScenarioResult, run
from tvilling.simulation.scenario_service import service_for
from tvilling.simulation.scenario_text import kpi_table
from tvilling.simulation.spec import parse_simulations

MACHINE = "line-1-m01"
TRAINED = 80  # plant minutes ingested: the analytics learn on the first 40, the plant's defect starts at 90
SAMPLES = 12


def live_state(p: Platform) -> bytes:
    """Everything the live analytics carry, as bytes (runners with their detectors and trend windows)."""
    s = p.analytics.state
    return pickle.dumps((s.runners, s.last, s.seen, s.markers))


def registry_state(p: Platform) -> list[Any]:
    reg = p.analytics_registry
    return [(name, twin, reg.promoted(name, twin)) for name in ("bearing-anomaly", "bearing-rul")
            for twin in (f"{MACHINE}-de", f"{MACHINE}-nde")]


def history_counts(p: Platform) -> dict[tuple[str, str], int]:
    twins = [MACHINE, f"{MACHINE}-de", f"{MACHINE}-nde"]
    return {(t, prop): len(p.history.range(t, prop, 0, 2**62, limit=100_000))
            for t in twins for prop in p.history.properties(t)}


@pytest.fixture(scope="module")
def plant() -> Platform:
    """The demo's line with one machine, its analytics trained on the plant's healthy first hour."""
    o = DemoOptions(machines=1, learn_s=40)  # 40 rows to learn, then 40 healthy rows in the trend's window
    p = build_platform(Settings(store="memory", analytics=demo_analytics(o.speed, int(o.learn_s)),
                                simulations=demo_simulations(o.speed, int(o.learn_s))))
    line = make_plant(o)
    seed_twins(p, line)
    for _ in range(TRAINED):
        frame = line.step(1.0)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    assert p.twins.get(f"{MACHINE}-de").reported["anomaly"] is False  # healthy when the question is asked
    return p


@pytest.fixture(scope="module")
def defect(plant: Platform) -> tuple[ScenarioResult, AnalyticsFork, Any, dict[str, Any]]:
    """The demo's question on a machine whose drive-end bearing has a growing defect: keep running, slow to
    900 rpm, replace the bearing at the next stop; the analytics forked from the live ones. Without process
    noise, so that a sample differs between options only by what the option does (its parameters and the
    measurement noise are shared)."""
    before = {"state": live_state(plant), "registry": registry_state(plant), "history": history_counts(plant)}
    spec = parse_simulations(plant.settings.simulations)[0]
    model = MachineModel()
    fork = fork_analytics(plant.analytics, spec, model.signature, plant.twin_store, MACHINE, history=plant.history)
    scenario = bearing_scenario(machine_reported(plant.twins, MACHINE), "de", WhatIfSettings(samples=SAMPLES))
    scenario = dataclasses.replace(scenario, noise={}, record=[*WORDS.record, *fork.outputs])
    result = run(scenario, model, WORDS)
    analysed = analyse(result, fork, seed=5)
    return result, fork, analysed, before


def test_the_live_analytics_are_forked_with_their_state(defect: Any) -> None:
    _, fork, _, _ = defect
    labels = {f.label: f for f in fork.feeds}
    assert set(labels) == {f"{a}@{MACHINE}-{b}" for a in ("bearing-anomaly", "bearing-rul") for b in ("de", "nde")}
    assert all(f.origin == "live" and f.version == 1 for f in fork.feeds) and not fork.skipped
    # each input is read from the model output predicting it on that bearing: configured or by its part name
    anomaly = labels[f"bearing-anomaly@{MACHINE}-de"]
    assert anomaly.outputs == ("de:vibrationBand1x", "de:vibrationBand2x", "de:vibrationBandBpfo",
                               "de:vibrationBandHigh", "de:shaftSpeed")
    # anchored at the bearing's measured level, with its measured noise
    bpfo = anomaly.outputs.index("de:vibrationBandBpfo")
    assert 0.02 < anomaly.levels[bpfo] < 0.08 and 0.0 < anomaly.noise[bpfo] < 0.01
    assert anomaly.exponents == (2.0, 1.0, 1.5, 1.5)


def test_the_detector_flags_keeping_on_before_slowing_down(defect: Any) -> None:
    result, _, analysed, _ = defect
    keep, slow, replace = analytic_kpis(analysed)
    flagged = np.min([r.flagged_at for r in analysed.runs if r.flagged_at is not None], axis=0)
    # every sample's defect grows; at full speed the detector sees it first, sample for sample
    assert keep.anomaly_probability == 1.0 and slow.anomaly_probability == 1.0
    assert np.all(flagged[0] <= flagged[1]) and np.mean(flagged[0] < flagged[1]) > 0.5
    assert keep.anomaly_h is not None and slow.anomaly_h is not None
    assert keep.anomaly_h[1] < slow.anomaly_h[1]
    # the replacement comes at the next stop: until then the bearing is the one kept running
    assert replace.anomaly_h == keep.anomaly_h
    # and the detector flags long before the physics fails the bearing
    physics = kpis(result, 0)
    assert keep.anomaly_h[2] < physics[0].time_to_failure_h[0]


def test_the_remaining_life_trend_answers_time_to_failure_next_to_the_physics(defect: Any) -> None:
    result, _, analysed, _ = defect
    keep, slow, replace = analytic_kpis(analysed)
    physics = {k.option: k for k in kpis(result, 0)}
    names = result.options
    assert keep.ttf_rul_h is not None and slow.ttf_rul_h is not None and replace.ttf_rul_h is not None
    # the trend extrapolated on the simulated vibration agrees with the physics within a few hours
    assert keep.ttf_rul_h[1] == pytest.approx(physics[names[0]].time_to_failure_h[1], rel=0.3)
    # slowing down: the analytic too sees the life lengthen (the defect grows with the speed squared)
    assert slow.ttf_rul_h[1] > 1.8 * keep.ttf_rul_h[1]
    # at the start every option has the same bearing, so the same remaining life (paired samples)
    assert keep.rul_start_h == slow.rul_start_h == replace.rul_start_h
    # by the end the kept bearing has failed; the replaced one is new: no credible trend, life beyond reach
    assert keep.rul_end_h is not None and replace.rul_end_h is not None and slow.rul_end_h is not None
    assert keep.rul_end_h[1] == 0.0
    assert replace.rul_end_h[0] > slow.rul_end_h[1] >= keep.rul_end_h[1]
    assert math.isinf(replace.ttf_rul_h[1])


def test_the_live_analytics_history_and_registry_are_untouched(plant: Platform, defect: Any) -> None:
    _, _, analysed, before = defect
    assert sum(r.score is not None for r in analysed.runs) == 2  # the analytics did run, on their copies
    assert live_state(plant) == before["state"]
    assert registry_state(plant) == before["registry"]
    assert history_counts(plant) == before["history"]
    # nothing of the scenario's sandbox twins reached the live world
    assert all("~scenario" not in key[1] for key in plant.analytics.state.runners)
    assert not [t for t in history_counts(plant) if "~" in t[0]]


def test_a_twin_without_a_live_state_starts_from_the_promoted_version(plant: Platform, defect: Any) -> None:
    result, _, _, _ = defect
    spec = parse_simulations(plant.settings.simulations)[0]
    fresh = AnalyticsEngine(parse_specs(plant.settings.analytics), plant.models, plant.analytics_registry)
    fork = fork_analytics(fresh, spec, MachineModel().signature, plant.twin_store, MACHINE, history=plant.history)
    assert [f.origin for f in fork.feeds] == ["promoted"] * 4 and {f.version for f in fork.feeds} == {1}
    analysed = analyse(result, fork, samples=4, seed=1)
    keep, slow, _ = analytic_kpis(analysed)
    # the promoted detector has no EWMA or trend history yet: it still sees the defect, first at full speed
    assert keep.anomaly_h is not None and slow.anomaly_h is not None and keep.anomaly_h[1] <= slow.anomaly_h[1]
    assert keep.rul_start_h is None  # the trend's window starts empty: nothing to say at the fork
    assert not fresh.state.runners  # the fresh engine was only read
    # a fork in the past of the live state takes the promoted version too
    past = fork_analytics(plant.analytics, spec, MachineModel().signature, plant.twin_store, MACHINE,
                          history=plant.history, at_us=1)
    assert {f.origin for f in past.feeds} == {"promoted"} and past.t0_us == 1


def test_an_analytic_the_model_cannot_feed_is_left_out_with_the_reason(plant: Platform) -> None:
    acoustic = {"name": "acoustic", "model": BEARING, "method": "univariate", "inputs": ["acousticEmission"]}
    specs = parse_specs([*plant.settings.analytics, acoustic])
    engine = AnalyticsEngine(specs, plant.models, plant.analytics_registry)
    spec = parse_simulations(plant.settings.simulations)[0]
    fork = fork_analytics(engine, spec, MachineModel().signature, plant.twin_store, MACHINE)
    assert "no output of model 'machine' predicts 'acousticEmission'" in fork.skipped[f"acoustic@{MACHINE}-de"]
    assert len(fork.feeds) == 4


def test_time_to_failure_from_remaining_life_evaluations() -> None:
    inf, nan = math.inf, math.nan
    rul = np.array([[6.0, 6.0, nan, 3.0], [3.0, inf, nan, 3.0], [0.0, inf, nan, nan]])
    at = np.array([[0.0, 0.0, nan, 0.0], [3600.0, 3600.0, nan, 3600.0], [9000.0, 9000.0, nan, nan]])
    # says 0 at 2.5 h after predicting 4 h; last saw no trend; never said anything; stopped after predicting 4 h
    assert ttf_of(rul, at).tolist() == [9000.0, inf, inf, 14400.0]


def test_the_service_records_both_times_to_failure_by_source(plant: Platform) -> None:
    before = live_state(plant)
    svc = service_for(plant)
    options = [{"name": "keep", "interventions": []},
               {"name": "slow", "interventions": [{"at": "0m", "command": "setSpeed", "value": 900}]},
               {"name": "break", "interventions": [{"at": "0m", "fault": "de:bearingDefect", "size": 0.3}]}]
    prepared = svc.prepare({"twin": MACHINE, "horizon": "12h", "samples": 6, "seed": 2, "options": options})
    record = svc.execute(prepared)
    assert record["status"] == "done", record.get("error")
    keep, brk = record["kpis"]["keep"], record["kpis"]["break"]
    # the physics' KPIs are all still there, and the analytics' beside them
    assert {"ttf_p10_h", "ttf_p50_h", "ttf_p90_h", "p_fail_horizon", "p_fail_shift", "production", "energy_kwh",
            "lost_production"} < set(keep)
    assert {"anomaly_p50_h", "p_anomaly_horizon", "ttf_rul_p50_h", "rul_start_p50_h", "rul_end_p50_h"} < set(keep)
    # an injected defect fails the machine by the physics, and the analytics see it coming
    assert brk["p_fail_horizon"] == 1.0 and brk["p_anomaly_horizon"] == 1.0
    assert brk["anomaly_p90_h"] < brk["ttf_p10_h"] and brk["ttf_rul_p50_h"] is not None
    assert keep["ttf_p50_h"] is None  # a healthy machine does not fail within 12 h by the physics ...
    doc = record["analytics"]
    assert doc["sources"]["ttf"].startswith("physics: ") and "bearing-rul@line-1-m01-de" in doc["sources"]["ttf_rul"]
    assert {r["state"] for r in doc["ran"]} == {"live"} and doc["samples"] == 6
    series = doc["series"][f"bearing-anomaly@{MACHINE}-de"]
    assert series["output"] == "anomaly_score" and len(series["break"]["p50"]) == len(series["t_s"])
    # the record's series are the ones shown before (the analytics' inputs were recorded, not shown)
    assert "de:vibrationBand1x" not in record["series"]["outputs"] and "speed" in record["series"]["outputs"]
    table = kpi_table(record["kpis"], "12h")
    head = table.splitlines()[0]
    assert "TTF physics p10/p50/p90 h" in head and "TTF RUL p10/p50/p90 h" in head and "anomaly p10/p50/p90 h" in head
    row = next(line for line in table.splitlines() if line.startswith("break"))
    assert f"{brk['ttf_rul_p50_h']:.1f}" in row
    assert live_state(plant) == before


def test_without_analytics_the_record_is_as_before(plant: Platform) -> None:
    p = build_platform(Settings(store="memory", simulations=plant.settings.simulations))
    line = make_plant(DemoOptions(machines=1))
    seed_twins(p, line)
    for _ in range(3):
        frame = line.step(1.0)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    svc = service_for(p)
    assert svc.analytics is None
    record = svc.execute(svc.prepare({"twin": MACHINE, "horizon": "1h", "samples": 2, "seed": 1,
                                      "options": [{"name": "keep", "interventions": []}]}))
    assert record["status"] == "done" and "analytics" not in record
    assert set(record["kpis"]["keep"]) == {"ttf_p10_h", "ttf_p50_h", "ttf_p90_h", "p_fail_horizon", "p_fail_shift",
                                           "production", "energy_kwh", "lost_production"}
    assert "TTF p10/p50/p90 h" in kpi_table(record["kpis"]).splitlines()[0]


@pytest.mark.slow
def test_the_added_cost_on_the_demo_whatif(plant: Platform) -> None:
    """The demo's what-if (3 options × 100 samples × 24 plant hours at 1-minute steps) with and without the
    analytics; prints one JSON line of figures (seconds on this machine, the best of two tries each: wall time,
    and the process's CPU time, which a busy shared machine inflates less)."""
    import json
    import os
    import time

    settings = WhatIfSettings()
    spec = parse_simulations(plant.settings.simulations)[0]
    model = MachineModel()
    scenario = bearing_scenario(machine_reported(plant.twins, MACHINE), "de", settings)

    def plain() -> tuple[float, float]:
        began, cpu = time.perf_counter(), time.process_time()
        run(scenario, model, WORDS)
        return time.perf_counter() - began, time.process_time() - cpu

    def with_analytics() -> tuple[float, float, float, float, AnalyticsFork, Any]:
        began, cpu = time.perf_counter(), time.process_time()
        fork = fork_analytics(plant.analytics, spec, model.signature, plant.twin_store, MACHINE,
                              history=plant.history)
        forked = time.perf_counter() - began
        result = run(dataclasses.replace(scenario, record=[*WORDS.record, *fork.outputs]), model, WORDS)
        cpu_analyse = time.process_time()
        analysed = analyse(result, fork, seed=settings.seed)
        end_cpu = time.process_time()
        return (time.perf_counter() - began, end_cpu - cpu, forked, end_cpu - cpu_analyse, fork, analysed)

    plain_tries = [plain() for _ in range(2)]
    before, before_cpu = (min(t[i] for t in plain_tries) for i in range(2))
    tries = [with_analytics() for _ in range(2)]
    after, after_cpu, forked, analyse_cpu = (min(t[i] for t in tries) for i in range(4))
    fork, analysed = tries[-1][4], tries[-1][5]
    figures = {"options": 3, "samples": settings.samples, "analysed_samples": int(analysed.samples.size),
               "horizon_h": settings.horizon_h, "feeds": len(fork.feeds), "run_s": round(before, 3),
               "run_cpu_s": round(before_cpu, 3), "fork_s": round(forked, 3),
               "analyse_s": round(min(t[5].seconds for t in tries), 3), "analyse_cpu_s": round(analyse_cpu, 3),
               "with_analytics_s": round(after, 3), "with_analytics_cpu_s": round(after_cpu, 3),
               "added_s": round(after - before, 3), "added_cpu_s": round(after_cpu - before_cpu, 3),
               "load_1min": round(os.getloadavg()[0], 2)}
    print("\n" + json.dumps(figures))
    assert all(k.anomaly_h is not None for k in analytic_kpis(analysed))
    assert analyse_cpu < 60.0  # a gross regression only: the figures above are what to read
