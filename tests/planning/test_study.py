"""The maintenance policy study: its fleet simulation, policies, accounting, seeds and command line."""

from __future__ import annotations

import gc
import json
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tvilling.planning import study
from tvilling.planning.study_fleet import (
    STEP_H,
    Costs,
    Observation,
    PlanContext,
    Request,
    RunResult,
    Shop,
    Wearout,
    simulate,
)
from tvilling.planning.study_policies import FixedInterval, RunToFailure
from tvilling.planning.study_predictive import Predictive
from tvilling.plant.physics import MachineArrays

# bearings that go bad within days, so that a month of four machines sees failures and repairs
FAST = Wearout(onset_scale_h=150.0, growth_median=0.15, initial_age_h=100.0)
SMALL = {"machines": 4, "days": 30.0, "wearout": FAST}


def _production_hours(shop: Shop, start: float, end: float) -> float:
    """Production hours in ``[start, end)``, counted on the study's step grid."""
    steps = np.arange(round(start / STEP_H), round(end / STEP_H))
    return float(sum(STEP_H for k in steps.tolist() if shop.producing(k * STEP_H)))


def _check_accounting(result: RunResult, costs: Costs, shop: Shop, days: float) -> None:
    ledger = result.ledgers[0]
    failures = [e for e in result.events if e.kind == "failure"]
    preventive = [e for e in result.events if e.kind == "preventive"]
    assert ledger.failures == len(failures)
    assert ledger.preventive == len(preventive)
    assert ledger.corrective_cost == pytest.approx(ledger.failures * costs.corrective_cost)
    assert ledger.preventive_cost == pytest.approx(ledger.preventive * costs.preventive_cost)
    row = study.figures(ledger, costs)
    assert row["cost"] == pytest.approx(row["preventive_cost"] + row["corrective_cost"]
                                        + row["downtime_h"] * costs.downtime_cost_h)
    # downtime is the production hours inside the failures and the maintenance jobs, nothing else
    horizon = days * 24.0
    lost = sum(_production_hours(shop, e.start_h, min(e.end_h, horizon)) for e in result.events)
    assert ledger.downtime_h == pytest.approx(lost)
    # a machine never runs while failed or in maintenance, and runs in every other production step
    running = result.running
    assert running is not None
    out = np.zeros_like(running)
    for e in result.events:
        lo, hi = round(e.start_h / STEP_H), round(min(e.end_h, horizon) / STEP_H)
        out[lo:hi, e.machine] = True
    assert not (running & out).any()
    producing = np.array([shop.producing(k * STEP_H) for k in range(running.shape[0])])
    assert (running == (producing[:, None] & ~out)).all()
    assert ledger.running_h == pytest.approx(running.sum() * STEP_H)


@pytest.mark.parametrize("make", [RunToFailure, lambda: FixedInterval([60.0]), lambda: Predictive(4)],
                         ids=["run_to_failure", "fixed_interval", "predictive"])
def test_each_policy_runs_and_the_accounting_adds_up(make: Any) -> None:
    costs, shop = Costs(), Shop()
    result = simulate(make(), seed=3, trace=True, **SMALL)
    _check_accounting(result, costs, shop, SMALL["days"])
    assert result.ledgers[0].throughput > 0
    assert result.ledgers[0].failures + result.ledgers[0].preventive > 0  # the month saw maintenance


def test_run_to_failure_fails_and_fixed_interval_replaces_before() -> None:
    rtf = simulate(RunToFailure(), seed=3, **SMALL).ledgers[0]
    fixed = simulate(FixedInterval([40.0]), seed=3, **SMALL).ledgers[0]
    assert rtf.preventive == 0 and rtf.failures >= 3
    assert fixed.preventive > 0 and fixed.failures < rtf.failures


def test_a_failure_stops_the_machine_for_the_repair() -> None:
    costs = Costs(corrective_h=30.0)
    result = simulate(RunToFailure(), seed=3, costs=costs, **SMALL)
    repaired = [e for e in result.events if e.kind == "failure" and e.end_h < SMALL["days"] * 24]
    assert repaired
    for e in repaired:  # two technicians and four machines: a repair may wait, never take less
        assert e.end_h - e.start_h >= costs.corrective_h - 1e-9


def test_blocks_are_independent_fleets_with_the_same_bearings() -> None:
    both = simulate(FixedInterval([40.0, 400.0]), seed=5, blocks=2, **SMALL)
    assert len(both.ledgers) == 2
    short, long_ = both.ledgers
    assert short.preventive > long_.preventive
    assert long_.failures > short.failures


def test_a_seed_gives_the_same_result_twice() -> None:
    half = {**SMALL, "days": 15.0}
    first = simulate(Predictive(4), seed=7, **half)
    second = simulate(Predictive(4), seed=7, **half)
    assert first.events and first.ledgers == second.ledgers
    assert first.events == second.events
    other = simulate(RunToFailure(), seed=8, **SMALL)
    assert other.events != simulate(RunToFailure(), seed=7, **SMALL).events


def test_the_grid_search_uses_only_training_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = study.simulate

    def spy(policy: Any, **kw: Any) -> RunResult:
        seen.append(kw["seed"])
        return real(policy, **kw)

    monkeypatch.setattr(study, "simulate", spy)
    cfg = study.StudyConfig(machines=3, days=10.0, seeds=2, train_seeds=2, intervals=(50.0, 5000.0),
                            wearout=FAST)
    interval, grid = study.choose_interval(cfg, progress=lambda _: None)
    assert seen == cfg.training_seeds == [1001, 1002]
    assert not set(seen) & set(cfg.eval_seeds)
    assert interval in (50.0, 5000.0) and set(grid) == {50.0, 5000.0}
    assert grid[interval] == min(grid.values())


