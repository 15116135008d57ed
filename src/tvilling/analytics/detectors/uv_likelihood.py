"""Anomaly likelihood of a stream of raw anomaly scores (after Numenta's NAB post-processing), causal.

The raw scores seen over the last ``long`` rows (before the current one) are summarised by their mean ``μ``
and standard deviation ``σ`` (floored at ``sd_floor``); the mean ``m`` of the last ``short`` raw scores
(current one included) is compared with them by the Gaussian tail ``p = Q((m − μ)/σ)``. The output is the
log-likelihood score ``log(p + 1e-10) / log(1e-10)`` in [0, 1]: 0.5 means a tail probability of 1e-5,
1 a tail of 1e-10 or less. A burst of unusually high raw scores therefore stands out in proportion to how
unusual it is *for this stream*, which puts noisy and quiet streams on one scale.

>>> lk = AnomalyLikelihood(short=2, long=100)
>>> for _ in range(50):
...     _ = lk.step(0.1)
...     _ = lk.step(0.0)
>>> lk.step(0.05) < 0.1, lk.step(1.0) > 0.9
(True, True)
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["AnomalyLikelihood", "log_tail_score"]

_LOG_EPS = math.log(1e-10)
_SQRT2 = math.sqrt(2.0)


def log_tail_score(tail: float) -> float:
    """``log(tail + 1e-10) / log(1e-10)`` clipped to [0, 1] (0.5 ↔ a tail probability of about 1e-5)."""
    return min(max(math.log(tail + 1e-10) / _LOG_EPS, 0.0), 1.0)


class AnomalyLikelihood:
    """Streaming anomaly likelihood: :meth:`step` scores a raw score and then learns it."""

    def __init__(self, short: int = 10, long: int = 8640, sd_floor: float = 1e-3) -> None:
        if short < 1 or long < 2:
            raise ValueError("short must be ≥ 1 and long ≥ 2")
        if sd_floor <= 0.0:
            raise ValueError("sd_floor must be positive")
        self.short, self.long, self.sd_floor = short, long, sd_floor
        self._recent: deque[float] = deque(maxlen=short)
        self._recent_sum = 0.0
        self._hist: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_exact = 0

    def learn(self, r: float) -> None:
        """Add one raw score to the history without scoring it."""
        if len(self._recent) == self.short:
            self._recent_sum -= self._recent[0]
        self._recent.append(r)
        self._recent_sum += r
        self._hist.append(r)
        self._sum += r
        self._sumsq += r * r
        if len(self._hist) > self.long:
            old = self._hist.popleft()
            self._sum -= old
            self._sumsq -= old * old
        self._since_exact += 1
        if self._since_exact >= self.long:  # refresh the running sums against rounding drift
            self._sum = math.fsum(self._hist)
            self._sumsq = math.fsum(v * v for v in self._hist)
            self._recent_sum = math.fsum(self._recent)
            self._since_exact = 0

    def score(self, r: float) -> float:
        """Log-likelihood score of raw score ``r`` arriving now (nothing is learned)."""
        n = len(self._hist)
        if n == 0:
            return 0.0
        k = len(self._recent)
        drop = self._recent[0] if k == self.short else 0.0
        m = (self._recent_sum - drop + r) / min(k + 1, self.short)
        mu = self._sum / n
        var = max(self._sumsq / n - mu * mu, 0.0)
        sd = max(math.sqrt(var), self.sd_floor)
        tail = 0.5 * math.erfc((m - mu) / (sd * _SQRT2))
        return log_tail_score(tail)

    def step(self, r: float) -> float:
        """Score ``r``, then learn it."""
        s = self.score(r)
        self.learn(r)
        return s
