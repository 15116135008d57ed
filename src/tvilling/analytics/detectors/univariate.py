"""Causal online univariate anomaly detector for single streams (NAB-style data), scores in [0, 1].

Two stages, both using only past rows:

1. **Robust surprise.** ``z_t = |x_t − median(P_t)| / s_t`` where ``P_t`` is the previous ``window`` values
   and ``s_t = max(1.4826·MAD(P_t), floor·range(P_t), 1e-12)``; clipped at ``z_max``.
2. **Anomaly likelihood.** The mean of the last ``short`` surprises is compared with the mean and standard
   deviation of the previous ``long`` surprises (a Gaussian tail, as in Numenta's anomaly likelihood);
   ``tail`` is the probability of a mean at least that high. The score is
   ``log(tail + 1e-10) / log(1e-10)`` clipped to [0, 1]: 0.5 means a tail probability of about 1e-5.

Rows before ``min_periods`` values (and ``learn`` surprises) score 0.

>>> import numpy as np
>>> x = np.r_[np.sin(np.arange(600) / 5.0), 8.0, np.sin(np.arange(600, 700) / 5.0)]
>>> s = UnivariateDetector().score_many(x)
>>> bool(s[600] > 0.5), bool(s[:600].max() < 0.5)
(True, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["UnivariateDetector"]

FloatArray = npt.NDArray[np.float64]
_LOG_EPS = math.log(1e-10)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _tail_to_score(tail: FloatArray) -> FloatArray:
    return np.clip(np.log(tail + 1e-10) / _LOG_EPS, 0.0, 1.0)


@dataclass
class UnivariateDetector:
    """Robust rolling z-score followed by an anomaly-likelihood tail probability.

    Streaming: :meth:`score_one` scores a value and then learns it (prequential); :meth:`learn_one` only
    learns. :meth:`score_many` does the same for a block and gives the same scores as row-by-row calls.
    """

    window: int = 300
    short: int = 10
    long: int = 2000
    min_periods: int = 30
    learn: int = 100
    floor: float = 0.01
    z_max: float = 20.0
    _values: deque[float] = field(init=False, repr=False)
    _raw: deque[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.window, self.short, self.long, self.min_periods) < 1:
            raise ValueError("window sizes must be positive")
        self.reset()

    def reset(self) -> None:
        """Forget all history."""
        self._values = deque(maxlen=self.window)
        self._raw = deque(maxlen=self.long + self.short)

    # ------------------------------------------------------------------ stage 1

    def _surprise_scalar(self, x: float) -> float:
        if len(self._values) < self.min_periods:
            return 0.0
        p = np.fromiter(self._values, dtype=np.float64)
        med = float(np.median(p))
        mad = float(np.median(np.abs(p - med)))
        s = max(1.4826 * mad, self.floor * float(p.max() - p.min()), 1e-12)
        return min(abs(x - med) / s, self.z_max)

    def _surprise_many(self, x: FloatArray) -> FloatArray:
        hist = np.fromiter(self._values, dtype=np.float64)
        full = np.concatenate([np.full(self.window - hist.size, np.nan), hist, x])
        # windows[i] holds the `window` values before x[i] (NaN where there is no history yet)
        windows = sliding_window_view(full, self.window)[: x.size]
        count = np.count_nonzero(~np.isnan(windows), axis=1)
        out = np.zeros(x.size)
        ok = count >= self.min_periods
        if np.any(ok):
            w = windows[ok]
            med = np.nanmedian(w, axis=1)
            mad = np.nanmedian(np.abs(w - med[:, None]), axis=1)
            rng = np.nanmax(w, axis=1) - np.nanmin(w, axis=1)
            s = np.maximum(np.maximum(1.4826 * mad, self.floor * rng), 1e-12)
            out[ok] = np.minimum(np.abs(x[ok] - med) / s, self.z_max)
        return out

    # ------------------------------------------------------------------ stage 2

    def _likelihood_many(self, r: FloatArray) -> FloatArray:
        """Scores for new surprises ``r`` given the stored surprise history."""
        hist = np.fromiter(self._raw, dtype=np.float64)
        allr = np.concatenate([hist, r])
        n0 = hist.size
        c1 = np.concatenate([[0.0], np.cumsum(allr)])
        c2 = np.concatenate([[0.0], np.cumsum(allr * allr)])
        t = np.arange(n0, allr.size)  # absolute index of each new row
        s0 = np.maximum(t - self.short + 1, 0)
        short_mean = (c1[t + 1] - c1[s0]) / (t + 1 - s0)
        l0 = np.maximum(t - self.long, 0)
        cnt = t - l0
        safe = np.maximum(cnt, 1)
        mu = (c1[t] - c1[l0]) / safe
        var = np.maximum((c2[t] - c2[l0]) / safe - mu * mu, 0.0)
        sd = np.maximum(np.sqrt(var), 1e-3)
        zz = (short_mean - mu) / (sd * math.sqrt(2.0))
        tail = 0.5 * _erfc(zz).astype(np.float64)
        score = _tail_to_score(tail)
        # warm-up: too few surprises seen (counted over the whole stream, including dropped history)
        seen = self._seen + (t - n0) + 1
        score[(cnt < self.learn) | (seen <= self.min_periods + self.learn)] = 0.0
        return np.asarray(score, dtype=np.float64)

    _seen: int = field(default=0, init=False, repr=False)

    # ------------------------------------------------------------------ public verbs

    def score_many(self, x: npt.ArrayLike) -> FloatArray:
        """Scores in [0, 1] of a block of values (each scored before it is learned)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        if a.size == 0:
            return np.zeros(0)
        r = self._surprise_many(a)
        scores = self._likelihood_many(r)
        self._values.extend(a.tolist())
        self._raw.extend(r.tolist())
        self._seen += a.size
        return scores

    def score_one(self, x: float) -> float:
        """Score of one value in [0, 1]; the value is then learned."""
        return float(self.score_many(np.array([x], dtype=np.float64))[0])

    def learn_one(self, x: float) -> None:
        """Learn one value without using its score."""
        self.score_many(np.array([x], dtype=np.float64))

    def learn_many(self, x: npt.ArrayLike) -> None:
        """Learn a block of values."""
        self.score_many(x)
