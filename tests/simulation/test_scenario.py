"""What-if scenarios: checked descriptions, interventions that act when and where they say, bounded
parameter samples, KPIs, bands and the score against what happened."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest

import tvilling.simulation.scenario as scenario_module
import tvilling.simulation.scenario_interventions as interventions_module
import tvilling.simulation.scenario_machine as machine_words_module
import tvilling.simulation.scenario_runner as runner_module
from tvilling.core.errors import Invalid, TooLarge
from tvilling.simulation.machine import MachineModel
from tvilling.simulation.scenario import BASELINE, Option, Scenario, Start, Uncertainty
from tvilling.simulation.scenario_interventions import Command, Fault, Maintenance, ParameterChange, Profile
from tvilling.simulation.scenario_kpis import bands, compare, kpis, score
from tvilling.simulation.scenario_machine import MACHINE, flatten, stack, start_from_reported
from tvilling.simulation.scenario_runner import draw, run

H = 3600.0
RUNNING = {"speedSetpoint": 1500.0, "spindle:load": 75.0}


def scenario(*options: Option, **kw: Any) -> Scenario:
    base: dict[str, Any] = {"start": Start({}, RUNNING), "horizon": 2 * H, "step": 60.0, "samples": 5, "seed": 1}
    base.update(kw)
    return Scenario(options=options, **base)


@pytest.mark.parametrize("module", [scenario_module, interventions_module, machine_words_module, runner_module])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(("make", "error", "field", "words"), [
    (lambda: scenario(horizon=400 * 86_400.0), TooLarge, "horizon", "beyond the limit"),
    (lambda: scenario(horizon=-1.0), Invalid, "horizon", "> 0"),
    (lambda: scenario(step=0.0), Invalid, "step", "> 0"),
    (lambda: scenario(horizon=300 * 86_400.0, step=1.0), TooLarge, "step", "steps"),
    (lambda: scenario(samples=0), Invalid, "samples", "≥ 1"),
    (lambda: scenario(samples=20_000), TooLarge, "samples", "limit"),
    (lambda: scenario(Option("late", (Command(at=3 * H, command="stop"),))), Invalid,
     "options[0].interventions[0].at", "outside the horizon"),
    (lambda: scenario(Option("x", (Maintenance(at=H, action="replaceBearing", part="de", duration=2 * H),))),
     Invalid, "options[0].interventions[0].at + duration", "outside the horizon"),
    (lambda: scenario(Option("a"), Option("a", (Command(at=0, command="stop"),))), Invalid, "options[1].name",
     "twice"),
    (lambda: scenario(noise={"de:defect": -1.0}), Invalid, "noise.de:defect", "≥ 0"),
    (lambda: Uncertainty(means={"defectRate": 0.2}, std_errors={"defectRate": -0.1}), Invalid,
     "uncertainty.std_errors.defectRate", "≥ 0"),
    (lambda: Uncertainty(means={}, std_errors={"defectRate": 0.1}), Invalid, "uncertainty.std_errors.defectRate",
     "no mean"),
    (lambda: Uncertainty(means={"a": 1.0, "b": 2.0}, covariance=[[1.0, 2.0], [2.0, 1.0]], names=("a", "b")),
     Invalid, "uncertainty.covariance", "positive semi-definite"),
    (lambda: Uncertainty(means={"a": 1.0}, covariance=[[1.0, 0.0], [0.0, 1.0]], names=("a",)), Invalid,
     "uncertainty.covariance", "1×1"),
    (lambda: Profile("spindle:load", at=(0, 0), values=(1.0, 2.0)), Invalid, "at", "increase"),
    (lambda: Maintenance(at=0, action="replaceBearing", duration=-5), Invalid, "duration", "≥ 0"),
    (lambda: Start({"speed": [1.0, 2.0]}, {"spindle:load": [1.0, 2.0, 3.0]}).arrays(), Invalid, "start",
     "different numbers of machines"),
])
def test_structural_errors_name_the_field(make: Any, error: type[Exception], field: str, words: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert info.value.fields["field"] == field  # type: ignore[attr-defined]
    assert words in str(info.value)


@pytest.mark.parametrize(("s", "field", "words"), [
    (scenario(Option("x", (Command(at=0, command="fly"),))), "options[0].interventions[0].command",
     "no command 'fly'"),
    (scenario(Option("x", (Command(at=0, command="setSpeed"),))), "options[0].interventions[0].value",
     "needs a value"),
    (scenario(Option("x", (Command(at=0, command="setSpeed", value=-5.0),))), "options[0].interventions[0].value",
     "below the lower bound"),
    (scenario(Option("x", (Command(at=0, command="stop", value=1.0),))), "options[0].interventions[0].value",
     "takes no value"),
    (scenario(Option("x", (ParameterChange(at=0, values={"warpFactor": 1.0}),))),
     "options[0].interventions[0].values.warpFactor", "no parameter 'warpFactor'"),
    (scenario(Option("x", (ParameterChange(at=0, values={"coupling": 2.0}),))),
     "options[0].interventions[0].values.coupling", "above the upper bound 1"),
    (scenario(Option("x", (Fault(at=0, fault="gremlins", size=1.0),))), "options[0].interventions[0].fault",
     "no fault 'gremlins'"),
    (scenario(Option("x", (Fault(at=0, fault="de:bearingDefect", size=50.0),))), "options[0].interventions[0].size",
     "above the upper bound"),
    (scenario(Option("x", (Maintenance(at=0, action="replaceBearing", part="spindle"),))),
     "options[0].interventions[0].part", "one of ['de', 'nde']"),
    (scenario(Option("x", (Maintenance(at=0, action="paint"),))), "options[0].interventions[0].action",
     "no maintenance action 'paint'"),
    (scenario(Option("x", (Profile("flux", at=(0,), values=(1.0,)),))), "options[0].interventions[0].input",
     "no input 'flux'"),
    (scenario(Option("x", (Command(at=0, command="stop", machine=3),))), "options[0].interventions[0].machine",
     "1 machine(s)"),
    (scenario(uncertainty=Uncertainty(means={"defectRate": 99.0})), "uncertainty.means.defectRate",
     "above the upper bound 20"),
    (scenario(uncertainty=Uncertainty(means={"nope": 1.0})), "uncertainty.means.nope", "no parameter 'nope'"),
    (scenario(noise={"mood": 1.0}), "noise.mood", "no state 'mood'"),
    (scenario(record=("colour",)), "record.colour", "no output 'colour'"),
    (scenario(start=Start({"de:wear": -1.0}, RUNNING)), "start.states.de:wear", "below the lower bound"),
    (scenario(start=Start({}, {"speedSetpoint": 1500.0})), "start.inputs.spindle:load", "must give"),
])
def test_model_errors_name_the_field(s: Scenario, field: str, words: str) -> None:
    with pytest.raises(Invalid) as info:
        run(s, MachineModel(), MACHINE)
    assert info.value.fields["field"] == field
    assert words in str(info.value)


# ------------------------------------------------------------------ sampling


def test_draws_follow_the_uncertainty_and_stay_in_bounds() -> None:
    sig = MachineModel().signature
    rng = np.random.default_rng(0)
    samples = draw(Uncertainty(means={"coupling": 0.95, "wearLife": 20_000.0},
                               std_errors={"coupling": 0.2, "wearLife": 1_000.0}), sig, 4000, rng)
    assert samples["coupling"].max() <= 1.0 and samples["coupling"].min() >= 0.0  # bounds [0, 1]: redrawn
    assert abs(samples["wearLife"].mean() - 20_000.0) < 100.0
    assert abs(samples["wearLife"].std() - 1_000.0) < 60.0
    cov = [[4.0, 3.0], [3.0, 4.0]]
    pair = draw(Uncertainty(means={"motorRise": 55.0, "band1x": 5.0}, covariance=cov,
                            names=("motorRise", "band1x")), sig, 4000, rng)
    assert abs(np.corrcoef(pair["motorRise"], pair["band1x"])[0, 1] - 0.75) < 0.05


def test_the_baseline_comes_first_and_is_added_when_missing() -> None:
    slow = Option("slow", (Command(at=0, command="setSpeed", value=900.0),))
    assert [o.name for o in scenario(slow).all_options()] == [BASELINE, "slow"]
    assert [o.name for o in scenario(slow, Option("keep")).all_options()] == ["keep", "slow"]


# ------------------------------------------------------------------ interventions


def test_commands_act_at_their_time_on_their_option_only() -> None:
    s = scenario(Option("stop", (Command(at=H, command="stop"), Command(at=1.5 * H, command="start"))),
                 Option("slow", (Command(at=0, command="setSpeed", value=900.0),)))
    r = run(s, MachineModel(), MACHINE)
    speed = r.series["speed"][:, :, 0, 0]
    t = r.times
    assert np.all(speed[:, 0] > 1499.0)  # the baseline never changes
    assert speed[t == 0.5 * H, 1] > 1499.0 and speed[(t > H + 120) & (t < 1.5 * H), 1].max() == 0.0
    assert speed[-1, 1] > 1499.0  # started again
    assert abs(speed[-1, 2] - 900.0) < 1.0
    k = kpis(r)
    assert k[1].lost_production == pytest.approx(0.5 * 120.0, rel=0.02)  # half an hour stopped at 120/h
    assert k[2].lost_production == pytest.approx(2 * 120.0 * 0.4, rel=0.02)  # 900 rpm: 72/h instead of 120/h
    assert k[2].energy_kwh_mean is not None and k[0].energy_kwh_mean is not None
    assert k[2].energy_kwh_mean < k[0].energy_kwh_mean


def test_a_load_profile_drives_the_input() -> None:
    s = scenario(Option("light", (Profile("spindle:load", at=(0, H), values=(40.0, 90.0)),)))
    r = run(s, MachineModel(), MACHINE, )
    current = r.series["motor.current"][:, 1, 0, 0]
    base = r.series["motor.current"][:, 0, 0, 0]
    assert current[30] < base[30] < current[-1]


def test_an_injected_fault_and_a_parameter_change_take_effect_from_their_time() -> None:
    s = scenario(Option("fault", (Fault(at=H, fault="imbalance", size=0.5),)),
                 Option("cooling", (ParameterChange(at=0, values={"overheat": 1.0}),)))
    r = run(s, MachineModel(), MACHINE)
    vib = r.series["de:vibration"][:, :, 0, 0]
    before, after = r.times < H, r.times > H
    assert np.allclose(vib[before, 1], vib[before, 0]) and np.all(vib[after, 1] > vib[after, 0] + 0.3)
    temp = r.series["motor.temperature"][:, :, 0, 0]
    assert temp[-1, 2] > temp[-1, 0] + 5.0


def test_replacing_the_bearing_stops_the_machine_then_resets_its_damage() -> None:
    start = Start({"de:defect": 0.6, "de:wear": 0.1}, RUNNING)
    repair = Maintenance(at=H, action="replaceBearing", part="de", duration=0.5 * H)
    s = scenario(Option("repair", (repair,)), start=start, record=("speed", "de:vibration", "throughput"))
    r = run(s, MachineModel(), MACHINE)
    speed, vib = r.series["speed"][:, 1, 0, 0], r.series["de:vibration"][:, 1, 0, 0]
    down = (r.times > H + 120) & (r.times <= 1.5 * H)
    assert speed[down].max() == 0.0 and r.series["throughput"][:, 1, 0, 0][down].max() == 0.0
    assert vib[-1] < 0.5 * vib[int(H / 60) - 1]  # as new: the BPFO band's defect share is gone
    assert kpis(r)[1].lost_production == pytest.approx(60.0, rel=0.05)


def test_a_set_of_machines_runs_together_and_an_intervention_can_target_one() -> None:
    start = stack([Start({"de:defect": 0.0}, RUNNING), Start({"de:defect": 0.7}, {**RUNNING, "speedSetpoint": 1200.0})])
    s = scenario(Option("stop m1", (Command(at=0, command="stop", machine=1),)), start=start,
                 uncertainty=Uncertainty(means={"defectRate": 0.2}), horizon=8 * H)
    r = run(s, MachineModel(), MACHINE)
    assert r.series["speed"].shape == (481, 2, 2, 5)
    assert abs(r.series["speed"][-1, 0, 1, 0] - 1200.0) < 1 and r.series["speed"][-1, 1, 1, 0] == 0.0
    assert r.series["speed"][-1, 1, 0, 0] > 1499.0
    line, m0 = kpis(r), kpis(r, machine=0)
    assert line[0].production_mean > m0[0].production_mean  # the line adds up
    assert m0[1].lost_production == pytest.approx(0.0, abs=1e-9)  # machine 0 was not touched
    with pytest.raises(Invalid, match="index below 2"):
        kpis(r, machine=2)


def test_progress_is_reported_up_to_one() -> None:
    seen: list[float] = []
    run(scenario(horizon=10 * H), MachineModel(), MACHINE, progress=seen.append)
    assert 50 <= len(seen) <= 101 and seen[-1] == 1.0 and seen == sorted(seen) and seen[0] > 0


def test_options_in_one_run_equal_runs_on_their_own() -> None:
    unc = Uncertainty(means={"defectRate": 0.2, "de:defectSeed": 0.15}, std_errors={"defectRate": 0.05})
    start = Start({"de:defect": 0.05}, RUNNING)
    slow = Option("slow", (Command(at=0, command="setSpeed", value=900.0),))
    together = run(scenario(slow, start=start, uncertainty=unc, horizon=12 * H), MachineModel(), MACHINE)
    alone = run(scenario(start=start, uncertainty=unc, horizon=12 * H), MachineModel(), MACHINE)
    assert np.array_equal(together.series["de:vibration"][:, 0], alone.series["de:vibration"][:, 0])
    assert np.array_equal(together.failed_at[0], alone.failed_at[0])


# ------------------------------------------------------------------ KPIs, bands, score


def test_failure_kpis_follow_the_fault_state() -> None:
    # a defect that grows past 1 within the horizon in every sample, at a known rate: d + seed = 0.2·e^(0.2 t)
    start = Start({"de:defect": 0.05}, RUNNING)
    s = scenario(start=start, horizon=12 * H, uncertainty=Uncertainty(means={"de:defectSeed": 0.15}), shift=8 * H)
    k = kpis(run(s, MachineModel(), MACHINE))[0]
    expected = math.log(1.15 / 0.2) / 0.2
    assert k.time_to_failure_h[1] == pytest.approx(expected, abs=1 / 60 + 1e-9)
    assert k.failure_probability == 1.0 and k.failure_probability_shift == 0.0  # fails at 8.75 h
    assert compare([k]).splitlines()[1].startswith("do nothing")
    assert k.to_dict()["time_to_failure_h"][1] == pytest.approx(expected, abs=0.02)
    none = kpis(run(scenario(), MachineModel(), MACHINE))[0]
    assert math.isinf(none.time_to_failure_h[0]) and none.failure_probability == 0.0
    assert none.to_dict()["time_to_failure_h"] == [None, None, None]
    assert "> horizon" in compare([none])


def test_bands_order_and_widen_with_uncertainty() -> None:
    unc = Uncertainty(means={"defectRate": 0.2, "de:defectSeed": 0.15}, std_errors={"defectRate": 0.05})
    s = scenario(start=Start({"de:defect": 0.05}, RUNNING), uncertainty=unc, samples=50, horizon=6 * H)
    r = run(s, MachineModel(), MACHINE)
    b = bands(r, "de:vibration", BASELINE)
    assert b.shape == (3, r.times.size)
    assert np.all(b[0] <= b[1]) and np.all(b[1] <= b[2])
    assert b[2, -1] - b[0, -1] > 10 * (b[2, 0] - b[0, 0] + 1e-6)  # the spread grows as the defect does
    with pytest.raises(Invalid, match="was not recorded"):
        bands(r, "quality", BASELINE)
    with pytest.raises(Invalid, match="no option 'x'"):
        bands(r, "speed", "x")


def test_score_measures_coverage_and_error_against_what_happened() -> None:
    unc = Uncertainty(means={"defectRate": 0.2, "de:defectSeed": 0.15}, std_errors={"defectRate": 0.05})
    start = Start({"de:defect": 0.05}, RUNNING)
    r = run(scenario(start=start, uncertainty=unc, samples=200, horizon=6 * H), MachineModel(), MACHINE)
    # what "happened": the same machine with a defect rate inside the band, then one far outside it
    def actual(rate: float) -> tuple[np.ndarray, np.ndarray]:
        truth = run(scenario(start=start, uncertainty=Uncertainty(means={"defectRate": rate,
                                                                         "de:defectSeed": 0.15}),
                             samples=1, horizon=6 * H), MachineModel(), MACHINE)
        return truth.times, truth.series["de:vibration"][:, 0, 0, 0].astype(float)

    good = score(r, {"de:vibration": actual(0.2)})["de:vibration"]
    bad = score(r, {"de:vibration": actual(0.45)})["de:vibration"]
    assert good.coverage > 0.95 and good.mae < 0.05 and good.points == r.times.size
    assert bad.coverage < 0.6 and bad.mae > 5 * good.mae and bad.rmse >= bad.mae
    with pytest.raises(Invalid, match="no point inside the horizon"):
        score(r, {"de:vibration": ([10 * H], [1.0])})
    with pytest.raises(Invalid, match="as many times as values"):
        score(r, {"de:vibration": ([0.0, 60.0], [1.0])})


# ------------------------------------------------------------------ a start from a twin's reported state


def test_start_from_reported_takes_measurements_and_infers_damage() -> None:
    model = MachineModel()
    truth = model.start(1, {"de:defectSeed": 0.1}, model.steady_start(1, RUNNING, start_values={"de:defect": 0.3}))
    y = model.read_outputs(truth, RUNNING)
    machine = {"speed": float(y["speed"][0]), "speedSetpoint": 1500.0, "state": "running",
               "motor.temperature": float(y["motor.temperature"][0]), "operatingHours": 12.0}
    parts = {b: {"temperature": float(y[f"{b}:temperature"][0]),
                 "vibrationBandBpfo": float(y[f"{b}:vibrationBandBpfo"][0])} for b in ("de", "nde")}
    parts["spindle"] = {"load": 75.0}
    start = start_from_reported(flatten(machine, parts))
    assert start.states["de:defect"] == pytest.approx(0.3, abs=1e-9)
    assert start.states["nde:defect"] == pytest.approx(0.0, abs=1e-9)
    assert start.states["operatingHours"] == 12.0 and start.inputs == {**RUNNING, "running": 1.0}
    # run from it: the first outputs are the twin's
    r = run(Scenario(start, horizon=H, uncertainty=Uncertainty(means={"de:defectSeed": 0.1}), samples=1),
            model, MACHINE)
    assert r.series["de:vibration"][0, 0, 0, 0] == pytest.approx(y["de:vibration"][0], rel=1e-5)
    assert r.series["de:temperature"][1, 0, 0, 0] == pytest.approx(y["de:temperature"][0], rel=1e-3)
    failed = start_from_reported({"speed": 0.0, "state": "fault"})
    assert failed.states["fault"] == 1.0 and failed.inputs["running"] == 0.0


# ------------------------------------------------------------------ the simulated series as readings


def test_simulated_series_become_readings_the_analytics_step_scores() -> None:
    from tvilling.analytics.binding import parse_specs
    from tvilling.analytics.binding.step import AnalyticsState, Batch, process
    from tvilling.simulation.scenario_readings import readings

    unc = Uncertainty(means={"defectRate": 0.2, "de:defectSeed": 0.15}, std_errors={"defectRate": 0.05})
    r = run(scenario(start=Start({"de:defect": 0.05}, RUNNING), uncertainty=unc, horizon=4 * H, samples=9),
            MachineModel(), MACHINE)
    t0 = 1_767_225_600_000_000
    twins = {"": "m1", "de": "m1-de"}
    one = readings(r, BASELINE, twins=twins, start_us=t0, sample=3)
    vib = (one.twin == "m1-de") & (one.prop == "vibration")
    assert np.array_equal(one.ts[vib], t0 + (r.times * 1e6).astype(np.int64))
    assert np.allclose(one.value[vib], r.series["de:vibration"][:, 0, 0, 3])
    assert set(one.twin.tolist()) == {"m1", "m1-de"}  # nde outputs have no twin here: left out
    assert np.all(np.diff(one.ts) >= 0)
    mid = readings(r, BASELINE, twins={"de": "m1-de"}, start_us=t0)
    assert np.allclose(mid.value[mid.prop == "vibration"], bands(r, "de:vibration", BASELINE)[1])
    spec = parse_specs([{"name": "vib", "model": "dtmi:tvilling:example:Bearing", "method": "univariate",
                         "inputs": ["vibration"], "train_rows": 60}])
    out = process(Batch(mid, {"m1-de": "dtmi:tvilling:example:Bearing;4"}), AnalyticsState(spec))
    derived = out.derived()
    assert derived is not None
    scores = derived[0].prop == "anomaly_score"
    assert scores.sum() == r.times.size - 60 and set(derived[0].twin[scores].tolist()) == {"m1-de"}
    assert derived[0].ts[scores].min() == t0 + 60 * 60_000_000
    with pytest.raises(Invalid, match="sample must be an index below 9"):
        readings(r, BASELINE, twins=twins, start_us=t0, sample=9)
    with pytest.raises(Invalid, match="no recorded output"):
        readings(r, BASELINE, twins={"spindle": "s"}, start_us=t0)
