"""NAB v1.1 scoring (Numenta Anomaly Benchmark), written from the definitions in ``../shared/datasets/nab/README.md``.

* Each file's first ``min(floor(0.15·N), 750)`` rows are the probationary period and are not scored.
* A row inside a window ``[start, end]`` (``width`` rows, right edge index ``e``) detected at index ``i``
  is worth ``A_tp · σ̃(−(e − i + 1)/width) / σ̃(−1)`` where ``σ̃(x) = 2/(1 + e^{5x}) − 1`` (and −1 for
  ``x > 3``) is the scaled sigmoid: ≈ ``A_tp`` at the window start and ≈ 0 at its right edge. Only the
  earliest detection in a window counts.
* A detection outside every window costs ``A_fp · σ̃((i − e_prev)/(width_prev − 1))`` after a window
  (``e_prev``, ``width_prev`` of the preceding window), and ``−A_fp`` before the first window.
* Each window without a detection costs ``−A_fn``.
* Profiles: standard (1, 0.11, 1), reward_low_FP (1, 0.22, 1), reward_low_FN (1, 0.11, 2) as
  ``(A_tp, A_fp, A_fn)``.
* The normalised score is ``100 · (S − S_null) / (S_perfect − S_null)`` over the corpus with
  ``S_null = −A_fn · windows`` (never fires) and ``S_perfect = A_tp · windows`` (fires at each window start).
* A detection is a row whose score is ``>= threshold``. One threshold per profile is chosen over the whole
  corpus. NAB searches it with a bounded local optimiser over [0, 1]; here the search is **exact**: the
  corpus score is piecewise constant in the threshold and changes only at the distinct anomaly scores, so
  every distinct score (and "above every score", i.e. no detection) is evaluated and the best taken (ties go
  to the highest threshold). This is never worse than NAB's optimiser and equal when that finds the optimum.

>>> probationary_length(1000), probationary_length(100_000)
(150, 750)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid

__all__ = [
    "PROFILES",
    "FileSweep",
    "Profile",
    "load_nab_series",
    "load_windows",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
    "sweep_file",
    "window_indices",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile (all positive, as in NAB's ``profiles.json``)."""

    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: Final[dict[str, Profile]] = {
    "standard": Profile(1.0, 0.11, 1.0),
    "reward_low_fp": Profile(1.0, 0.22, 1.0),
    "reward_low_fn": Profile(1.0, 0.11, 2.0),
}
"""NAB's three profiles, keyed by the names used in Tvilling's reports."""

PROBATION_PERCENT: Final = 0.15


