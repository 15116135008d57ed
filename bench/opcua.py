"""OPC UA ingest benchmark: notifications/s delivered to the sink from a local asyncua server.

A server in its own process changes N Double variables as fast as it can (round robin, each
write with a source timestamp); an :class:`OpcUaIngest` subscribed to all of them hands the
readings to a counting sink. Prints one JSON line: server writes/s, notifications/s delivered
to the sink, the share of writes that reached the sink, batches, mean batch size, latency from
source timestamp to the sink (p50/p95), the server-side overflow count and the client CPU share.

    python bench/opcua.py --vars 100 --seconds 10
    python bench/opcua.py --vars 1000 --seconds 10 --publishing-ms 50 --item-queue 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvilling.connect.opcua import OpcUaIngest, load_opcua_config  # noqa: E402
from tvilling.ingest.ports import IngestResult, RawMessage  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, n_vars: int, ready: Any, go: Any, stop: Any, writes: Any) -> None:
    """The server process: build N variables, then write them round robin until told to stop."""
    import logging

    from asyncua import ua
    from asyncua.server.server import Server

    logging.disable(logging.WARNING)

    async def main() -> None:
        server = Server()
        await server.init()
        server.set_endpoint(url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace("urn:tvilling:bench")
        folder = await server.nodes.objects.add_folder(idx, "Bench")
        nodes = [await folder.add_variable(idx, f"V{i:05d}", 0.0, varianttype=ua.VariantType.Double)
                 for i in range(n_vars)]
        ids = [n.nodeid for n in nodes]
        async with server:
            ready.set()
            while not go.is_set():
                await asyncio.sleep(0.01)
            count, value = 0, 0.0
            while not stop.is_set():
                for nid in ids:
                    value += 1.0
                    dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double),
                                      SourceTimestamp=datetime.now(UTC))  # type: ignore[arg-type]
                    await server.write_attribute_value(nid, dv)
                count += len(ids)
                writes.value = count
                await asyncio.sleep(0)  # let the server answer publish requests

    asyncio.run(main())


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0
        self.calls = 0
        self.latencies: list[float] = []
        self.counting = False

    async def ingest(self, envelopes: Any, *, raw: RawMessage | None = None) -> IngestResult:
        now = datetime.now(UTC)
        n = sum(len(e.values) for e in envelopes)
        if self.counting:
            self.readings += n
            self.calls += 1
            if len(self.latencies) < 200_000:
                step = max(1, len(envelopes) // 20)
                self.latencies.extend((now - e.ts).total_seconds() * 1000 for e in envelopes[::step])
        return IngestResult(accepted=n)

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        raise AssertionError(reason)


async def run(args: argparse.Namespace, url: str, go: Any, writes: Any) -> dict[str, Any]:
    cfg = load_opcua_config({
        "endpoint": url,
        "bindings": [{"node": f"Objects/Bench/V{i:05d}", "twin": f"T{i // 10:04d}", "property": f"p{i % 10}",
                      "sampling_ms": args.sampling_ms} for i in range(args.vars)],
        "publishing_ms": args.publishing_ms, "item_queue_size": args.item_queue, "batch_ms": args.batch_ms,
    })
    sink = CountingSink()
    async with OpcUaIngest(sink, cfg) as ingest:
        go.set()
        await asyncio.sleep(args.warmup)
        w0, c0, t0 = writes.value, time.process_time(), time.perf_counter()
        sink.counting = True
        await asyncio.sleep(args.seconds)
        sink.counting = False
        elapsed = time.perf_counter() - t0
        w1, cpu = writes.value, time.process_time() - c0
        stats = ingest.stats
    lat = sorted(sink.latencies)
    return {
        "bench": "opcua_ingest", "vars": args.vars, "seconds": round(elapsed, 2),
        "publishing_ms": args.publishing_ms, "sampling_ms": args.sampling_ms, "item_queue": args.item_queue,
        "server_writes_per_s": round((w1 - w0) / elapsed),
        "delivered_per_s": round(sink.readings / elapsed),
        "delivered_share": round(sink.readings / max(1, w1 - w0), 3),
        "sink_calls_per_s": round(sink.calls / elapsed, 1),
        "mean_batch": round(sink.readings / max(1, sink.calls), 1),
        "latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
        "latency_ms_p95": round(lat[int(len(lat) * 0.95)], 1) if lat else None,
        "server_overflows": stats.overflows, "queue_high_water": stats.queue_high_water,
        "client_cpu_share": round(cpu / elapsed, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vars", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--publishing-ms", type=float, default=50.0)
    ap.add_argument("--sampling-ms", type=float, default=0.0)
    ap.add_argument("--item-queue", type=int, default=100)
    ap.add_argument("--batch-ms", type=float, default=5.0)
    args = ap.parse_args()
    url = f"opc.tcp://127.0.0.1:{free_port()}/bench/"
    ctx = mp.get_context("spawn")
    ready, go, stop, writes = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    proc = ctx.Process(target=serve, args=(url, args.vars, ready, go, stop, writes), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise SystemExit("server did not start")
        result = asyncio.run(run(args, url, go, writes))
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
