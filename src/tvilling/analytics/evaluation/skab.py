"""SKAB (Skoltech Anomaly Benchmark) metrics: point-wise outlier scores and NAB-style changepoint scores.

The definitions follow ``../shared/datasets/skab/README.md`` (the official SKAB protocol):

* **Outlier detection** is scored point-wise on the ``anomaly`` label with counts pooled over the
  test parts of all files: ``F1 = TP / (TP + (FP + FN) / 2)``, ``FAR = FP / (FP + TN) · 100 %``,
  ``MAR = FN / (FN + TP) · 100 %``.
* **Changepoint detection** turns a binary prediction into predicted changepoints (the points where
  the prediction changes value) and scores them against a window of 60 s to the right of each true
  changepoint. Only the first prediction in a window counts; its reward falls along a tanh curve
  from ``A_tp`` at the changepoint to ``A_fp`` at the window's end. Every prediction outside all
  windows costs ``A_fp`` and every window without a prediction costs ``A_fn``. The score is
  normalised between the null detector (``S_null = n·A_fn``) and the perfect one
  (``S_perfect = n·A_tp``): ``100 · (S − S_null) / (S_perfect − S_null)``.

Choices the README leaves open, fixed here and documented:

* The tanh curve over a window's relative position ``r ∈ [0, 1]`` (0 at the changepoint, 1 at the
  window's end) is ``A_fp + (A_tp − A_fp) · (1 − tanh(π (r − ½)) / tanh(π/2)) / 2``: exactly
  ``A_tp`` at ``r = 0`` and exactly ``A_fp`` at ``r = 1``.
* Where two changepoints lie closer than the window, the earlier window is cut at the later
  changepoint, so every instant belongs to at most one window.

>>> import numpy as np
>>> m = point_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
>>> (m["tp"], m["fp"], m["fn"], m["tn"], m["f1"], m["far"], m["mar"])
(1, 1, 1, 1, 0.5, 50.0, 50.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid

__all__ = [
    "CHANGEPOINT_PROFILES",
    "TRAIN_ROWS",
    "ChangepointCounts",
    "PointCounts",
    "SkabFile",
    "changepoint_scores",
    "changepoint_weight",
    "load_skab",
    "point_metrics",
    "predicted_changepoints",
]

TRAIN_ROWS: Final = 400
"""Rows at the start of each SKAB file used for training under the official protocol."""

WINDOW_SECONDS: Final = 60.0
"""Width of the detection window to the right of each true changepoint, in seconds."""

CHANGEPOINT_PROFILES: Final[dict[str, tuple[float, float, float]]] = {
    "nab_standard": (1.0, -0.11, -1.0),
    "nab_low_fp": (1.0, -0.22, -1.0),
    "nab_low_fn": (1.0, -0.11, -2.0),
}
"""Profile name → ``(A_tp, A_fp, A_fn)`` as in the SKAB README (Standard, LowFP, LowFN)."""

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]

SkabFile = tuple[TimeArray, FloatArray, BoolArray, BoolArray, list[str]]
"""``(timestamps, X, anomaly, changepoint, columns)`` as returned by :func:`load_skab`."""


def load_skab(path: str | Path) -> SkabFile | None:
    """Read one ``;``-separated SKAB CSV file.

    Returns ``(timestamps, X, anomaly, changepoint, columns)`` where ``timestamps`` is
    ``datetime64[s]``, ``X`` the sensor matrix (rows × ``columns``), and ``anomaly`` and
    ``changepoint`` boolean label arrays. Files without the two label columns (the anomaly-free
    file) return ``None``. A file that cannot be parsed raises :class:`~tvilling.core.errors.Invalid`.
    """
    p = Path(path)
    lines = p.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise Invalid("empty SKAB file", path=str(p))
    header = [h.strip() for h in lines[0].split(";")]
    if "anomaly" not in header or "changepoint" not in header:
        return None
    if header[0] != "datetime":
        raise Invalid("SKAB file must start with a datetime column", path=str(p), header=header)
    rows = [line.split(";") for line in lines[1:] if line.strip()]
    if any(len(r) != len(header) for r in rows):
        raise Invalid("SKAB row has the wrong number of fields", path=str(p))
    try:
        timestamps = np.array([r[0].strip() for r in rows], dtype="datetime64[s]")
        values = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    except ValueError as exc:
        raise Invalid(f"cannot parse SKAB file: {exc}", path=str(p)) from exc
    names = header[1:]
    ia, ic = names.index("anomaly"), names.index("changepoint")
    sensors = [i for i in range(len(names)) if i not in (ia, ic)]
    return (
        timestamps,
        values[:, sensors],
        values[:, ia] > 0.5,
        values[:, ic] > 0.5,
        [names[i] for i in sensors],
    )


def _as_bool(a: npt.ArrayLike, name: str) -> BoolArray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise Invalid(f"{name} must be one-dimensional", field=name, shape=list(arr.shape))
    return arr.astype(bool)


@dataclass
class PointCounts:
    """Accumulator of point-wise confusion counts pooled over files.

    >>> import numpy as np
    >>> acc = PointCounts()
    >>> acc.add(np.array([1, 0]), np.array([1, 1]))
    >>> acc.add(np.array([1, 0]), np.array([0, 0]))
    >>> acc.metrics()["f1"]
    0.5
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> None:
        """Add the confusion counts of one file (binary arrays of equal length)."""
        t = _as_bool(y_true, "y_true")
        p = _as_bool(y_pred, "y_pred")
        if t.shape != p.shape:
            raise Invalid("y_true and y_pred differ in length", true=t.size, pred=p.size)
        self.tp += int(np.count_nonzero(t & p))
        self.fp += int(np.count_nonzero(~t & p))
        self.fn += int(np.count_nonzero(t & ~p))
        self.tn += int(np.count_nonzero(~t & ~p))

    def metrics(self) -> dict[str, float | int]:
        """Return ``f1``, ``far`` and ``mar`` (percent) and the four counts.

        Undefined ratios (a zero denominator) are reported as 0.
        """
        f1_den = self.tp + (self.fp + self.fn) / 2
        far_den = self.fp + self.tn
        mar_den = self.fn + self.tp
        return {
            "f1": self.tp / f1_den if f1_den else 0.0,
            "far": 100.0 * self.fp / far_den if far_den else 0.0,
            "mar": 100.0 * self.fn / mar_den if mar_den else 0.0,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def point_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float | int]:
    """Point-wise ``f1``, ``far`` (%), ``mar`` (%) and ``tp``/``fp``/``fn``/``tn`` of one prediction."""
    acc = PointCounts()
    acc.add(y_true, y_pred)
    return acc.metrics()


