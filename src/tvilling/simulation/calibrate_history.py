"""Stored history of one simulated twin, on a regular time grid, as a calibration reads it.

:func:`read_window` takes one twin of a simulation (``[[simulations]]``) and a time range, finds
where each bound input and each bound output is read — the twin itself or a twin one of its
relationships reaches, resolved by the shadow mode's :class:`~tvilling.simulation.binding.Binder`;
a text reading (a machine's ``state``) is turned into a number by the source's ``map``, as shadow
mode does — and reads their raw points through the history port (``range``, paged).

**The grid.** Samples ``t_k = t₀ + k·step``: ``t₀`` is the first measured reading in the range,
``step`` the median spacing of the measured readings' timestamps (or the one given). A reading
belongs to its nearest grid time. A measured output's sample is the mean of its readings there
(NaN: none); an input's is the last one reported there.

**Inputs drive the step they were reported at the end of.** A device reports its setpoint and
load with the outputs they produced, and shadow mode lets the inputs reported at ``t`` drive the
step that ends at ``t``. A calibration holds an input from its sample to the next, so the input
series handed to it is the reported one moved one sample earlier: ``u[k]`` = what was reported at
``t_{k+1}`` (held over grid times where nothing was reported; before the first report, the first
value). Constant sources give a constant series; a model input the binding leaves out takes the
model's default.

Model time is ``(t − t₀) × time_scale`` seconds (an accelerated plant's readings: ``time_scale``
> 1), as shadow mode runs it.

Times are given as ISO 8601 with a zone, epoch milliseconds, ``now`` or relative to now
(``-2h``, ``-30m``, ``-90s``, ``-1d``): :func:`parse_time`.

>>> parse_time("-2h", "from", now_us=10 * 3_600_000_000)
28800000000
>>> parse_time("1970-01-01T00:00:01Z", "to", now_us=0)
1000000
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tvilling.core.envelope import format_ts, parse_ts
from tvilling.core.errors import Invalid, TvillingError
from tvilling.core.readings import BAD
from tvilling.ingest.normalise import to_us
from tvilling.simulation.binding import Bound
from tvilling.simulation.ports import Array, Signature
from tvilling.simulation.spec import SimulationSpec, Source

PAGE = 100_000
#: a calibration window needs at least this many grid samples
MIN_SAMPLES = 10
#: the most grid samples one read may make (a step far smaller than the range is refused)
MAX_SAMPLES = 2_000_000
_RELATIVE = re.compile(r"\s*([-+])\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*")
#: the times accepted: years 1000 to 9999
_MIN_US, _MAX_US = -30_610_224_000_000_000, 253_402_300_799_999_999
_UNIT_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000,
            "w": 604_800_000_000}


def now_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return to_us(datetime.now(UTC))


def parse_time(value: Any, field: str, *, now_us: int) -> int:
    """Microseconds since the epoch from ISO 8601 with a zone, epoch milliseconds (a number or digits),
    ``now``, or a signed duration from now (``-2h``, ``-30m``, ``+5m``); :class:`Invalid` names ``field``."""
    us = _parse_time(value, field, now_us)
    if not _MIN_US <= us <= _MAX_US:
        raise Invalid(f"{field}: {value!r} lies outside the years 1000 to 9999", field=field, rule="time")
    return us


def _parse_time(value: Any, field: str, now_us: int) -> int:
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return now_us
        m = _RELATIVE.fullmatch(text)
        if m is not None:
            delta = round(float(m.group(2)) * _UNIT_US[m.group(3)])
            return now_us - delta if m.group(1) == "-" else now_us + delta
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            value = float(text)
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"{field} must be a time: ISO 8601 with a zone, epoch milliseconds, 'now' or relative "
                      f"such as '-2h', not {value!r}", field=field, rule="time")
    if isinstance(value, int | float) and not math.isfinite(float(value)):
        raise Invalid(f"{field} must be a finite time, not {value!r}", field=field, rule="time")
    try:
        return to_us(parse_ts(value, field=field))
    except TvillingError:
        raise Invalid(f"{field}: {value!r} is not a time: use ISO 8601 with a zone (2026-01-01T08:00:00Z), epoch "
                      "milliseconds, 'now' or relative such as '-2h'", field=field, rule="time") from None
    except (OverflowError, ValueError):
        raise Invalid(f"{field}: {value!r} is out of range", field=field, rule="time") from None


def iso(us: int) -> str:
    """A time in microseconds as ISO 8601 (UTC, ``Z``); a time no calendar holds as its number."""
    try:
        return format_ts(datetime.fromtimestamp(us / 1e6, UTC))
    except (OverflowError, ValueError, OSError):
        return f"{us} µs"


@dataclass
class HistoryWindow:
    """One twin's inputs and measured outputs on a regular grid (see the module docstring)."""

    twin: str
    ts_us: np.ndarray  # (T,) int64: the grid times
    step_us: int
    t: Array  # (T,) model seconds from the first sample
    inputs: dict[str, Array]  # held over the step after each sample; NaN where nothing is known yet
    measured: dict[str, Array]  # NaN where nothing was measured
    sources: dict[str, str] = field(default_factory=dict)  # input or output → "twin/property" (or a constant)
    readings: dict[str, int] = field(default_factory=dict)  # input or output → readings used
    missing_outputs: list[str] = field(default_factory=list)  # bound outputs with no reading in the range
    time_scale: float = 1.0

    def index(self, at_us: int) -> int:
        """The first sample at or after ``at_us``."""
        return int(np.searchsorted(self.ts_us, at_us, side="left"))

    def model_time(self, at_us: int) -> float:
        """A time in microseconds as model seconds of this window."""
        return (at_us - int(self.ts_us[0])) / 1e6 * self.time_scale


