"""File replay: SKAB, NAB and C-MAPSS files fed through the same ingest pipeline as live data.

* SKAB: ``;``-separated, a ``datetime`` column and 8 sensor columns; one twin per file
  (``skab-valve1-0``); the label columns (``anomaly``, ``changepoint``) are not telemetry
  and are skipped.
* NAB: ``timestamp,value``; one twin per file (``nab-machine_temperature_system_failure``).
* C-MAPSS: space-separated ``unit cycle setting1-3 s1-s21``; one twin per engine unit
  (``cmapss-FD001-train-7``), cycle *n* stamped ``2020-01-01 + n hours``.

Timestamps without a zone are read as UTC. ``speed`` replays N× faster than the data's
own clock; ``None`` replays as fast as the pipeline takes it.

:func:`replay` feeds a pipeline in this process, which opens the data directory's history
itself; the embedded history (DuckDB) admits one writing process, so while a
``tvilling serve`` holds the directory, :func:`replay_to` sends the same readings to
the server's ``POST /api/ingest`` instead (columnar bodies, each under the server's body
limit; times to the millisecond), through :class:`Server`, a small client of its API.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import (
    Conflict,
    Invalid,
    Malformed,
    NotFound,
    TooLarge,
    TvillingError,
    Unauthorized,
    Unavailable,
)
from tvilling.core.readings import Readings
from tvilling.ingest.deadletter import summarise
from tvilling.ingest.pipeline import Pipeline

SKAB_MODEL = "dtmi:tvilling:datasets:SkabTestbed;1"
NAB_MODEL = "dtmi:tvilling:datasets:NabStream;1"
CMAPSS_MODEL = "dtmi:tvilling:datasets:TurbofanEngine;1"
SKAB_LABELS = {"anomaly", "changepoint"}
CMAPSS_BASE_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1e6)
HOUR_US = 3_600_000_000
FORMATS = ("skab", "nab", "cmapss")


@dataclass(frozen=True)
class Series:
    """One twin's recording: a timestamp column and one column per property."""

    twin: str
    model: str
    ts: npt.NDArray[np.int64]  # µs since the epoch, ascending
    columns: dict[str, npt.NDArray[np.float64]]
    origin: str

    def __len__(self) -> int:
        return len(self.ts) * len(self.columns)

    def readings(self, lo: int, hi: int) -> Readings:
        """Rows ``lo:hi`` of every column, as one batch of readings."""
        ts = self.ts[lo:hi]
        parts = [Readings(np.full(len(ts), self.twin, dtype=object), np.full(len(ts), name, dtype=object), ts,
                          values[lo:hi]) for name, values in self.columns.items()]
        keep = Readings.concat(parts)
        finite = np.isfinite(keep.value)
        return keep if finite.all() else keep.take(np.flatnonzero(finite))


def twin_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "_", text)[:128]


def camel(column: str) -> str:
    word = column.replace(" ", "")
    return word[:1].lower() + word[1:]


def _parse_naive(text: str, path: Path, line: int) -> int:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f"{path}:{line}: {text!r} is not a timestamp", field="timestamp", rule="ts") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1_000_000)


def read_skab(path: Path) -> Series:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if not rows or "datetime" not in rows[0]:
        raise Invalid(f"{path}: not a SKAB file (no 'datetime' column in {rows[0] if rows else 'an empty file'})",
                      rule="format")
    header = rows[0]
    t_col = header.index("datetime")
    ts = np.array([_parse_naive(r[t_col], path, i + 2) for i, r in enumerate(rows[1:])], dtype=np.int64)
    columns = {}
    for j, name in enumerate(header):
        if j == t_col or name in SKAB_LABELS:
            continue
        columns[camel(name)] = np.array([float(r[j]) if r[j] else np.nan for r in rows[1:]])
    group = path.parent.name
    return Series(twin_id(f"skab-{group}-{path.stem}"), SKAB_MODEL, ts, columns, str(path))


def read_nab(path: Path) -> Series:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][:2] != ["timestamp", "value"]:
        raise Invalid(f"{path}: not a NAB file (expected the header 'timestamp,value')", rule="format")
    ts = np.array([_parse_naive(r[0], path, i + 2) for i, r in enumerate(rows[1:])], dtype=np.int64)
    values = np.array([float(r[1]) for r in rows[1:]])
    return Series(twin_id(f"nab-{path.stem}"), NAB_MODEL, ts, {"value": values}, str(path))