def probationary_length(n: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file of ``n`` rows that are not scored: ``min(floor(0.15·n), 750)``."""
    if n < 0:
        raise Invalid("file length must be non-negative", field="n", value=n)
    return int(min(math.floor(percent * n), percent * 5000))


def scaled_sigmoid(x: npt.ArrayLike) -> FloatArray:
    """NAB's scaled sigmoid ``2/(1 + exp(5x)) − 1``, and exactly −1 for ``x > 3``.

    >>> scaled_sigmoid([0.0, 4.0]).tolist()
    [0.0, -1.0]
    """
    v = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        y = 2.0 / (1.0 + np.exp(5.0 * v)) - 1.0
    return np.asarray(np.where(v > 3.0, -1.0, y), dtype=np.float64)


def _to_time(values: npt.ArrayLike) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.dtype.kind in "US" or arr.dtype == object:
        try:
            return np.asarray([np.datetime64(str(v).strip()) for v in arr.ravel()], dtype="datetime64[us]")
        except ValueError as exc:
            raise Invalid(f"cannot parse timestamp: {exc}") from exc
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]")
    return arr.astype(np.float64)


def window_indices(timestamps: npt.ArrayLike, windows: Sequence[Sequence[Any]]) -> IntArray:
    """Row index pairs ``[[first, last], ...]`` of each ``(start, end)`` window (inclusive bounds).

    ``first`` is the first row at or after ``start``, ``last`` the last row at or before ``end``;
    windows holding no row are dropped.

    >>> window_indices(np.arange(10), [(2, 4), (7.5, 20)]).tolist()
    [[2, 4], [8, 9]]
    """
    t = _to_time(timestamps)
    if not windows:
        return np.zeros((0, 2), dtype=np.intp)
    w = _to_time(np.asarray([[str(a), str(b)] if t.dtype.kind == "M" else [a, b] for a, b in windows]).ravel())
    first = np.searchsorted(t, w[0::2], side="left")
    last = np.searchsorted(t, w[1::2], side="right") - 1
    keep = last >= first
    return np.stack([first[keep], last[keep]], axis=1).astype(np.intp)


@dataclass(frozen=True)
class FileSweep:
    """Per-row weights of one file under one profile, ready for any threshold.

    ``weight[i]`` is what a detection at row ``i`` earns (TP candidates positive, FP negative);
    ``window[i]`` is the window index of row ``i``, ``-1`` outside windows and ``-2`` in probation.
    """

    scores: FloatArray
    weight: FloatArray
    window: IntArray
    n_windows: int
    profile: Profile


def sweep_file(scores: npt.ArrayLike, win_idx: IntArray, profile: Profile) -> FileSweep:
    """Compute each row's NAB weight for one file (vectorised)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise Invalid("anomaly scores must be one-dimensional", shape=list(s.shape))
    n = s.size
    i = np.arange(n)
    window = np.full(n, -1, dtype=np.intp)
    weight = np.empty(n, dtype=np.float64)
    max_tp = float(scaled_sigmoid(-1.0))
    starts, ends = win_idx[:, 0], win_idx[:, 1]
    for k, (a, b) in enumerate(win_idx):
        window[a : b + 1] = k
    inside = window >= 0
    widths = (ends - starts + 1).astype(np.float64)
    kk = window[inside]
    weight[inside] = scaled_sigmoid(-(ends[kk] - i[inside] + 1) / widths[kk]) * profile.a_tp / max_tp
    # Outside: the preceding window is the last one whose right edge lies before the row.
    out = ~inside
    prev = np.searchsorted(ends, i[out], side="left") - 1
    has_prev = prev >= 0
    pp = np.maximum(prev, 0)
    if ends.size:
        dist = np.abs(i[out] - ends[pp]) / np.maximum(widths[pp] - 1.0, 1.0)
        unweighted = np.where(has_prev, scaled_sigmoid(dist), -1.0)
    else:
        unweighted = np.full(int(np.count_nonzero(out)), -1.0)
    weight[out] = unweighted * profile.a_fp
    window[: probationary_length(n)] = -2
    return FileSweep(s, weight, window, int(win_idx.shape[0]), profile)


def score_file(sweep: FileSweep, threshold: float) -> float:
    """Raw NAB score of one file at ``threshold`` (detections are rows with score ``>= threshold``)."""
    det = sweep.scores >= threshold
    fp = float(sweep.weight[det & (sweep.window == -1)].sum())
    in_win = det & (sweep.window >= 0)
    wk, first = np.unique(sweep.window[in_win], return_index=True)
    tp = float(sweep.weight[in_win][first].sum())
    missed = sweep.n_windows - wk.size
    return tp + fp - sweep.profile.a_fn * missed


def _corpus_curve(sweeps: Sequence[FileSweep]) -> tuple[FloatArray, FloatArray]:
    """Exact corpus score for every candidate threshold: ``(thresholds, scores)``, thresholds descending.

    Lowering the threshold past a row adds its FP weight, or, in a window, raises the window's reward to
    the best (earliest) detection so far (the first detection also removes the ``A_fn`` penalty).
    """
    all_scores: list[FloatArray] = []
    all_delta: list[FloatArray] = []
    base = 0.0
    for sw in sweeps:
        base -= sw.profile.a_fn * sw.n_windows
        scored = sw.window != -2
        s, w, k = sw.scores[scored], sw.weight[scored], sw.window[scored]
        delta = np.where(k == -1, w, 0.0)
        for win in np.unique(k[k >= 0]):
            idx = np.flatnonzero(k == win)
            order = idx[np.argsort(-s[idx], kind="stable")]
            # Rows tied on score enter together; within a tie group take the group's best weight.
            best = np.maximum.accumulate(w[order])
            prev = np.concatenate([[np.nan], best[:-1]])
            d = np.where(np.isnan(prev), best + sw.profile.a_fn, best - prev)
            delta[order] = d
        all_scores.append(s)
        all_delta.append(delta)
    s = np.concatenate(all_scores) if all_scores else np.zeros(0)
    d = np.concatenate(all_delta) if all_delta else np.zeros(0)
    order = np.argsort(-s, kind="stable")
    s, d = s[order], d[order]
    cum = np.cumsum(d)
    # Keep the last row of each tie group: a threshold admits all rows with an equal score at once.
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if s.size else np.zeros(0, dtype=np.intp)
    top = float(s[0]) if s.size else 1.0
    none_thr = 1.1 if top < 1.1 else float(np.nextafter(top, np.inf))
    thresholds = np.concatenate([[none_thr], s[last]])
    totals = base + np.concatenate([[0.0], cum[last]])
    return thresholds, totals


def score_corpus(
    files: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    windows: Mapping[str, Sequence[Sequence[Any]]],
    *,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score a detector on a NAB corpus.

    ``files`` maps a file name to ``(timestamps, anomaly_scores)``; ``windows`` maps the same names to
    ``(start, end)`` pairs (the labels JSON; a missing name means no windows). Returns the normalised
    ``standard``, ``reward_low_fp`` and ``reward_low_fn`` at the per-profile corpus-optimal threshold,
    ``thresholds`` (profile → threshold), ``raw`` (profile → corpus raw score), ``windows`` and ``files``;
    with ``threshold`` given, also ``fixed``: the three normalised scores at that single threshold.
    """
    prepared: list[tuple[str, FloatArray, IntArray]] = []
    for name, (ts, sc) in files.items():
        s = np.asarray(sc, dtype=np.float64)
        t = _to_time(ts)
        if t.shape != s.shape:
            raise Invalid("timestamps and scores differ in length", file=name)
        if np.any(np.isnan(s)):
            raise Invalid("anomaly scores contain NaN", file=name)
        prepared.append((name, s, window_indices(t, list(windows.get(name, [])))))
    n_windows = sum(int(w.shape[0]) for _, _, w in prepared)
    result: dict[str, Any] = {"thresholds": {}, "raw": {}, "files": len(prepared), "windows": n_windows}
    fixed: dict[str, float] = {}
    for pname, prof in PROFILES.items():
        sweeps = [sweep_file(s, w, prof) for _, s, w in prepared]
        null, perfect = -prof.a_fn * n_windows, prof.a_tp * n_windows
        span = perfect - null

        def norm(raw: float, null: float = null, span: float = span) -> float:
            return 100.0 * (raw - null) / span if span else 0.0

        thr, tot = _corpus_curve(sweeps)
        best = int(np.argmax(tot))  # first maximum = highest threshold among ties
        result[pname] = norm(float(tot[best]))
        result["thresholds"][pname] = float(thr[best])
        result["raw"][pname] = float(tot[best])
        if threshold is not None:
            fixed[pname] = norm(sum(score_file(sw, threshold) for sw in sweeps))
    if threshold is not None:
        result["fixed"] = {"threshold": float(threshold), **fixed}
    return result


def load_nab_series(path: str | Path) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    """Read a NAB data CSV (``timestamp,value``) into ``(datetime64[us] timestamps, values)``."""
    p = Path(path)
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
    try:
        ts = np.array([ln.split(",", 1)[0].strip() for ln in lines], dtype="datetime64[us]")
        vals = np.array([float(ln.split(",", 1)[1]) for ln in lines], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise Invalid(f"cannot parse NAB file: {exc}", path=str(p)) from exc
    return ts, vals


def load_windows(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Read a NAB windows JSON (``{"category/file.csv": [[start, end], ...]}``)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Invalid(f"windows file is not JSON: {exc}", path=str(path)) from exc
    if not isinstance(raw, dict):
        raise Invalid("windows file must hold an object", path=str(path))
    return {str(k): [(str(a), str(b)) for a, b in v] for k, v in raw.items()}