class Recorder:
    """Wraps a policy and keeps every argument the fleet hands it."""

    def __init__(self, inner: Predictive) -> None:
        self.inner = inner
        self.name, self.needs_signals = inner.name, inner.needs_signals
        self.plan_every_h, self.plan_offset_h = inner.plan_every_h, inner.plan_offset_h
        self.args: list[Any] = []

    def observe(self, obs: Observation) -> None:
        self.args.append(obs)
        self.inner.observe(obs)

    def plan(self, obs: Observation, ctx: PlanContext) -> list[Request]:
        self.args += [obs, ctx]
        return self.inner.plan(obs, ctx)

    def maintained(self, machine: int, time_h: float) -> None:
        self.args += [machine, time_h]
        self.inner.maintained(machine, time_h)


def _reachable(root: object, limit: int = 200_000) -> list[object]:
    """Every object reachable from ``root`` through references (modules and classes not followed)."""
    import types

    seen: set[int] = set()
    stack, out = [root], []
    while stack and len(out) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, types.ModuleType | type | types.FunctionType):
            continue
        seen.add(id(obj))
        out.append(obj)
        stack.extend(gc.get_referents(obj))
    return out


def test_the_predictive_policy_sees_only_measured_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[np.ndarray] = []
    real = MachineArrays.measure

    def measure(self: MachineArrays) -> np.ndarray:
        values = real(self)
        measured.append(values)
        return values

    monkeypatch.setattr(MachineArrays, "measure", measure)
    policy = Recorder(Predictive(4))
    result = simulate(policy, seed=3, **SMALL)
    assert result.ledgers[0].preventive > 0  # it acted on what it saw
    observations = [a for a in policy.args if isinstance(a, Observation)]
    assert observations
    ids = {id(v) for v in measured}
    for arg in policy.args:
        assert isinstance(arg, Observation | PlanContext | int | float)
        if isinstance(arg, Observation) and arg.values is not None:
            assert id(arg.values) in ids  # the sensor matrix itself, noise included
    # nothing the policy holds leads to the plant's physics (damage, wear, defects)
    assert not any(isinstance(o, MachineArrays) for o in _reachable(policy.inner))


def test_the_predictive_policy_plans_with_the_optimiser_in_windows() -> None:
    policy = Predictive(4)
    result = simulate(policy, seed=3, **SMALL)
    rtf = simulate(RunToFailure(), seed=3, **SMALL).ledgers[0]
    assert policy.plans > 0 and policy.last_plan is not None
    assert policy.last_plan.solver == "highs"
    ledger = result.ledgers[0]
    assert ledger.preventive > 0
    assert ledger.failures < rtf.failures
    shop = Shop()
    in_window = [e for e in result.events if e.kind == "preventive" and not shop.producing(e.start_h)]
    assert in_window  # work is placed in the nightly planned stop


def test_shop_windows_and_wearout_draws() -> None:
    shop = Shop()
    assert shop.windows(0.0, 30.0) == [(-2.0, 6.0), (22.0, 30.0)]
    assert shop.producing(6.0) and not shop.producing(22.0) and shop.producing_share == pytest.approx(2 / 3)
    wear = Wearout()
    onset, growth = wear.draw(1, 2, 0, age_h=1500.0)
    again, _ = wear.draw(1, 2, 0, age_h=1500.0)
    assert (onset == again).all() and (onset >= 1500.0).all() and (growth > 0).all()
    assert not (wear.draw(1, 2, 1)[0] == onset).all()


def test_bad_settings_are_named() -> None:
    from tvilling.core.errors import Invalid

    with pytest.raises(Invalid, match="days"):
        study.StudyConfig(days=0)
    with pytest.raises(Invalid, match="machines"):
        study.StudyConfig(machines=0)
    with pytest.raises(Invalid, match="preventive_h"):
        Costs(preventive_h=0.0)
    with pytest.raises(Invalid, match="intervals"):
        FixedInterval([])


def test_the_command_prints_a_table_and_ends_with_the_json_line() -> None:
    from tvilling.cli import main

    res = CliRunner().invoke(main, ["eval", "maintenance", "--machines", "2", "--days", "4", "--seeds", "2",
                                    "--train-seeds", "1", "--json"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    doc = json.loads(lines[-1])
    assert list(doc) == ["policies"]
    assert set(doc["policies"]) == {"run_to_failure", "fixed_interval", "predictive"}
    for figures in doc["policies"].values():
        for key in ("cost", "failures", "downtime_h", "throughput", "preventive"):
            assert isinstance(figures[key], int | float)
            assert isinstance(figures[f"{key}_sd"], int | float)
    assert doc["policies"]["fixed_interval"]["interval_h"] in study.INTERVALS
    assert any(line.startswith("policy") for line in lines[:-1])
    assert "grid search: training seed 1001" in res.stderr


def test_the_command_rejects_bad_input() -> None:
    from tvilling.cli import main

    res = CliRunner().invoke(main, ["eval", "maintenance", "--machines", "0"])
    assert res.exit_code == 2 and "machines" in res.output


def test_the_chart_is_drawn(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the plot extra (matplotlib)")
    from tvilling.planning.study_chart import plot

    cfg = study.StudyConfig(machines=3, days=6.0, seeds=1, train_seeds=1, intervals=(50.0, 500.0), wearout=FAST)
    result = study.run_study(cfg, progress=lambda _: None)
    assert set(result["_events"]) == set(study.POLICIES)
    path = plot(result, tmp_path / "study.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
