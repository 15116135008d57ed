"""What TLS costs: MQTT ingest and HTTP requests, each with and without TLS, in the same run.

Prints one JSON line:

* ``mqtt``: readings/s (and messages/s) from a publisher process through one Mosquitto — its plain
  listener and a TLS listener beside it, same configuration (the shipped one, persistence off) —
  into Tvilling's MQTT ingest and the embedded store (state and history), QoS 1, the same
  payloads both ways; ``cost_pct`` is the throughput lost with TLS (negative: TLS was faster, which
  happens: the ingest's flow control, not the cipher, sets the pace), ``cpu_cost_pct`` the CPU added
  per message in the ingest process (decryption; the broker's share is not counted). Plain and TLS runs alternate
  (``--rounds``) and the median run of each is shown. The publisher (one process,
  asyncio, raw MQTT packets as in ``bench/mqtt_raw.py``) is the same for both runs, TLS or not.
* ``http``: a ``tvilling serve`` (memory store) with and one without ``--tls-cert``; GET of a twin,
  one client: requests/s and p50/p99 latency over a kept-alive connection, and the same with a
  new connection per request (where the TLS handshake is paid every time); ``cost_pct`` of each.

Test certificates (ECDSA P-256) are made for the run with ``tests/security/tls_certs.py``.

    python bench/tls.py                      # about 1.5 minutes on 2 cores
    python bench/tls.py --messages 200000 --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests" / "security"))

from tls_certs import TlsCerts, make_certs  # noqa: E402

import mqtt_e2e  # noqa: E402
import mqtt_raw as raw  # noqa: E402
from tvilling.app import build_platform  # noqa: E402
from tvilling.config import Settings  # noqa: E402
from tvilling.connect.mqtt import MqttIngest, TlsFiles  # noqa: E402
from tvilling.models.builtin import builtin_documents  # noqa: E402

TWIN = mqtt_e2e.TWIN
TOPIC = mqtt_e2e.TOPIC
READINGS_PER_MESSAGE = 2  # raw.payload_for("unique", i): vibration and temperature


# ---------------------------------------------------------------- the broker and the publisher

@contextlib.contextmanager
def broker(folder: Path, certs: TlsCerts) -> Iterator[tuple[int, int]]:
    """Mosquitto with the shipped configuration (persistence off): a plain listener and a TLS one."""
    plain, tls = raw._free_port(), raw._free_port()
    lines = []
    for line in raw.CONF.read_text().splitlines():
        if line.startswith("listener "):
            line = f"listener {plain} 127.0.0.1"
        elif line.startswith("persistence "):
            line = "persistence false"
        elif line.startswith("connection_messages "):
            line = "connection_messages false"
        lines.append(line)
    lines += [f"listener {tls} 127.0.0.1", f"cafile {certs.ca}", f"certfile {certs.server_cert}",
              f"keyfile {certs.server_key}", "tls_version tlsv1.2"]
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    try:
        for port in (plain, tls):
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
                time.sleep(0.05)
        yield plain, tls
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def _publish(port: int, count: int, ca: str | None) -> None:
    """``count`` QoS 1 PUBLISH packets (MQTT 3.1.1) as fast as the connection takes them, at most 20,000
    unacknowledged; over TLS when ``ca`` is given."""
    context = ssl.create_default_context(cafile=ca) if ca else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    client_id = f"bench-pub-{uuid.uuid4().hex[:8]}".encode()
    writer.write(raw._packet(0x10, raw._str16(b"MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
                             + raw._str16(client_id)))
    if (await reader.readexactly(4))[:1] != b"\x20":
        raise SystemExit("publisher: no CONNACK")
    acked = 0
    room = asyncio.Event()
    room.set()

    async def read_acks() -> None:  # each PUBACK is 4 bytes
        nonlocal acked
        pending = 0
        while acked < count:
            data = await reader.read(65536)
            if not data:
                return
            pending += len(data)
            acked += pending // 4
            pending %= 4
            room.set()

    acks = asyncio.create_task(read_acks())
    topic = raw._str16(TOPIC.encode())
    chunk: list[bytes] = []
    for i in range(count):
        chunk.append(raw._packet(0x32, topic + (i % 65535 + 1).to_bytes(2, "big") + raw.payload_for("unique", i)))
        if len(chunk) == 1000:
            writer.write(b"".join(chunk))
            chunk.clear()
            await writer.drain()
            while i + 1 - acked > 20000:
                room.clear()
                await room.wait()
    writer.write(b"".join(chunk))
    await writer.drain()
    await asyncio.wait_for(acks, 120)
    writer.write(b"\xe0\x00")
    writer.close()


def publisher(port: int, count: int, ca: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--publish", str(port), "--messages", str(count),
                             *(["--ca", ca] if ca else [])])


# ---------------------------------------------------------------- ingest through the broker

def ingest_run(port: int, count: int, *, tls: TlsFiles | None) -> dict[str, Any]:
    """Messages from the publisher into the embedded store through MqttIngest: rates and CPU per message."""
    url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="tvilling-bench-tls-") as tmp:
        platform = build_platform(Settings(data_dir=Path(tmp)))
        try:
            platform.models.add(builtin_documents("plant"))
            platform.twins.put(TWIN, {"model": "dtmi:tvilling:example:Bearing;1"})
            sink = mqtt_e2e.TimedSink(platform.ingest, latency=False)

            async def main() -> None:
                async with MqttIngest(sink, url, client_id=f"bench-{uuid.uuid4().hex[:8]}", tls_files=tls):
                    proc = publisher(port, count, tls.ca if tls else None)
                    seen, idle = -1, 0.0
                    while sink.messages < count and idle < 15:
                        await asyncio.sleep(0.1)
                        idle = idle + 0.1 if sink.messages == seen else 0.0
                        seen = sink.messages
                    await asyncio.to_thread(proc.wait, 60)

            before = resource.getrusage(resource.RUSAGE_SELF)
            asyncio.run(main())
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            platform.close()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    span = max(sink.last - sink.first, 1e-9)
    return {"messages": sink.messages, "readings_stored": sink.accepted,
            "msgs_per_s": round((sink.messages - 1) / span), "readings_per_s": round(sink.accepted / span),
            "cpu_us_per_msg": round(cpu / max(sink.messages, 1) * 1e6, 1)}


# ---------------------------------------------------------------- HTTP

@contextlib.contextmanager
def server(folder: Path, certs: TlsCerts | None) -> Iterator[str]:
    """A ``tvilling serve --store memory`` (with TLS when ``certs``), twin B1 created; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = raw._free_port()
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)] if certs else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
    env |= {"TVILLING_LOG_LEVEL": "warning", "TVILLING_DATA_DIR": str(folder / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--store", "memory", "--port", str(port),
                             *tls], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"{'https' if certs else 'http'}://127.0.0.1:{port}"
    import httpx

    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(certs.ca)) if certs else False
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(verify=verify, timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{base}/health").status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"tvilling serve did not start on {base}")
                time.sleep(0.2)
            client.post(f"{base}/api/models", json=builtin_documents("plant")).raise_for_status()
            client.put(f"{base}/api/twins/{TWIN}", json={"model": "dtmi:tvilling:example:Bearing;1",
                                                          "reported": {"temperature": 60.0}}).raise_for_status()
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def http_run(base: str, ca: Path | None, requests: int, *, reuse: bool) -> dict[str, Any]:
    """``requests`` sequential GETs of the twin, over one kept-alive connection or a new one each."""
    import httpx

    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else False
    url = f"{base}/api/twins/{TWIN}"
    lat = np.empty(requests)
    client = httpx.Client(verify=verify, timeout=10) if reuse else None
    try:
        if client is not None:
            client.get(url).raise_for_status()  # warm-up (and the one handshake)
        t0 = time.perf_counter()
        for i in range(requests):
            start = time.perf_counter()
            if client is not None:
                answer = client.get(url)
            else:
                with httpx.Client(verify=verify, timeout=10) as once:
                    answer = once.get(url)
            answer.raise_for_status()
            lat[i] = time.perf_counter() - start
        wall = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
    return {"requests": requests, "req_per_s": round(requests / wall),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 3)}