def read_cmapss(path: Path) -> list[Series]:
    data = np.loadtxt(path, ndmin=2)
    if data.shape[1] != 26:
        raise Invalid(f"{path}: not a C-MAPSS file (expected 26 columns, found {data.shape[1]})", rule="format")
    names = ["cycle", "setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
    out = []
    for unit in np.unique(data[:, 0]).astype(int).tolist():
        rows = data[data[:, 0] == unit]
        ts = CMAPSS_BASE_US + rows[:, 1].astype(np.int64) * HOUR_US
        columns = {name: rows[:, j + 1] for j, name in enumerate(names)}
        out.append(Series(twin_id(f"cmapss-{path.stem.replace('_', '-')}-{unit}"), CMAPSS_MODEL, ts, columns,
                          f"{path}#unit{unit}"))
    return out


def detect(path: Path) -> str:
    """The format of a file, from its name and first line."""
    if path.suffix == ".txt" and re.match(r"(train|test)_FD00\d", path.stem):
        return "cmapss"
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
    if "datetime" in first and ";" in first:
        return "skab"
    if first.strip() == "timestamp,value":
        return "nab"
    raise Invalid(f"{path}: cannot tell its format; pass --format skab|nab|cmapss", rule="format")


def load(path: Path, fmt: str = "auto") -> list[Series]:
    """Every series of a file, or of every data file under a folder (recursively)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".csv", ".txt") and p.is_file()
                       and (p.suffix == ".csv" or re.match(r"(train|test)_FD00\d", p.stem)))
        if not files:
            raise Invalid(f"{path}: no .csv or C-MAPSS .txt files under it", rule="format")
    else:
        files = [path]
    out: list[Series] = []
    for f in files:
        kind = detect(f) if fmt == "auto" else fmt
        if kind == "skab":
            out.append(read_skab(f))
        elif kind == "nab":
            out.append(read_nab(f))
        elif kind == "cmapss":
            out.extend(read_cmapss(f))
        else:
            raise Invalid(f"unknown format {fmt!r}; use one of {FORMATS}", rule="format")
    return out


def chunks(series: Series, speed: float | None, max_rows: int) -> Iterator[tuple[int, int, float]]:
    """Row ranges to send, each with the data-clock seconds it spans (0 at max speed)."""
    n = len(series.ts)
    if speed is None:
        for lo in range(0, n, max_rows):
            yield lo, min(n, lo + max_rows), 0.0
        return
    lo = 0
    tick_us = max(1, int(1e6 * speed / 10))  # ten sends a second of wall time
    while lo < n:
        end_ts = series.ts[lo] + tick_us
        hi = int(min(np.searchsorted(series.ts, end_ts, side="left"), lo + max_rows))
        hi = max(hi, lo + 1)
        span = (series.ts[hi] - series.ts[lo]) / 1e6 if hi < n else 0.0
        yield lo, hi, span
        lo = hi


def replay(pipeline: Pipeline, series: list[Series], *, speed: float | None = None, max_rows: int = 20_000,
           progress: Callable[[int], None] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> Answer:
    """Feed every series through the pipeline; returns the summed counts and the rejections by rule."""
    total = Answer()
    for s, lo, hi in paced(series, speed, max_rows, progress, sleep):
        res = pipeline.ingest_readings(s.readings(lo, hi), source=f"replay:{Path(s.origin).name}",
                                       transport="replay")
        total.add({"accepted": res.accepted, "rejected": res.rejected, "duplicates": res.duplicates,
                   "flagged": res.flagged, "rejections": summarise(res.letters)})
    return total


def paced(series: Sequence[Series], speed: float | None, max_rows: int, progress: Callable[[int], None] | None,
          sleep: Callable[[float], None]) -> Iterator[tuple[Series, int, int]]:
    """``(series, lo, hi)`` row ranges to send, one after the other; after each is handled, reports its readings to
    ``progress`` and, at ``speed``, waits what is left of the range's span in data time."""
    for s in series:
        for lo, hi, span in chunks(s, speed, max_rows):
            started = time.monotonic()
            yield s, lo, hi
            if progress is not None:
                progress((hi - lo) * len(s.columns))
            if speed is not None and span > 0:
                wait = span / speed - (time.monotonic() - started)
                if wait > 0:
                    sleep(wait)


# -- through a running server ------------------------------------------------------------------
_ERRORS: dict[int, type[TvillingError]] = {400: Malformed, 401: Unauthorized, 404: NotFound, 409: Conflict,
                                           412: Conflict, 413: TooLarge, 422: Invalid, 503: Unavailable}
BODY_BYTES = 1_000_000  # what one ingest request carries at most: under the default limit (1 MiB)


class Server:
    """A client of a running ``tvilling serve`` (``http://host:port``): JSON in and out, problems raised.

    A problem answer (4xx/5xx) raises the :class:`TvillingError` of its status with the
    server's ``detail``; a server that cannot be reached raises ``Unavailable`` naming it.
    """

    def __init__(self, url: str, *, timeout: float = 600.0) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"{url!r} is not a server address; use http://HOST:PORT", field="server", rule="format")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._conn_args = (parts.hostname, parts.port)
        self._https = parts.scheme == "https"
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self._conn_args
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(host, port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        """``(status, JSON answer)``; problems are raised. ``raw`` sends bytes that are JSON already."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json", "accept": "application/json"}
        token = os.environ.get("TVILLING_TOKEN", "").strip()
        if token:  # a server with auth required
            headers["authorization"] = f"Bearer {token}"
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, on a new one
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2 or not isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected
                                                  | BrokenPipeError):
                    raise Unavailable(f"cannot reach the server at {self.url} ({exc}); is `tvilling serve` running "
                                      "there?", server=self.url) from None
        try:
            answer = json.loads(payload) if payload else None
        except json.JSONDecodeError:
            answer = payload.decode("utf-8", "replace")[:300]
        if status >= 400:
            detail = answer.get("detail") if isinstance(answer, dict) else answer
            fields = {k: v for k, v in answer.items() if k not in ("type", "title", "status", "detail")} \
                if isinstance(answer, dict) else {}
            raise _ERRORS.get(status, TvillingError)(f"{self.url}{path.split('?')[0]} answered {status}: {detail}",
                                                     **fields)
        return status, answer

    def exists(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except NotFound:
            return False
        return True


@dataclass
class Answer:
    """What a replay came to (in this process or through a server): the summed counts and the rejections by
    rule (first reasons)."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    flagged: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def add(self, answer: dict[str, Any]) -> None:
        for key in ("accepted", "rejected", "duplicates", "flagged"):
            setattr(self, key, getattr(self, key) + int(answer.get(key, 0)))
        self.rejections = merge_rejections(self.rejections, answer.get("rejections") or [])


def merge_rejections(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]],
                     keep: int = 3) -> list[dict[str, Any]]:
    """Two rejection summaries (``{"rule", "count", "reasons"}`` per rule) as one, most readings first."""
    out: dict[str, dict[str, Any]] = {}
    for entry in [*a, *b]:
        into = out.setdefault(entry["rule"], {"rule": entry["rule"], "count": 0, "reasons": []})
        into["count"] += int(entry.get("count", 0))
        for reason in entry.get("reasons", []):
            if len(into["reasons"]) < keep and reason not in into["reasons"]:
                into["reasons"].append(reason)
    return sorted(out.values(), key=lambda e: -e["count"])


