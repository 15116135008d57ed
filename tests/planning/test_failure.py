"""Failure-time distributions fitted to RUL quantiles: fit, conditioning, bad input."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from tvilling.core.errors import Invalid
from tvilling.planning.failure import expected_failure_cost, fit_failure


def weibull_q(q: float, k: float, lam: float) -> float:
    return lam * (-math.log1p(-q)) ** (1.0 / k)


def test_weibull_quantiles_are_reproduced_and_weibull_is_chosen() -> None:
    k, lam = 2.5, 300.0
    p10, p50, p90 = (weibull_q(q, k, lam) for q in (0.1, 0.5, 0.9))
    d = fit_failure(p50, p10, p90)
    assert d.family == "weibull"
    assert d.shape == pytest.approx(k, rel=1e-9)
    assert d.scale == pytest.approx(lam, rel=1e-9)
    for q, v in ((0.1, p10), (0.5, p50), (0.9, p90)):
        assert d.quantile(q) == pytest.approx(v, rel=1e-9)
        assert d.prob_fail_before(v, now=0.0) == pytest.approx(q, abs=1e-9)
    assert d.fit_error < 1e-9


def test_lognormal_band_is_fitted_as_lognormal() -> None:
    z = NormalDist().inv_cdf(0.9)
    median, sigma = 120.0, 0.4
    d = fit_failure(median, median * math.exp(-sigma * z), median * math.exp(sigma * z))
    assert d.family == "lognormal"
    assert d.shape == pytest.approx(sigma, rel=1e-9)
    assert d.quantile(0.1) == pytest.approx(median * math.exp(-sigma * z), rel=1e-9)
    assert "log-normal" in d.why


@pytest.mark.parametrize(("p50", "p10", "p90"), [(100.0, 40.0, 160.0), (500.0, 350.0, 700.0), (80.0, 30.0, 200.0)])
def test_typical_bands_are_reproduced_within_a_few_percent(p50: float, p10: float, p90: float) -> None:
    d = fit_failure(p50, p10, p90)
    assert d.fit_error < 0.08
    for q, v in ((0.1, p10), (0.5, p50), (0.9, p90)):
        assert d.quantile(q) == pytest.approx(v, rel=0.08)
        assert d.cdf(v) == pytest.approx(q, abs=0.04)


def test_calibrated_coverage_widens_the_distribution() -> None:
    exact = fit_failure(100.0, 60.0, 150.0)
    under = fit_failure(100.0, 60.0, 150.0, coverage=0.6)  # the band held only 60 % of outcomes
    assert under.quantile(0.2) == pytest.approx(60.0, rel=0.05)
    assert under.quantile(0.1) < exact.quantile(0.1)
    assert under.prob_fail_before(50.0, now=0.0) > exact.prob_fail_before(50.0, now=0.0)


def test_probability_is_conditioned_on_running_now() -> None:
    d = fit_failure(100.0, 50.0, 160.0, predicted_at=10.0)
    now, t = 70.0, 120.0
    f_now, f_t = d.cdf(now - 10.0), d.cdf(t - 10.0)
    assert d.prob_fail_before(t, now=now) == pytest.approx((f_t - f_now) / (1.0 - f_now), rel=1e-12)
    assert d.prob_fail_before(now, now=now) == 0.0
    # wear-out: 50 more hours are riskier after 60 hours of survival than from the prediction
    assert d.prob_fail_before(now + 50.0, now=now) > d.prob_fail_before(60.0, now=10.0)
    many = d.prob_fail_before_many(np.array([now, 80.0, 200.0, 1e6]), now=now)
    assert np.all(np.diff(many) >= 0) and many[-1] == pytest.approx(1.0)


def test_clipped_and_degenerate_bands() -> None:
    clipped = fit_failure(50.0, 0.0, 120.0)  # the analytic clipped p10 at 0
    assert clipped.family == "weibull"
    assert clipped.quantile(0.5) == pytest.approx(50.0, rel=1e-9)
    assert clipped.quantile(0.9) == pytest.approx(120.0, rel=1e-9)
    assert clipped.quantile(0.1) < 50.0
    dead = fit_failure(0.0, 0.0, 0.0)
    assert dead.family == "imminent"
    assert dead.prob_fail_before(0.5, now=0.0) == 1.0
    sharp = fit_failure(100.0, 100.0, 100.0)
    assert math.isfinite(sharp.shape)
    assert sharp.prob_fail_before(90.0, now=0.0) < 0.05 < 0.95 < sharp.prob_fail_before(110.0, now=0.0)


def test_expected_failure_cost() -> None:
    d = fit_failure(100.0, 40.0, 160.0)
    p = d.prob_fail_before(80.0, now=0.0)
    cost = expected_failure_cost(d, now=0.0, until=80.0, corrective_cost=5000.0, downtime_h=10.0, downtime_rate=300.0)
    assert cost == pytest.approx(p * (5000.0 + 10.0 * 300.0))
    assert expected_failure_cost(None, now=0.0, until=80.0, corrective_cost=1.0, downtime_h=1.0,
                                 downtime_rate=1.0) == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((100.0, 120.0, 160.0), {}, "rul_p10"),
        ((100.0, 40.0, 90.0), {}, "rul_p90"),
        ((-5.0, 0.0, 10.0), {}, "rul"),
        ((float("nan"), 40.0, 160.0), {}, "rul"),
        ((100.0, 40.0, float("inf")), {}, "rul_p90"),
        ((100.0, 40.0, 160.0), {"coverage": 1.2}, "coverage"),
        ((100.0, 40.0, 160.0), {"family": "gamma"}, "family"),
    ],
)
def test_bad_input_raises_invalid_naming_the_field(args: tuple[float, float, float], kwargs: dict[str, object],
                                                   field: str) -> None:
    with pytest.raises(Invalid) as err:
        fit_failure(*args, **kwargs)  # type: ignore[arg-type]
    assert err.value.fields["field"] == field
    assert field.split("_")[0] in err.value.message


def test_planning_before_the_prediction_is_refused() -> None:
    d = fit_failure(100.0, 40.0, 160.0, predicted_at=50.0)
    with pytest.raises(Invalid, match="before the prediction"):
        d.prob_fail_before(80.0, now=10.0)
