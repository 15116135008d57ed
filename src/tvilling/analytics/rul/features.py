"""Feature engineering for run-to-failure fleets: operating regimes and windowed sensor features.

Rows follow the C-MAPSS layout (unit, cycle, 3 settings, 21 sensors), sorted by unit and
cycle. :class:`RegimeNormalizer` clusters the operating settings into regimes and
z-scores each sensor within its regime (removing the operating point from the signal);
:func:`window_features` summarises each row's recent history causally (no look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tvilling.analytics.evaluation.cmapss import CYCLE, SENSORS, SETTINGS, UNIT, unit_bounds
from tvilling.core.errors import Invalid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _kmeans(x: FloatArray, init: FloatArray, iters: int = 20) -> FloatArray:
    """Lloyd's k-means from given centres; returns the centres."""
    centres = init.copy()
    for _ in range(iters):
        labels = np.argmin(((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)
        for j in range(centres.shape[0]):
            members = x[labels == j]
            if members.shape[0]:
                centres[j] = members.mean(axis=0)
    return centres


@dataclass
class RegimeNormalizer:
    """Cluster operating settings into regimes and z-score every kept sensor per regime.

    Regimes are found by k-means started from the distinct rounded settings (so a
    single-condition fleet gets one regime and FD002/FD004 get their six). Sensors whose
    within-regime spread is negligible are dropped.

    >>> import numpy as np
    >>> rows = np.zeros((4, 26)); rows[:, 0] = 1; rows[:, 1] = np.arange(1, 5)
    >>> rows[:, 5] = [1.0, 2.0, 3.0, 4.0]
    >>> RegimeNormalizer().fit(rows).transform(rows).shape
    (4, 1)
    """

    max_regimes: int = 10
    min_std: float = 1e-4
    centres: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    scale: FloatArray = field(default_factory=lambda: np.ones(3))
    mean: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    std: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    kept: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def fit(self, rows: FloatArray) -> RegimeNormalizer:
        """Learn regimes, per-regime sensor statistics and the kept sensors from training rows."""
        settings = rows[:, SETTINGS]
        self.scale = np.maximum(np.abs(settings).max(axis=0), 1e-12)
        scaled = settings / self.scale
        seeds = np.unique(np.round(settings, 0), axis=0) / self.scale
        if seeds.shape[0] > self.max_regimes:
            seeds = seeds[:1]
        self.centres = _kmeans(scaled, seeds)
        labels = self.regimes(rows)
        sensors = rows[:, SENSORS]
        k = self.centres.shape[0]
        self.mean = np.zeros((k, sensors.shape[1]))
        self.std = np.ones((k, sensors.shape[1]))
        for j in range(k):
            members = sensors[labels == j]
            if members.shape[0] > 1:
                self.mean[j] = members.mean(axis=0)
                self.std[j] = members.std(axis=0)
        spread = np.min(self.std / np.maximum(np.abs(self.mean), 1.0), axis=0)
        self.kept = np.flatnonzero(spread > self.min_std).astype(np.int64)
        if self.kept.size == 0:
            raise Invalid("no sensor varies in the training rows", rule="non-constant sensors")
        self.std = np.maximum(self.std, 1e-12)
        return self

    def regimes(self, rows: FloatArray) -> IntArray:
        """Regime index of each row (nearest centre)."""
        scaled = rows[:, SETTINGS] / self.scale
        d = ((scaled[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        labels: IntArray = np.argmin(d, axis=1).astype(np.int64)
        return labels

    def transform(self, rows: FloatArray) -> FloatArray:
        """Per-regime z-scores of the kept sensors, shape ``(n, n_kept)``."""
        if self.kept.size == 0:
            raise Invalid("RegimeNormalizer is not fitted", rule="fit first")
        labels = self.regimes(rows)
        z = (rows[:, SENSORS] - self.mean[labels]) / self.std[labels]
        return z[:, self.kept]


def _window_sum(values: FloatArray, starts: IntArray, lengths: IntArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Causal sum over the last ``min(window, position+1)`` rows of each unit, and that count."""
    n = values.shape[0]
    csum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    idx = np.arange(n)
    unit_start = np.repeat(starts, lengths)
    lo = np.maximum(idx + 1 - window, unit_start)
    count = (idx + 1 - lo).astype(np.float64)
    return csum[idx + 1] - csum[lo], count


def window_features(rows: FloatArray, z: FloatArray, windows: tuple[int, ...] = (10, 30, 60, 120)) -> FloatArray:
    """Causal per-row features from normalised sensors ``z``.

    For each window ``w``: the mean of the last ``w`` cycles and their least-squares
    slope per cycle; then the cycle number. Shorter histories use what exists.
    """
    starts, ends = unit_bounds(rows[:, UNIT])
    lengths = ends - starts
    t = rows[:, CYCLE:CYCLE + 1]
    parts: list[FloatArray] = []
    for w in windows:
        s_y, n = _window_sum(z, starts, lengths, w)
        s_t, _ = _window_sum(t, starts, lengths, w)
        s_tt, _ = _window_sum(t * t, starts, lengths, w)
        s_ty, _ = _window_sum(t * z, starts, lengths, w)
        n_ = n[:, None]
        mean = s_y / n_
        denom = s_tt - s_t * s_t / n_
        slope = np.where(denom > 1e-9, (s_ty - s_t * s_y / n_) / np.maximum(denom, 1e-9), 0.0)
        parts += [mean, slope]
    parts.append(t / 100.0)
    return np.hstack(parts)
