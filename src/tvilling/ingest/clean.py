"""The cleaning stage, vectorised per series: order, duplicates, late and stale readings, spikes.

Readings are never silently dropped: exact duplicates are counted, readings that are
impossible (far future, before 2000, older than the re-order window) are dead-lettered,
and suspicious ones are stored with a flag (spike, late, stale).

Per-series state (last time and value, running mean and variance) lives in NumPy arrays
indexed by a series id, and advances only once a batch is durably stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tvilling.core.readings import LATE, SPIKE, STALE, UNCERTAIN, Readings

NO_TS = np.iinfo(np.int64).min
MIN_TS_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
STATS_LIMIT = 1e150  # |value| beyond which a reading is left out of the spike statistics


@dataclass(frozen=True)
class CleanSettings:
    max_future_s: float = 300.0  # readings further ahead of the clock are rejected
    reorder_window_s: float = 3600.0  # late readings within it are re-ordered into place and flagged
    stale_after_s: float = 300.0  # a silence at least this long, and ...
    stale_factor: float = 10.0  # ... this many times the series' usual interval, makes it stale
    spike_z: float = 8.0  # |x - mean| / std beyond this flags a spike
    spike_warmup: int = 30  # readings a series needs before spikes are judged
    stats_memory: int = 2000  # the running statistics forget at about this many readings


def series_ids(twin: npt.NDArray[np.object_], prop: npt.NDArray[np.object_],
               index: dict[tuple[str, str], int]) -> npt.NDArray[np.int64]:
    """Each row's (twin, property) id in ``index``, adding new series with the next ids.

    Telemetry comes in runs of one series: the dictionary is looked up once per run (sorting
    object arrays to group them would cost more than the rest of ingest).
    """
    n = len(twin)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], (twin[1:] != twin[:-1]) | (prop[1:] != prop[:-1])]))
    run_ids = np.fromiter((index.setdefault(k, len(index)) for k in zip(twin[starts].tolist(),
                                                                          prop[starts].tolist(), strict=True)),
                          dtype=np.int64, count=len(starts))
    out: npt.NDArray[np.int64] = np.repeat(run_ids, np.diff(np.append(starts, n)))
    return out


class SeriesState:
    """Running state of every (twin, property) series the pipeline has seen."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.last_ts = np.empty(0, dtype=np.int64)
        self.last_val = np.empty(0, dtype=np.float64)
        self.last_text = np.empty(0, dtype=object)
        self.n = np.empty(0, dtype=np.float64)
        self.mean = np.empty(0, dtype=np.float64)
        self.m2 = np.empty(0, dtype=np.float64)
        self.gap = np.empty(0, dtype=np.float64)  # usual interval between readings, µs (0: not known yet)
        # False while the last point is only what the twin's state recorded (seeded after a restart): the state
        # is committed before history, so after a crash between the two, history may lack that point
        self.confirmed = np.empty(0, dtype=bool)
        self._seeded = 0  # series below this id have been seeded from the twins' state

    def ids(self, twin: npt.NDArray[np.object_], prop: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
        """Series ids of the rows; new series get the next ids (seed them with :meth:`seed_new`)."""
        sid = series_ids(twin, prop, self.index)
        grow = len(self.index) - len(self.last_ts)
        if grow:
            self.last_ts = np.concatenate([self.last_ts, np.full(grow, NO_TS, dtype=np.int64)])
            self.last_val = np.concatenate([self.last_val, np.full(grow, np.nan)])
            self.last_text = np.concatenate([self.last_text, np.full(grow, None, dtype=object)])
            for name in ("n", "mean", "m2", "gap"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(grow)]))
            self.confirmed = np.concatenate([self.confirmed, np.zeros(grow, dtype=bool)])
        return sid

    def seed_new(self, seed: Callable[[str, str], tuple[int, float, str | None]]) -> Callable[[], None]:
        """A step that seeds every series registered since the last seeding with ``seed(twin, prop)``
        → (last ts, value, text): what the twin's state last recorded, so restarts lose nothing."""

        def run() -> None:
            keys = list(self.index)
            for i in range(self._seeded, len(keys)):
                t, p = keys[i]
                self.last_ts[i], self.last_val[i], self.last_text[i] = seed(t, p)
            self._seeded = len(keys)

        return run


@dataclass
class Cleaned:
    readings: Readings  # accepted, sorted by series then time, flags set
    sid: npt.NDArray[np.int64]
    keep: npt.NDArray[np.int64]  # indexes of accepted rows in the input
    rejected: list[tuple[npt.NDArray[np.int64], str, str]]  # (input rows, reason, rule)
    duplicates: int
    flagged: int
    newest: npt.NDArray[np.bool_]  # per accepted row: the newest non-late reading of its series in the batch
    _apply: Callable[[], None]

    def commit_state(self) -> None:
        """Advance the series state; call only once the batch is durably stored."""
        self._apply()


