"""Chaos benchmark: kill real processes mid-ingest and count what was lost.

Every case runs real processes on loopback: a private Mosquitto started from the shipped
configuration (``deploy/mosquitto/tvilling.conf``), ``tvilling serve`` as a subprocess (embedded
store or PostgreSQL), and a publisher process (paho-mqtt, QoS 1, a unique id and sequence number
per message) that counts a message as *sent* only once the broker acknowledged it, and resends
what was not acknowledged when its connection drops. After the fault and the recovery, the
server is stopped cleanly and its history is read back:

* ``lost``: sent sequence numbers that history does not hold;
* ``duplicated``: readings history holds more than once;
* ``recovery_s``: from the restart of what was killed until the server stores readings again;
* ``peak_rss_mb``: the server's largest resident set during the case.

Cases: ``server_kill`` (``kill -9`` of the server, restart after 3 s; embedded store, and
``server_kill_postgres``), ``shared_workers_kill`` (two servers on PostgreSQL sharing the stream
with ``--shared-group``, one killed), ``broker_term`` / ``broker_kill`` (SIGTERM / SIGKILL of the
broker, restarted after 3 s on the same port and persistence file; ``broker_kill_every_change``
with the broker saving after every change), ``poison`` (a corpus of
hostile payloads among valid ones), ``overload`` (a backlog of 10x what the server stores in the
run time, then live load on top; RSS sampled, slope over the last half) and ``disk_full`` (the
data directory on a small tmpfs that is filled up mid-ingest, then freed; needs root).

    python bench/chaos.py                      # every case, default sizes; one JSON line on stdout
    python bench/chaos.py --cases server_kill broker_kill --messages 50000
    python bench/chaos.py --cases overload --overload-s 600

Progress goes to stderr. The test suite runs short versions of each case (``tests/chaos``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "tvilling.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_DSN = os.environ.get("TVILLING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BEARING = "dtmi:tvilling:example:Bearing;1"
TWINS = 20
PROP = "vibration"

# The broker setting that loses least to a SIGKILL: save the in-memory database after every change.
# deploy/mosquitto/tvilling.conf says what it still loses (at most one message per publishing
# connection, when the kill lands in a save) and what it costs (throughput falls with the queue).
SAVE_EVERY_CHANGE = {"autosave_interval": "1", "autosave_on_changes": "true"}


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


# ------------------------------------------------------------------------------------------ broker
class Broker:
    """A Mosquitto of our own, from the shipped configuration, on a fixed port across restarts."""

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.data = workdir / "broker-data"
        self.data.mkdir(parents=True, exist_ok=True)
        for d in (workdir, self.data):
            os.chmod(d, 0o777)  # Mosquitto drops root privileges to its own user
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(broker_config(self.port, self.data, overrides or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=out)
        wait_port(self.port, self.proc, "mosquitto")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self.signal(signal.SIGTERM)


def broker_config(port: int, data: Path, overrides: dict[str, str]) -> str:
    """The shipped configuration with our port and persistence folder, and ``overrides`` replacing options."""
    lines, seen = [], set()
    for line in SHIPPED_CONF.read_text().splitlines():
        key = line.split(" ", 1)[0] if line and not line.startswith("#") else None
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {data}/"
        elif key in overrides:
            line = f"{key} {overrides[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{k} {v}" for k, v in overrides.items() if k not in seen]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ server
@dataclass
class Server:
    """``tvilling serve`` as a subprocess on a data directory (and optionally a PostgreSQL schema)."""

    data_dir: Path
    broker_url: str
    pg_schema: str | None = None
    shared_group: str | None = None
    log_dir: Path | None = None  # where its log goes (default: beside the data directory)
    cpu: float | None = None  # cores the server may use (a CPU cgroup's quota), None for no cap
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss: int = 0
    starts: int = 0
    _sampler: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> str | None:
        return PG_DSN if self.pg_schema else None

    def settings(self) -> Any:
        from tvilling.config import Settings

        return Settings(data_dir=self.data_dir, store=self.store,
                        **({"pg_schema": self.pg_schema} if self.pg_schema else {}))

    def setup_twins(self) -> list[str]:
        from tvilling.app import build_platform
        from tvilling.models.builtin import builtin_documents

        twins = [f"C{i + 1}" for i in range(TWINS)]
        with build_platform(self.settings()) as p:
            p.models.add(builtin_documents("plant"))
            for t in [*twins, "P"]:  # P: probes of recovery, not counted
                p.twins.put(t, {"model": BEARING})
        return twins

    def start(self) -> float:
        """Start the server; returns the time the process was started (monotonic)."""
        env = {**os.environ, "TVILLING_LOG_LEVEL": "warning", "TVILLING_MAINTENANCE_S": "5"}
        if self.pg_schema:
            env["TVILLING_PG_SCHEMA"] = self.pg_schema
        if self.shared_group:
            env["TVILLING_MQTT_SHARED_GROUP"] = self.shared_group
        cmd = [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(self.data_dir), "--port",
               str(self.port), "--broker", self.broker_url]
        if self.store:
            cmd += ["--store", self.store]
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=self.data_dir.parent, env=env)
        if self.cpu is not None:
            cap_cpu(self.proc.pid, self.cpu)
        self.starts += 1
        self._sampler = threading.Thread(target=self._sample, args=(self.proc,), daemon=True)
        self._sampler.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tvilling serve exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError):
                if http("GET", f"{self.base}/health")[0] == 200:
                    return started
            time.sleep(0.1)
        raise RuntimeError("tvilling serve did not become healthy in 60 s")

    def _sample(self, proc: subprocess.Popen[bytes]) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                self.peak_rss = max(self.peak_rss, p.memory_info().rss)
                time.sleep(0.2)

    def rss(self) -> int:
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return 0
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(self.proc.pid).memory_info().rss)
        return 0

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def values(self) -> dict[str, float]:
        """Each twin's current reported vibration (NaN where none)."""
        out = {}
        for t in (f"C{i + 1}" for i in range(TWINS)):
            status, doc = http("GET", f"{self.base}/api/twins/{t}")
            out[t] = float(doc.get("reported", {}).get(PROP, float("nan"))) if status == 200 else float("nan")
        return out

    def stored(self) -> np.ndarray:
        """Every stored vibration value (the sequence numbers), read from history once the server stopped."""
        with self.history() as history:
            values = []
            for t in (f"C{i + 1}" for i in range(TWINS)):
                after = None
                while True:
                    page = history.range(t, PROP, 0, 2**62, limit=10_000, after_us=after)
                    if not page:
                        break
                    values.extend(p.value for p in page)
                    after = page[-1].ts_us
            return np.asarray(values)

    @contextlib.contextmanager
    def history(self) -> Iterator[Any]:
        """The server's history store, opened here (once the server stopped: DuckDB admits one writer)."""
        from tvilling.history import open_history

        history = (open_history(PG_DSN, schema=self.pg_schema) if self.pg_schema
                   else open_history(self.data_dir / "history.duckdb"))
        try:
            yield history
        finally:
            history.close()

    def dead_letters(self) -> list[Any]:
        from tvilling.app import build_platform

        with build_platform(self.settings()) as p:
            out, after = [], 0
            while True:
                page = p.dead_letters.list(after=after, limit=1000)
                if not page:
                    return out
                out += page
                after = page[-1].id or 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def log_path(self) -> Path:
        return (self.log_dir or self.data_dir.parent) / f"server-{self.data_dir.name}.log"


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# ------------------------------------------------------------------------------------------ publisher
PUBLISHER = r'''
import json, sys, threading, time
import numpy as np
import paho.mqtt.client as paho

port, first, count, rate, twins, out, extra = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                               float(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7])
acked = np.zeros(count, dtype=bool)
mid_seq = {}
lock = threading.Lock()
client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"chaos-pub-{first}", clean_session=False,
                     protocol=paho.MQTTv311)
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.reconnect_delay_set(0.1, 1)

early = set()  # PUBACKs that arrived before publish() returned their mid


def on_publish(c, u, mid, rc, props):
    with lock:
        seq = mid_seq.pop(mid, None)
        if seq is None:
            early.add(mid)
    if seq is not None:
        acked[seq - first] = True

client.on_publish = on_publish
client.connect("127.0.0.1", port, keepalive=5)
client.loop_start()
extras = [bytes.fromhex(h) for h in json.loads(open(extra).read())] if extra != "-" else []
every = max(1, count // (len(extras) + 1)) if extras else 0
started = time.monotonic()
for i in range(count):
    seq = first + i
    if rate > 0:
        lag = started + i / rate - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    if extras and i % every == 0 and extras:
        client.publish("tvilling/C1/telemetry", extras.pop(), qos=1)
    twin = f"C{seq % twins + 1}"
    body = json.dumps({"ts": round(time.time() * 1000, 3), "values": {"vibration": float(seq)}, "id": str(seq)})
    info = client.publish(f"tvilling/{twin}/telemetry", body, qos=1)  # never under our lock: paho calls back
    with lock:
        if info.mid in early:
            early.discard(info.mid)
            acked[i] = True
        else:
            mid_seq[info.mid] = seq
for payload in extras:
    client.publish("tvilling/C1/telemetry", payload, qos=1)
deadline = time.monotonic() + 300
while not acked.all() and time.monotonic() < deadline:
    time.sleep(0.1)
client.loop_stop()
np.save(out, np.flatnonzero(acked) + first)
print(json.dumps({"published": count, "acked": int(acked.sum()), "seconds": round(time.monotonic() - started, 2)}))
'''


