"""Forecasting a twin property h steps ahead with an interval: additive-trend exponential smoothing.

The model is ETS(A,A,N) (Holt's linear trend in its error-correction form)::

    e_t = y_t − (ℓ_{t−1} + b_{t−1});   ℓ_t = ℓ_{t−1} + b_{t−1} + α·e_t;   b_t = b_{t−1} + β·e_t

with (α, β) chosen on the series itself by the smallest one-step-ahead squared error over
a small grid (β ≤ α). The h-step forecast is ``ℓ_n + h·b_n`` and its variance
``σ²·(1 + Σ_{j=1}^{h−1} (α + j·β)²)``, σ² the variance of the one-step errors; the interval
is that of a normal error at the requested coverage.

>>> import numpy as np
>>> f = holt(np.arange(50, dtype=float), 3)
>>> [round(v, 3) for v in f.mean]
[50.0, 51.0, 52.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid

FloatArray = npt.NDArray[np.float64]
ALPHAS = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
BETA_SHARES = np.array([0.0, 0.05, 0.1, 0.2, 0.5])  # β = share × α


@dataclass(frozen=True)
class Forecast:
    mean: list[float]
    lower: list[float]
    upper: list[float]
    alpha: float
    beta: float
    sigma: float
    coverage: float


def _one_step_sse(y: FloatArray, alpha: FloatArray, beta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One pass over the series for every (α, β) at once: (sse, last level, last trend)."""
    level = np.full(alpha.shape, y[0])
    trend = np.full(alpha.shape, y[1] - y[0] if y.size > 1 else 0.0)
    sse = np.zeros(alpha.shape)
    for value in y[1:]:
        err = value - (level + trend)
        sse += err * err
        level = level + trend + alpha * err
        trend = trend + beta * err
    return sse, level, trend


def holt(y: npt.ArrayLike, horizon: int, coverage: float = 0.8) -> Forecast:
    """Forecast ``horizon`` steps after the last value of ``y`` (equally spaced, oldest first)."""
    values = np.asarray(y, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 4:
        raise Invalid(f"forecasting needs at least 4 finite values, got {values.size}", field="property",
                      rule="history")
    if not isinstance(horizon, int) or not 1 <= horizon <= 10_000:
        raise Invalid("horizon must be a whole number of steps between 1 and 10000", field="horizon", rule="range")
    if not 0.0 < coverage < 1.0:
        raise Invalid("coverage must be between 0 and 1", field="coverage", rule="range")
    a_grid, share = np.meshgrid(ALPHAS, BETA_SHARES, indexing="ij")
    alpha, beta = a_grid.ravel(), (a_grid * share).ravel()
    sse, level, trend = _one_step_sse(values, alpha, beta)
    best = int(np.argmin(sse))
    a, b = float(alpha[best]), float(beta[best])
    sigma = math.sqrt(float(sse[best]) / max(values.size - 3, 1))
    h = np.arange(1, horizon + 1, dtype=np.float64)
    mean = float(level[best]) + h * float(trend[best])
    j = np.arange(1, horizon, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum((a + j * b) ** 2)])
    sd = sigma * np.sqrt(1.0 + csum)
    z = NormalDist().inv_cdf(0.5 + coverage / 2.0)
    return Forecast(mean=mean.tolist(), lower=(mean - z * sd).tolist(), upper=(mean + z * sd).tolist(),
                    alpha=a, beta=b, sigma=sigma, coverage=coverage)