def clean(r: Readings, sid: npt.NDArray[np.int64], state: SeriesState, now_us: int,
          settings: CleanSettings,
          in_history: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]] | None = None) -> Cleaned:
    """Order, deduplicate, reject and flag a batch against the series' state (which it does not change).

    A reading equal to its series' last point is an exact duplicate and dropped, except where
    that point is only seeded from the twin's state: then ``in_history(rows)`` says which of
    those rows history really holds, and the others are stored (the redelivery of a batch whose
    state was committed but whose history append was cut short by a crash).
    """
    rejected: list[tuple[npt.NDArray[np.int64], str, str]] = []
    future = r.ts > now_us + int(settings.max_future_s * 1e6)
    if future.any():
        rejected.append((np.flatnonzero(future), f"time is more than {settings.max_future_s:g} s in the future",
                         "far_future"))
    ancient = r.ts < MIN_TS_US
    if ancient.any():
        rejected.append((np.flatnonzero(ancient), "time is before 2000-01-01", "bad_ts"))
    ok = ~(future | ancient)
    # order by series, then time (stable: equal times keep arrival order, the later value wins)
    idx = np.flatnonzero(ok)
    idx = idx[np.lexsort((r.ts[idx], sid[idx]))]
    s, ts, val = sid[idx], r.ts[idx], r.value[idx]
    text = r.text[idx] if r.text is not None else None
    last_ts, last_val = state.last_ts[s], state.last_val[s]
    same_val = (val == last_val) | (np.isnan(val) & np.isnan(last_val))
    if text is not None:
        same_val &= text == state.last_text[s]
    dup = (ts == last_ts) & same_val
    unsure = np.flatnonzero(dup & ~state.confirmed[s])
    if len(unsure) and in_history is not None:
        dup[unsure[~in_history(idx[unsure])]] = False
    if len(idx) > 1:
        same_prev = (s[1:] == s[:-1]) & (ts[1:] == ts[:-1])
        eq_prev = (val[1:] == val[:-1]) | (np.isnan(val[1:]) & np.isnan(val[:-1]))
        if text is not None:
            eq_prev &= text[1:] == text[:-1]
        dup[1:] |= same_prev & eq_prev
        if (same_prev[1:] & same_prev[:-1]).any():  # three or more at one (series, time): look past the neighbour
            dup |= _repeats(same_prev, val, text)
    window = int(settings.reorder_window_s * 1e6)
    too_late = (last_ts != NO_TS) & (ts < last_ts - window) & ~dup
    if too_late.any():
        rejected.append((idx[too_late], f"older than the re-order window ({settings.reorder_window_s:g} s) "
                         "behind the newest reading of its series", "too_late"))
    keep_mask = ~dup & ~too_late
    duplicates = int(dup.sum())
    idx, s, ts, val = idx[keep_mask], s[keep_mask], ts[keep_mask], val[keep_mask]
    last_ts = last_ts[keep_mask]
    out = r.take(idx)
    flags = out.flags.copy()
    quality = out.quality.copy()
    late = (last_ts != NO_TS) & (ts < last_ts)
    flags[late] |= LATE
    # previous reading of the same series: the row before in this batch, or the stored last one
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    prev = np.empty_like(ts)
    prev[1:] = ts[:-1]
    prev[first] = last_ts[first]
    has_prev = (prev != NO_TS) & ~late
    gaps = np.where(has_prev, ts - prev, 0).astype(np.float64)
    usual = state.gap[s]
    limit = np.maximum(settings.stale_after_s * 1e6, settings.stale_factor * usual)
    stale = has_prev & (usual > 0) & (gaps > limit)
    flags[stale] |= STALE
    spikes, apply_stats = _spikes(s, val, first, state, settings)
    flags[spikes] |= SPIKE
    quality[spikes] = np.maximum(quality[spikes], UNCERTAIN)
    out = Readings(out.twin, out.prop, out.ts, out.value, quality, flags, out.text)
    last_of_group = np.ones(len(s), dtype=bool)
    last_of_group[:-1] = s[:-1] != s[1:]
    newest = last_of_group & ~late
    n_flagged = int(((flags & (LATE | STALE | SPIKE)) != 0).sum())

    def apply() -> None:
        apply_stats()
        _update_gaps(state, s, gaps, has_prev & (gaps > 0) & ~stale)  # a silence is not the cadence
        rows = np.flatnonzero(newest)
        sids = s[rows]
        state.last_ts[sids] = ts[rows]
        state.last_val[sids] = val[rows]
        state.confirmed[sids] = True
        if out.text is not None:
            state.last_text[sids] = out.text[rows]

    return Cleaned(out, s, idx, rejected, duplicates, n_flagged, newest, apply)