def _median(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (the lower middle one of an even number)."""
    return sorted(results, key=lambda r: r[key])[(len(results) - 1) // 2]


def _cost(plain: float, tls: float) -> float:
    """Throughput lost with TLS, in % of the plain figure."""
    return round((plain - tls) / plain * 100, 1) if plain else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000, help="MQTT messages per run (2 readings each)")
    ap.add_argument("--requests", type=int, default=3000, help="HTTP requests per kept-alive run")
    ap.add_argument("--connections", type=int, default=300, help="HTTP requests, a new connection each")
    ap.add_argument("--rounds", type=int, default=3, help="plain and TLS runs, alternated; the median is shown")
    ap.add_argument("--publish", help=argparse.SUPPRESS)  # internal: be the publisher process (port)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publish:
        asyncio.run(_publish(int(args.publish), args.messages, args.ca))
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tvilling-bench-tls-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # the broker drops root privileges to the mosquitto user
        certs = make_certs(folder / "pki")
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "tls": []}
        with broker(folder, certs) as (plain_port, tls_port):
            files = TlsFiles(ca=str(certs.ca))
            ingest_run(plain_port, min(args.messages, 10_000), tls=None)  # warm-up: imports, first store
            for _ in range(args.rounds):  # alternated, so that a slow spell of the machine hits both
                runs["plain"].append(ingest_run(plain_port, args.messages, tls=None))
                runs["tls"].append(ingest_run(tls_port, args.messages, tls=files))
        mqtt = {kind: _median(results, "readings_per_s") for kind, results in runs.items()}
        http_runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            kind: {"keep_alive": [], "new_connection": []} for kind in ("plain", "tls")}
        with server(folder / "plain", None) as plain_base, server(folder / "tls", certs) as tls_base:
            for _ in range(args.rounds):
                for kind, base, ca in (("plain", plain_base, None), ("tls", tls_base, certs.ca)):
                    http_runs[kind]["keep_alive"].append(http_run(base, ca, args.requests, reuse=True))
                    http_runs[kind]["new_connection"].append(http_run(base, ca, args.connections, reuse=False))
        http: dict[str, Any] = {kind: {mode: _median(results, "req_per_s") for mode, results in modes.items()}
                                for kind, modes in http_runs.items()}
    out = {
        "bench": "tls", "cpus": os.cpu_count(), "load_avg_1m": round(load, 2),
        "tls": "TLS 1.2+ (negotiated 1.3), ECDSA P-256 certificates",
        "mqtt": {"broker": "own mosquitto -c deploy/mosquitto/tvilling.conf (persistence off), plain and TLS "
                           "listeners", "qos": 1, "rounds": args.rounds, **mqtt,
                 "cost_pct": _cost(mqtt["plain"]["readings_per_s"], mqtt["tls"]["readings_per_s"]),
                 "cpu_cost_pct": -_cost(mqtt["plain"]["cpu_us_per_msg"], mqtt["tls"]["cpu_us_per_msg"])},
        "http": {**http, "endpoint": f"GET /api/twins/{TWIN}, one client, sequential", "rounds": args.rounds,
                 "cost_pct": {mode: _cost(http["plain"][mode]["req_per_s"], http["tls"][mode]["req_per_s"])
                              for mode in ("keep_alive", "new_connection")}},
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
