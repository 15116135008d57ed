"""MQTT end to end: a publisher process → Mosquitto → Tvilling's MQTT ingest → stored twin state and history.

Prints one JSON line with, in the same run and through the same broker:

* ``raw``: broker → subscriber messages/s of the same client library (gmqtt, acknowledging
  after its coroutine handler returns), nothing stored. MqttIngest no longer takes that
  path (it parses PUBLISH packets itself, without a task per message, and acknowledges
  a stored batch in one write), so ``raw_own_transport`` also gives the rate of that
  batch transport path with nothing stored, and the ratio to it;
* ``end_to_end``: messages/s (and readings/s) from the publisher into durably stored twin
  state and history (embedded store), and the ratio to ``raw`` (goal ≥ 0.5);
* ``latency``: at a paced 10,000 messages/s, milliseconds from publish to the twin's state
  updated (the pipeline's state commit of the message's batch returned), p50 and p99 (goal
  p99 < 50 ms); ``latency.stored_and_acked`` is the same to the end of the whole ingest call
  (state and history stored; the transport acknowledges right after).

    python bench/mqtt_e2e.py --messages 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import mqtt_raw as raw  # noqa: E402
from tvilling.app import build_platform  # noqa: E402
from tvilling.config import Settings  # noqa: E402
from tvilling.connect.mqtt import MqttIngest, SessionOptions, parse_url  # noqa: E402
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport  # noqa: E402
from tvilling.core.envelope import Envelope  # noqa: E402
from tvilling.ingest.ports import IngestResult, RawMessage  # noqa: E402
from tvilling.models.builtin import builtin_documents  # noqa: E402

TWIN = "B1"
TOPIC = f"tvilling/{TWIN}/telemetry"


class TimedSink:
    """Our ingest service, counting what it stored and (optionally) each message's latency."""

    def __init__(self, inner: Any, *, latency: bool) -> None:
        self.inner = inner
        self.latency = latency
        self.messages = 0
        self.accepted = 0
        self.first = 0.0
        self.last = 0.0
        self.lat_ms: list[float] = []
        self.state_ms: list[float] = []
        self.batches = 0
        self.cpu_s = 0.0  # CPU time of this process (all threads) during the run

    async def ingest(self, envelopes: Sequence[Envelope], *, raw: RawMessage | None = None,
                     origins: Sequence[RawMessage | None] | None = None) -> IngestResult:
        res: IngestResult = await self.inner.ingest(envelopes, raw=raw, origins=origins)
        now = time.time() * 1000
        t = time.perf_counter()
        if not self.messages:
            self.first = t
        self.last = t
        self.messages += len(envelopes)
        self.accepted += res.accepted
        if self.latency:
            self.lat_ms.extend(now - e.ts.timestamp() * 1000 for e in envelopes)
        return res

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        await self.inner.reject(raw, reason, rule=rule)

    def state_committed(self, readings: Any) -> None:
        """Pipeline hook, right after a batch's state commit: one latency per message (its unique timestamp)."""
        if self.latency:
            now_us = time.time() * 1e6
            self.state_ms.extend(((now_us - np.unique(readings.ts)) / 1000).tolist())


def publisher(host: str, port: int, n: int, kind: str, rate: float = 0.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, raw.__file__, "--publish", f"{host}:{port}", "--messages", str(n),
                             "--qos", "1", "--topic", TOPIC, "--payload", kind, "--rate", str(rate)])


def end_to_end(host: str, port: int, n: int, kind: str, rate: float = 0.0, **options: Any) -> TimedSink:
    with tempfile.TemporaryDirectory(prefix="tvilling-bench-e2e-") as tmp:
        platform = build_platform(Settings(data_dir=Path(tmp)))
        try:
            platform.models.add(builtin_documents("plant"))
            platform.twins.put(TWIN, {"model": "dtmi:tvilling:example:Bearing;1"})
            sink = TimedSink(platform.ingest, latency=kind == "now")
            platform.pipeline.state_hooks.append(sink.state_committed)

            async def main() -> None:
                async with MqttIngest(sink, f"mqtt://{host}:{port}", client_id=f"bench-{uuid.uuid4().hex[:8]}",
                                      **options) as ingest:
                    proc = publisher(host, port, n, kind, rate)
                    seen, idle = -1, 0.0
                    while sink.messages < n and idle < 15:
                        await asyncio.sleep(0.1)
                        idle = idle + 0.1 if sink.messages == seen else 0.0
                        seen = sink.messages
                    await asyncio.to_thread(proc.wait, 60)
                    sink.batches = ingest.stats.batches

            before = resource.getrusage(resource.RUSAGE_SELF)
            asyncio.run(main())
            after = resource.getrusage(resource.RUSAGE_SELF)
            sink.cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            return sink
        finally:
            platform.close()


