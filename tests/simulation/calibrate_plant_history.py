"""A stored hour of one demo-plant machine, for the calibration-from-history tests.

The simulated plant runs one machine an hour (plant time) at 10 plant seconds per reading, with its
sensor noise and its wandering process load, and an operator changing the speed twice in each half
hour (as in ``test_calibrate_plant``); every reading goes through the platform's ingest pipeline
into the history store. The plant is accelerated ×10 (one reading per wall second), so the
simulation's ``time_scale`` is 10. The twin's configuration starts the model's thermal and
vibration parameters 15–25 % off the plant's true constants.
"""

from __future__ import annotations

from typing import Any

from tvilling.app import Platform
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents
from tvilling.plant.physics import Params
from tvilling.plant.plant import MODEL_SET, MODELS, Plant
from tvilling.twins.importer import import_twins

MACHINE = "line-1-m01"
T0_MS = 1_790_000_000_000  # the first reading (2026-09-21T14:13:20Z)
SPEED = 10.0  # plant seconds per wall second; one reading per wall second
SCHEDULE = {5: 900.0, 18: 1500.0, 35: 1200.0, 48: 900.0}  # plant minute → speed setpoint (rpm)
TRUE = Params()
TRUTH = {"motorRise": TRUE.motor_rise, "tauMotor": TRUE.tau_motor, "bearingRiseSpeed": TRUE.bearing_rise_speed,
         "tauBearing": TRUE.tau_bearing, "band1x": TRUE.band_1x, "band2x": TRUE.band_2x}
OFF = {"motorRise": 1.2, "tauMotor": 0.8, "bearingRiseSpeed": 1.25, "tauBearing": 1.15, "band1x": 0.85,
       "band2x": 1.2}
START_STATES = ["motor.temperature", "de:temperature", "nde:temperature", "de:wear", "nde:wear"]
MONITORED = ["motor.temperature", "de:temperature", "nde:temperature", "motor.current", "de:vibration",
             "nde:vibration"]
_BEARING = ("temperature", "vibration", "vibrationBand1x", "vibrationBand2x", "vibrationBandBpfo",
            "vibrationBandHigh")

SIM: dict[str, Any] = {
    "name": "machine", "model": MODELS["machine"], "kind": "python",
    "class": "tvilling.simulation.machine:MachineModel", "time_scale": SPEED, "step": 60.0,
    "inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "hasSpindle/load",
               "running": {"path": "state", "map": {"running": 1, "idle": 0, "stopped": 0, "fault": 0}}},
    "outputs": {"motor.temperature": "motor.temperature", "motor.current": "motor.current",
                **{f"{b}:{s}": f"hasBearing[location={b}]/{s}" for b in ("de", "nde") for s in _BEARING}},
    "parameters": {name: TRUTH[name] * OFF[name] for name in TRUTH},
}


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


FIT_FROM, FIT_TO, VALIDATE_TO = iso(T0_MS), iso(T0_MS + 180_000), iso(T0_MS + 360_000)


def seed_plant(p: Platform, seed: int = 11) -> Plant:
    """The plant's models and twins in ``p``."""
    p.models.add(builtin_documents(MODEL_SET))
    plant = Plant(machines=1, seed=seed, speed=SPEED, scenario=None, params=TRUE)
    import_twins(p.twins, plant.twins(), actor="test")
    return plant


def store_hour(p: Platform, plant: Plant, minutes: float = 60.0, batch: int = 30) -> int:
    """Run the plant ``minutes`` plant minutes into ``p``'s history through the ingest pipeline, ``batch``
    readings per series in one ingest call (as a gateway sends them); returns the readings stored."""
    stored = 0
    rows: list[tuple[str, str, int, Any]] = []
    steps = int(minutes * 60 / SPEED) + 1
    for k in range(steps):
        minute = k * SPEED / 60.0
        if minute in SCHEDULE:
            assert plant.handle(MACHINE, "setSpeed", SCHEDULE[minute]).ok
        ts_ms = T0_MS + k * 1000
        frame = plant.step(1.0, now_ms=ts_ms)
        rows += [(twin, prop, ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        if (k + 1) % batch == 0 or k == steps - 1:
            stored += p.pipeline.ingest_readings(Readings.from_rows(rows), transport="test").accepted
            rows = []
    return stored