def columnar_body(s: Series, lo: int, hi: int) -> bytes:
    """Rows ``lo:hi`` of a series as one columnar ingest item (JSON; times in epoch ms, NaN as null)."""
    item = {"twin": s.twin, "ts": (s.ts[lo:hi] // 1000).tolist(), "source": f"replay:{Path(s.origin).name}",
            "values": {name: [None if v != v else v for v in col[lo:hi].tolist()] for name, col in s.columns.items()}}
    return json.dumps(item, allow_nan=False).encode()


def ensure_twins(server: Server, series: Sequence[Series], models: list[dict[str, Any]]) -> int:
    """Register ``models`` on the server and create the series' missing twins; returns how many were created."""
    server.request("POST", "/api/models", models)
    created = 0
    for s in series:
        path = f"/api/twins/{urllib.parse.quote(s.twin, safe='')}"
        if not server.exists(path):
            server.request("PUT", path, {"model": s.model, "attributes": {"origin": s.origin}})
            created += 1
    return created


def replay_to(server: Server, series: list[Series], *, speed: float | None = None, max_rows: int = 20_000,
              max_bytes: int = BODY_BYTES, progress: Callable[[int], None] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Answer:
    """Feed every series to a running server's ``POST /api/ingest``, paced as :func:`replay` is."""
    total = Answer()
    for s, lo, hi in paced(series, speed, max_rows, progress, sleep):
        _send(server, s, lo, hi, max_bytes, total)
    return total


def _send(server: Server, s: Series, lo: int, hi: int, max_bytes: int, total: Answer) -> None:
    """Rows ``lo:hi`` in requests of at most ``max_bytes`` each (sized from a sample, halved where over)."""
    sample = min(hi - lo, 200)
    per_row = len(columnar_body(s, lo, lo + sample)) / max(sample, 1)
    step = max(1, int(0.9 * max_bytes / max(per_row, 1.0)))
    parts = [(a, min(hi, a + step)) for a in range(lo, hi, step)]
    while parts:
        a, b = parts.pop(0)
        body = columnar_body(s, a, b)
        if len(body) > max_bytes and b - a > 1:
            parts[:0] = [(a, (a + b) // 2), ((a + b) // 2, b)]
            continue
        try:
            total.add(server.request("POST", "/api/ingest", raw=body)[1])
        except TooLarge:
            if b - a == 1:
                raise
            max_bytes = max(1024, len(body) // 2)  # the server's limit is lower than ours
            parts[:0] = [(a, (a + b) // 2), ((a + b) // 2, b)]
