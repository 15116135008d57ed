"""Shadow mode on the simulated plant: the machine model runs beside the plant's machines through the ingest
pipeline; residuals stay small on a healthy machine and name the output a fault the model does not know
shows in — in history, in the twin's reported state, and in an alarm."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.decisions.alarms import build_driver
from tvilling.models.builtin import builtin_documents
from tvilling.plant.faults import Injection
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.simulation.machine import MachineModel
from tvilling.simulation.shadow import ShadowFleet
from tvilling.simulation.spec import parse_simulation
from tvilling.twins.importer import import_twins

T0_MS = 1_790_000_000_000
SPEED = 60.0  # one plant minute per reading, as in the demo
FAULT_AT = 100  # the bearing defect starts at this reading (plant minute)
HEALTHY_BOUND = 3.0  # a healthy machine's residual_norm stays below this (scores are ~1 by construction)
SIM: dict[str, Any] = {
    "name": "machine", "model": "dtmi:tvilling:example:Machine;4", "kind": "python",
    "class": "tvilling.simulation.machine:MachineModel", "time_scale": SPEED, "step": 60.0, "learn_rows": 40,
    "inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "hasSpindle/load",
               "running": {"path": "state", "map": {"running": 1, "idle": 0, "stopped": 0, "fault": 0}}},
    "outputs": {"speed": "speed", "throughput": "throughput", "motor.current": "motor.current",
                "motor.temperature": "motor.temperature", "de:vibration": "hasBearing[location=de]/vibration",
                "de:vibrationBandBpfo": "hasBearing[location=de]/vibrationBandBpfo",
                "de:temperature": "hasBearing[location=de]/temperature",
                "nde:vibration": "hasBearing[location=nde]/vibration"},
    "alarm": {"above": 8.0, "clear": 4.0, "severity": "major"},
}


def plant_platform(machines: int = 2, scenario: list[Injection] | None = None) -> tuple[Platform, Plant]:
    p = build_platform(Settings(store="memory", simulations=[SIM]))
    p.models.add(builtin_documents(MODEL_SET))
    plant = Plant(machines=machines, seed=5, speed=SPEED, scenario=scenario or [])
    import_twins(p.twins, plant.twins(), actor="test")
    return p, plant


def run(p: Platform, plant: Plant, steps: range, commands: dict[int, tuple[str, str, Any]] | None = None) -> None:
    for i in steps:
        if commands and i in commands:
            twin, name, arg = commands[i]
            assert plant.handle(twin, name, arg).ok
        frame = plant.step(1.0, now_ms=T0_MS + i * 1000)
        rows = [(twin, prop, (T0_MS + i * 1000) * 1000, v) for twin, values in frame.records()
                for prop, v in values.items()]
        p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")


def series(p: Platform, twin: str, prop: str) -> np.ndarray:
    return np.array([pt.value for pt in p.history.range(twin, prop, 0, 2**62, limit=100_000)])


def texts(p: Platform, twin: str, prop: str) -> list[str | None]:
    return [pt.text for pt in p.history.range(twin, prop, 0, 2**62, limit=100_000)]


@pytest.fixture(scope="module")
def faulty() -> tuple[Platform, Plant]:
    """Two machines; machine 2's drive-end bearing develops a defect the model has not been told of.
    Machine 1 is stopped for a while and started again (the model is told through its state)."""
    p, plant = plant_platform(scenario=[Injection(machine=2, fault="bearing_defect", at=FAULT_AT * SPEED)])
    run(p, plant, range(0, 260), commands={130: ("line-1-m01", "stop", None), 160: ("line-1-m01", "start", None),
                                          190: ("line-1-m01", "setSpeed", 1100.0)})
    return p, plant


def test_a_healthy_machine_stays_within_the_bound_through_stops_and_speed_changes(faulty):
    p, _ = faulty
    norm = series(p, "line-1-m01", "simulation.machine.residual_norm")
    assert len(norm) == 260 - SIM["learn_rows"]  # from the row that completes the scale (the first row seeds)
    assert norm.max() < HEALTHY_BOUND, norm.max()
    residual = series(p, "line-1-m01", "simulation.machine.residual.speed")
    assert len(residual) == 259 and np.abs(residual[-20:]).max() < 0.01 * 1100 + 5  # stopped, restarted, slowed


def test_the_faulty_output_is_named_in_history_and_in_the_reported_state(faulty):
    p, _ = faulty
    norm = series(p, "line-1-m02", "simulation.machine.residual_norm")
    before = norm[: FAULT_AT - SIM["learn_rows"]]
    assert before.max() < HEALTHY_BOUND
    assert norm[-1] > 10 * HEALTHY_BOUND
    worst = texts(p, "line-1-m02", "simulation.machine.worst")
    assert worst[-1] in ('"de:vibrationBandBpfo"', '"de:vibration"')
    state = p.twins.get("line-1-m02").reported["simulation"]["machine"]
    assert state["worst"] == worst[-1].strip('"')
    assert state["residual_norm"] == pytest.approx(norm[-1])
    assert state["residual"]["de"]["vibrationBandBpfo"] > 0.3  # measured above what a healthy bearing makes
    assert state["score"]["motor"]["current"] < HEALTHY_BOUND  # the other outputs still fit
    meta = p.twins.get("line-1-m02").metadata["reported"]["simulation.machine.residual_norm"]
    assert meta["source"] == "simulation:machine"


def test_residuals_are_not_fed_back_to_observers(faulty):
    p, _ = faulty
    assert p.simulations.failures == {}
    assert "line-1-m01-de" not in p.simulations.fleet("machine").index  # bearings are read, not simulated
    assert p.simulations.fleet("machine").twins == ["line-1-m01", "line-1-m02"]


def test_the_residual_alarm_names_the_output_that_diverged(faulty):
    p, _ = faulty
    driver = build_driver(p)
    driver.catch_up()
    alarms = [a.to_json() for a in p.alarm_store.list()]
    on_faulty = [a for a in alarms if a["twin"] == "line-1-m02"]
    assert on_faulty, alarms
    rules = {a["rule"] for a in on_faulty}
    assert "machine-residual-de:vibrationBandBpfo" in rules
    assert all(r.startswith("machine-residual-de:") for r in rules), rules  # the drive-end bearing, nothing else
    assert any("de:vibrationBandBpfo diverges from the model" in a["message"] for a in on_faulty)
    assert not [a for a in alarms if a["twin"] == "line-1-m01"]


def test_a_changed_parameter_on_the_plant_is_found_in_the_output_it_moves():
    """The plant's motor runs hotter than the model says (a cooling the model does not know is degraded)."""
    p, plant = plant_platform(machines=1, scenario=[Injection(machine=1, fault="overheating", at=80 * SPEED,
                                                                severity=0.6)])
    run(p, plant, range(0, 200))
    state = p.twins.get("line-1-m01").reported["simulation"]["machine"]
    assert state["worst"] == "motor.temperature", state
    assert state["residual_norm"] > 10 * HEALTHY_BOUND


