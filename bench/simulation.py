"""Simulation benchmark: the machine model run vectorised over a fleet and over Monte-Carlo samples.

Prints one JSON line:

* ``twin_steps_per_s``: machine-model steps per second (one step of one machine = one twin-step) for
  a fleet of ``--machines`` machines (goal ≥ 1,000,000 on one core);
* ``fleet``: ``--fleet`` machines simulated 30 days at 1-minute steps (goal < 60 s on one core);
* ``monte_carlo``: ``--samples`` samples of one machine over 7 days at 1-minute steps, with parameter
  uncertainty and process noise, reduced to p10/p50/p90 bands of the drive-end vibration (goal < 5 s).

The process is pinned to one core, so the figures are per core.

    python bench/simulation.py [--machines 10000] [--fleet 1000] [--days 30] [--samples 100] [--mc-days 7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvilling.simulation.machine import MachineModel  # noqa: E402

STEP = 60.0  # s: 1-minute steps


def fleet_inputs(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A fleet at mixed speeds and loads."""
    return {"speedSetpoint": rng.choice([900.0, 1200.0, 1500.0], n), "spindle:load": rng.uniform(60.0, 85.0, n)}


def throughput(machines: int, steps: int) -> dict[str, Any]:
    """Twin-steps per second of the machine model over a fleet of ``machines``."""
    model = MachineModel()
    inputs = fleet_inputs(machines, np.random.default_rng(1))
    runs = model.start(machines, start_values=model.steady_start(machines, inputs))
    model.step(runs, STEP, inputs)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        model.step(runs, STEP, inputs)
    took = time.perf_counter() - t0
    return {"machines": machines, "steps": steps, "seconds": round(took, 3),
            "twin_steps_per_s": round(machines * steps / took)}


def fleet(machines: int, days: float) -> dict[str, Any]:
    """``machines`` machines over ``days`` at 1-minute steps; a few of them with a growing bearing defect."""
    rng = np.random.default_rng(2)
    model = MachineModel()
    inputs = fleet_inputs(machines, rng)
    seeds = np.where(rng.random(machines) < 0.05, 0.15, 0.0)
    parameters = {"de:defectSeed": seeds, "defectRate": rng.uniform(0.005, 0.02, machines)}
    runs = model.start(machines, parameters, model.steady_start(machines, inputs, parameters))
    steps = int(days * 86_400 / STEP)
    produced = np.zeros(machines)
    t0 = time.perf_counter()
    for _ in range(steps):
        produced += model.step(runs, STEP, inputs)["throughput"]
    took = time.perf_counter() - t0
    failed = int(model.state_values(runs)["fault"].sum())
    return {"machines": machines, "days": days, "steps": steps, "seconds": round(took, 2),
            "twin_steps_per_s": round(machines * steps / took), "failed": failed,
            "parts": round(float(produced.sum() * STEP / 3600.0)), "goal_seconds": 60}


def monte_carlo(samples: int, days: float) -> dict[str, Any]:
    """One machine with a bearing defect, ``samples`` samples over ``days``: its calibrated parameters'
    uncertainty (wear life, defect rate, winding rise) and process noise on wear and defect."""
    rng = np.random.default_rng(3)
    model = MachineModel()
    parameters = {"wearLife": rng.normal(20_000.0, 2_000.0, samples),
                  "defectRate": np.clip(rng.normal(0.01, 0.002, samples), 0.0, None),
                  "motorRise": rng.normal(55.0, 2.0, samples), "de:defectSeed": 0.15}
    inputs = {"speedSetpoint": 1500.0, "spindle:load": 75.0}
    steps = int(days * 86_400 / STEP)
    t0 = time.perf_counter()
    runs = model.start(samples, parameters, model.steady_start(samples, inputs, parameters),
                       noise={"de:defect": 1e-4, "de:wear": 1e-5}, rng=rng)
    vibration = np.empty((steps, samples))
    for k in range(steps):
        vibration[k] = model.step(runs, STEP, inputs)["de:vibration"]
    bands = np.percentile(vibration, [10, 50, 90], axis=1)
    failed = model.state_values(runs)["fault"]
    took = time.perf_counter() - t0
    return {"samples": samples, "days": days, "steps": steps, "seconds": round(took, 3),
            "final_vibration_p10_p50_p90": [round(float(b[-1]), 4) for b in bands],
            "failure_probability": round(float(failed.mean()), 3), "goal_seconds": 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--machines", type=int, default=10_000, help="fleet size of the throughput figure")
    ap.add_argument("--steps", type=int, default=200, help="steps of the throughput figure")
    ap.add_argument("--fleet", type=int, default=1000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--mc-days", type=float, default=7.0)
    ap.add_argument("--cores", default="0", help="CPU cores to pin to (default one core: 0)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    out: dict[str, Any] = {"bench": "simulation", "model": "machine", "step_s": STEP, "cores": args.cores,
                           "goal_twin_steps_per_s_per_core": 1_000_000}
    out["throughput"] = [throughput(args.machines, args.steps), throughput(1000, args.steps)]
    out["twin_steps_per_s"] = max(r["twin_steps_per_s"] for r in out["throughput"])
    out["fleet"] = fleet(args.fleet, args.days)
    out["monte_carlo"] = monte_carlo(args.samples, args.mc_days)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
