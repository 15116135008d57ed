"""Twin-store benchmark: load N twins shaped like a plant, then time reads and queries.

Prints one JSON line with, per store: load time, get-by-id p50/p95, a filtered query
page p50/p95, a 2-hop graph query p50/p95 and resident memory per loaded twin.

    python bench/twins.py --twins 1000000 --store embedded
    python bench/twins.py --twins 1000000 --store postgres --pg postgresql://postgres@127.0.0.1:5432/test

The plant: lines of 10 machines; each machine has 4 bearings and 1 spindle (61 twins a line).
Everything goes through the twin service (validation included), in-process.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_platform import bench_platform  # noqa: E402
from tvilling.models.builtin import builtin_documents  # noqa: E402
from tvilling.twins.importer import import_twins  # noqa: E402

NS = "dtmi:tvilling:example:"
LINE, MACHINE, BEARING, SPINDLE = (f"{NS}{n};1" for n in ("ProductionLine", "Machine", "Bearing", "Spindle"))
PER_LINE = 61


def plant(n_twins: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Twins in an order where every relationship target comes before its source."""
    rng = random.Random(seed)
    lines = max(1, n_twins // PER_LINE)
    for li in range(lines):
        machines = []
        for mi in range(10):
            m = f"L{li:06d}-M{mi:02d}"
            rels = []
            for bi in range(4):
                b = f"{m}-B{bi}"
                yield {"id": b, "model": BEARING,
                       "reported": {"temperature": round(rng.uniform(40.0, 100.0), 2),
                                    "vibration": round(rng.uniform(0.1, 3.0), 3)},
                       "attributes": {"serial": f"SKF-{li}-{mi}-{bi}"}}
                rels.append({"id": f"b{bi}", "name": "hasBearing", "target": b,
                             "properties": {"location": "drive-end" if bi % 2 == 0 else "non-drive-end"}})
            s = f"{m}-S"
            yield {"id": s, "model": SPINDLE, "reported": {"speed": round(rng.uniform(500, 3000), 1)}}
            rels.append({"id": "s", "name": "hasSpindle", "target": s})
            yield {"id": m, "model": MACHINE, "reported": {"state": rng.choice(["running", "idle"])},
                   "desired": {"speedSetpoint": 1500.0}, "relationships": rels}
            machines.append(m)
        yield {"id": f"L{li:06d}", "model": LINE,
               "relationships": [{"id": f"m{i}", "name": "hasMachine", "target": m, "properties": {"position": i}}
                                 for i, m in enumerate(machines)]}


def pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, round(q * (len(samples) - 1)))]


def timed(fn: Any, runs: int) -> dict[str, float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(pct(out, 0.5), 3), "p95_ms": round(pct(out, 0.95), 3),
            "mean_ms": round(statistics.fmean(out), 3)}


def run(store: str, n: int, pg: str, runs: int) -> dict[str, Any]:
    proc = psutil.Process()
    with bench_platform(store, pg) as platform:
        platform.models.add(builtin_documents("plant"))
        gc.collect()
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()

        def progress(done: int) -> None:
            if done % 100_000 < 10_000:
                print(f"  {store}: {done} twins loaded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

        loaded = import_twins(platform.twins, plant(n), batch_size=10_000, progress=progress)
        load_s = time.perf_counter() - t0
        svc = platform.twins
        rng = random.Random(1)
        lines = loaded // PER_LINE
        ids = [f"L{rng.randrange(lines):06d}-M{rng.randrange(10):02d}-B{rng.randrange(4)}" for _ in range(runs)]
        it = iter(ids)
        get = timed(lambda: svc.get(next(it)), runs)

        def page() -> None:
            start = f"L{rng.randrange(lines):06d}"
            q = {"model": BEARING, "where": [["reported.temperature", ">", 80]], "limit": 100}
            from tvilling.twins.query import encode_cursor

            q["cursor"] = encode_cursor(start)
            assert len(svc.query(q).items) > 0

        filtered = timed(page, runs)

        def hop2() -> None:
            line = f"L{rng.randrange(lines):06d}"
            q = {"match": [{"model": LINE, "where": [["id", "=", line]]}, {"via": "hasMachine"},
                           {"via": "hasBearing", "model": BEARING, "where": [["reported.temperature", ">", 80]]}]}
            svc.query(q)

        graph = timed(hop2, runs)
        # every twin read once more: what does holding them "hot" cost this process?
        gc.collect()
        rss1 = proc.memory_info().rss
        return {
            "bench": "twins",
            "store": store,
            "twins": loaded,
            "load_s": round(load_s, 1),
            "load_twins_per_s": round(loaded / load_s),
            "get": get,
            "filtered_page": filtered,
            "graph_2hop": graph,
            "rss_bytes_per_twin": round((rss1 - rss0) / loaded, 1),
            "runs": runs,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=1_000_000)
    ap.add_argument("--store", choices=["embedded", "postgres", "both"], default="both")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()
    stores = ["embedded", "postgres"] if args.store == "both" else [args.store]
    out: dict[str, Any] = {"bench": "twins", "twins_requested": args.twins, "runs": args.runs}
    for store in stores:
        out[store] = run(store, args.twins, args.pg, args.runs)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
