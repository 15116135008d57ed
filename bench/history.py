"""History-store benchmark: append throughput, one series' range read, 1-day aggregates raw vs rollup, size.

Prints one JSON line with figures per store.

    python bench/history.py                      # 10M rows, batches of 100k, DuckDB and PostgreSQL
    python bench/history.py --rows 2000000 --stores duckdb
    python bench/history.py --pg postgresql://postgres@127.0.0.1:5432/test

The data: ``--series`` series (twins of 4 properties) at 1 Hz, values with 2 decimals, in
arrival order (each batch holds every series' next readings). With 100 series and 10M rows
each series has 100k points, so a day of 1 Hz data of one series is there to aggregate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvilling.history import DAY_US, HOUR_US, Readings, open_history  # noqa: E402

T0 = 1_767_225_600_000_000
PROPS = np.array(["temperature", "vibration", "speed", "load"], dtype=object)


def batches(rows: int, batch: int, n_series: int, seed: int = 1) -> list[Readings]:
    rng = np.random.default_rng(seed)
    twins = np.repeat(np.array([f"L{i // 10:04d}-M{i % 10:02d}" for i in range(n_series // 4)], dtype=object), 4)
    props = np.tile(PROPS, n_series // 4)
    out = []
    for start in range(0, rows, batch):
        k = np.arange(start, min(start + batch, rows))
        s = k % len(twins)
        out.append(Readings(twins[s], props[s], (T0 + (k // len(twins)) * 1_000_000).astype(np.int64),
                            np.round(20 + 5 * np.sin(k / 5000) + rng.normal(0, 0.5, len(k)), 2)))
    return out


def timed(fn: Any, repeat: int = 7) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, result


def run(kind: str, target: str, data: list[Readings], rows: int, pg_schema: str | None) -> dict[str, Any]:
    store = open_history(target, schema=pg_schema) if pg_schema else open_history(target)
    t0 = time.perf_counter()
    for b in data:
        store.append(b)
    appended = time.perf_counter() - t0
    if hasattr(store, "checkpoint"):
        store.checkpoint()  # count the WAL folding into the file as part of the ingest cost
    total = time.perf_counter() - t0
    twin, prop = data[0].twin[0], data[0].prop[0]
    day = (T0, T0 + DAY_US)
    range_ms, page = timed(lambda: store.range(twin, prop, *day, limit=1000))
    range_all_ms, n_all = timed(lambda: _page_all(store, twin, prop, *day, 10_000), repeat=3)
    raw_ms, raw = timed(lambda: store.aggregate(twin, prop, *day, HOUR_US, tier="raw"))
    roll_ms, roll = timed(lambda: store.aggregate(twin, prop, *day, HOUR_US))
    last_ms, _ = timed(lambda: store.last_many(twin))
    t1 = time.perf_counter()
    merged = store.compact()
    compact_s = time.perf_counter() - t1
    roll_c_ms, _ = timed(lambda: store.aggregate(twin, prop, *day, HOUR_US))
    size = _size(kind, store, target)
    out = {
        "append_rows_per_s": round(rows / total),
        "append_rows_per_s_before_checkpoint": round(rows / appended),
        "range_1000_points_ms": round(range_ms, 2),
        "range_1_day_all_points_ms": round(range_all_ms, 1), "points_in_1_day": n_all,
        "aggregate_1_day_hourly_raw_ms": round(raw_ms, 2),
        "aggregate_1_day_hourly_rollup_ms": round(roll_ms, 2),
        "aggregate_1_day_hourly_rollup_after_compact_ms": round(roll_c_ms, 2),
        "rollup_equals_raw": [(b.start_us, b.count, b.min, b.max, b.last) for b in raw]
        == [(b.start_us, b.count, b.min, b.max, b.last) for b in roll], "hourly_buckets": len(raw),
        "last_many_ms": round(last_ms, 2),
        "compact_s": round(compact_s, 2), "rollup_rows_merged": merged,
        "bytes_per_million_rows": round(size / rows * 1e6) if size else None,
    }
    assert page and len(page) == 1000
    store.close()
    return out


def _page_all(store: Any, twin: str, prop: str, start: int, end: int, limit: int) -> int:
    n, after = 0, None
    while page := store.range(twin, prop, start, end, limit=limit, after_us=after):
        n += len(page)
        after = page[-1].ts_us
    return n


def _size(kind: str, store: Any, target: str) -> int | None:
    if kind == "duckdb":
        return sum(p.stat().st_size for p in Path(target).parent.glob(Path(target).name + "*"))
    with store._tx("measuring") as c:  # a benchmark may look inside
        row = c.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", [store.schema]).fetchone()
    return int(row[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--stores", default="duckdb,postgres")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    data = batches(args.rows, args.batch, args.series)
    result: dict[str, Any] = {"bench": "history", "rows": args.rows, "batch": args.batch, "series": args.series}
    for kind in args.stores.split(","):
        if kind == "duckdb":
            with tempfile.TemporaryDirectory() as tmp:
                result["duckdb"] = run(kind, str(Path(tmp) / "history.duckdb"), data, args.rows, None)
        elif kind == "postgres":
            import psycopg

            schema = f"bench_history_{uuid.uuid4().hex[:8]}"
            try:
                result["postgres"] = run(kind, args.pg, data, args.rows, schema)
            finally:
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(json.dumps(result))


if __name__ == "__main__":
    main()
