"""Simulated plant benchmark: how many machines one core runs at 1 Hz per sensor in real time.

Prints one JSON line. The process pins itself to one CPU. For growing machine counts it
times one plant step in three parts — simulate (NumPy physics and sensor readings of all
machines), encode (one JSON telemetry message per twin: machine, two bearings, spindle,
plus the line) and publish (QoS 0 through gmqtt, then one QoS 1 barrier message whose
PUBACK says the broker has read everything before it) — fits cost = fixed + N × per
machine, and takes ``machines_realtime_1hz`` as the largest N whose step fits in
``--budget`` of the second (default 0.8, leaving room for commands and the loop). It then
runs that many machines on a 1 s schedule for ``--seconds`` and reports the worst step,
so the figure is measured, not only extrapolated.

    python bench/plant.py                                  # Mosquitto on 127.0.0.1:1883
    python bench/plant.py --broker none                    # simulate + encode only
    python bench/plant.py --broker embedded --seconds 10   # the in-process amqtt broker (demo mode)

``demo_latency`` (``--demo-seconds``, 0 to skip): a real ``tvilling demo`` process (not pinned;
embedded broker and store, 4 machines) is watched through the dashboard's own live stream
(``/api/stream``) for that many seconds; for every twin update the latency is the time from
the plant's reading (its timestamp, taken when the plant steps) to the update's arrival at
the stream client — what the dashboard receives, before the browser draws it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import Any

from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import SessionOptions, parse_url
from tvilling.plant import EmbeddedBroker, Plant

SIZES = (10, 100, 1000, 3000, 10000)


class Publisher:
    """Publishes frames through the project's gmqtt transport (or nowhere, with ``url=None``)."""

    def __init__(self, url: str | None, qos: int, protocol_version: int) -> None:
        self.url, self.qos = url, qos
        self.barrier = f"bench/plant/{uuid.uuid4().hex[:8]}/barrier"
        self.transport = (GmqttTransport(parse_url(url), SessionOptions(
            client_id=f"bench-plant-{uuid.uuid4().hex[:8]}", clean_start=True, session_expiry_s=0,
            protocol_version=protocol_version)) if url else None)

    async def __aenter__(self) -> Publisher:
        if self.transport is not None:
            await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.transport is not None:
            await self.transport.__aexit__(None, None, None)

    async def publish(self, payloads: list[tuple[str, bytes]]) -> None:
        if self.transport is None:
            return
        for twin, body in payloads:
            await self.transport.publish(f"tvilling/{twin}/telemetry", body, qos=self.qos)
        await self.transport.publish(self.barrier, b"", qos=1)  # the broker has read all of the above


async def time_step(plant: Plant, pub: Publisher) -> dict[str, float]:
    t0 = time.perf_counter()
    frame = plant.step(1.0)
    t1 = time.perf_counter()
    payloads = frame.payloads()
    t2 = time.perf_counter()
    await pub.publish(payloads)
    t3 = time.perf_counter()
    return {"simulate": t1 - t0, "encode": t2 - t1, "publish": t3 - t2, "total": t3 - t0,
            "messages": float(len(payloads))}


async def profile(pub: Publisher, sizes: tuple[int, ...], steps: int) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for n in sizes:
        plant = Plant(machines=n, seed=1, speed=60.0, line=f"bench{uuid.uuid4().hex[:6]}")
        await time_step(plant, pub)  # warm up
        runs = [await time_step(plant, pub) for _ in range(steps)]
        out[n] = {k: min(r[k] for r in runs) if k != "messages" else runs[0][k] for k in runs[0]}
        if out[n]["total"] > 2.0:  # far past real time: larger sizes say nothing new
            break
    return out


def fit(costs: dict[int, dict[str, float]]) -> tuple[float, float]:
    """Least-squares ``total = fixed + n × per_machine`` over the sizes measured."""
    ns = list(costs)
    ts = [costs[n]["total"] for n in ns]
    mean_n, mean_t = sum(ns) / len(ns), sum(ts) / len(ts)
    var = sum((n - mean_n) ** 2 for n in ns) or 1.0
    per = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts, strict=True)) / var
    return max(mean_t - per * mean_n, 0.0), per