def _repeats(same_prev: npt.NDArray[np.bool_], val: npt.NDArray[np.float64],
             text: npt.NDArray[np.object_] | None) -> npt.NDArray[np.bool_]:
    """Rows equal to an earlier row of their (series, time) group, in groups of three or more.

    ``same_prev[i]`` says row ``i + 1`` has row ``i``'s series and time. Pairs are caught by
    comparing neighbours; a group like ``1, 2, 1`` (rare: a device repeating itself at one
    instant) needs this look back.
    """
    out = np.zeros(len(val), dtype=bool)
    starts = np.flatnonzero(np.concatenate([[True], ~same_prev]))
    ends = np.append(starts[1:], len(val))
    big = ends - starts >= 3
    for lo, hi in zip(starts[big].tolist(), ends[big].tolist(), strict=True):
        seen: set[tuple[float | str, object]] = set()
        for i in range(lo, hi):
            x = float(val[i])
            key = ("nan" if x != x else x, None if text is None else text[i])
            if key in seen:
                out[i] = True
            seen.add(key)
    return out


def _update_gaps(state: SeriesState, s: npt.NDArray[np.int64], gaps: npt.NDArray[np.float64],
                 valid: npt.NDArray[np.bool_]) -> None:
    """Move each series' usual interval towards the median-ish (mean of the batch's) gaps."""
    if not valid.any():
        return
    sv, gv = s[valid], gaps[valid]
    sums = np.bincount(sv, weights=gv, minlength=len(state.gap))
    counts = np.bincount(sv, minlength=len(state.gap))
    seen = np.flatnonzero(counts)
    batch_mean = sums[seen] / counts[seen]
    old = state.gap[seen]
    state.gap[seen] = np.where(old > 0, 0.8 * old + 0.2 * batch_mean, batch_mean)


def _spikes(s: npt.NDArray[np.int64], x: npt.NDArray[np.float64], first: npt.NDArray[np.bool_],
            state: SeriesState, settings: CleanSettings) -> tuple[npt.NDArray[np.bool_], Callable[[], None]]:
    """Robust-enough spike test against running statistics (state + the batch so far, exclusive)."""
    # values whose square overflows a float64 cannot join the running sums (they would turn the series'
    # statistics to inf/NaN for good); they are stored, just not judged
    numeric = np.isfinite(x) & (np.abs(x) < STATS_LIMIT)
    xv = np.where(numeric, x, 0.0)
    w = numeric.astype(np.float64)
    # exclusive prefix sums within each series group
    starts = np.flatnonzero(first)
    csum_w, csum_x, csum_xx = np.cumsum(w), np.cumsum(xv), np.cumsum(xv * xv)

    def exclusive(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        shifted = np.concatenate([[0.0], c[:-1]])
        base = np.repeat(shifted[starts], np.diff(np.append(starts, len(c))))
        out: npt.NDArray[np.float64] = shifted - base
        return out

    k, sx, sxx = exclusive(csum_w), exclusive(csum_x), exclusive(csum_xx)
    n0, mean0, m20 = state.n[s], state.mean[s], state.m2[s]
    n = n0 + k
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # (values left out of the statistics)
        mean = (n0 * mean0 + sx) / n
        ex2 = (m20 + n0 * mean0 * mean0 + sxx) / n
        var = np.maximum(ex2 - mean * mean, 0.0)
        std = np.sqrt(var)
        floor = np.maximum(1e-9 * np.abs(mean), 1e-12)
        z = np.abs(x - mean) / np.maximum(std, floor)
    spikes = numeric & (n >= settings.spike_warmup) & (z > settings.spike_z)

    def apply() -> None:
        if not len(s):
            return
        sids = s[starts]
        gw = np.add.reduceat(w, starts)
        gx = np.add.reduceat(xv, starts)
        gxx = np.add.reduceat(xv * xv, starts)
        n0g, mean0g, m20g = state.n[sids], state.mean[sids], state.m2[sids]
        ntot = n0g + gw
        with np.errstate(invalid="ignore", divide="ignore"):
            mtot = np.where(ntot > 0, (n0g * mean0g + gx) / ntot, 0.0)
            ex2 = np.where(ntot > 0, (m20g + n0g * mean0g * mean0g + gxx) / ntot, 0.0)
        m2 = np.maximum(ex2 - mtot * mtot, 0.0) * ntot  # sum of squared deviations
        cap = float(settings.stats_memory)
        scale = np.where(ntot > cap, cap / np.maximum(ntot, 1.0), 1.0)
        state.n[sids] = ntot * scale
        state.mean[sids] = mtot
        state.m2[sids] = m2 * scale

    return spikes, apply
