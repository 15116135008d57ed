"""Generated maintenance-planning problems of a plant of any size, for benchmarks and studies.

A plant of ``n_assets`` machines on lines of ten; each line stops for eight hours once a week
(its own weekday) and the whole plant on Sundays; three 15-minute shift changes a day are
plant-wide windows too. About a fifth of the machines are degrading (median remaining life of
days to weeks), the rest healthy. One technician per 25 machines (at least four), on early or
late weekday shifts, a few also on Saturdays; four crafts, some tasks needing two. Each task
uses one spare part, some out of stock with lead times of one to five days. Same seed, same plant.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from tvilling.planning.failure import fit_failure
from tvilling.planning.maintenance_types import (
    Asset,
    Interval,
    MaintenanceProblem,
    PartNeed,
    PartStock,
    TaskType,
    Technician,
    Window,
)

MODELS = ("pump", "motor", "gearbox", "conveyor", "press")
CRAFTS = ("mech", "elec", "hydraulic", "instr")
EPOCH = datetime(2026, 1, 5)  # a Monday


def generate_problem(n_assets: int, days: int = 30, seed: int = 0, *, at_risk: float = 0.2) -> MaintenanceProblem:
    """A reproducible plant of ``n_assets`` machines planned over ``days`` days from a Monday 00:00."""
    rng = np.random.default_rng(seed)
    horizon = 24.0 * days
    tasks: list[TaskType] = []
    parts: list[PartStock] = []
    for k, model in enumerate(MODELS):
        roles = (CRAFTS[k % 4],) if k % 2 == 0 else (CRAFTS[k % 4], CRAFTS[(k + 1) % 4])
        part = f"{model}-kit"
        tasks.append(TaskType("overhaul", model, float(2 + 2 * (k % 3)), roles, float(rng.uniform(800, 3000)),
                              float(rng.uniform(4000, 15000)), float(rng.uniform(12, 48)), (PartNeed(part, 1),)))
        stock = int(rng.integers(0, 4)) if k != 2 else 0
        parts.append(PartStock(part, stock * max(1, n_assets // 100), float(rng.choice([24.0, 72.0, 120.0]))))
    n_lines = max(1, n_assets // 10)
    stop_costs = {f"line-{i}": float(rng.uniform(300, 3000)) for i in range(n_lines)}
    assets: list[Asset] = []
    for i in range(n_assets):
        line = f"line-{i // 10}" if i // 10 < n_lines else f"line-{n_lines - 1}"
        critical = rng.random() < 0.6
        if rng.random() < at_risk:
            p50 = float(rng.uniform(48.0, horizon * 1.5))
        else:
            p50 = float(rng.uniform(horizon * 2, horizon * 20))
        spread = float(rng.uniform(0.25, 0.6))
        dist = fit_failure(p50, p50 * (1 - spread), p50 * (1 + spread * rng.uniform(0.6, 1.4)))
        assets.append(Asset(f"m{i:04d}", MODELS[i % len(MODELS)], dist, (line,) if critical else (),
                            float(rng.uniform(20, 200))))
    n_tech = max(4, n_assets // 25)
    technicians: list[Technician] = []
    for t in range(n_tech):
        skills = {CRAFTS[t % 4]}
        if rng.random() < 0.5:
            skills.add(CRAFTS[int(rng.integers(0, 4))])
        early = (t // 4) % 2 == 0  # every craft on both shifts
        shifts = []
        for day in range(days):
            weekday = day % 7
            if weekday < 5 or (weekday == 5 and t % 5 == 0):
                start = 24.0 * day + (6.0 if early else 14.0)
                shifts.append(Interval(start, start + 8.0))
            if weekday == 6 and t % 3 == 0:
                shifts.append(Interval(24.0 * day + 6.0, 24.0 * day + 18.0))
        technicians.append(Technician(f"tech-{t:03d}", tuple(sorted(skills)), tuple(shifts)))
    windows: list[Window] = []
    for day in range(days):
        weekday = day % 7
        for h in (6.0, 14.0, 22.0):
            windows.append(Window(f"shift-{day}-{int(h)}", 24.0 * day + h - 0.25, 24.0 * day + h, "shift-change"))
        if weekday == 6:
            windows.append(Window(f"sunday-{day}", 24.0 * day, 24.0 * day + 24.0, "weekend"))
        for i in range(n_lines):
            if i % 6 == weekday:
                windows.append(Window(f"stop-line-{i}-{day}", 24.0 * day + 6.0, 24.0 * day + 14.0, "planned-stop",
                                      (f"line-{i}",)))
    return MaintenanceProblem(now=0.0, horizon_h=horizon, assets=tuple(assets), tasks=tuple(tasks),
                              technicians=tuple(technicians), parts=tuple(parts), windows=tuple(windows),
                              stop_costs=stop_costs, churn_penalty=200.0, step_h=1.0, epoch=EPOCH)
