"""Helpers of the multivariate detector: label-free sensor scales and the alarm-hold decision rule.

* :func:`calibrate_scales` learns, from recordings of normal operation only, how far each sensor's
  smoothed standardised deviation strays from its own training statistics beyond white-noise theory
  (autocorrelation and slow drift inflate it). Each recording is split in halves: the first half gives
  mean and standard deviation, the second half is smoothed and measured. A sensor that drifts (a
  warming motor) gets a large scale and so little weight; a steady one keeps a scale near 1.
* :func:`hold_decisions` turns scores into alarm decisions: raised above ``level``, kept for at least
  ``hold`` rows (the raising row included), cleared at the first later row at or below ``level``.
  Vectorised per alarm episode.

>>> import numpy as np
>>> hold_decisions(np.array([0.0, 2.0, 0.0, 0.0, 0.0, 2.0]), 1.0, 2)[0].astype(int).tolist()
[0, 1, 1, 0, 0, 1]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from tvilling.analytics.detectors._ewma import ewma

__all__ = ["calibrate_scales", "hold_decisions", "std_floor"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def std_floor(mean: npt.ArrayLike, rel: float) -> FloatArray:
    """Smallest standard deviation used per sensor: ``rel × |mean|``, at least ``1e-9``.

    Only a guard against flat sensors: it must stay far below real noise levels (an RMS vibration of
    0.2 g varies by about 0.001 g), so it is relative to the sensor's own level.
    """
    return np.asarray(np.maximum(rel * np.abs(np.asarray(mean, dtype=np.float64)), 1e-9), dtype=np.float64)


def calibrate_scales(
    series: Iterable[npt.ArrayLike],
    *,
    alpha: float,
    min_std: float = 1e-4,
    floor: float = 1.0,
) -> FloatArray:
    """Per-sensor scales ``k_i`` from normal recordings (each rows × sensors, at least 4 rows).

    ``k_i = √ mean(z_i²)`` pooled over the second halves of all recordings, where ``z_i`` is the EWMA
    (weight ``alpha``, started at 0) of the sensor standardised by its first half's mean and standard
    deviation, divided by the white-noise factor ``√(α / (2 − α))``. Scales are at least ``floor``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2)); X[:, 1] += np.linspace(0, 30, 2000)   # sensor 1 drifts
    >>> k = calibrate_scales([X], alpha=0.5)
    >>> bool(k[0] < 1.3 and k[1] > 5)
    True
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError("alpha must lie in (0, 1]")
    sums: FloatArray | None = None
    count = 0
    norm = np.sqrt(alpha / (2.0 - alpha))
    for s in series:
        X = np.asarray(s, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 4:
            raise ValueError("each recording must be a 2-D array with at least 4 rows")
        half = X.shape[0] // 2
        first = X[:half]
        mean = first.mean(axis=0)
        std = np.maximum(first.std(axis=0, ddof=1), std_floor(mean, min_std))
        Z = ewma((X[half:] - mean) / std, alpha, initial=np.zeros(X.shape[1])) / norm
        sq = (Z**2).sum(axis=0)
        if sums is None:
            sums = sq
        elif sums.size != sq.size:
            raise ValueError("recordings have different numbers of sensors")
        else:
            sums = sums + sq
        count += Z.shape[0]
    if sums is None or count == 0:
        raise ValueError("no recordings to calibrate on")
    return np.asarray(np.maximum(np.sqrt(sums / count), floor), dtype=np.float64)


def hold_decisions(
    scores: npt.ArrayLike, level: float, hold: int, state: tuple[bool, int] = (False, 0)
) -> tuple[BoolArray, tuple[bool, int]]:
    """Alarm decisions for consecutive scores, and the state to continue from.

    An alarm is raised at a row whose score exceeds ``level``; on the following rows it stays raised
    until a row whose score is at or below ``level`` comes at least ``hold`` rows after the raise (that
    row is already clear). ``state`` is ``(raised, rows since the raise)``; pass the returned one to
    the next call to get the same decisions as one call on the whole series.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    n = s.size
    out = np.zeros(n, dtype=bool)
    on, since = bool(state[0]), int(state[1])
    t = 0
    while t < n:
        if not on:
            above = np.flatnonzero(s[t:] > level)
            if above.size == 0:
                break
            r = t + int(above[0])
            out[r] = True
            on, since, t = True, 0, r + 1
            continue
        # row j >= t is the (since + 1 + j − t)-th row after the raise
        j0 = t + max(0, hold - (since + 1))
        below = np.flatnonzero(s[j0:] <= level) if j0 < n else np.empty(0, dtype=np.intp)
        if below.size == 0:
            out[t:] = True
            since += n - t
            t = n
            break
        j = j0 + int(below[0])
        out[t:j] = True
        on, since, t = False, 0, j + 1
    return out, (on, since)
