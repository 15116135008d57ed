"""MQTT client benchmark: broker → subscriber throughput of gmqtt, paho-mqtt and aiomqtt.

Prints one JSON line. For each client and QoS (0 and 1) a subscriber subscribes to one
topic, then a publisher in a separate process (a minimal MQTT 3.1.1 socket writer, so
the publisher is never the bottleneck) sends N small telemetry messages through
Mosquitto; the figure is messages/s between the first and the last message received.

    python bench/mqtt_raw.py                       # own broker with deploy/mosquitto/tvilling.conf
    python bench/mqtt_raw.py --messages 200000 --url mqtt://127.0.0.1:1883   # an existing broker

``gmqtt-manual`` is gmqtt with ``optimistic_acknowledgement=False`` and a coroutine
``on_message`` (PUBACK after the handler returns), the mode Tvilling's ingest runs in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "mosquitto" / "tvilling.conf"
TOPIC = "bench/telemetry"
IDLE_S = 15.0


# ---------------------------------------------------------------- publisher (own process)

def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining(len(body)) + body


def _str16(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def payload_for(kind: str, i: int) -> bytes:
    """``fixed``: the same instant every time; ``unique``: one instant a message (1 ms apart);
    ``now``: stamped with the send time in epoch ms (for latency)."""
    if kind == "unique":
        return b'{"ts":%d,"values":{"vibration":%d.5,"temperature":%d.25},"id":"%d"}' % (
            1767225600000 + i, i % 97, 60 + i % 13, i)
    if kind == "now":
        return b'{"ts":%.3f,"values":{"vibration":%d.5,"temperature":71.5},"id":"%d"}' % (
            time.time() * 1000, i % 97, i)
    return b'{"ts":1767225600000,"values":{"vibration":%d.5,"temperature":71.5},"id":"%d"}' % (i % 97, i)


def publish(host: str, port: int, count: int, qos: int, *, topic_name: str = TOPIC, kind: str = "fixed",
            rate: float = 0.0) -> None:
    """Send ``count`` PUBLISH packets (MQTT 3.1.1): as fast as the socket takes them, or ``rate`` a second."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client_id = f"bench-pub-{uuid.uuid4().hex[:8]}".encode()
    sock.sendall(_packet(0x10, _str16(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _str16(client_id)))
    if sock.recv(4)[:1] != b"\x20":
        raise SystemExit("publisher: no CONNACK")
    acked = 0
    done = threading.Event()

    def read_acks() -> None:  # each PUBACK is 4 bytes: 0x40 0x02 mid mid
        nonlocal acked
        buf = b""
        while acked < count:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            whole = len(buf) // 4
            acked += whole
            buf = buf[whole * 4:]
        done.set()

    if qos:
        threading.Thread(target=read_acks, daemon=True).start()
    topic = _str16(topic_name.encode())
    chunk: list[bytes] = []
    per_chunk = 1000 if rate <= 0 else max(1, int(rate / 200))  # paced: a chunk every 5 ms
    started = time.perf_counter()
    for i in range(count):
        payload = payload_for(kind, i)
        if qos:
            mid = i % 65535 + 1
            chunk.append(_packet(0x32, topic + struct.pack("!H", mid) + payload))
        else:
            chunk.append(_packet(0x30, topic + payload))
        if len(chunk) == per_chunk:
            sock.sendall(b"".join(chunk))
            chunk.clear()
            if rate > 0:
                ahead = (i + 1) / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if qos:  # keep at most ~20k QoS 1 messages unacknowledged (ids are 16 bit)
                while i + 1 - acked > 20000 and not done.is_set():
                    time.sleep(0.001)
    sock.sendall(b"".join(chunk))
    if qos:
        done.wait(120)
    sock.sendall(b"\xe0\x00")
    sock.close()


# ---------------------------------------------------------------- subscribers

class Counter:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def hit(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.expected:
            self.done.set()

    def result(self) -> dict[str, Any]:
        span = self.last - self.first
        rate = (self.count - 1) / span if self.count > 1 and span > 0 else 0.0
        return {"received": self.count, "seconds": round(span, 3), "msgs_per_s": round(rate)}


def _wait(counter: Counter) -> None:
    seen = -1
    while not counter.done.wait(IDLE_S):
        if counter.count == seen:  # nothing more arriving: report what came
            return
        seen = counter.count


def run_gmqtt(host: str, port: int, qos: int, n: int, start_publisher: Callable[[], None], manual: bool) -> Counter:
    import gmqtt

    counter = Counter(n)

    async def main() -> None:
        client = gmqtt.Client(f"bench-sub-{uuid.uuid4().hex[:8]}", optimistic_acknowledgement=not manual,
                              receive_maximum=1000)
        subscribed = asyncio.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        if manual:
            async def on_message(c: Any, topic: str, payload: bytes, q: int, props: Any) -> int:
                counter.hit()
                return 0
            client.on_message = on_message
        else:
            client.on_message = lambda c, topic, payload, q, props: counter.hit()
        await client.connect(host, port)
        client.subscribe(TOPIC, qos=qos)
        await subscribed.wait()
        start_publisher()
        await asyncio.get_running_loop().run_in_executor(None, _wait, counter)
        await client.disconnect()

    asyncio.run(main())
    return counter


def run_paho(host: str, port: int, qos: int, n: int, start_publisher: Callable[[], None]) -> Counter:
    import paho.mqtt.client as paho

    counter = Counter(n)
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: counter.hit()
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=qos)
    client.connect(host, port)
    client.loop_start()
    subscribed.wait(10)
    start_publisher()
    _wait(counter)
    client.disconnect()
    client.loop_stop()
    return counter


def run_aiomqtt(host: str, port: int, qos: int, n: int, start_publisher: Callable[[], None]) -> Counter:
    import aiomqtt

    counter = Counter(n)

    async def main() -> None:
        async with aiomqtt.Client(host, port, identifier=f"bench-sub-{uuid.uuid4().hex[:8]}",
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(TOPIC, qos=qos)
            start_publisher()

            async def consume() -> None:
                async for _ in client.messages:
                    counter.hit()
                    if counter.done.is_set():
                        return

            task = asyncio.create_task(consume())
            await asyncio.get_running_loop().run_in_executor(None, _wait, counter)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())
    return counter


# ---------------------------------------------------------------- orchestration

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def own_broker() -> Iterator[tuple[str, int]]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="tvilling-bench-mqtt-") as tmp:
        os.chmod(tmp, 0o777)  # the broker drops root privileges to the mosquitto user
        lines = []
        for line in CONF.read_text().splitlines():
            if line.startswith("listener "):
                line = f"listener {port} 127.0.0.1"
            elif line.startswith("persistence "):
                line = "persistence false"
            elif line.startswith("connection_messages "):
                line = "connection_messages false"
            lines.append(line)
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
                time.sleep(0.05)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            proc.wait(10)