Points = tuple[np.ndarray, np.ndarray]  # (ts_us int64, value float64), in time order


def read_points(history: Any, twin: str, source: Source, start_us: int, end_us: int) -> Points:
    """The raw points of a source in ``[start_us, end_us)`` as numbers (text through the source's ``map``;
    readings of bad quality left out), read page by page from the history port."""
    ts: list[int] = []
    values: list[float] = []
    after: int | None = None
    while True:
        page = history.range(twin, source.path, start_us, end_us, limit=PAGE, after_us=after)
        for p in page:
            if p.quality >= BAD:
                continue
            ts.append(p.ts_us)
            if source.map:
                values.append(source.number(p.text) if p.text is not None else math.nan)
            else:
                values.append(p.value)
        if len(page) < PAGE:
            break
        after = page[-1].ts_us
    return np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64)


def _grid_step(measured: Mapping[str, Points], given_us: int | None) -> int:
    if given_us is not None:
        return given_us
    stamps = np.unique(np.concatenate([ts for ts, _ in measured.values()]))
    gaps = np.diff(stamps)
    gaps = gaps[gaps > 0]
    if not len(gaps):
        raise Invalid("the window holds measured readings at a single time only: a calibration needs a series",
                      field="from", rule="range")
    return max(int(np.median(gaps)), 1)


def _bucket(ts: np.ndarray, t0: int, step: int, n: int) -> np.ndarray:
    """The grid sample of each time (-1 outside the grid)."""
    k = np.floor((ts - t0) / step + 0.5).astype(np.int64)
    k[(k < 0) | (k >= n)] = -1
    return k


