"""Failure-time distributions fitted to a remaining-useful-life prediction.

A RUL analytic reports ``rul`` (the median), ``rul_p10`` and ``rul_p90`` in hours. The planner
needs the probability that the asset fails before a given time, so :func:`fit_failure` turns the
three quantiles into a two-parameter distribution of the remaining life, counted from the time of
the prediction:

* **Weibull** ``F(t) = 1 - exp(-(t/scale)^shape)``: the usual wear-out law; its log-quantiles are
  skewed to the left (the lower tail is long), which is what clipped or skewed RUL bands show.
* **Log-normal** ``F(t) = Φ((ln t - ln scale)/shape)``: its log-quantiles are symmetric about the
  median; it fits bands where ``p50/p10 ≈ p90/p50``.

Both are fitted by least squares on the log-quantiles (a straight line in each family's
probability paper); the family with the smaller residual is kept (``family="auto"``), and
``fit_error`` says how far the fitted quantiles are from the given ones. Probabilities asked at a
planning time later than the prediction are conditioned on the asset still running then.

>>> d = fit_failure(100.0, 50.0, 200.0)  # p50/p10 = p90/p50: log-normal, exact
>>> d.family, round(d.prob_fail_before(100.0, now=0.0), 3), round(d.quantile(0.9), 1)
('lognormal', 0.5, 200.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tvilling.core.errors import Invalid

Family = Literal["weibull", "lognormal", "imminent"]
FloatArray = NDArray[np.float64]

#: The sharpest distribution a fit may produce: a band narrower than this is widened.
MAX_WEIBULL_SHAPE = 50.0
MIN_LOGNORMAL_SIGMA = 0.02
_NORMAL = NormalDist()


def _erfc(values: FloatArray) -> FloatArray:
    out = np.empty_like(values)
    flat_in, flat_out = values.ravel(), out.ravel()
    for i, v in enumerate(flat_in):
        flat_out[i] = math.erfc(float(v))
    return out


@dataclass(frozen=True)
class FailureDistribution:
    """Remaining life after ``predicted_at`` (hours on the planning clock).

    ``shape``/``scale`` are the Weibull ``k``/``λ`` or the log-normal ``σ``/median; the
    ``imminent`` family means the prediction says the asset is at its end of life now.
    """

    family: Family
    shape: float
    scale: float
    predicted_at: float = 0.0
    fit_error: float = 0.0
    why: str = ""

    def cdf_many(self, t: FloatArray) -> FloatArray:
        """Unconditional probability that the remaining life is at most ``t`` hours."""
        t = np.asarray(t, dtype=np.float64)
        if self.family == "imminent":
            return np.where(t > 0.0, 1.0, 0.0)
        pos = np.maximum(t, 0.0)
        if self.family == "weibull":
            out: FloatArray = -np.expm1(-np.power(pos / self.scale, self.shape))
        else:
            with np.errstate(divide="ignore"):
                z = (np.log(pos) - math.log(self.scale)) / self.shape
            out = 0.5 * _erfc(-z / math.sqrt(2.0))
        return np.where(t > 0.0, out, 0.0)

    def cdf(self, t: float) -> float:
        """Unconditional probability that the remaining life is at most ``t`` hours."""
        return float(self.cdf_many(np.array([t]))[0])

    def quantile(self, q: float) -> float:
        """The remaining life (hours after the prediction) with probability ``q`` of failing before."""
        if not 0.0 < q < 1.0:
            raise Invalid(f"quantile level must lie in (0, 1), got {q}", field="q")
        if self.family == "imminent":
            return 0.0
        if self.family == "weibull":
            return float(self.scale * (-math.log1p(-q)) ** (1.0 / self.shape))
        return self.scale * math.exp(self.shape * _NORMAL.inv_cdf(q))

    def prob_fail_before_many(self, t: FloatArray, *, now: float) -> FloatArray:
        """P(failure at or before planning time ``t`` | running at ``now``), element-wise."""
        if now < self.predicted_at:
            raise Invalid(f"planning time {now} is before the prediction time {self.predicted_at}",
                          field="now", rule="prediction-in-future")
        elapsed = now - self.predicted_at
        f_now = self.cdf(elapsed) if elapsed > 0.0 else 0.0
        t = np.asarray(t, dtype=np.float64)
        if f_now >= 1.0 - 1e-12:
            return np.where(t > now, 1.0, 0.0)
        f_t = self.cdf_many(t - self.predicted_at)
        p = (f_t - f_now) / (1.0 - f_now)
        return np.clip(np.where(t > now, p, 0.0), 0.0, 1.0)

    def prob_fail_before(self, t: float, *, now: float) -> float:
        """P(failure at or before planning time ``t`` | running at ``now``)."""
        return float(self.prob_fail_before_many(np.array([t]), now=now)[0])


def expected_failure_cost(dist: FailureDistribution | None, *, now: float, until: float, corrective_cost: float,
                          downtime_h: float, downtime_rate: float) -> float:
    """Expected cost of an unplanned failure before ``until``: P(fail) × (corrective + downtime × rate)."""
    if dist is None:
        return 0.0
    p = dist.prob_fail_before(until, now=now)
    return p * (corrective_cost + downtime_h * downtime_rate)


def _check_number(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"{name} must be a number, got {value!r}", field=name, rule="type") from None
    if not math.isfinite(v):
        raise Invalid(f"{name} must be a finite number, got {v}", field=name, rule="finite")
    if v < 0.0:
        raise Invalid(f"{name} must be ≥ 0 hours, got {v}", field=name, rule="minimum")
    return v


def _line(x: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """Least-squares line ``y = a + b x``: (intercept, slope, sum of squared residuals)."""
    xm, ym = float(x.mean()), float(y.mean())
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum()) / sxx
    intercept = ym - slope * xm
    sse = float(((y - intercept - slope * x) ** 2).sum())
    return intercept, slope, sse


def _fit_family(family: Literal["weibull", "lognormal"], levels: FloatArray, values: FloatArray,
                predicted_at: float) -> tuple[FailureDistribution, float]:
    y = np.log(values)
    if family == "weibull":
        x = np.log(-np.log1p(-levels))
        min_slope = 1.0 / MAX_WEIBULL_SHAPE
    else:
        x = np.array([_NORMAL.inv_cdf(float(q)) for q in levels])
        min_slope = MIN_LOGNORMAL_SIGMA
    if len(values) == 1:  # one quantile: the exponential law (Weibull shape 1) through it
        slope = 1.0
        intercept = float(y[0] - x[0])
    else:
        intercept, slope, _ = _line(x, y)
        if slope < min_slope:  # a band (nearly) without spread: sharpest allowed, centred on the data
            slope = min_slope
            intercept = float(y.mean() - slope * x.mean())
    sse = float(((y - intercept - slope * x) ** 2).sum())
    shape = 1.0 / slope if family == "weibull" else slope
    dist = FailureDistribution(family, shape, math.exp(intercept), predicted_at)
    fitted = np.array([dist.quantile(float(q)) for q in levels])
    return FailureDistribution(family, shape, math.exp(intercept), predicted_at,
                               fit_error=float(np.max(np.abs(fitted / values - 1.0)))), sse


def fit_failure(rul: float, rul_p10: float, rul_p90: float, *, coverage: float = 0.8, predicted_at: float = 0.0,
                family: Literal["auto", "weibull", "lognormal"] = "auto") -> FailureDistribution:
    """Fit a failure-time distribution to a RUL prediction (hours).

    ``coverage`` is the analytic's calibrated share of outcomes inside ``[rul_p10, rul_p90]``
    (0.8 when the band is exact): a band that covered only 60 % of past outcomes is read as the
    20 %/80 % quantiles, which widens the distribution. A quantile of 0 (the analytic clips its
    band at zero) is left out of the fit; all three at 0 mean the asset is at its end of life.

    Raises :class:`~tvilling.core.errors.Invalid` for NaN, negative or unordered quantiles.
    """
    p50 = _check_number("rul", rul)
    p10 = _check_number("rul_p10", rul_p10)
    p90 = _check_number("rul_p90", rul_p90)
    at = float(predicted_at)
    if not math.isfinite(at):
        raise Invalid(f"predicted_at must be finite, got {predicted_at}", field="predicted_at", rule="finite")
    if not (isinstance(coverage, int | float) and 0.0 < coverage < 1.0):
        raise Invalid(f"coverage must lie in (0, 1), got {coverage!r}", field="coverage", rule="range")
    if p10 > p50:
        raise Invalid(f"rul_p10 ({p10}) is above rul ({p50}): the quantiles must satisfy p10 ≤ p50 ≤ p90",
                      field="rul_p10", rule="order")
    if p50 > p90:
        raise Invalid(f"rul ({p50}) is above rul_p90 ({p90}): the quantiles must satisfy p10 ≤ p50 ≤ p90",
                      field="rul_p90", rule="order")
    if family not in ("auto", "weibull", "lognormal"):
        raise Invalid(f"unknown family {family!r}; use auto, weibull or lognormal", field="family", rule="enum")
    if p90 == 0.0:
        return FailureDistribution("imminent", 0.0, 0.0, at, why="every quantile is 0: the asset is at its end of life")
    lo = (1.0 - coverage) / 2.0
    all_levels = np.array([lo, 0.5, 1.0 - lo])
    all_values = np.array([p10, p50, p90])
    keep = all_values > 0.0
    levels, values = all_levels[keep], all_values[keep]
    if len(values) == 1:
        dist, _ = _fit_family("weibull", levels, values, at)
        return _with_why(dist, "only rul_p90 is above 0: exponential law (Weibull shape 1) through it")
    if family != "auto":
        dist, _ = _fit_family(family, levels, values, at)
        return _with_why(dist, f"{family} asked for")
    weibull, sse_w = _fit_family("weibull", levels, values, at)
    lognormal, sse_l = _fit_family("lognormal", levels, values, at)
    if len(values) == 2:
        return _with_why(weibull, "two positive quantiles (the lower one clipped at 0): Weibull, whose long lower "
                                  "tail is the cautious reading of a clipped band")
    if sse_l < sse_w - 1e-12:
        return _with_why(lognormal, f"log-normal fits the log-quantiles better (residual {sse_l:.2e} vs Weibull "
                                    f"{sse_w:.2e}): the band is about symmetric in log time")
    return _with_why(weibull, f"Weibull fits the log-quantiles better (residual {sse_w:.2e} vs log-normal "
                              f"{sse_l:.2e}): the band is skewed towards early failure")


def _with_why(dist: FailureDistribution, why: str) -> FailureDistribution:
    return FailureDistribution(dist.family, dist.shape, dist.scale, dist.predicted_at, dist.fit_error, why)
