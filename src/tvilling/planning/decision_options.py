"""The decision's arithmetic: a what-if option's simulated time to failure as a failure distribution, and the
expected cost of each option on the planner's terms. Pure: no I/O.

A what-if reports per option the time to failure's p10/p50/p90 (``None`` past the horizon) and the
probability of failing within the horizon. :func:`distribution_from_kpis` fits the planner's failure
distribution to them: :func:`~tvilling.planning.failure.fit_failure` when all three quantiles fall
inside the horizon; otherwise a Weibull through the quantiles that do and the point (horizon,
P(fail within it)), by least squares on Weibull probability paper; ``None`` when no sample failed.

Costs (``F`` = corrective cost + unplanned downtime × downtime rate, ``H`` the horizon):

* run to failure: ``P(fail ≤ H) · F``;
* slow down: ``P_slow(fail ≤ H) · F + rate · (1 − slow/current speed) · E[min(T_slow, H)]`` — the
  production the slower machine does not make while it runs;
* preventive work at ``s``: ``preventive + P(fail ≤ s) · F + rate · hours of the work outside windows``.

>>> d = distribution_from_kpis({"ttf_p10_h": 5.0, "ttf_p50_h": 9.0, "ttf_p90_h": None, "p_fail_horizon": 0.7}, 12.0)
>>> d.family, round(d.prob_fail_before(9.0, now=0.0), 2), round(d.prob_fail_before(12.0, now=0.0), 2)
('weibull', 0.45, 0.74)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tvilling.planning.failure import MAX_WEIBULL_SHAPE, FailureDistribution, fit_failure
from tvilling.planning.maintenance_options import merge, overlap
from tvilling.planning.maintenance_types import Window


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def distribution_from_kpis(kpis: Mapping[str, object], horizon_h: float) -> FailureDistribution | None:
    """The failure distribution (hours from the what-if's start) its KPIs describe; ``None``: no failure seen."""
    p_h = kpis.get("p_fail_horizon")
    p_h = float(p_h) if isinstance(p_h, int | float) and math.isfinite(p_h) else None
    q = {level: _finite(kpis.get(key)) for level, key in ((0.1, "ttf_p10_h"), (0.5, "ttf_p50_h"), (0.9, "ttf_p90_h"))}
    if (p_h is not None and p_h <= 0.0) or (all(v is None for v in q.values()) and not p_h):
        return None
    if all(v is not None for v in q.values()):
        p10, p50, p90 = q[0.1], q[0.5], q[0.9]
        assert p10 is not None and p50 is not None and p90 is not None
        return fit_failure(p50, min(p10, p50), max(p90, p50))
    points = [(level, t) for level, t in q.items() if t is not None]
    if p_h is not None and 0.0 < p_h < 1.0 and all(abs(level - p_h) > 1e-6 for level, _ in points):
        points.append((p_h, horizon_h))
    if not points:
        return None
    x = np.array([math.log(-math.log1p(-level)) for level, _ in points])
    y = np.array([math.log(t) for _, t in points])
    if len(points) == 1:
        slope, intercept = 1.0, float(y[0] - x[0])
    else:
        xm, ym = float(x.mean()), float(y.mean())
        sxx = float(((x - xm) ** 2).sum())
        slope = float(((x - xm) * (y - ym)).sum()) / sxx if sxx > 0 else 1.0
        slope = max(slope, 1.0 / MAX_WEIBULL_SHAPE)
        intercept = ym - slope * xm
    return FailureDistribution("weibull", 1.0 / slope, math.exp(intercept), 0.0,
                               why=f"Weibull through the what-if's {len(points)} failure-time point(s) inside "
                                   f"the {horizon_h:g} h horizon")


def p_fail(dist: FailureDistribution | None, t: float) -> float:
    """P(failure by planning hour ``t``) from hour 0."""
    return 0.0 if dist is None or t <= 0 else dist.prob_fail_before(t, now=0.0)


def expected_run_h(dist: FailureDistribution | None, horizon_h: float, points: int = 200) -> float:
    """E[min(T, H)]: the hours the asset is expected to run within the horizon."""
    if dist is None:
        return horizon_h
    t = np.linspace(0.0, horizon_h, points)
    survival = 1.0 - dist.prob_fail_before_many(t, now=0.0)
    return float(np.sum((survival[1:] + survival[:-1]) * np.diff(t)) / 2.0)


def failure_cost(corrective_cost: float, downtime_h: float, rate: float) -> float:
    """The cost of one unplanned failure."""
    return corrective_cost + downtime_h * rate


def lost_outside(start: float, duration: float, windows: Sequence[Window], rate: float) -> float:
    """Production lost to work ``[start, start + duration)`` outside ``windows``."""
    if not windows:
        return rate * duration
    ws, we = merge([(w.start, w.end) for w in windows])
    covered = float(overlap(np.array([start]), duration, ws, we)[0])
    return rate * (duration - covered)


def slow_cost(dist: FailureDistribution | None, horizon_h: float, fail_cost: float, rate: float,
              ratio: float) -> tuple[float, float]:
    """(expected cost, production lost in machine-hours) of slowing to ``ratio`` of the speed for the horizon."""
    hours = expected_run_h(dist, horizon_h) * max(0.0, 1.0 - ratio)
    return p_fail(dist, horizon_h) * fail_cost + rate * hours, hours


def cautious(simulated: FailureDistribution | None, analytic: FailureDistribution | None, horizon_h: float
             ) -> tuple[FailureDistribution | None, str]:
    """Of the what-if's and the remaining-life analytic's distributions, the one failing sooner within the horizon
    (the what-if's on a tie), and which it is: where the two disagree the plan guards against the worse."""
    if analytic is not None and p_fail(analytic, horizon_h) > p_fail(simulated, horizon_h) + 1e-9:
        return analytic, "rul-analytic"
    return simulated, "what-if"


def stretched(dist: FailureDistribution | None, factor: float) -> FailureDistribution | None:
    """``dist`` with its remaining life ``factor`` times as long (a machine slowed: wear grows more slowly)."""
    if dist is None or dist.family == "imminent":
        return dist
    return FailureDistribution(dist.family, dist.shape, dist.scale * factor, dist.predicted_at, dist.fit_error,
                               f"{dist.why}; stretched ×{factor:.2f}")


__all__ = ["cautious", "distribution_from_kpis", "expected_run_h", "failure_cost", "lost_outside", "p_fail",
           "slow_cost", "stretched"]
