"""Broker crash benchmark: what a Mosquitto crash loses under each persistence setting, and what each setting costs.

Prints one JSON line at the end (progress goes to stderr). Every broker is a private Mosquitto started
with deploy/mosquitto/tvilling.conf in which only the listener, persistence_location and the lines of
the variant (autosave_interval, autosave_on_changes) are replaced.

Phases (``--phases``):

``crash``  A publisher sends QoS 1 messages with unique ids at ``--rate`` a second; a message counts
           as sent once the broker PUBACKed it, and the publisher resends what was not acknowledged
           when its connection dies. A durable subscriber (fixed client id, clean start off, session
           expiry 1 h, acknowledges each message) is ``keepup`` (connected, as fast as it can),
           ``slow`` (connected, reads ``--slow-rate`` a second, so a queue builds in the broker) or
           ``offline`` (its session and subscription exist, it connects only after the crash) or
           ``stalled`` (connected, reads nothing until the broker is back: a hung worker; it then reads
           what its old socket still holds and reconnects). In these the session was saved before the
           ingest starts (SIGUSR1), as that of a worker running for a while is; ``fresh`` is ``keepup``
           with a session created just before the ingest and not yet saved (a worker started moments
           before the crash).
           After ``--kill-after`` seconds the broker gets SIGKILL (``kill``) or SIGTERM (``term``); it
           is restarted on the same port with the same persistence file ``--down`` seconds later; the
           subscriber reconnects (same id, clean start off) and drains. ``lost`` = acknowledged ids that
           never reach the subscriber, ``dup`` = deliveries beyond the first.
``tput``   Sustained QoS 1 throughput publisher -> broker -> keeping-up durable subscriber for
           ``--tput-seconds`` (publisher unthrottled), then the acknowledged ingest rate into the same
           session while it is offline (the queue grows from 0). ``--backlog`` first loads that many
           messages into a second, offline durable session (as a stale ingest worker would hold).
``save``   How long one save of the persistence file blocks the broker with Q messages queued
           (``--save-sizes``; SIGUSR1 while a client pings back to back: the longest ping is the
           stall), the file size, and how long a restart takes to load it.

The figures in deploy/mosquitto/tvilling.conf come from the commands listed there.

    python bench/broker_crash.py                                  # everything, 3 runs each (~30 min)
    python bench/broker_crash.py --phases crash --variants changes1 --modes offline --signals kill
    python bench/broker_crash.py --phases save --save-sizes 0,50000,500000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from mqtt_raw import _packet, _str16
from mqtt_raw import _remaining as _varint

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "mosquitto" / "tvilling.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TOPIC = b"tvilling/bench/telemetry"
SUB_ID = "bench-durable-ingest"
STALE_ID = "bench-stale-ingest"
SESSION_EXPIRY_S = 3600
RECEIVE_MAXIMUM = 4000  # what Tvilling's ingest announces
MAX_IDS = 2_000_000

# The settings compared. "shipped" is the file as it is; the others replace only these two lines.
VARIANTS: dict[str, dict[str, str]] = {
    "shipped": {},
    "interval60": {"autosave_interval": "60", "autosave_on_changes": "false"},
    "interval1": {"autosave_interval": "1", "autosave_on_changes": "false"},
    "changes1": {"autosave_interval": "1", "autosave_on_changes": "true"},
    "changes100": {"autosave_interval": "100", "autosave_on_changes": "true"},
    "changes1000": {"autosave_interval": "1000", "autosave_on_changes": "true"},
    "exit-only": {"autosave_interval": "0", "autosave_on_changes": "false"},
}


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- MQTT 5 packets (just what is needed)

def connect_packet(client_id: str, *, clean_start: bool) -> bytes:
    props = b"\x21" + struct.pack("!H", RECEIVE_MAXIMUM)
    if not clean_start:
        props = b"\x11" + struct.pack("!I", SESSION_EXPIRY_S) + props
    var = _str16(b"MQTT") + bytes([5, 0x02 if clean_start else 0x00]) + struct.pack("!H", 600)
    return _packet(0x10, var + _varint(len(props)) + props + _str16(client_id.encode()))


def split_packets(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove the complete packets at the front of ``buf``; (first byte, body) each."""
    out = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        i, mult, length = pos + 1, 1, 0
        while i < n:
            b = buf[i]
            length += (b & 127) * mult
            mult *= 128
            i += 1
            if not b & 128:
                break
        else:
            break
        if i + length > n:
            break
        out.append((buf[pos], bytes(buf[i:i + length])))
        pos = i + length
    del buf[:pos]
    return out


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """Exactly one packet (nothing after it is consumed: queued messages may follow a CONNACK at once)."""
    def exactly(n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = sock.recv(n - len(got))
            if not chunk:
                raise ConnectionError("connection closed")
            got += chunk
        return got

    first = exactly(1)[0]
    length, mult = 0, 1
    while True:
        b = exactly(1)[0]
        length += (b & 127) * mult
        mult *= 128
        if not b & 128:
            return first, exactly(length)


def mqtt_connect(port: int, client_id: str, *, clean_start: bool, timeout: float = 5.0) -> tuple[socket.socket, bool]:
    """A connected socket and the CONNACK's session-present flag (raises OSError when the broker is down)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id, clean_start=clean_start))
        first, body = read_packet(sock)
        if first != 0x20 or body[1] != 0:
            raise ConnectionError(f"CONNACK refused: {body[:2]!r}")
        sock.settimeout(None)
        return sock, bool(body[0] & 1)
    except BaseException:
        sock.close()
        raise


def subscribe(sock: socket.socket) -> None:
    """SUBSCRIBE at QoS 1; Mosquitto answers SUBACK before it sends anything for the new subscription."""
    sock.settimeout(10)
    sock.sendall(_packet(0x82, struct.pack("!H", 1) + b"\x00" + _str16(TOPIC) + b"\x01"))
    first, body = read_packet(sock)
    if first != 0x90 or body[-1] != 1:
        raise ConnectionError(f"SUBACK refused: {first:#x} {body!r}")
    sock.settimeout(None)


def prime_session(port: int, client_id: str = SUB_ID) -> None:
    """Create the durable session with its subscription, then leave it (offline, kept 1 h)."""
    sock, _ = mqtt_connect(port, client_id, clean_start=False)
    subscribe(sock)
    sock.sendall(b"\xe0\x00")
    sock.close()


def payload(i: int, size: int) -> bytes:
    head = struct.pack("!Q", i) + b'{"ts":%d,"values":{"v":%d}}' % (1767225600000 + i, i % 997)
    return head + b" " * max(0, size - len(head))


# ---------------------------------------------------------------- publisher (own process)

def publisher(port: int, rate: float, window: int, size: int, max_ids: int, acked_v: Any, stop_new: Any,
              result_q: Any) -> None:
    """Publish ids 0, 1, ... at QoS 1 until ``stop_new`` (or ``max_ids``), then until every id is PUBACKed.

    A lost connection is retried every 50 ms; the ids in flight are resent first (DUP set)."""
    topic = _str16(TOPIC)
    ack_epoch = bytearray(max_ids)  # connection number (1, 2, ...) whose PUBACK acknowledged the id; 0 = none yet
    no_subscribers = 0  # PUBACK reason 0x10: the broker had no matching subscription and dropped it
    inflight: dict[int, int] = {}
    resend: deque[int] = deque()
    next_id = acked = resent = epoch = 0
    mid = 0
    outages: list[float] = []
    sock: socket.socket | None = None
    buf = bytearray()
    start = time.perf_counter()
    last_ack = start
    down_since = None
    while True:
        if sock is None:
            try:
                sock, _ = mqtt_connect(port, f"bench-pub-{os.getpid()}", clean_start=True, timeout=2)
            except OSError:
                if down_since is None:
                    down_since = time.perf_counter()
                time.sleep(0.05)
                continue
            if down_since is not None:
                outages.append(time.perf_counter() - down_since)
                down_since = None
            epoch += 1
            buf.clear()
            resend = deque([*inflight.values(), *resend])
            inflight.clear()
        if (stop_new.is_set() or next_id >= max_ids) and not inflight and not resend:
            break
        budget = window - len(inflight)
        new_allowed = 0 if stop_new.is_set() else max_ids - next_id
        if rate > 0:
            new_allowed = min(new_allowed, int(rate * (time.perf_counter() - start)) - next_id)
        chunk = []
        while budget > 0 and (resend or new_allowed > 0):
            if resend:
                i, flags = resend.popleft(), 0x3A
                resent += 1
            else:
                i, flags = next_id, 0x32
                next_id += 1
                new_allowed -= 1
            mid = mid % 65535 + 1
            while mid in inflight:
                mid = mid % 65535 + 1
            inflight[mid] = i
            chunk.append(_packet(flags, topic + struct.pack("!H", mid) + b"\x00" + payload(i, size)))
            budget -= 1
        try:
            if chunk:
                sock.sendall(b"".join(chunk))
            readable, _, _ = select.select([sock], [], [], 0.002)
            if readable:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("broker closed the connection")
                buf += data
                for first, body in split_packets(buf):
                    if first != 0x40:
                        continue
                    i = inflight.pop(struct.unpack_from("!H", body)[0], -1)
                    if i >= 0 and not ack_epoch[i]:
                        ack_epoch[i] = epoch
                        acked += 1
                        last_ack = time.perf_counter()
                        if len(body) > 2 and body[2] == 0x10:
                            no_subscribers += 1
                acked_v.value = acked
        except OSError:
            sock.close()
            sock = None
            down_since = time.perf_counter()
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")
        sock.close()
    result_q.put({"ids": next_id, "acked": acked, "resent": resent, "connections": epoch,
                  "no_subscribers": no_subscribers, "seconds": last_ack - start,
                  "outages_s": [round(o, 2) for o in outages], "ack_epoch": bytes(ack_epoch[:next_id])})


# ---------------------------------------------------------------- durable subscriber (own process)

def subscriber(port: int, client_id: str, rate: float, max_ids: int, stall: bool, recv_v: Any, connected: Any,
               resume: Any, stop: Any, result_q: Any) -> None:
    """A durable QoS 1 subscriber: reconnects with the same id and clean start off; subscribes again only
    when the broker says it has no session; acknowledges every message (one write per read). ``stall``:
    after the first connect it reads nothing until ``resume`` is set (a hung ingest worker)."""
    counts = bytearray(max_ids)
    unique = total = reconnects = resubscribed = 0
    first_t = last_t = 0.0
    start = time.perf_counter()
    chunk = 4096 if rate > 0 else 1 << 16
    while not stop.is_set():
        try:
            sock, present = mqtt_connect(port, client_id, clean_start=False, timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        reconnects += 1
        try:
            if not present:
                resubscribed += 1
                subscribe(sock)
            connected.set()
            if stall:
                resume.wait()
                stall = False
            buf = bytearray()
            while not stop.is_set():
                readable, _, _ = select.select([sock], [], [], 0.1)
                if not readable:
                    continue
                data = sock.recv(chunk)
                if not data:
                    raise ConnectionError("broker closed the connection")
                buf += data
                acks = []
                pos, n = 0, len(buf)
                while pos + 2 <= n:  # inline parser: this loop is the subscriber's hot path
                    j, mult, length = pos + 1, 1, 0
                    while j < n:
                        b = buf[j]
                        length += (b & 127) * mult
                        mult *= 128
                        j += 1
                        if not b & 128:
                            break
                    else:
                        break
                    if j + length > n:
                        break
                    first = buf[pos]
                    if first & 0xF0 == 0x30 and first & 0x06:
                        tlen = (buf[j] << 8) | buf[j + 1]
                        k = j + 2 + tlen
                        acks.append(b"\x40\x02" + bytes(buf[k:k + 2]))
                        plen = buf[k + 2]  # property length (< 128 here)
                        i = struct.unpack_from("!Q", buf, k + 3 + plen)[0]
                        total += 1
                        if counts[i] == 0:
                            unique += 1
                        if counts[i] < 255:
                            counts[i] += 1
                    pos = j + length
                del buf[:pos]
                if acks:
                    now = time.perf_counter()
                    if not first_t:
                        first_t = now
                    last_t = now
                    sock.sendall(b"".join(acks))
                    recv_v.value = unique
                    if rate > 0:
                        ahead = total / rate - (now - start)
                        if ahead > 0:
                            time.sleep(ahead)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                if stop.is_set():
                    sock.sendall(b"\xe0\x00")  # leave the session in place (expiry 1 h)
                sock.close()
    result_q.put({"unique": unique, "total": total, "connects": reconnects, "resubscribed": resubscribed,
                  "first": first_t, "last": last_t, "counts": bytes(counts)})


# ---------------------------------------------------------------- broker

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A private Mosquitto with the shipped configuration, the variant's lines replaced."""

    def __init__(self, base: Path, overrides: dict[str, str]) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="broker-", dir=base))
        self.data = self.work / "data"
        self.data.mkdir()
        for path in (self.work, self.data):
            os.chmod(path, 0o777)  # started as root, Mosquitto drops to the mosquitto user
        self.port = free_port()
        self.conf = self.work / "mosquitto.conf"
        self.log = self.work / "mosquitto.log"
        self.db = self.data / "tvilling.db"
        self.write_conf(overrides)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_conf(self, overrides: dict[str, str]) -> None:
        lines, seen = [], set()
        for line in CONF.read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key == "listener":
                line = f"listener {self.port} 127.0.0.1"
            elif key == "persistence_location":
                line = f"persistence_location {self.data}/"
            elif key == "persistence_file":
                self.db = self.data / line.split(" ", 1)[1].strip()
            elif key in overrides:
                line = f"{key} {overrides[key]}"
                seen.add(key)
            lines.append(line)
        lines += [f"{k} {v}" for k, v in overrides.items() if k not in seen]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> float:
        """Start and wait until it accepts connections; seconds that took (loading the persistence file)."""
        t0 = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not start listening")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> float:
        """Signal and wait for the exit; seconds it took (SIGTERM: the final save)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return time.perf_counter() - t0

    def saves(self) -> int:
        return self.log.read_text(errors="replace").count("Saving in-memory database")

    def errors(self) -> list[str]:
        return [ln for ln in self.log.read_text(errors="replace").splitlines() if "Error" in ln]

    def force_save(self) -> None:
        """SIGUSR1 (save now) and wait until the file is written: the durable session is on disk, as the
        session of an ingest worker that has been running for a while is."""
        before = self.saves()
        self.send(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while self.saves() == before or not self.db.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no save after SIGUSR1")
            time.sleep(0.01)
        time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- helpers for the phases

class Proc:
    """A publisher or subscriber process with its shared counters."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.value = mp.Value("q", 0, lock=False)
        self.event = mp.Event()  # publisher: stop_new; subscriber: stop
        self.connected = mp.Event()
        self.resume = mp.Event()
        self.queue: Any = mp.Queue()
        if target is publisher:
            full = (*args, self.value, self.event, self.queue)
        else:
            full = (*args, self.value, self.connected, self.resume, self.event, self.queue)
        self.proc = mp.Process(target=target, args=full, daemon=True)
        self.proc.start()

    def result(self, timeout: float) -> dict[str, Any]:
        res = self.queue.get(timeout=timeout)
        self.proc.join(10)
        return res

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def fill(port: int, count: int, size: int, window: int) -> float:
    """Publish ``count`` messages unthrottled; the ack rate."""
    pub = Proc(publisher, port, 0.0, window, size, count)
    res = pub.result(timeout=max(60.0, count / 500))
    return res["ids"] / res["seconds"] if res["seconds"] else 0.0