def predicted_changepoints(y_pred: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Indices where a binary prediction changes value (``abs(pred.diff()) == 1``).

    >>> predicted_changepoints([0, 0, 1, 1, 0]).tolist()
    [2, 4]
    """
    p = _as_bool(y_pred, "y_pred")
    return np.flatnonzero(p[1:] != p[:-1]) + 1


def changepoint_weight(r: npt.ArrayLike, a_tp: float, a_fp: float) -> FloatArray:
    """Reward of the first detection at relative window position ``r`` (0 = changepoint, 1 = end).

    A tanh curve from exactly ``a_tp`` at ``r = 0`` to exactly ``a_fp`` at ``r = 1``, ``(a_tp + a_fp)/2``
    in the middle.

    >>> changepoint_weight([0.0, 0.5, 1.0], 1.0, -0.11).round(4).tolist()
    [1.0, 0.445, -0.11]
    """
    x = np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0)
    shape = (1.0 - np.tanh(math.pi * (x - 0.5)) / math.tanh(math.pi / 2)) / 2.0
    return np.asarray(a_fp + (a_tp - a_fp) * shape, dtype=np.float64)


@dataclass
class ChangepointCounts:
    """Accumulator of NAB-style changepoint raw scores pooled over files."""

    windows: int = 0
    detected: int = 0
    false_positives: int = 0
    raw: dict[str, float] | None = None

    def add(self, timestamps: npt.ArrayLike, true_changepoints: npt.ArrayLike, y_pred: npt.ArrayLike) -> None:
        """Score one file: ``true_changepoints`` is a boolean label array, ``y_pred`` the binary prediction."""
        ts = np.asarray(timestamps)
        if np.issubdtype(ts.dtype, np.datetime64):
            t = (ts - ts[0]).astype("timedelta64[ms]").astype(np.float64) / 1000.0
        else:
            t = ts.astype(np.float64)
        cp_mask = _as_bool(true_changepoints, "true_changepoints")
        pred = _as_bool(y_pred, "y_pred")
        if not (t.size == cp_mask.size == pred.size):
            raise Invalid("timestamps, changepoints and prediction differ in length")
        if t.size > 1 and np.any(np.diff(t) < 0):
            raise Invalid("timestamps must be non-decreasing")
        cps = t[cp_mask]
        det = t[predicted_changepoints(pred)]
        starts = cps
        ends = np.minimum(cps + WINDOW_SECONDS, np.append(cps[1:], np.inf))
        # Window of each predicted changepoint (-1: outside every window). Window i is the closed
        # interval [cp_i, min(cp_i + 60 s, cp_{i+1})]; a detection exactly at cp_{i+1} belongs to i+1.
        k = np.searchsorted(starts, det, side="right") - 1
        kk = np.maximum(k, 0)
        inside = (k >= 0) & (det <= (ends[kk] if starts.size else det))
        k = np.where(inside, k, -1)
        raw = self.raw if self.raw is not None else dict.fromkeys(CHANGEPOINT_PROFILES, 0.0)
        n_fp = int(np.count_nonzero(~inside))
        first_r = np.full(starts.size, np.nan)
        if np.any(inside):
            wk, first_idx = np.unique(k[inside], return_index=True)
            d_in = det[inside][first_idx]
            width = np.maximum(ends[wk] - starts[wk], 1e-9)
            first_r[wk] = (d_in - starts[wk]) / width
        hit = ~np.isnan(first_r)
        for name, (a_tp, a_fp, a_fn) in CHANGEPOINT_PROFILES.items():
            tp = float(changepoint_weight(first_r[hit], a_tp, a_fp).sum())
            raw[name] += tp + n_fp * a_fp + int(np.count_nonzero(~hit)) * a_fn
        self.raw = raw
        self.windows += int(starts.size)
        self.detected += int(np.count_nonzero(hit))
        self.false_positives += n_fp

    def scores(self) -> dict[str, float]:
        """Normalised scores per profile (0 = null detector, 100 = perfect) plus counts."""
        out: dict[str, float] = {}
        raw = self.raw or dict.fromkeys(CHANGEPOINT_PROFILES, 0.0)
        for name, (a_tp, _a_fp, a_fn) in CHANGEPOINT_PROFILES.items():
            perfect, null = self.windows * a_tp, self.windows * a_fn
            out[name] = 100.0 * (raw[name] - null) / (perfect - null) if perfect != null else 0.0
        out["changepoints"] = float(self.windows)
        out["missed"] = float(self.windows - self.detected)
        out["false_positives"] = float(self.false_positives)
        return out


def changepoint_scores(
    timestamps: npt.ArrayLike, true_changepoints: npt.ArrayLike, y_pred: npt.ArrayLike
) -> dict[str, float]:
    """NAB-style changepoint scores of one file: ``nab_standard``, ``nab_low_fp``, ``nab_low_fn``.

    Use :class:`ChangepointCounts` to pool raw scores over several files before normalising.

    >>> import numpy as np
    >>> t = np.arange(10.0) * 10        # seconds
    >>> cp = np.zeros(10, bool); cp[3] = True
    >>> pred = np.zeros(10, bool); pred[3:] = True      # flips exactly at the changepoint
    >>> changepoint_scores(t, cp, pred)["nab_standard"]
    100.0
    """
    acc = ChangepointCounts()
    acc.add(timestamps, true_changepoints, y_pred)
    return acc.scores()
