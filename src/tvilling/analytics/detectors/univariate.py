"""Causal online univariate anomaly detector for single streams (NAB-style data), scores in [0, 1].

Three stages, each using only past rows (see :mod:`.uv_context` and :mod:`.uv_likelihood`):

1. **Contextual novelty.** The first ``warmup`` rows fix a coarse grid of ``levels`` steps over their range
   and are learned (they score 0: NAB's probationary period). Afterwards each value is checked against
   everything seen so far: is its grid level new (a region the stream never visited), and what share of its
   ``orders`` contexts (the last 1..``orders`` levels followed by this one) were never seen?
2. **Anomaly likelihood.** The novelty share goes through Numenta's anomaly likelihood (mean of the last
   ``short`` shares against the mean and spread over the last ``long`` rows, Gaussian tail, log score), so a
   pattern break is judged against how novel *this* stream usually is. A new level scores 1; otherwise the
   score is ``0.99 ×`` the likelihood score (0.5 ↔ a tail probability of about 1e-5).
3. **Suppression of repeats.** A score is reported only when it is higher than every score reported in the
   previous ``rest`` rows (default ``warmup // 5``), else 0: one event gives one detection, not a burst.

The defaults follow the published methods they come from rather than a search on the benchmark: 8 levels
(3 bits) and a rest period of a fifth of the probationary period as in the CAD OSE detector, contexts of up
to 4 steps, and NAB's anomaly-likelihood settings (10-row average, 8640-row history).

>>> import numpy as np
>>> x = np.r_[np.sin(np.arange(600) / 5.0), 8.0, np.sin(np.arange(600, 700) / 5.0)]
>>> s = UnivariateDetector(warmup=300).score_many(x)
>>> float(s[600]), bool(s[:600].max() < 0.5)
(1.0, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tvilling.analytics.detectors.uv_context import ContextNovelty
from tvilling.analytics.detectors.uv_likelihood import AnomalyLikelihood

__all__ = ["UnivariateDetector"]

FloatArray = npt.NDArray[np.float64]

PATTERN_WEIGHT = 0.99
"""Scale of the likelihood score, so that a never-seen value level (score 1) always ranks first."""


@dataclass
class UnivariateDetector:
    """Contextual novelty, anomaly likelihood and repeat suppression over one stream (causal, prequential).

    Streaming: :meth:`score_one` scores a value and then learns it; :meth:`learn_one` learns it without
    using the score. :meth:`score_many` gives the same scores as row-by-row calls. Non-finite values score 0
    and are not learned.
    """

    warmup: int = 750
    levels: int = 8
    orders: int = 4
    short: int = 10
    long: int = 8640
    rest: int | None = None
    _ctx: ContextNovelty = field(init=False, repr=False)
    _lik: AnomalyLikelihood = field(init=False, repr=False)
    _buffer: list[float] = field(init=False, repr=False)
    _reported: deque[tuple[int, float]] = field(init=False, repr=False)
    _t: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise ValueError("warmup must be at least 1")
        if self.rest is not None and self.rest < 0:
            raise ValueError("rest must be non-negative")
        self.reset()

    @property
    def rest_rows(self) -> int:
        """Rows after a reported score during which only a higher score is reported."""
        return self.warmup // 5 if self.rest is None else self.rest

    def reset(self) -> None:
        """Forget all history."""
        self._ctx = ContextNovelty(self.levels, self.orders)
        self._lik = AnomalyLikelihood(self.short, self.long)
        self._buffer = []
        self._reported = deque()  # (row, score) of reported scores, scores decreasing (a running max)
        self._t = 0

    # ------------------------------------------------------------------ internals

    def _raw(self, x: float) -> float:
        """Score of one finite value before suppression (0 during the warm-up); learns the value."""
        if not self._ctx.ready:
            self._buffer.append(x)
            if len(self._buffer) >= self.warmup:
                for share in self._ctx.start(self._buffer):
                    self._lik.learn(share)
                self._buffer = []
            return 0.0
        new_level, share = self._ctx.step(x)
        pattern = PATTERN_WEIGHT * self._lik.step(share)
        return 1.0 if new_level else pattern

    def _suppress(self, s: float) -> float:
        """Report ``s`` only when it beats every score reported in the last ``rest_rows`` rows."""
        t = self._t
        self._t += 1
        rep = self._reported
        while rep and rep[0][0] < t - self.rest_rows:
            rep.popleft()
        if s <= 0.0 or (rep and s <= rep[0][1]):
            return 0.0
        while rep and rep[-1][1] <= s:
            rep.pop()
        rep.append((t, s))
        return s

    # ------------------------------------------------------------------ public verbs

    def score_one(self, x: float) -> float:
        """Score of one value in [0, 1]; the value is then learned."""
        v = float(x)
        if not math.isfinite(v):
            return self._suppress(0.0)
        return self._suppress(self._raw(v))

    def score_many(self, x: npt.ArrayLike) -> FloatArray:
        """Scores in [0, 1] of a block of values (each scored before it is learned)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        score = self.score_one
        return np.fromiter((score(v) for v in a.tolist()), dtype=np.float64, count=a.size)

    def learn_one(self, x: float) -> None:
        """Learn one value without using its score."""
        self.score_one(x)

    def learn_many(self, x: npt.ArrayLike) -> None:
        """Learn a block of values."""
        self.score_many(x)