def drain(sub: Proc, expected: int, idle_s: float, limit_s: float) -> None:
    """Wait until the subscriber has every id, or nothing new arrived for ``idle_s``."""
    seen, since, t0 = -1, time.monotonic(), time.monotonic()
    while sub.value.value < expected and time.monotonic() - t0 < limit_s:
        if sub.value.value != seen:
            seen, since = sub.value.value, time.monotonic()
        elif time.monotonic() - since > idle_s:
            break
        time.sleep(0.05)


def spread(values: list[float]) -> list[float]:
    return [min(values), max(values)] if values else []


# ---------------------------------------------------------------- phase: crash

def crash_run(base: Path, variant: str, mode: str, sig_name: str, args: argparse.Namespace) -> dict[str, Any]:
    sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM}[sig_name]
    broker = Broker(base, VARIANTS[variant])
    sub = pub = None
    try:
        broker.start()
        prime_session(broker.port)
        if mode != "fresh":
            broker.force_save()
        saves0 = broker.saves()
        if mode != "offline":
            sub = Proc(subscriber, broker.port, SUB_ID, args.slow_rate if mode == "slow" else 0.0, MAX_IDS,
                       mode == "stalled")
            if not sub.connected.wait(10):
                raise RuntimeError("subscriber did not connect")
        pub = Proc(publisher, broker.port, args.rate, args.window, args.payload, MAX_IDS)
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.kill_after:
            time.sleep(0.01)
        acked_at_kill = pub.value.value
        received_at_kill = sub.value.value if sub else 0
        stop_s = broker.stop(sig, timeout=120)
        saves_until_exit = broker.saves() - saves0  # SIGTERM: includes the final save
        time.sleep(args.down)
        load_s = broker.start()
        if sub is not None:
            sub.resume.set()  # a stalled subscriber wakes up now
        time.sleep(args.after)
        pub.event.set()
        pres = pub.result(timeout=args.limit)
        if sub is None:
            sub = Proc(subscriber, broker.port, SUB_ID, 0.0, MAX_IDS, False)
        sub.resume.set()
        drain(sub, pres["ids"], args.idle, args.limit)
        sub.event.set()
        sres = sub.result(timeout=30)
    finally:
        for p in (pub, sub):
            if p is not None:
                p.kill()
        errors = broker.errors()
        broker.cleanup()
    ids = pres["ids"]
    counts = sres["counts"][:ids]
    epochs = pres["ack_epoch"]
    lost = [i for i in range(ids) if counts[i] == 0]
    out = {
        "variant": variant, "mode": mode, "signal": sig_name, "ids": ids,
        "acked_at_kill": acked_at_kill, "received_at_kill": received_at_kill,
        "queued_at_kill": max(0, acked_at_kill - received_at_kill),
        "lost": len(lost),
        "lost_acked_before_crash": sum(1 for i in lost if epochs[i] == 1),
        "lost_dropped_no_subscriber": pres["no_subscribers"],
        "dup": sres["total"] - sres["unique"],
        "resent_by_publisher": pres["resent"], "subscriber_resubscribed": sres["resubscribed"],
        "saves_until_exit": saves_until_exit, "stop_s": round(stop_s, 3), "restart_s": round(load_s, 3),
        "errors": errors[:3],
    }
    if lost:
        out["lost_ids_sample"] = [lost[0], lost[-1]]
    return out


