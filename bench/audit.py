"""Audit-chain benchmark: appends/s one at a time and batched, on the embedded store and PostgreSQL,
and verification speed (entries/s).

    python bench/audit.py                                  # embedded and PostgreSQL
    python bench/audit.py --single 500 --batched 20000 --batch 100 --stores embedded
    python bench/audit.py --pg postgresql://postgres@127.0.0.1:5432/test

Prints one JSON line. Single appends are one transaction each (SQLite: WAL with synchronous=FULL,
so each is a durable commit); batched appends chain ``--batch`` records per transaction. Seals come
every 100 entries as in production. Verification reads the whole chain and checks every hash and
seal. PostgreSQL runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvilling.backend.audit import SqlAudit  # noqa: E402
from tvilling.security.audit import Record  # noqa: E402


def record(i: int) -> Record:
    return Record(actor=f"user{i % 7}", action="twin.patch", target=f"twin:line-1-m{i % 40:02d}",
                  request_hash="ab" * 32, detail={"commands": 1, "positions": [i, i]})


def measure(store: SqlAudit, single: int, batched: int, batch: int) -> dict[str, Any]:
    t = time.perf_counter()
    for i in range(single):
        store.append(record(i))
    single_s = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, batched, batch):
        store.append_many([record(i) for i in range(start, min(start + batch, batched))])
    batched_s = time.perf_counter() - t
    t = time.perf_counter()
    report = store.verify()
    verify_s = time.perf_counter() - t
    if not report.ok:
        raise SystemExit(f"the benchmark's own chain does not verify: {report.summary()}")
    return {"appends_per_s_single": round(single / single_s), "appends_per_s_batched": round(batched / batched_s),
            "batch": batch, "entries": report.entries, "seals": report.seals,
            "verify_entries_per_s": round(report.entries / verify_s), "verify_s": round(verify_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=1000, help="appends of one record each")
    parser.add_argument("--batched", type=int, default=50_000, help="records appended in batches")
    parser.add_argument("--batch", type=int, default=100, help="records per batched append")
    parser.add_argument("--stores", default="embedded,postgresql")
    parser.add_argument("--pg", default=os.environ.get("TVILLING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "audit"}
    with tempfile.TemporaryDirectory() as folder:
        key = Path(folder) / "audit-signing.pem"
        if "embedded" in args.stores:
            store = SqlAudit(Path(folder) / "data" / "tvilling.db")
            try:
                out["embedded"] = measure(store, args.single, args.batched, args.batch)
            finally:
                store.close()
        if "postgresql" in args.stores:
            import psycopg

            schema = f"bench_audit_{uuid.uuid4().hex[:10]}"
            try:
                pg = SqlAudit(args.pg, schema=schema, key_path=key)
                try:
                    out["postgresql"] = measure(pg, args.single, args.batched, args.batch)
                finally:
                    pg.close()
            finally:
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(json.dumps(out))


if __name__ == "__main__":
    main()
