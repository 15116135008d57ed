"""The demo's question (issue 12, item 6): a machine at 1,500 rpm whose drive-end bearing has a growing
defect — keep running, slow to 900 rpm, or replace the bearing at the next stop? The options must order
as an engineer expects and say so in numbers; a seeded run is reproducible; the comparison is timed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tvilling.simulation.machine import MachineModel
from tvilling.simulation.scenario import Option, Scenario, Start, Uncertainty
from tvilling.simulation.scenario_interventions import Command, Maintenance
from tvilling.simulation.scenario_kpis import Kpis, bands, compare, kpis
from tvilling.simulation.scenario_machine import MACHINE, flatten, start_from_reported
from tvilling.simulation.scenario_runner import ScenarioResult, run

H = 3600.0
NEXT_STOP = 4 * H  # the line's next planned stop
REPAIR = 1 * H  # the bearing change takes an hour


def twin_start() -> Start:
    """The machine as its twins report it when the anomaly appears: 1,500 rpm, 75 % load, a BPFO band
    of 0.155 g on the drive end (a defect of about 0.05 on the model's scale)."""
    return start_from_reported(flatten(
        {"speed": 1500.0, "speedSetpoint": 1500.0, "state": "running", "motor.temperature": 62.0,
         "operatingHours": 900.0},
        {"de": {"vibrationBandBpfo": 0.155, "temperature": 46.0}, "nde": {"temperature": 40.0},
         "spindle": {"load": 75.0}}))


def demo(horizon: float, samples: int = 100, seed: int | None = 12) -> Scenario:
    return Scenario(
        twin_start(), horizon=horizon, step=60.0, samples=samples, seed=seed,
        # the twin's calibrated defect growth, with its standard errors, and process noise on the defect
        uncertainty=Uncertainty(means={"defectRate": 0.2, "de:defectSeed": 0.15},
                                std_errors={"defectRate": 0.04, "de:defectSeed": 0.03}),
        noise={"de:defect": 1e-4},
        options=(Option("keep running at 1500 rpm"),
                 Option("slow to 900 rpm", (Command(at=0, command="setSpeed", value=900.0),)),
                 Option("replace the bearing at the next stop",
                        (Maintenance(at=NEXT_STOP, action="replaceBearing", part="de", duration=REPAIR),))))


@pytest.fixture(scope="module")
def day() -> tuple[ScenarioResult, list[Kpis]]:
    result = run(demo(24 * H), MachineModel(), MACHINE)
    return result, kpis(result)


def test_the_options_order_as_an_engineer_expects(day: tuple[ScenarioResult, list[Kpis]]) -> None:
    result, (keep, slow, replace) = day
    print("\n" + compare([keep, slow, replace]))
    # keeping on: the defect fails the bearing within the day, a good share of samples within the shift
    assert keep.failure_probability >= 0.95
    assert 0.1 < keep.failure_probability_shift < 0.9
    assert 6.0 < keep.time_to_failure_h[1] < 12.0
    # slowing down lengthens the time to failure (r² slows the growth to about a third) ...
    assert slow.failure_probability_shift == 0.0
    assert slow.time_to_failure_h[0] > 1.8 * keep.time_to_failure_h[0]
    assert slow.time_to_failure_h[1] > 2.0 * keep.time_to_failure_h[1]
    # ... and costs throughput while the machine runs
    shift = result.times <= 8 * H
    rate = result.series["throughput"][:, :, 0, :]
    assert np.allclose(rate[shift][1:, 1], 72.0, atol=0.5) and np.allclose(rate[shift][1:5, 0], 120.0, atol=0.5)
    # replacing the bearing removes the risk after the stop: no sample fails after it; the few that fail
    # do so before it, as often as keeping on does before the stop
    failed_at = result.failed_at[2, 0]
    assert np.all(failed_at[np.isfinite(failed_at)] <= NEXT_STOP)
    keep_before_stop = float(np.mean(result.failed_at[0, 0] <= NEXT_STOP))
    assert replace.failure_probability == replace.failure_probability_shift <= keep_before_stop + 0.03
    assert replace.failure_probability < 0.05
    after = bands(result, "de:vibration", replace.option)[2, int((NEXT_STOP + REPAIR) / 60) + 5:]
    assert after.max() < bands(result, "de:vibration", keep.option)[0, int(NEXT_STOP / 60)]
    # over the day it also makes the most parts: keeping on stops the machine on a fault for most of it
    assert replace.production_mean > slow.production_mean > keep.production_mean
    assert replace.lost_production < 0 and keep.lost_production == 0.0


def test_over_one_shift_the_costs_and_risks_say_so_in_numbers() -> None:
    result = run(demo(8 * H), MachineModel(), MACHINE)
    keep, slow, replace = kpis(result)
    assert keep.failure_probability == keep.failure_probability_shift > 0.1
    assert slow.failure_probability == 0.0
    assert replace.failure_probability <= float(np.mean(result.failed_at[0, 0] <= NEXT_STOP)) + 0.03
    # lost production versus keeping on: 48 parts an hour slower, the hour of the repair 120 parts — each
    # less what keeping on loses to its faults (it makes 120 parts an hour until it fails)
    lost_to_faults = 8 * 120.0 - keep.production_mean
    assert lost_to_faults > 0
    assert 8 * 48 - lost_to_faults - 1 < slow.lost_production < 8 * 48 + 1
    assert 120 - lost_to_faults - 1 < replace.lost_production < 120 + 1
    assert 0 < replace.lost_production < slow.lost_production
    assert slow.energy_kwh_mean is not None and keep.energy_kwh_mean is not None
    assert slow.energy_kwh_mean < keep.energy_kwh_mean
    table = compare([keep, slow, replace]).splitlines()
    assert len(table) == 4 and table[2].startswith("slow to 900 rpm")


def test_a_seeded_run_is_reproducible() -> None:
    a = run(demo(8 * H, samples=30, seed=5), MachineModel(), MACHINE)
    b = run(demo(8 * H, samples=30, seed=5), MachineModel(), MACHINE)
    c = run(demo(8 * H, samples=30, seed=6), MachineModel(), MACHINE)
    assert np.array_equal(a.series["de:vibration"], b.series["de:vibration"])
    assert np.array_equal(a.failed_at, b.failed_at) and kpis(a) == kpis(b)
    assert not np.array_equal(a.series["de:vibration"], c.series["de:vibration"])


def test_timing_of_the_demo_comparison() -> None:
    """3 options × 100 samples × one shift at 1-minute steps: well under a second on one core."""
    model = MachineModel()
    run(demo(5 * H, samples=10), model, MACHINE)  # warm-up
    began = time.perf_counter()
    result = run(demo(8 * H), model, MACHINE)
    took = time.perf_counter() - began
    print(f"\ndemo comparison: 3 options x 100 samples x 480 steps in {took:.3f} s")
    assert result.series["speed"].shape == (481, 3, 1, 100)
    assert took < 5.0