def phase_crash(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs, summary = [], {}
    for variant in args.variants:
        for mode in args.modes:
            for sig_name in args.signals:
                key = f"{variant}/{mode}/{sig_name}"
                per = []
                for r in range(args.runs):
                    res = crash_run(base, variant, mode, sig_name, args)
                    log(f"crash {key} run {r + 1}: ids {res['ids']} acked@kill {res['acked_at_kill']} "
                        f"queued@kill {res['queued_at_kill']} lost {res['lost']} dup {res['dup']} "
                        f"restart {res['restart_s']}s")
                    runs.append(res)
                    per.append(res)
                summary[key] = {
                    "lost": spread([p["lost"] for p in per]), "dup": spread([p["dup"] for p in per]),
                    "queued_at_kill": spread([p["queued_at_kill"] for p in per]),
                    "ids": spread([p["ids"] for p in per])}
    return {"summary": summary, "runs": runs}


# ---------------------------------------------------------------- phase: tput

def tput_run(base: Path, variant: str, backlog: int, args: argparse.Namespace) -> dict[str, Any]:
    broker = Broker(base, VARIANTS["exit-only"] if backlog else VARIANTS[variant])
    sub = None
    try:
        broker.start()
        if backlog:  # load the stale session with the fast setting, then restart with the variant's
            prime_session(broker.port, STALE_ID)
            fill(broker.port, backlog, args.payload, args.window)
            broker.stop()
            broker.write_conf(VARIANTS[variant])
            broker.start()
        prime_session(broker.port)
        broker.force_save()
        sub = Proc(subscriber, broker.port, SUB_ID, 0.0, MAX_IDS, False)
        if not sub.connected.wait(10):
            raise RuntimeError("subscriber did not connect")
        pub = Proc(publisher, broker.port, 0.0, args.window, args.payload, MAX_IDS)
        time.sleep(args.tput_seconds)
        pub.event.set()
        pres = pub.result(timeout=args.limit)
        drain(sub, pres["ids"], args.idle, args.limit)
        sub.event.set()
        sres = sub.result(timeout=30)
        keepup = pres["ids"] / (sres["last"] - sres["first"]) if sres["last"] > sres["first"] else 0.0
        # the same session offline: the broker queues (and, with autosave_on_changes, counts) every message
        saves0 = broker.saves()
        pub = Proc(publisher, broker.port, 0.0, args.window, args.payload, MAX_IDS)
        time.sleep(args.tput_seconds)
        pub.event.set()
        ores = pub.result(timeout=args.limit)
        offline = ores["ids"] / ores["seconds"] if ores["seconds"] else 0.0
        saves = broker.saves() - saves0
    finally:
        if sub is not None:
            sub.kill()
        broker.cleanup()
    return {"variant": variant, "backlog": backlog, "keepup_msgs_per_s": round(keepup),
            "keepup_ids": pres["ids"], "keepup_lost": pres["ids"] - sres["unique"],
            "offline_ingest_msgs_per_s": round(offline), "offline_ids": ores["ids"], "offline_saves": saves}


def phase_tput(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs, summary = [], {}
    for backlog in args.backlog:
        for variant in args.variants:
            per = []
            for r in range(args.runs):
                res = tput_run(base, variant, backlog, args)
                log(f"tput {variant} backlog {backlog} run {r + 1}: keep-up {res['keepup_msgs_per_s']} msg/s, "
                    f"offline ingest {res['offline_ingest_msgs_per_s']} msg/s "
                    f"({res['offline_saves']} saves)")
                per.append(res)
                runs.append(res)
            summary[f"{variant}/backlog{backlog}"] = {
                "keepup_msgs_per_s": spread([p["keepup_msgs_per_s"] for p in per]),
                "offline_ingest_msgs_per_s": spread([p["offline_ingest_msgs_per_s"] for p in per])}
    return {"summary": summary, "runs": runs}


# ---------------------------------------------------------------- phase: save

def measure_stall(broker: Broker, probe: socket.socket) -> float:
    """SIGUSR1 while a client pings back to back: the longest round trip (one ping waits out the whole
    save, as every client does) until the file was replaced."""
    inode = broker.db.stat().st_ino if broker.db.exists() else -1
    before = broker.saves()
    broker.send(signal.SIGUSR1)
    longest = 0.0
    deadline = time.monotonic() + 120
    replaced = False
    while time.monotonic() < deadline:
        t = time.perf_counter()
        probe.sendall(b"\xc0\x00")
        got = b""
        while len(got) < 2:
            chunk = probe.recv(2 - len(got))
            if not chunk:
                raise ConnectionError("probe closed")
            got += chunk
        longest = max(longest, time.perf_counter() - t)
        if replaced:
            break
        with contextlib.suppress(FileNotFoundError):
            replaced = broker.saves() > before and broker.db.stat().st_ino != inode
    return longest


def phase_save(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for size in args.save_sizes:
        broker = Broker(base, VARIANTS["exit-only"])
        try:
            broker.start()
            prime_session(broker.port)
            rate = fill(broker.port, size, args.payload, args.window) if size else 0.0
            probe, _ = mqtt_connect(broker.port, "bench-probe", clean_start=True)
            idle = []
            for _ in range(20):
                t = time.perf_counter()
                probe.sendall(b"\xc0\x00")
                probe.recv(2)
                idle.append(time.perf_counter() - t)
                time.sleep(0.001)
            stalls = [measure_stall(broker, probe) for _ in range(args.runs)]
            probe.close()
            db_bytes = broker.db.stat().st_size
            stop_s = [broker.stop()]
            loads = []
            for _ in range(args.runs):
                loads.append(broker.start())
                stop_s.append(broker.stop())
            row = {"queued": size, "fill_msgs_per_s": round(rate), "db_bytes": db_bytes,
                   "idle_ping_ms": round(statistics.median(idle) * 1000, 2),
                   "save_stall_ms": [round(s * 1000, 1) for s in stalls],
                   "sigterm_exit_s": [round(s, 3) for s in stop_s], "restart_load_s": [round(s, 3) for s in loads]}
            log(f"save queued {size}: stall {row['save_stall_ms']} ms, file {db_bytes} B, "
                f"restart {row['restart_load_s']} s, SIGTERM exit {row['sigterm_exit_s']} s")
            rows.append(row)
        finally:
            broker.cleanup()
    return {"rows": rows}


# ---------------------------------------------------------------- main

def main() -> None:
    def csv(kind: Any) -> Any:
        return lambda s: [kind(x) for x in s.split(",") if x]

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", type=csv(str), default=["save", "tput", "crash"])
    ap.add_argument("--variants", type=csv(str), default=["interval60", "interval1", "changes1", "changes100"],
                    help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--modes", type=csv(str), default=["keepup", "slow", "offline"])
    ap.add_argument("--signals", type=csv(str), default=["kill", "term"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=2000, help="crash phase: messages/s offered by the publisher")
    ap.add_argument("--slow-rate", type=float, default=500, help="crash phase: messages/s the slow subscriber reads")
    ap.add_argument("--kill-after", type=float, default=3.0, help="seconds of ingest before the signal")
    ap.add_argument("--down", type=float, default=1.5, help="seconds the broker stays down")
    ap.add_argument("--after", type=float, default=1.0, help="seconds of new ids after the restart")
    ap.add_argument("--idle", type=float, default=10.0, help="give up draining after this long without progress")
    ap.add_argument("--limit", type=float, default=300.0, help="upper bound of any one wait, seconds")
    ap.add_argument("--tput-seconds", type=float, default=5.0)
    ap.add_argument("--backlog", type=csv(int), default=[0])
    ap.add_argument("--save-sizes", type=csv(int), default=[0, 50_000, 500_000])
    ap.add_argument("--payload", type=int, default=100, help="payload bytes")
    ap.add_argument("--window", type=int, default=1000, help="publisher's QoS 1 messages in flight")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the brokers' temporary directories")
    args = ap.parse_args()
    for v in args.variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v}")
    base = Path(tempfile.mkdtemp(prefix="tvilling-broker-crash-", dir=args.dir))
    os.chmod(base, 0o755)
    result: dict[str, Any] = {
        "mosquitto": subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.splitlines()[0],
        "config": str(CONF.relative_to(ROOT)), "variants": {v: VARIANTS[v] for v in args.variants},
        "payload_bytes": args.payload, "cpus": os.cpu_count(), "argv": sys.argv[1:]}
    try:
        if "save" in args.phases:
            result["save"] = phase_save(base, args)
        if "tput" in args.phases:
            result["tput"] = phase_tput(base, args)
        if "crash" in args.phases:
            result["crash"] = phase_crash(base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