async def realtime(pub: Publisher, machines: int, seconds: float, budget: float) -> dict[str, Any]:
    """Run ``machines`` at 1 Hz for ``seconds``; a step must finish within ``budget`` of its second."""
    plant = Plant(machines=machines, seed=2, speed=60.0, line=f"bench{uuid.uuid4().hex[:6]}")
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    worst, total, late, steps = 0.0, 0.0, 0, 0
    end = loop.time() + seconds
    while loop.time() < end:
        cost = (await time_step(plant, pub))["total"]
        worst, total, steps = max(worst, cost), total + cost, steps + 1
        late += cost > budget
        next_at += 1.0
        await asyncio.sleep(max(next_at - loop.time(), 0.0))
    return {"machines": machines, "steps": steps, "worst_step_s": round(worst, 4),
            "mean_step_s": round(total / max(steps, 1), 4), "late_steps": late, "ok": late == 0}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    broker_ctx: Any = contextlib.nullcontext()
    url: str | None = args.broker
    protocol = 5
    if args.broker == "none":
        url = None
    elif args.broker == "embedded":
        broker_ctx = EmbeddedBroker()
        protocol = 4
    async with broker_ctx as embedded:
        if embedded is not None:
            url = embedded.url
        async with Publisher(url, args.qos, protocol) as pub:
            sizes = tuple(n for n in SIZES if n <= args.max_machines)
            costs = await profile(pub, sizes, args.steps)
            fixed, per = fit(costs)
            estimate = int((args.budget - fixed) / per) if per > 0 else args.max_machines
            estimate = max(1, min(estimate, args.max_machines))
            checks = []
            for _ in range(4):  # measure it; step down 15 % until a run keeps real time
                check = await realtime(pub, estimate, args.seconds, args.budget)
                checks.append(check)
                if check["ok"] or estimate == 1:
                    break
                estimate = max(1, int(estimate * 0.85))
    return {
        "bench": "plant",
        "machines_realtime_1hz": checks[-1]["machines"] if checks[-1]["ok"] else 0,
        "budget_s": args.budget,
        "broker": args.broker if args.broker in ("none", "embedded") else url,
        "qos": args.qos,
        "messages_per_step": "4 per machine + 1 for the line",
        "signals_per_machine": 22,
        "step_ms": {str(n): {k: round(v * 1000, 3) if k != "messages" else int(v) for k, v in c.items()}
                    for n, c in costs.items()},
        "fit": {"fixed_ms": round(fixed * 1000, 3), "per_machine_us": round(per * 1e6, 2)},
        "realtime_runs": checks,
        "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "demo_latency": demo_latency(args.demo_seconds) if args.demo_seconds > 0 else None,
    }


def demo_latency(seconds: float) -> dict[str, Any]:
    """Plant reading → update on the dashboard's live stream, p50/p99 over ``seconds`` of a running demo."""
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request
    from datetime import datetime

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cpus = os.cpu_count() or 1

    def unpin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(cpus)))

    tmp = tempfile.mkdtemp(prefix="bench-demo-")
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "demo", "--port", str(port), "--data-dir", tmp,
                             "--duration", str(seconds + 60), "--learn", "10", "--fault-at", "1e6", "--manual"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=unpin)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the demo did not start") from None
                time.sleep(0.2)
        time.sleep(3)  # the plant's first readings
        end = time.monotonic() + seconds
        with urllib.request.urlopen(f"{base}/api/stream?types=TwinPatched", timeout=10) as stream:
            for raw in stream:
                line = raw.decode()
                if line.startswith("data: "):
                    arrived = time.time()
                    doc = json.loads(line[6:])
                    stamps = doc.get("payload", {}).get("metadata", {}).get("reported", {})
                    times = [v["time"] for v in stamps.values() if isinstance(v, dict) and "time" in v]
                    if doc.get("actor", "").startswith("ingest") and times:
                        newest = max(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times)
                        latencies.append((arrived - newest) * 1000)
                if time.monotonic() > end:
                    break
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat = sorted(latencies)
    if not lat:
        return {"updates": 0}
    return {"updates": len(lat), "seconds": seconds, "p50_ms": round(lat[len(lat) // 2], 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1), "max_ms": round(lat[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                        help="MQTT broker URL, 'embedded' (in-process amqtt) or 'none' (no publishing)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the real-time check run")
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size (the best is kept)")
    parser.add_argument("--budget", type=float, default=0.8, help="share of each second a step may use")
    parser.add_argument("--max-machines", type=int, default=20000)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    parser.add_argument("--demo-seconds", type=float, default=30.0,
                        help="watch a running demo this long for its reading → dashboard latency (0: skip)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