@dataclass
class Publisher:
    """The publisher process: ``count`` QoS 1 messages from sequence number ``first`` at ``rate`` msgs/s."""

    workdir: Path
    port: int
    first: int
    count: int
    rate: float
    extras: list[bytes] = field(default_factory=list)  # hostile payloads mixed in (poison case)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Publisher:
        script = self.workdir / "publisher.py"
        script.write_text(PUBLISHER)
        extra = "-"
        if self.extras:
            extra = str(self.workdir / f"extras-{self.first}.json")
            Path(extra).write_text(json.dumps([p.hex() for p in self.extras]))
        self.out = self.workdir / f"acked-{self.first}.npy"
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port), str(self.first), str(self.count),
                                      str(self.rate), str(TWINS), str(self.out), extra],
                                     stdout=subprocess.PIPE, stderr=(self.workdir / "publisher.log").open("ab"))
        return self

    def wait(self, timeout: float = 600) -> np.ndarray:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"publisher failed ({self.proc.returncode}); see {self.workdir / 'publisher.log'}")
        log(f"publisher: {out.decode().strip()}")
        return np.load(self.out)


# ------------------------------------------------------------------------------------------ cases
@contextlib.contextmanager
def workspace(name: str, postgres: bool = False) -> Iterator[tuple[Path, str | None]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"tvilling-chaos-{name}-"))
    os.chmod(tmp, 0o755)
    schema = f"chaos_{uuid.uuid4().hex[:10]}" if postgres else None
    try:
        yield tmp, schema
    finally:
        if schema:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                for s in (schema, f"{schema}_history"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        if os.environ.get("TVILLING_CHAOS_KEEP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def wait_drained(server: Server, last: dict[str, float], timeout: float = 120, quiet_s: float = 10) -> bool:
    """Until every twin's state holds the last value published to it (True, after a moment for stragglers),
    or nothing has moved for ``quiet_s`` (False: the rest is lost, and the tally says how much)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] | None = None
    moved = time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            now = server.values()
            if all(now.get(t) == v for t, v in last.items()):
                time.sleep(1.0)
                return True
            if now != seen:
                seen, moved = now, time.monotonic()
            elif time.monotonic() - moved > quiet_s:
                log(f"nothing stored for {quiet_s:.0f} s; counting what arrived")
                return False
        time.sleep(0.25)
    raise RuntimeError(f"the server was still storing after {timeout:.0f} s: {server.values()} vs {last}")


def probe_recovery(server: Server, port: int, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` until a message published now (to the twin ``P``, apart from the counted stream)
    is stored: the broker is back, the server reconnected and subscribed, and ingest works."""
    import paho.mqtt.publish as single

    deadline = time.monotonic() + timeout
    k = 0
    while time.monotonic() < deadline:
        k += 1
        with contextlib.suppress(OSError):
            body = json.dumps({"ts": round(time.time() * 1000, 3), "values": {PROP: -float(k)}})
            single.single("tvilling/P/telemetry", body, qos=1, hostname="127.0.0.1", port=port)
            for _ in range(4):
                status, doc = http("GET", f"{server.base}/api/twins/P")
                if status == 200 and doc.get("reported", {}).get(PROP, 0) < 0:
                    return round(time.monotonic() - since, 2)
                time.sleep(0.05)
    raise RuntimeError("ingest did not resume")


def wait_moving(server: Server, before: dict[str, float], since: float, timeout: float = 120) -> float:
    """Seconds from ``since`` until a twin's state differs from ``before`` (the server stores readings again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if server.values() != before:
                return round(time.monotonic() - since, 2)
        time.sleep(0.05)
    raise RuntimeError("ingest did not resume")


def last_per_twin(sent: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for seq in sent.tolist():
        out[f"C{seq % TWINS + 1}"] = float(max(seq, out.get(f"C{seq % TWINS + 1}", -1.0)))
    return out


def tally(name: str, sent: np.ndarray, stored: np.ndarray, server: Server, **extra: Any) -> dict[str, Any]:
    unique = np.unique(stored)
    lost = np.setdiff1d(sent, unique)
    result = {"case": name, "sent": len(sent), "stored": len(unique), "lost": len(lost),
              "duplicated": len(stored) - len(unique), "peak_rss_mb": round(server.peak_rss / 2**20, 1), **extra}
    if len(lost):
        result["lost_sample"] = lost[:10].tolist()
    log(json.dumps(result))
    return result


def case_server_kill(messages: int, rate: float, postgres: bool = False, shared: bool = False) -> dict[str, Any]:
    """``kill -9`` of the server a third of the way into the stream; restart after 3 s.

    ``shared``: two servers on one PostgreSQL store split the stream (``--shared-group``), each with its own
    data directory and so its own MQTT identity; the second one is killed."""
    name = "shared_workers_kill" if shared else "server_kill_postgres" if postgres else "server_kill_embedded"
    with workspace(name, postgres or shared) as (tmp, schema):
        broker = Broker(tmp)
        broker.start()
        group = "ingest" if shared else None
        servers = [Server(tmp / f"worker-{k}", broker.url, schema, shared_group=group) for k in range(1 + shared)]
        watch, victim = servers[0], servers[-1]
        try:
            watch.setup_twins()
            for server in servers:
                server.start()
            pub = Publisher(tmp, broker.port, 0, messages, rate).start()
            time.sleep(messages / rate / 3)
            before = watch.values()
            log(f"{name}: kill -9 the server (pid {victim.proc.pid if victim.proc else '?'})")
            victim.kill()
            time.sleep(3)
            started = victim.start()
            recovery = wait_moving(watch, before, started)
            sent = pub.wait()
            wait_drained(watch, last_per_twin(sent))
            sessions = broker_sys(broker.port, "clients/total")  # connected or kept: no orphan from the kill
            for server in servers:
                server.stop()
            ids = {(s.data_dir / "mqtt-identity").read_text().strip() for s in servers}
            result = tally(name, sent, watch.stored(), watch, recovery_s=recovery, broker_sessions=sessions,
                           identities=len(ids))
            result["peak_rss_mb"] = round(max(s.peak_rss for s in servers) / 2**20, 1)
            return result
        finally:
            for server in servers:
                server.stop()
            broker.stop()


def case_broker(messages: int, rate: float, sig: int, every_change: bool = False) -> dict[str, Any]:
    """SIGTERM or SIGKILL of the broker a third of the way in; restarted after 3 s (same port and file).

    ``every_change``: the broker saves after every change instead of the shipped 60 s interval."""
    name = ("broker_term" if sig == signal.SIGTERM else "broker_kill") + ("_every_change" if every_change else "")
    with workspace(name) as (tmp, _):
        broker = Broker(tmp, SAVE_EVERY_CHANGE if every_change else None)
        broker.start()
        server = Server(tmp / "data", broker.url)
        try:
            server.setup_twins()
            server.start()
            pub = Publisher(tmp, broker.port, 0, messages, rate).start()
            time.sleep(messages / rate / 3)
            log(f"{name}: signal {sig} to the broker")
            broker.signal(sig)
            time.sleep(3)
            restarted = time.monotonic()
            broker.start()
            recovery = probe_recovery(server, broker.port, restarted)
            sent = pub.wait()
            drained = wait_drained(server, last_per_twin(sent))
            server.stop()
            return tally(name, sent, server.stored(), server, recovery_s=recovery, drained=drained)
        finally:
            server.stop()
            broker.stop()


def poison_corpus(extra: int = 0, seed: int = 7) -> list[bytes]:
    """Hostile payloads: depth, size, numbers out of range, wrong types, broken bytes, and random JSON."""
    big = "x" * 200_000
    corpus = [
        b'{"ts": 0, "values": {"vibration": ' + b"[" * 1000 + b"]" * 1000 + b"}}",
        b'{"ts": 1767225600000, "values": {"vibration": ' + b"9" * 400 + b"}}",
        b'{"ts": ' + b"9" * 400 + b', "values": {"vibration": 1.0}}',
        b'{"ts": 1e999, "values": {"vibration": 1.0}}',
        b'{"ts": true, "values": {"vibration": 1.0}}',
        b'{"ts": "9999-12-31T23:59:59Z", "values": {"vibration": 1.0}}',
        b'{"ts": -62135596800001, "values": {"vibration": 1.0}}',
        b'{"ts": 1767225600000, "values": {}}',
        b'{"ts": 1767225600000, "values": []}',
        b'{"ts": 1767225600000, "values": {"vibration": null}, "quality": null}',
        b'{"ts": 1767225600000, "values": {"vibration": 1.0}, "quality": "excellent"}',
        b'{"ts": 1767225600000, "values": {"' + b"k" * 100_000 + b'": 1.0}}',
        json.dumps({"ts": 1767225600000, "values": {"vibration": big}}).encode(),
        json.dumps({"ts": 1767225600000, "values": {f"p{i}": i for i in range(5000)}}).encode(),
        json.dumps([{"ts": 1767225600000, "values": {"vibration": 1.0}}] * 12_000).encode(),  # > MAX_RECORDS, < 1 MiB
        b'{"ts": 1767225600000, "values": {"vibration": "\\ud800"}}',
        b"\xff\xfe\x00garbage",
        b"",
        b'{"ts": 1767225600000, "values": {"vibration": 1.0}',
        b'{"ts": 1767225600000, "values": {"vibration": NaN}}',
        b'{"ts": 1767225600000, "values": {"vibration": {"value": 1e308, "unit": "inchPerSecond"}}}',
        b'{"ts": 1767225600000, "values": {"vibration": {"value": ' + b"9" * 400 + b', "unit": "inchPerSecond"}}}',
        b'{"twin": "C2", "ts": 1767225600000, "values": {"vibration": 1.0}}',
        b'{"ts": 1767225600000, "values": {"vibration": 1.0}, "id": "' + b"i" * 1000 + b'"}',
        b'{"ts": 1767225600000, "values": {"vibration": 1.0}, "extra": {"a": [1, 2, {"b": null}]}}',
    ]
    rng = np.random.default_rng(seed)
    for _ in range(extra):  # random JSON-ish documents and byte strings
        kind = rng.integers(0, 3)
        if kind == 0:
            corpus.append(rng.bytes(int(rng.integers(0, 2000))))
        elif kind == 1:
            depth = int(rng.integers(1, 60))
            corpus.append(b'{"ts": 1767225600000, "values": {"vibration": ' + b"[" * depth + b"1" + b"]" * depth
                          + b"}}")
        else:
            value = rng.choice(["1e400", "-0", "1" + "0" * 300, '"1.5"', "true", "{}", '{"value": 1}', "[1.5]"])
            corpus.append(b'{"ts": 1767225600000, "values": {"vibration": ' + str(value).encode() + b"}}")
    return corpus


def case_poison(messages: int, rate: float, extra: int) -> dict[str, Any]:
    """Hostile payloads spread through a stream of valid ones: the valid ones are all stored, each hostile one
    is dead-lettered once, and the server neither reconnects nor grows."""
    with workspace("poison") as (tmp, _):
        broker = Broker(tmp)
        broker.start()
        server = Server(tmp / "data", broker.url)
        corpus = poison_corpus(extra)
        try:
            server.setup_twins()
            server.start()
            sent = Publisher(tmp, broker.port, 0, messages, rate, extras=list(corpus)).start().wait()
            wait_drained(server, last_per_twin(sent))
            server.stop()
            letters = server.dead_letters()
            reconnects = server.log_text().count("disconnected from")
            return tally("poison", sent, server.stored(), server, hostile=len(corpus), distinct=len(set(corpus)),
                         dead_letters=len(letters), dead_letter_deliveries=sum(d.deliveries for d in letters),
                         reconnects=reconnects, internal=sum(d.rule == "internal" for d in letters))
        finally:
            server.stop()
            broker.stop()


CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))  # cgroup v1 cpu controller, then v2


def cap_cpu(pid: int, cores: float) -> Path:
    """Hold process ``pid`` (all its threads) to ``cores`` CPUs with a CPU cgroup of its own (CFS quota:
    cgroup v1 ``cpu.cfs_quota_us``, or v2 ``cpu.max``). Needs root; raises with the reason otherwise."""
    period = 100_000
    quota = max(1_000, round(cores * period))
    for root in CGROUP_ROOTS:
        v1 = (root / "cpu.cfs_period_us").exists()
        if not v1 and not (root / "cgroup.controllers").exists():
            continue
        group = root / f"tvilling-chaos-{pid}"
        try:
            group.mkdir(exist_ok=True)
            if v1:
                (group / "cpu.cfs_period_us").write_text(str(period))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} {period}")
            (group / "cgroup.procs").write_text(str(pid))
            return group
        except OSError as exc:
            raise RuntimeError(f"cannot cap the server's CPU with a cgroup under {root}: {exc}") from exc
    raise RuntimeError("cannot cap the server's CPU: no writable CPU cgroup (cgroup v1 cpu or v2) on this machine")


def release_cgroups() -> None:
    """Remove the (now empty) CPU cgroups :func:`cap_cpu` made."""
    for root in CGROUP_ROOTS:
        for group in root.glob("tvilling-chaos-*"):
            with contextlib.suppress(OSError):
                group.rmdir()


def case_overload(seconds: float, publishers: int = 2, cpu: float | None = None) -> dict[str, Any]:
    """Publishers flat out (bench/mqtt_raw.py's raw-socket QoS 1 publisher, ~35k msgs/s each on a quiet machine)
    for ``seconds``, starting before the server so that a backlog waits for it: the server's receive window
    stays full the whole run. Its RSS is sampled every second and a line fitted over the last half; what it
    stored and what the broker still held at the end give the overload (offered / stored).

    On a 2-core machine the publishers and the server share the cores, so the server stores about half of
    what is offered; ``cpu`` (cores, e.g. 0.15) holds the server to a CPU cgroup's quota so that the same
    publishers offer ten times what it can store."""
    with workspace("overload") as (tmp, _):
        broker = Broker(tmp)
        broker.start()
        server = Server(tmp / "data", broker.url, cpu=cpu)
        pubs: list[subprocess.Popen[bytes]] = []
        try:
            server.setup_twins()
            for k in range(publishers):
                pubs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "mqtt_raw.py"), "--publish", f"127.0.0.1:{broker.port}",
                     "--messages", str(10**9), "--qos", "1", "--topic", f"tvilling/C{k + 1}/telemetry",
                     "--payload", "now"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(3)  # a backlog before the server starts
            server.start()
            samples, started = [], time.monotonic()
            while time.monotonic() - started < seconds:
                samples.append((time.monotonic() - started, server.rss() / 2**20))
                time.sleep(1.0)
            queued = broker_queued(broker.port)
            received = broker_sys(broker.port, "publish/messages/received")  # every PUBLISH offered to it
            for pub in pubs:
                pub.kill()
                pub.wait()
            alive = (server.proc is not None and server.proc.poll() is None
                     and http("GET", f"{server.base}/health")[0] == 200)
            server.stop()
            release_cgroups()
            with server.history() as history:
                stored = history.count()
            tail = np.array(samples[len(samples) // 2:])
            slope = float(np.polyfit(tail[:, 0], tail[:, 1], 1)[0] * 60) if len(tail) >= 3 else float("nan")
            result = {"case": "overload", "seconds": seconds, "server_cpu": cpu,
                      "stored_msgs_s": round(stored / 2 / seconds),
                      "queued_at_end": queued, "offered_msgs_s": round(received / (seconds + 3)),
                      "overload": round(received / (seconds + 3) / max(stored / 2 / seconds, 1), 1),
                      "peak_rss_mb": round(server.peak_rss / 2**20, 1),
                      "rss_end_mb": round(samples[-1][1], 1) if samples else None,
                      "rss_slope_mb_per_min": round(slope, 2),
                      "rss_last_5min_slope_mb_per_min": last_slope(samples, 300.0),
                      "rss_per_minute_mb": [round(m, 1) for t, m in samples if int(t) % 60 == 0][:120],
                      "alive": alive}
            log(json.dumps(result))
            return result
        finally:
            for pub in pubs:
                if pub.poll() is None:
                    pub.kill()
            server.stop()
            release_cgroups()
            broker.stop()


def last_slope(samples: list[tuple[float, float]], window: float) -> float | None:
    """The least-squares slope (MB/min) of the RSS samples in the last ``window`` seconds."""
    if not samples:
        return None
    end = samples[-1][0]
    tail = np.array([s for s in samples if s[0] >= end - window])
    return round(float(np.polyfit(tail[:, 0], tail[:, 1], 1)[0] * 60), 2) if len(tail) >= 3 else None


def broker_queued(port: int) -> int:
    """Messages the broker holds (``$SYS/broker/store/messages/count``, published every sys_interval)."""
    return broker_sys(port, "store/messages/count")


def broker_sys(port: int, name: str) -> int:
    """One of the broker's ``$SYS/broker/...`` figures (published every sys_interval, 10 s by default)."""
    import paho.mqtt.client as paho

    got: list[int] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"chaos-sys-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda c, u, m: got.append(int(m.payload))
    client.connect("127.0.0.1", port)
    client.subscribe(f"$SYS/broker/{name}")
    client.loop_start()
    deadline = time.monotonic() + 12
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else -1




@contextlib.contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def can_mount() -> str | None:
    """None if a size-limited tmpfs can be mounted here, else why not."""
    probe = Path(tempfile.mkdtemp(prefix="tvilling-mount-probe-"))
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
        if r.returncode != 0:
            return f"cannot mount a tmpfs here ({r.stderr.decode().strip() or r.returncode}); needs root"
        subprocess.run(["umount", str(probe)], check=False)
        return None
    except FileNotFoundError:
        return "no mount command"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def case_disk_full(messages: int, rate: float, size_mb: int = 96) -> dict[str, Any]:
    """The data directory on a small tmpfs: filled up mid-ingest, freed 5 s later. Writes fail with a clear
    error, nothing acknowledged is lost or corrupted, ingest resumes."""
    with workspace("disk_full") as (tmp, _):
        broker = Broker(tmp)
        broker.start()
        with small_disk(tmp / "disk", size_mb) as disk:
            server = Server(disk / "data", broker.url, log_dir=tmp)
            try:
                server.setup_twins()
                server.start()
                pub = Publisher(tmp, broker.port, 0, messages, rate).start()
                time.sleep(messages / rate / 3)
                filler = disk / "filler"
                subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
                log(f"disk_full: disk filled ({shutil.disk_usage(disk).free} bytes free); 5 s of failing writes")
                time.sleep(5)
                errors = [ln for ln in server.log_text().splitlines()
                          if "No space left" in ln or "disk is full" in ln or "disk full" in ln]
                before = server.values()
                filler.unlink()
                recovery = wait_moving(server, before, time.monotonic())
                sent = pub.wait()
                wait_drained(server, last_per_twin(sent))
                server.stop()
                check = integrity(server)
                return tally("disk_full", sent, server.stored(), server, recovery_s=recovery,
                             full_disk_errors_logged=len(errors), first_error=errors[0][-200:] if errors else None,
                             integrity=check)
            finally:
                server.stop()
                broker.stop()


def integrity(server: Server) -> str:
    """The files the embedded backend writes, checked after the server stopped: ``"<file>: ok; …"``.

    ``tvilling.db`` (every relational store) by SQLite's integrity check; ``history.duckdb`` by
    opening it read-only (which replays its write-ahead log) and reading every column of every
    table (DuckDB verifies each block's checksum as it reads it). A file of the previous layout
    still present means the backend did not migrate it, and is reported as such.
    """
    import sqlite3

    import duckdb

    from tvilling.backend import DB_FILE, HISTORY_FILE
    from tvilling.backend.legacy import legacy_files

    out = []
    path = server.data_dir / DB_FILE
    if path.exists():
        with contextlib.closing(sqlite3.connect(path)) as conn:
            out.append(f"{DB_FILE}: {conn.execute('PRAGMA integrity_check').fetchone()[0]}")
    path = server.data_dir / HISTORY_FILE
    if path.exists():
        try:
            with contextlib.closing(duckdb.connect(str(path), read_only=True)) as db:
                for (table,) in db.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                    db.execute(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()
            out.append(f"{HISTORY_FILE}: ok")
        except duckdb.Error as exc:
            out.append(f"{HISTORY_FILE}: {type(exc).__name__}: {exc}")
    out += [f"{p.name}: not migrated" for p in legacy_files(server.data_dir)]
    return "; ".join(out)


CASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "server_kill": lambda a: case_server_kill(a.messages, a.rate),
    "server_kill_postgres": lambda a: case_server_kill(a.messages, a.rate, postgres=True),
    "shared_workers_kill": lambda a: case_server_kill(a.messages, a.rate, shared=True),
    "broker_term": lambda a: case_broker(a.messages, a.rate, signal.SIGTERM),
    "broker_kill": lambda a: case_broker(a.messages, a.rate, signal.SIGKILL),
    "broker_kill_every_change": lambda a: case_broker(a.messages, a.rate, signal.SIGKILL, every_change=True),
    "poison": lambda a: case_poison(a.messages // 5, a.rate, a.poison_extra),
    "overload": lambda a: case_overload(a.overload_s, cpu=a.server_cpu),
    "disk_full": lambda a: case_disk_full(a.messages, a.rate),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--messages", type=int, default=50_000, help="messages per fault case")
    parser.add_argument("--rate", type=float, default=5_000, help="publish rate, msgs/s")
    parser.add_argument("--poison-extra", type=int, default=2_000, help="random hostile payloads besides the corpus")
    parser.add_argument("--overload-s", type=float, default=120, help="length of the overload run")
    parser.add_argument("--server-cpu", type=float, default=None,
                        help="overload: hold the server to this many cores (a CPU cgroup; needs root), so that "
                             "the publishers offer ~10x what it stores")
    args = parser.parse_args()
    results = {}
    for name in args.cases:
        if name == "disk_full" and (why := can_mount()):
            results[name] = {"case": name, "skipped": why}
            continue
        log(f"case {name}")
        results[name] = CASES[name](args)
    print(json.dumps({"bench": "chaos", "messages": args.messages, "rate": args.rate, "cases": results}))


if __name__ == "__main__":
    main()
