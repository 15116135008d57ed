"""Tvilling beside the time-series servers users would otherwise pick, with the same data.

Runs whichever of ``victoria-metrics`` and ``influxd`` (InfluxDB 1.x) are on the PATH (it
installs nothing), each in a temporary directory on a free loopback port, and ``tvilling
serve`` (embedded store, temporary data directory). Each gets the same points — ``--series``
series (``--twins`` twins × ``--props`` numeric telemetry each) at 1 Hz for ``--seconds`` s —
posted in batches of ``--batch`` points, one request at a time, through its own HTTP ingest:

* VictoriaMetrics: ``POST /api/v1/import`` (one JSON line per series: values and timestamps);
  then ``/internal/force_flush``, after which the points are on disk and searchable;
* InfluxDB: ``POST /write`` (line protocol, precision ms), written and fsynced to its WAL;
* Tvilling: ``POST /api/ingest`` in its columnar form, through validation, cleaning, twin state
  and history (SQLite and DuckDB write-ahead logs synced before the answer).

Ingest is timed from the first post to the moment the data is stored and searchable. Then
the 1-minute average of one series over its range is asked ``--queries`` times (after two
untimed ones) and the median is reported: ``avg_over_time(…[1m])`` by ``query_range``
(result cache off), ``SELECT mean(…) … GROUP BY time(1m)``, and Tvilling's history
aggregate (``every=1m&agg=avg``). Prints one JSON line.

    python bench/peers.py                      # 2,000,000 points: 1,000 series x 2,000 s
    python bench/peers.py --seconds 200 --only tvilling
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "dtmi:tvilling:bench:Sensor;1"
MEASUREMENT = "sensor"


# ----- data ---------------------------------------------------------------------------------
class Data:
    """The points every system gets: per twin and property a value per second, as text (two decimals)."""

    def __init__(self, twins: int, props: int, seconds: int, batch: int) -> None:
        if twins < 1 or props < 1 or seconds < 1:
            raise SystemExit("--twins, --props and --seconds must be at least 1")
        series = twins * props
        if batch < series or batch % series:
            raise SystemExit(f"--batch ({batch}) must be a multiple of the number of series ({series})")
        self.twins = [f"S{i:05d}" for i in range(twins)]
        self.props = [f"p{j}" for j in range(props)]
        self.seconds = seconds
        self.step = batch // series  # seconds per batch
        # the range ends an hour ago, starts on a minute: inside every system's accepted window
        end_s = (int(time.time()) - 3600) // 60 * 60
        self.start_ms = (end_s - seconds) // 60 * 60 * 1000
        rng = np.random.default_rng(11)
        base = 50 + 10 * rng.random((twins, props, 1))
        self.values = np.round(base + rng.standard_normal((twins, props, seconds)), 2)

    @property
    def points(self) -> int:
        return int(self.values.size)

    def batches(self) -> Iterator[tuple[list[int], int, int]]:
        """(timestamps in ms, first second, end second) of each batch: every series, ``step`` seconds."""
        for lo in range(0, self.seconds, self.step):
            hi = min(lo + self.step, self.seconds)
            yield [self.start_ms + 1000 * s for s in range(lo, hi)], lo, hi

    def text(self, t: int, p: int, lo: int, hi: int) -> list[str]:
        return [f"{v:.2f}" for v in self.values[t, p, lo:hi].tolist()]


def tvilling_body(d: Data, ts: list[int], lo: int, hi: int) -> bytes:
    tss = ",".join(map(str, ts))
    items = []
    for t, twin in enumerate(d.twins):
        cols = ",".join(f'"{p}":[{",".join(d.text(t, j, lo, hi))}]' for j, p in enumerate(d.props))
        items.append(f'{{"twin":"{twin}","ts":[{tss}],"values":{{{cols}}}}}')
    return ("[" + ",".join(items) + "]").encode()


def victoria_body(d: Data, ts: list[int], lo: int, hi: int) -> bytes:
    tss = ",".join(map(str, ts))
    lines = [f'{{"metric":{{"__name__":"{p}","twin":"{twin}"}},"values":[{",".join(d.text(t, j, lo, hi))}],'
             f'"timestamps":[{tss}]}}' for t, twin in enumerate(d.twins) for j, p in enumerate(d.props)]
    return ("\n".join(lines) + "\n").encode()


def influx_body(d: Data, ts: list[int], lo: int, hi: int) -> bytes:
    lines = []
    for t, twin in enumerate(d.twins):
        cols = [d.text(t, j, lo, hi) for j in range(len(d.props))]
        for k, stamp in enumerate(ts):
            fields = ",".join(f"{p}={cols[j][k]}" for j, p in enumerate(d.props))
            lines.append(f"{MEASUREMENT},twin={twin} {fields} {stamp}")
    return ("\n".join(lines) + "\n").encode()


# ----- processes and HTTP ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    """One keep-alive HTTP connection to a server on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()
            raise
        return resp.status, resp.read(), resp

    def ok(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        status, data, _ = self.call(method, path, body, headers)
        if status >= 300:
            raise RuntimeError(f"{method} {path} on port {self.port}: HTTP {status}: {data[:300]!r}")
        return data


@contextmanager
def server(argv: list[str], port: int, ready: str, log: Path, env: dict[str, str] | None = None) -> Iterator[
        subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``GET ready`` answers below 300, stop it afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {log.read_text()[-800:]}")
            try:
                if Client(port).call("GET", ready)[0] < 300:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not answer {ready} within 60 s: {log.read_text()[-800:]}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(client: Client, proc: subprocess.Popen[bytes], bodies: list[bytes], post: Callable[[bytes], None],
           flush: Callable[[], None] | None = None) -> dict[str, Any]:
    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
    for body in bodies:
        post(body)
    if flush is not None:
        flush()
    wall = time.perf_counter() - t0
    return {"seconds": round(wall, 3), "server_cpu_s": round(cpu_seconds(proc.pid) - cpu0, 2)}


def timed_query(client: Client, path: str, runs: int, check: Callable[[bytes], int]) -> dict[str, Any]:
    buckets = check(client.ok("GET", path))  # warm-up, and the answer checked
    client.ok("GET", path)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.ok("GET", path)
        times.append((time.perf_counter() - t0) * 1000)
    return {"query_ms": round(statistics.median(times), 2), "query_ms_min": round(min(times), 2),
            "buckets": buckets}


def _which(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} is not on the PATH")
    return exe


def summary(d: Data, got: dict[str, Any], stored: int) -> dict[str, Any]:
    got["points"] = stored
    got["points_per_s"] = round(stored / got["seconds"])
    return got


# ----- the systems ----------------------------------------------------------------------------
def run_victoria(d: Data, tmp: Path, runs: int) -> dict[str, Any]:
    exe = _which("victoria-metrics")
    port = free_port()
    argv = [exe, f"-storageDataPath={tmp / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
            "-loggerLevel=ERROR"]
    bodies = [victoria_body(d, ts, lo, hi) for ts, lo, hi in d.batches()]
    with server(argv, port, "/health", tmp / "vm.log") as proc:
        c = Client(port)
        version = _vm_version(c.ok("GET", "/metrics").decode())
        got = ingest(c, proc, bodies, lambda b: c.ok("POST", "/api/v1/import", b),
                     lambda: c.ok("GET", "/internal/force_flush"))
        end_s = d.start_ms // 1000 + d.seconds
        q = urllib.parse.urlencode({"query": f'sum(count_over_time({{twin=~"S.*"}}[{d.seconds + 60}s]))',
                                    "time": end_s, "nocache": 1})
        res = json.loads(c.ok("GET", f"/api/v1/query?{q}"))["data"]["result"]
        stored = int(float(res[0]["value"][1])) if res else 0
        q = urllib.parse.urlencode({"query": f'avg_over_time({d.props[0]}{{twin="{d.twins[0]}"}}[1m])',
                                    "start": d.start_ms // 1000 + 60, "end": end_s + 59, "step": "60s",
                                    "nocache": 1})

        def check(body: bytes) -> int:
            result = json.loads(body)["data"]["result"]
            return len(result[0]["values"]) if result else 0

        got.update(timed_query(c, f"/api/v1/query_range?{q}", runs, check))
    got.update(version=version, ingest="POST /api/v1/import (JSON lines), then /internal/force_flush",
               durability="no fsync per request: points are buffered in memory and written to disk within about "
                          "a second (force_flush ends the timing); a crash loses the last second")
    return summary(d, got, stored)


def _vm_version(metrics: str) -> str:
    for line in metrics.splitlines():
        if line.startswith("vm_app_version{"):
            found = line.split('version="', 1)[1].split('"', 1)[0]
            if found:
                return found
    try:  # a build without its version stamped (the Debian package): the package's version
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"], capture_output=True,
                              text=True, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_influx(d: Data, tmp: Path, runs: int) -> dict[str, Any]:
    exe = _which("influxd")
    port, rpc = free_port(), free_port()
    conf = tmp / "influxdb.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp / 'influx' / 'meta'}"
[data]
  dir = "{tmp / 'influx' / 'data'}"
  wal-dir = "{tmp / 'influx' / 'wal'}"
  wal-fsync-delay = "0s"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[ifql]
  enabled = false
[continuous_queries]
  enabled = false
""")
    bodies = [influx_body(d, ts, lo, hi) for ts, lo, hi in d.batches()]
    with server([exe, "-config", str(conf)], port, "/ping", tmp / "influx.log") as proc:
        c = Client(port)
        version = c.call("GET", "/ping")[2].getheader("X-Influxdb-Version") or "unknown"
        c.ok("POST", "/query?" + urllib.parse.urlencode({"q": "CREATE DATABASE bench"}))
        got = ingest(c, proc, bodies, lambda b: c.ok("POST", "/write?db=bench&precision=ms", b))
        count = json.loads(c.ok("GET", "/query?" + urllib.parse.urlencode(
            {"db": "bench", "q": f"SELECT {', '.join(f'count({p})' for p in d.props)} FROM {MEASUREMENT}"})))
        row = count["results"][0]["series"][0]["values"][0]
        stored = int(sum(row[1:]))
        lo, hi = d.start_ms, d.start_ms + 1000 * d.seconds
        q = urllib.parse.urlencode({"db": "bench", "epoch": "ms", "q": (
            f"SELECT mean({d.props[0]}) FROM {MEASUREMENT} WHERE twin = '{d.twins[0]}' AND time >= {lo}ms "
            f"AND time < {hi}ms GROUP BY time(1m)")})

        def check(body: bytes) -> int:
            series = json.loads(body)["results"][0].get("series") or [{"values": []}]
            return len(series[0]["values"])

        got.update(timed_query(c, f"/query?{q}", runs, check))
    got.update(version=version, ingest="POST /write (line protocol, precision ms)",
               durability="write-ahead log fsynced before each write is answered (wal-fsync-delay 0s)")
    return summary(d, got, stored)


def run_tvilling(d: Data, tmp: Path, runs: int) -> dict[str, Any]:
    port = free_port()
    data_dir = tmp / "tvilling-data"
    (tmp / "tvilling.toml").write_text("")  # the defaults, whatever config the caller's directory holds
    env = {**os.environ, "TVILLING_MAX_INGEST_BYTES": str(256 << 20), "TVILLING_CONFIG": str(tmp / "tvilling.toml")}
    exe = shutil.which("tvilling", path=str(Path(sys.executable).parent)) or shutil.which("tvilling")
    if exe is None:
        raise RuntimeError("the tvilling command is not installed beside this Python (pip install -e .)")
    argv = [exe, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    bodies = [tvilling_body(d, ts, lo, hi) for ts, lo, hi in d.batches()]
    model = {"@context": "dtmi:dtdl:context;3", "@id": MODEL, "@type": "Interface", "displayName": "bench sensor",
             "contents": [{"@type": "Telemetry", "name": p, "schema": "double"} for p in d.props]}
    with server(argv, port, "/health", tmp / "tvilling.log", env) as proc:
        c = Client(port)
        version = json.loads(c.ok("GET", "/health")).get("version", "unknown")
        json_type = {"content-type": "application/json"}
        c.ok("POST", "/api/models", json.dumps(model).encode(), json_type)
        for twin in d.twins:
            c.ok("PUT", f"/api/twins/{twin}", json.dumps({"model": MODEL}).encode(), json_type)
        stored = 0
        rejected: list[Any] = []

        def post(body: bytes) -> None:
            nonlocal stored
            answer = json.loads(c.ok("POST", "/api/ingest", body, json_type))
            stored += answer["accepted"]
            rejected.extend(answer["rejections"])

        got = ingest(c, proc, bodies, post)
        lo, hi = d.start_ms, d.start_ms + 1000 * d.seconds
        path = f"/api/twins/{d.twins[0]}/history?property={d.props[0]}&from={lo}&to={hi}&every=1m&agg=avg"
        got.update(timed_query(c, path, runs, lambda body: len(json.loads(body)["items"])))
    got.update(version=version, ingest="POST /api/ingest (columnar form): validation, cleaning, twin state, history",
               durability="SQLite (twin state, dead letters) WAL synchronous=FULL and DuckDB (history) WAL synced "
                          "before each batch is answered")
    if rejected:
        got["rejections"] = rejected[:5]
    return summary(d, got, stored)


SYSTEMS: dict[str, tuple[str | None, Callable[[Data, Path, int], dict[str, Any]]]] = {
    "victoriametrics": ("victoria-metrics", run_victoria),
    "influxdb": ("influxd", run_influx),
    "tvilling": (None, run_tvilling),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=500)
    ap.add_argument("--props", type=int, default=2, help="numeric telemetry per twin (series = twins x props)")
    ap.add_argument("--seconds", type=int, default=2000, help="seconds of 1 Hz data per series")
    ap.add_argument("--batch", type=int, default=100_000, help="points per request")
    ap.add_argument("--queries", type=int, default=15, help="timed runs of the query (the median is reported)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    args = ap.parse_args()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"--only: unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    d = Data(args.twins, args.props, args.seconds, args.batch)
    out: dict[str, Any] = {"bench": "peers", "points": d.points, "series": len(d.twins) * len(d.props),
                           "seconds": d.seconds, "batch": args.batch, "cores": os.cpu_count(), "skipped": {}}
    for name in wanted:
        exe, run = SYSTEMS[name]
        if exe is not None and shutil.which(exe) is None:
            out["skipped"][name] = f"{exe} is not on the PATH"
            continue
        with tempfile.TemporaryDirectory(prefix=f"peers-{name}-") as tmp:
            try:
                out[name] = run(d, Path(tmp), args.queries)
            except (RuntimeError, OSError, KeyError, IndexError, ValueError) as exc:
                out["skipped"][name] = f"failed: {type(exc).__name__}: {str(exc)[:400]}"
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
