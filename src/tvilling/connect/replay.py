"""File replay: SKAB, NAB and C-MAPSS files fed through the same ingest pipeline as live data.

* SKAB: ``;``-separated, a ``datetime`` column and 8 sensor columns; one twin per file
  (``skab-valve1-0``); the label columns (``anomaly``, ``changepoint``) are not telemetry
  and are skipped.
* NAB: ``timestamp,value``; one twin per file (``nab-machine_temperature_system_failure``).
* C-MAPSS: space-separated ``unit cycle setting1-3 s1-s21``; one twin per engine unit
  (``cmapss-FD001-train-7``), cycle *n* stamped ``2020-01-01 + n hours``.

Timestamps without a zone are read as UTC. ``speed`` replays N× faster than the data's
own clock; ``None`` replays as fast as the pipeline takes it.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.history.readings import Readings
from tvilling.ingest.pipeline import Pipeline
from tvilling.ingest.ports import IngestResult

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
           sleep: Callable[[float], None] = time.sleep) -> IngestResult:
    """Feed every series through the pipeline; returns the summed result."""
    totals = {"accepted": 0, "rejected": 0, "duplicates": 0, "flagged": 0}
    for s in series:
        for lo, hi, span in chunks(s, speed, max_rows):
            started = time.monotonic()
            res = pipeline.ingest_readings(s.readings(lo, hi), source=f"replay:{Path(s.origin).name}",
                                           transport="replay")
            for key in totals:
                totals[key] += getattr(res, key)
            if progress is not None:
                progress((hi - lo) * len(s.columns))
            if speed is not None and span > 0:
                wait = span / speed - (time.monotonic() - started)
                if wait > 0:
                    sleep(wait)
    return IngestResult(**totals)