def _mean_on_grid(points: Points, t0: int, step: int, n: int) -> Array:
    ts, v = points
    k = _bucket(ts, t0, step, n)
    ok = (k >= 0) & np.isfinite(v)
    total = np.bincount(k[ok], weights=v[ok], minlength=n)
    count = np.bincount(k[ok], minlength=n)
    out = np.full(n, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _last_on_grid(points: Points, t0: int, step: int, n: int) -> Array:
    ts, v = points
    k = _bucket(ts, t0, step, n)
    ok = np.flatnonzero((k >= 0) & np.isfinite(v))
    out = np.full(n, np.nan)
    if len(ok):
        # the points are in time order: the last of each sample is the first one seen from the end
        rev = ok[::-1]
        samples, first = np.unique(k[rev], return_index=True)
        out[samples] = v[rev[first]]
    return out


def read_window(history: Any, spec: SimulationSpec, signature: Signature, bound: Bound, start_us: int,
                end_us: int, *, step_us: int | None = None, outputs: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> HistoryWindow:
    """The bound inputs and measured outputs of ``bound.twin`` in ``[start_us, end_us)`` on a grid.

    ``outputs``: the model outputs to read (default: every bound output). Errors (:class:`Invalid`)
    name what is wrong: an input or output whose related twin does not exist, an input with no
    reading in the range, a range with no measured reading or too few samples."""
    if end_us <= start_us:
        raise Invalid(f"the window ends ({iso(end_us)}) before it starts ({iso(start_us)})", field="to",
                      rule="range")
    if step_us is not None and step_us <= 0:
        raise Invalid(f"step must be > 0, not {step_us / 1e6:g} s", field="step", rule="range")
    chosen = list(spec.outputs) if outputs is None else list(outputs)
    for name in chosen:
        if name not in spec.outputs:
            raise Invalid(f"simulation {spec.name!r} binds no output {name!r}; its outputs are {list(spec.outputs)}",
                          field=f"outputs.{name}", rule="unknown")
    if not chosen:
        raise Invalid("name at least one output to compare", field="outputs", rule="required")
    wanted: list[tuple[str, str, Source]] = [("inputs", n, s) for n, s in spec.inputs.items()
                                             if s.constant is None]
    wanted += [("outputs", n, spec.outputs[n]) for n in chosen]
    points: dict[tuple[str, str], Points] = {}
    sources: dict[str, str] = {}
    for i, (kind, name, source) in enumerate(wanted):
        target = bound.twin_of(source)
        if target is None:
            rel = source.relationship or ""
            where = "".join(f"[{k}={v}]" for k, v in source.where)
            raise Invalid(f"simulation {spec.name!r}: {kind}.{name} reads {rel}{where}/{source.path}, but twin "
                          f"{bound.twin!r} has no such related twin", field=f"{kind}.{name}", rule="relationship")
        points[(kind, name)] = read_points(history, target, source, start_us, end_us)
        sources[name] = f"{target}/{source.path}"
        if progress is not None:
            progress(i + 1, len(wanted))
    measured_points = {n: p for (k, n), p in points.items() if k == "outputs" and len(p[0])}
    missing = [n for n in chosen if n not in measured_points]
    if not measured_points:
        raise Invalid(f"twin {bound.twin!r} has no reading of any output of simulation {spec.name!r} "
                      f"({', '.join(sources[n] for n in chosen)}) between {iso(start_us)} and {iso(end_us)}",
                      field="from", rule="empty")
    step = _grid_step(measured_points, step_us)
    t0 = int(min(int(ts[0]) for ts, _ in measured_points.values()))
    n = (end_us - 1 - t0) // step + 1
    if n > MAX_SAMPLES:
        raise Invalid(f"a step of {step / 1e6:g} s makes {n:,} samples of the window (at most {MAX_SAMPLES:,}): "
                      "give a longer step or a shorter window", field="step", rule="limit")
    if n < MIN_SAMPLES:
        raise Invalid(f"the window {iso(start_us)} – {iso(end_us)} holds {n} samples of {step / 1e6:g} s from the "
                      f"first reading on; a calibration needs at least {MIN_SAMPLES}: widen it", field="to",
                      rule="too_short")
    ts_grid = t0 + step * np.arange(n, dtype=np.int64)
    t = (ts_grid - t0) / 1e6 * spec.time_scale
    inputs: dict[str, Array] = {}
    counts: dict[str, int] = {}
    known_inputs = set(signature.names("inputs"))
    for name, source in spec.inputs.items():
        if name not in known_inputs:
            continue
        if source.constant is not None:
            inputs[name] = np.full(n, source.constant)
            sources[name] = f"constant {source.constant:g}"
            continue
        pts = points[("inputs", name)]
        reported = _last_on_grid(pts, t0, step, n)
        if not np.isfinite(reported).any():
            raise Invalid(f"input {name!r} ({sources[name]}) has no reading between {iso(start_us)} and "
                          f"{iso(end_us)}" + (f" that its map ({dict(source.map)}) turns into a number"
                                              if source.map and len(pts[0]) else ""),
                          field=f"inputs.{name}", rule="empty")
        inputs[name] = np.r_[reported[1:], np.nan]  # the value in effect over the step after each sample
        counts[name] = int(np.isfinite(pts[1]).sum())
    measured = {name: _mean_on_grid(measured_points[name], t0, step, n) for name in chosen
                if name in measured_points}
    counts.update({name: len(measured_points[name][0]) for name in measured})
    return HistoryWindow(bound.twin, ts_grid, step, t, inputs, measured, sources, counts, missing, spec.time_scale)


__all__ = ["MIN_SAMPLES", "HistoryWindow", "iso", "now_us", "parse_time", "read_points", "read_window"]