def measure(host: str, port: int, client: str, qos: int, n: int) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start_publisher() -> None:
        procs.append(subprocess.Popen([sys.executable, __file__, "--publish", f"{host}:{port}",
                                       "--messages", str(n), "--qos", str(qos)]))

    if client.startswith("gmqtt"):
        counter = run_gmqtt(host, port, qos, n, start_publisher, manual=client == "gmqtt-manual")
    elif client == "paho":
        counter = run_paho(host, port, qos, n, start_publisher)
    else:
        counter = run_aiomqtt(host, port, qos, n, start_publisher)
    for proc in procs:
        proc.wait(120)
    return counter.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--url", help="use this broker (mqtt://host:port) instead of starting one")
    parser.add_argument("--clients", default="gmqtt,gmqtt-manual,paho,aiomqtt")
    parser.add_argument("--qos", type=int, choices=(0, 1), help="only this QoS")
    parser.add_argument("--publish", help=argparse.SUPPRESS)  # internal: act as the publisher process
    parser.add_argument("--topic", default=TOPIC, help=argparse.SUPPRESS)
    parser.add_argument("--payload", default="fixed", choices=("fixed", "unique", "now"), help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        host, port = args.publish.rsplit(":", 1)
        publish(host, int(port), args.messages, args.qos or 0, topic_name=args.topic, kind=args.payload,
                rate=args.rate)
        return
    clients = [c for c in args.clients.split(",") if c]
    qoses = [args.qos] if args.qos is not None else [0, 1]
    with contextlib.ExitStack() as stack:
        if args.url:
            parts = urlsplit(args.url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 1883
            broker = args.url
        else:
            host, port = stack.enter_context(own_broker())
            broker = "own mosquitto -c deploy/mosquitto/tvilling.conf (persistence off)"
        results: dict[str, Any] = {}
        for client in clients:
            try:
                __import__({"paho": "paho.mqtt.client", "aiomqtt": "aiomqtt"}.get(client, "gmqtt"))
            except ImportError:
                results[client] = "not installed"
                continue
            for qos in qoses:
                results[f"{client}_qos{qos}"] = measure(host, port, client, qos, args.messages)
    print(json.dumps({"bench": "mqtt_raw", "messages": args.messages, "broker": broker, "cpus": os.cpu_count(),
                      "results": results}))


if __name__ == "__main__":
    main()