def transport_raw(host: str, port: int, n: int) -> raw.Counter:
    """Broker → subscriber through Tvilling's own transport (the batch path MqttIngest uses), nothing stored:
    each burst of messages read from the socket is acknowledged at once."""
    counter = raw.Counter(n)

    async def main() -> None:
        tokens: list[int] = []
        loop = asyncio.get_running_loop()

        def flush() -> None:
            transport.ack(tokens)
            tokens.clear()

        def receive(topic: str, payload: bytes, token: int) -> None:
            counter.hit()
            if not tokens:
                loop.call_soon(flush)
            tokens.append(token)

        options = SessionOptions(client_id=f"bench-raw-{uuid.uuid4().hex[:8]}", receive_maximum=4000)
        transport = GmqttTransport(parse_url(f"mqtt://{host}:{port}"), options, [(TOPIC, 1)], receiver=receive)
        async with transport:
            proc = publisher(host, port, n, "unique")
            await loop.run_in_executor(None, raw._wait, counter)
            await asyncio.to_thread(proc.wait, 60)

    asyncio.run(main())
    return counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--latency-messages", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=10_000.0, help="paced rate for the latency run")
    ap.add_argument("--batch-size", type=int, help="MqttIngest batch_size (default: its own)")
    ap.add_argument("--batch-ms", type=float, help="MqttIngest batch_ms (default: its own)")
    args = ap.parse_args()
    options = {k: v for k, v in (("batch_size", args.batch_size), ("batch_ms", args.batch_ms)) if v is not None}
    load = os.getloadavg()[0]
    raw.TOPIC = TOPIC  # the raw subscriber listens where the publisher sends
    with raw.own_broker() as (host, port):
        procs: list[subprocess.Popen[bytes]] = []
        counter = raw.run_gmqtt(host, port, 1, args.messages,
                                lambda: procs.append(publisher(host, port, args.messages, "unique")), manual=True)
        for p in procs:
            p.wait(60)
        raw_rate = counter.result()["msgs_per_s"]
        own = transport_raw(host, port, args.messages).result()["msgs_per_s"]
        e2e = end_to_end(host, port, args.messages, "unique", **options)
        span = max(e2e.last - e2e.first, 1e-9)
        e2e_rate = (e2e.messages - 1) / span
        lat = end_to_end(host, port, args.latency_messages, "now", args.rate, **options)
        ms = np.array(lat.state_ms)
        acked = np.array(lat.lat_ms)
    out = {
        "bench": "mqtt_e2e", "broker": "own mosquitto -c deploy/mosquitto/tvilling.conf (persistence off)",
        "client": "gmqtt", "qos": 1, "messages": args.messages, "options": options,
        "load_avg_1m": round(load, 2), "cpus": os.cpu_count(),
        "raw": {"received": counter.count, "msgs_per_s": raw_rate},
        "end_to_end": {"messages": e2e.messages, "readings_stored": e2e.accepted,
                       "msgs_per_s": round(e2e_rate), "readings_per_s": round(e2e.accepted / span),
                       "batches": e2e.batches, "cpu_us_per_msg": round(e2e.cpu_s / max(e2e.messages, 1) * 1e6, 1)},
        "ratio": round(e2e_rate / raw_rate, 3) if raw_rate else None, "goal_ratio": 0.5,
        "raw_own_transport": {"msgs_per_s": own, "ratio": round(e2e_rate / own, 3) if own else None,
                              "what": "Tvilling's batch transport path, acking each socket read, nothing stored"},
        "latency": {"rate_msgs_per_s": args.rate, "messages": len(ms),
                    "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
                    "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
                    "max_ms": round(float(ms.max()), 2) if len(ms) else None, "batches": lat.batches,
                    "cpu_us_per_msg": round(lat.cpu_s / max(len(ms), 1) * 1e6, 1),
                    "goal_p99_ms": 50,
                    "stored_and_acked": {"p50_ms": round(float(np.percentile(acked, 50)), 2) if len(acked) else None,
                                         "p99_ms": round(float(np.percentile(acked, 99)), 2) if len(acked) else None}},
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
