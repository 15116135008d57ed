"""What online analytics cost on ingest: the same batches with and without a detector on every twin.

    python bench/analytics.py [--twins 500] [--rows 5] [--batches 30]

Prints one JSON line: in-process ingest (memory store) of batches holding ``rows`` rows of four
SKAB-testbed signals for each of ``twins`` twins, readings/s without analytics and with a
multivariate detector bound to the model (fitted per twin on its first 50 rows, then scoring).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.models.builtin import builtin_documents

INPUTS = ["accelerometer1RMS", "current", "pressure", "temperature"]
SPEC = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
        "inputs": INPUTS, "train_rows": 50}


def run(analytics: list[dict], twins: int, rows: int, batches: int) -> float:
    with build_platform(Settings(store="memory", analytics=analytics)) as p:
        p.models.add(builtin_documents("datasets"))
        for i in range(twins):
            p.twins.put(f"t{i}", {"model": "dtmi:tvilling:datasets:SkabTestbed;1"})
        rng = np.random.default_rng(0)
        t0 = 1_790_000_000_000_000
        ids = np.array([f"t{i}" for i in range(twins)], dtype=object)
        total, took = 0, 0.0
        for b in range(batches):
            n = twins * rows * len(INPUTS)
            r = Readings(np.repeat(ids, rows * len(INPUTS)), np.tile(np.array(INPUTS, dtype=object), twins * rows),
                         np.tile(np.repeat(t0 + (b * rows + np.arange(rows)) * 1_000_000, len(INPUTS)),
                                 twins).astype(np.int64), rng.normal(size=n) + 10)
            started = time.perf_counter()
            p.pipeline.ingest_readings(r, transport="bench")
            took += time.perf_counter() - started
            total += n
        return total / took


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--twins", type=int, default=500)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--batches", type=int, default=30)
    a = ap.parse_args()
    without = run([], a.twins, a.rows, a.batches)
    with_ = run([SPEC], a.twins, a.rows, a.batches)
    print(json.dumps({"bench": "analytics", "twins": a.twins, "rows_per_twin_per_batch": a.rows,
                      "batches": a.batches, "readings_per_s_without": round(without),
                      "readings_per_s_with_detector": round(with_), "slowdown": round(without / with_, 2)}))


if __name__ == "__main__":
    main()