def test_a_promoted_parameter_version_is_used_after_refresh():
    from tvilling.simulation.binding_versions import add_version

    p, plant = plant_platform(machines=1)
    run(p, plant, range(0, 5))
    spec = p.simulations.specs[0]
    fleet = p.simulations.fleet("machine")
    assert p.simulations.refresh() == []
    add_version(p.analytics_registry, spec, "line-1-m01", {"ratePerHour": 150.0}, promote=True)
    assert p.simulations.refresh() == ["line-1-m01"]
    assert fleet.parameters[0] == {"ratePerHour": 150.0}
    run(p, plant, range(5, 8))
    residual = series(p, "line-1-m01", "simulation.machine.residual.throughput")
    assert residual[-1] < -20  # the model now predicts 150 parts an hour where the plant makes 120


def test_the_servers_upkeep_applies_a_version_another_process_promoted():
    import asyncio
    import contextlib

    from tvilling.runtime.upkeep import maintain
    from tvilling.simulation.binding_versions import add_version

    p, plant = plant_platform(machines=1)
    p.settings.maintenance_s = 0.01
    run(p, plant, range(0, 5))
    fleet = p.simulations.fleet("machine")
    add_version(p.analytics_registry, p.simulations.specs[0], "line-1-m01", {"ratePerHour": 150.0}, promote=True)

    async def one_round() -> None:
        task = asyncio.create_task(maintain(p))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if fleet.parameters[0] == {"ratePerHour": 150.0}:
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(one_round())
    assert fleet.parameters[0] == {"ratePerHour": 150.0}


def test_the_fleet_steps_every_twin_in_one_call_per_time():
    spec = parse_simulation(SIM)
    calls: list[int] = []

    class Counting(MachineModel):
        def step(self, instances, dt, inputs):  # type: ignore[no-untyped-def]
            calls.append(instances.n)
            return super().step(instances, dt, inputs)

    fleet = ShadowFleet(spec, Counting())
    for k in range(50):
        fleet.add(f"m{k}", {})
    n = 50
    times = np.array([0, 1_000_000, 2_000_000], dtype=np.int64)
    inputs = np.full((3, len(fleet.inputs), n), np.nan)
    inputs[0] = np.array([1500.0, 75.0, 1.0])[:, None]
    measured = np.full((3, len(fleet.outputs), n), np.nan)
    out = fleet.advance(times, inputs, measured)
    assert calls == [50, 50]  # one model call per time after the start, over all 50 twins
    assert len(out) == 0  # nothing measured: nothing compared
    with pytest.raises(ValueError, match="do not fit"):
        fleet.advance(times, inputs[:, :2], measured)
