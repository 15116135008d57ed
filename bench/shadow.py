"""What shadow mode costs on ingest: the simulated plant's readings with and without the machine model beside it.

``machines`` plant machines (each reporting 25 signals over its machine, bearing and spindle twins,
one reading per second of plant minutes) are ingested through the in-process pipeline in batches of
``frames`` plant frames, once with no simulation and once with the machine model in shadow mode
(eight outputs compared, residuals, scores, norm and worst written back). Prints one JSON line:
readings/s without and with, and the slowdown.

    python bench/shadow.py --machines 200 --frames 5 --batches 40
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.twins.importer import import_twins

T0_MS = 1_790_000_000_000
SIMULATION: dict[str, Any] = {
    "name": "machine", "model": "dtmi:tvilling:example:Machine;4", "kind": "python",
    "class": "tvilling.simulation.machine:MachineModel", "time_scale": 60.0, "step": 60.0, "learn_rows": 10,
    "inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "hasSpindle/load",
               "running": {"path": "state", "map": {"running": 1, "idle": 0, "stopped": 0, "fault": 0}}},
    "outputs": {"speed": "speed", "throughput": "throughput", "motor.current": "motor.current",
                "motor.temperature": "motor.temperature", "de:vibration": "hasBearing[location=de]/vibration",
                "de:vibrationBandBpfo": "hasBearing[location=de]/vibrationBandBpfo",
                "de:temperature": "hasBearing[location=de]/temperature",
                "nde:vibration": "hasBearing[location=nde]/vibration"},
}


def batches(machines: int, frames: int, count: int) -> list[Readings]:
    """The plant's readings, ``frames`` frames a batch (made before timing)."""
    plant = Plant(machines=machines, seed=1, speed=60.0, scenario=None)
    out = []
    for b in range(count):
        rows = []
        for f in range(frames):
            i = b * frames + f
            frame = plant.step(1.0, now_ms=T0_MS + i * 1000)
            rows += [(twin, prop, (T0_MS + i * 1000) * 1000, v) for twin, values in frame.records()
                     for prop, v in values.items()]
        out.append(Readings.from_rows(rows))
    return out


def run(simulations: list[dict[str, Any]], machines: int, data: list[Readings]) -> float:
    """Readings/s through the pipeline (the first two batches warm up and are not timed)."""
    p = build_platform(Settings(store="memory", simulations=simulations))
    p.models.add(builtin_documents(MODEL_SET))
    import_twins(p.twins, Plant(machines=machines, scenario=None).twins(), actor="bench")
    for r in data[:2]:
        p.pipeline.ingest_readings(r, transport="bench")
    n = sum(len(r) for r in data[2:])
    t = time.perf_counter()
    for r in data[2:]:
        p.pipeline.ingest_readings(r, transport="bench")
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--batches", type=int, default=30)
    a = ap.parse_args()
    data = batches(a.machines, a.frames, a.batches)
    without = run([], a.machines, data)
    with_ = run([SIMULATION], a.machines, data)
    print(json.dumps({"bench": "shadow", "machines": a.machines, "frames_per_batch": a.frames,
                      "batches": a.batches, "readings_per_s_without": round(without),
                      "readings_per_s_with_shadow": round(with_), "slowdown": round(without / with_, 2)}),
          flush=True)


if __name__ == "__main__":
    main()
