"""Ingest benchmark: batched, in-process readings through the whole pipeline into twin state and history.

Prints one JSON line: readings/s through validation, cleaning (duplicates, order, spikes,
stale), history append and twin-state events, for the embedded store (SQLite + DuckDB)
and, with --pg, for PostgreSQL. The process is pinned to one core, so the figure is
per core.

    python bench/ingest.py --readings 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_platform import bench_platform  # noqa: E402
from tvilling.core.readings import Readings  # noqa: E402
from tvilling.models.builtin import builtin_documents  # noqa: E402

BEARING = "dtmi:tvilling:example:Bearing;1"


def batches(twins: int, per_batch: int, total: int, start_us: int) -> Any:
    """Bearing telemetry (temperature, vibration) at 1 Hz per twin, ``per_batch`` readings a batch."""
    rng = np.random.default_rng(3)
    ids = np.array([f"B{i:05d}" for i in range(twins)], dtype=object)
    steps = per_batch // (2 * twins)
    sent, t = 0, 0
    while sent < total:
        ts = start_us + (t + np.arange(steps, dtype=np.int64)) * 1_000_000
        t += steps
        twin = np.repeat(ids, steps)
        tt = np.tile(ts, twins)
        temp = 60 + rng.standard_normal(twins * steps)
        vib = 1 + 0.05 * rng.standard_normal(twins * steps)
        yield Readings(np.concatenate([twin, twin]),
                       np.concatenate([np.full(len(twin), "temperature", dtype=object),
                                       np.full(len(twin), "vibration", dtype=object)]),
                       np.concatenate([tt, tt]), np.concatenate([temp, vib]))
        sent += 2 * twins * steps


def run(store: str, total: int, twins: int, per_batch: int, pg: str) -> dict[str, Any]:
    with bench_platform(store, pg) as platform:
        platform.models.add(builtin_documents("plant"))
        from tvilling.twins.importer import import_twins

        import_twins(platform.twins, ({"id": f"B{i:05d}", "model": BEARING} for i in range(twins)))
        pipe = platform.pipeline
        start_us = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
        data = list(batches(twins, per_batch, total, start_us))
        now = datetime.fromtimestamp((start_us + 10**12) / 1e6, tz=UTC)
        pipe.ingest_readings(data[0], transport="bench", now=now)  # warm-up batch, not timed
        accepted = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for batch in data[1:]:
            accepted += pipe.ingest_readings(batch, transport="bench", now=now).accepted
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        return {"store": store, "readings": accepted, "seconds": round(wall, 2),
                "readings_per_s": round(accepted / wall), "cpu_s": round(cpu, 2),
                "readings_per_cpu_s": round(accepted / cpu), "history_rows": platform.history.count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=5_000_000)
    ap.add_argument("--twins", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100_000, help="readings per batch")
    ap.add_argument("--pg", default=None, help="also measure PostgreSQL at this URL")
    ap.add_argument("--cores", default="0", help="CPU cores to pin to (default one core: 0)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    out: dict[str, Any] = {"bench": "ingest", "batch": args.batch, "twins": args.twins,
                           "cores": args.cores, "goal_readings_per_s_per_core": 500_000}
    out["embedded"] = run("embedded", args.readings, args.twins, args.batch, args.pg or "")
    if args.pg:
        out["postgres"] = run("postgres", args.readings, args.twins, args.batch, args.pg)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
