"""Tests of the online detectors and the SKAB/NAB benchmark runs (issue 4, items 2 and 6).

Benchmark tests read ``$TVILLING_DATASETS`` (default ``/work/shared/datasets``) in place and skip with a
message when the data is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tvilling.analytics.detectors import MultivariateDetector, UnivariateDetector
from tvilling.analytics.detectors.mv_calibration import calibrate_scales, hold_decisions
from tvilling.analytics.evaluation.runs import run_nab, run_skab, table

DATASETS = Path(os.environ.get("TVILLING_DATASETS", "/work/shared/datasets"))
SKAB = DATASETS / "skab"
NAB = DATASETS / "nab"


def _needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"dataset not found at {path} (set TVILLING_DATASETS to the shared datasets folder)")


def _correlated(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    return np.hstack([base + 0.5 * rng.normal(size=(n, 1)), rng.normal(size=(n, 3)), 10 + base])


def test_multivariate_is_causal() -> None:
    X = _correlated(600)
    a = MultivariateDetector().fit(X[:400]).score_many(X[400:])
    Y = X.copy()
    Y[500:] += 50.0  # change the future only
    det = MultivariateDetector().fit(Y[:400])
    b = det.score_many(Y[400:])
    np.testing.assert_allclose(a[:100], b[:100])
    assert b[100:].min() > a[100:].max()
    # decisions too: the alarm state at row t ignores later rows
    pa = MultivariateDetector().fit(X[:400]).predict_many(X[400:])
    pb = MultivariateDetector().fit(Y[:400]).predict_many(Y[400:])
    np.testing.assert_array_equal(pa[:100], pb[:100])
    assert pb[100:].all()


def test_multivariate_stream_matches_batch() -> None:
    X = _correlated(700, seed=1)
    X[550:600] += 3.0  # an episode, so decisions change state inside the series
    det = MultivariateDetector().fit(X[:400])
    batch = det.score_many(X[400:])
    assert batch.shape == (300,)
    det.reset()
    stream = np.array([det.score_one(x) for x in X[400:]])
    np.testing.assert_allclose(stream, batch, rtol=1e-9, atol=1e-12)
    det.reset()
    halves = np.r_[det.score_many(X[400:550]), det.score_many(X[550:])]
    np.testing.assert_allclose(halves, batch, rtol=1e-9, atol=1e-12)
    det.reset()
    pred = det.predict_many(X[400:])
    assert pred[150:200].all() and pred[:140].mean() < 0.3
    det.reset()
    np.testing.assert_array_equal([det.predict_one(x) for x in X[400:]], pred)
    det.reset()
    np.testing.assert_array_equal(np.r_[det.predict_many(X[400:565]), det.predict_many(X[565:])], pred)
    # learn_one on the same rows gives the same model as fit()
    det2 = MultivariateDetector()
    for x in X[:400]:
        det2.learn_one(x)
    np.testing.assert_allclose(det2.score_many(X[400:]), batch, rtol=1e-9, atol=1e-12)
    assert det.threshold_ == 1.0


def test_hold_decisions_hold_and_continue() -> None:
    s = np.array([0, 2, 0, 0, 0, 0, 2, 2, 0, 2], dtype=float)
    got, state = hold_decisions(s, 1.0, 3)
    assert got.astype(int).tolist() == [0, 1, 1, 1, 0, 0, 1, 1, 1, 1]
    assert state == (True, 3)
    assert hold_decisions(s, 1.0, 0)[0].astype(int).tolist() == [0, 1, 0, 0, 0, 0, 1, 1, 0, 1]
    for cut in range(1, 10):
        a, st = hold_decisions(s[:cut], 1.0, 3)
        b, st2 = hold_decisions(s[cut:], 1.0, 3, st)
        assert np.r_[a, b].tolist() == got.tolist() and st2 == state


def test_calibrated_scales_downweight_drift() -> None:
    rng = np.random.default_rng(5)
    runs = []
    for _ in range(5):
        X = rng.normal(size=(400, 3))
        X[:, 2] += np.linspace(0, rng.uniform(5, 15), 400)  # a drifting sensor (warming)
        runs.append(X)
    k = calibrate_scales(runs, alpha=0.5)
    assert k[0] < 1.3 and k[1] < 1.3 and k[2] > 4.0
    X = rng.normal(size=(800, 3))
    X[:, 2] += np.linspace(0, 20, 800)
    drifting = MultivariateDetector(scales=[1.0, 1.0, 1.0]).fit(X[:400]).predict_many(X[400:]).mean()
    scaled = MultivariateDetector(scales=k).fit(X[:400]).predict_many(X[400:]).mean()
    assert scaled < drifting
    with pytest.raises(ValueError):
        MultivariateDetector(scales=[1.0, 1.0]).fit(X[:400])


def test_contributions_sum_to_one_and_name_the_sensor() -> None:
    X = _correlated(400, seed=2)
    det = MultivariateDetector(names=["a", "b", "c", "d", "e"]).fit(X)
    for k in range(5):
        x = X[-1].copy()
        x[k] += 8.0 * det.std_[k] if det.std_ is not None else 0.0
        c = det.contributions(x)
        assert c.shape == (5,)
        assert c.sum() == pytest.approx(1.0)
        assert (c >= 0).all()
        assert int(np.argmax(c)) == k
    many = det.contributions(X[:10])
    assert many.shape == (10, 5)
    np.testing.assert_allclose(many.sum(axis=1), 1.0)
    assert max(det.explain(X[0] + np.r_[0, 0, 9, 0, 0]).items(), key=lambda kv: kv[1])[0] == "c"
    det.score_many(np.r_[X[:50], X[:50] + np.r_[0, 0, 0, 9, 0]])
    smoothed = det.contributions(X[0], smoothed=True)
    assert int(np.argmax(smoothed)) == 3 and smoothed.sum() == pytest.approx(1.0)


def test_multivariate_flat_sensor_is_finite() -> None:
    X = _correlated(400, seed=3)
    X[:, 2] = 5.0  # a sensor that never moves in training
    det = MultivariateDetector().fit(X)
    assert np.isfinite(det.score_many(X[:10])).all()


def _series(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sin(np.arange(n) / 10.0) + 0.1 * rng.normal(size=n)


def test_univariate_is_causal_and_bounded() -> None:
    x = _series()
    a = UnivariateDetector(warmup=300).score_many(x)
    y = x.copy()
    y[1000:] += 30.0  # change the future only
    b = UnivariateDetector(warmup=300).score_many(y)
    assert a.shape == x.shape
    assert ((a >= 0) & (a <= 1)).all() and ((b >= 0) & (b <= 1)).all()
    np.testing.assert_array_equal(a[:1000], b[:1000])
    assert not a[:300].any()  # warm-up rows are learned, not scored
    assert b[1000] == 1.0 > 0.5 > a[:1000].max()  # a never-seen level ranks first


def test_univariate_reports_a_burst_once() -> None:
    x = _series(1500, seed=2)
    x[1000:1010] += 30.0  # one event ten rows long
    s = UnivariateDetector(warmup=300, rest=100).score_many(x)
    hits = np.flatnonzero(s[:1100] >= 0.5)
    assert hits.tolist() == [1000]  # first row only; the rest of the burst is not reported again
    s2 = UnivariateDetector(warmup=300, rest=0).score_many(x)
    assert np.count_nonzero(s2[:1100] >= 0.5) > 1  # without suppression the burst fires repeatedly


def test_univariate_pattern_break_without_new_level() -> None:
    """A familiar range visited in an unfamiliar order is caught by the context likelihood."""
    rng = np.random.default_rng(3)
    saw = np.tile(np.linspace(0.0, 1.0, 20), 100) + 0.01 * rng.normal(size=2000)
    saw[1500:1540] = saw[1500:1540][::-1]  # the same values, run backwards
    s = UnivariateDetector(warmup=600).score_many(saw)
    assert s[1500:1545].max() >= 0.5 > s[:1500].max()


def test_univariate_stream_matches_batch_and_resets() -> None:
    x = _series(2600, seed=4)  # longer than the likelihood window, so history is dropped
    x[[900, 1700, 2300]] = [5.0, np.nan, -4.0]
    small = dict(warmup=200, long=500)
    batch = UnivariateDetector(**small).score_many(x)
    det = UnivariateDetector(**small)
    stream = np.array([det.score_one(v) for v in x])
    np.testing.assert_array_equal(stream, batch)
    det = UnivariateDetector(**small)
    parts = np.r_[det.score_many(x[:777]), det.score_many(x[777:])]
    np.testing.assert_array_equal(parts, batch)
    det.reset()
    np.testing.assert_array_equal(det.score_many(x), batch)
    det = UnivariateDetector(**small)
    for v in x[:150]:
        det.learn_one(v)
    det.learn_many(x[150:1200])
    np.testing.assert_array_equal(det.score_many(x[1200:]), batch[1200:])
    assert batch[1700] == 0.0 and batch[900] == 1.0


def test_univariate_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        UnivariateDetector(warmup=0)
    with pytest.raises(ValueError):
        UnivariateDetector(levels=0)
    with pytest.raises(ValueError):
        UnivariateDetector(rest=-1)
    with pytest.raises(ValueError):
        UnivariateDetector(trim=0.5)
    with pytest.raises(ValueError):
        UnivariateDetector(calendar=("month",))
    with pytest.raises(ValueError, match="timestamps"):
        UnivariateDetector(warmup=10).score_many(np.zeros(5), ts=np.arange(4.0))


def _daily(days: int = 30, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hourly values with a busy day (rows 8-19 of each day high) and a quiet night, plus timestamps."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    x = np.where((hours % 24 >= 8) & (hours % 24 < 20), 10.0, 1.0) + 0.3 * rng.normal(size=hours.size)
    ts = np.datetime64("2024-01-01T00:00") + hours.astype("timedelta64[h]")
    return x, ts


def test_univariate_calendar_catches_a_missing_daily_peak() -> None:
    """A quiet day where a busy one is due: familiar values, unfamiliar for the hour (needs timestamps)."""
    x, ts = _daily(90)
    day = slice(80 * 24 + 8, 80 * 24 + 20)
    x[day] = 1.0 + 0.3 * np.random.default_rng(6).normal(size=12)  # day 80 stays at its night level
    with_ts = UnivariateDetector(warmup=150).score_many(x, ts=ts)
    without = UnivariateDetector(warmup=150).score_many(x)
    before = with_ts[150 : day.start]
    assert np.count_nonzero(before == 1.0) <= 1  # at most one noise value just past the warm-up grid
    assert with_ts[day].max() >= 0.5 > before[before < 1.0].max()
    assert without[day].max() < 0.1  # the value-only detector does not see it
    off = UnivariateDetector(warmup=150, calendar=()).score_many(x, ts=ts)
    np.testing.assert_array_equal(off, without)  # calendar off = timestamps ignored


def test_univariate_timestamps_stream_matches_batch_and_are_causal() -> None:
    x, ts = _daily(20)
    x[300] = 30.0
    batch = UnivariateDetector(warmup=100).score_many(x, ts=ts)
    det = UnivariateDetector(warmup=100)
    sec = ts.astype("datetime64[s]").astype(np.int64)
    stream = [det.score_one(v, float(t)) for v, t in zip(x[:200], sec[:200], strict=True)]
    stream += [det.score_one(v, t) for v, t in zip(x[200:], ts[200:].tolist(), strict=True)]  # datetimes
    np.testing.assert_array_equal(np.array(stream), batch)
    y = x.copy()
    y[400:] = 5.0  # change the future only
    np.testing.assert_array_equal(UnivariateDetector(warmup=100).score_many(y, ts=ts)[:400], batch[:400])
    assert batch[300] == 1.0


def test_univariate_robust_grid_ignores_a_warmup_outlier() -> None:
    """One spike in the warm-up must not stretch the grid until ordinary changes vanish inside one level."""
    x = _series(1500, seed=7)
    x[50] = 40.0  # a stray spike during the warm-up
    x[1000:1100] += 2.5  # a level shift well inside the spike's range
    robust = UnivariateDetector(warmup=300).score_many(x)
    plain = UnivariateDetector(warmup=300, trim=0.0).score_many(x)
    assert robust[1000:1100].max() == 1.0 > plain[1000:1100].max()


def test_run_skab_real_data() -> None:
    """Dev figures of the default detector, pinned (measured F1 0.838, FAR 8.25 %, NAB standard 47.2)."""
    _needs(SKAB)
    r = run_skab(SKAB)
    for key in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn", "files"):
        assert key in r
    assert r["files"] == 20
    # the goals: F1 >= 0.80 at FAR <= 13.5 %, changepoint NAB standard >= 35
    assert r["f1"] >= 0.80 and r["far"] <= 13.5 and r["nab_standard"] >= 35.0
    assert r["f1"] == pytest.approx(0.838, abs=0.01)
    assert r["far"] == pytest.approx(8.25, abs=0.5)
    assert r["nab_standard"] == pytest.approx(47.2, abs=1.0)
    assert 0.0 <= r["family_balanced_accuracy"] <= 1.0
    print("\n" + table(r))


def test_run_skab_custom_factory_uses_plain_threshold() -> None:
    _needs(SKAB)
    r = run_skab(SKAB / "valve2", detector_factory=lambda: MultivariateDetector(hold=0), families=False)
    assert r["files"] == 4 and "family_accuracy" not in r
    assert 0.0 <= r["f1"] <= 1.0


def test_run_nab_real_data() -> None:
    _needs(NAB)
    r = run_nab(NAB / "data", NAB / "labels" / "combined_windows.json")
    for key in ("standard", "reward_low_fp", "reward_low_fn", "files", "fixed"):
        assert key in r
    assert r["files"] == 41
    # Figures reached on the development part (standard 73.9, low FP 63.8, low FN 79.5); a little slack only.
    assert r["standard"] >= 73.3
    assert r["reward_low_fp"] >= 63.2
    assert r["reward_low_fn"] >= 78.9
    assert r["fixed"]["standard"] >= 71.3  # at the natural decision level 0.5
    assert r["seconds"] < 120.0
    print("\n" + table(r))


def test_run_nab_passes_timestamps_only_to_detectors_that_take_them(tmp_path: Path) -> None:
    _needs(NAB)
    (tmp_path / "realKnownCause").mkdir()
    for f in sorted((NAB / "data" / "realKnownCause").glob("*.csv")):  # one category, read in place
        (tmp_path / "realKnownCause" / f.name).symlink_to(f)
    seen: list[bool] = []

    class ValuesOnly:
        def __init__(self, probation: int) -> None:
            self.det = UnivariateDetector(warmup=max(probation, 1))

        def score_many(self, x: np.ndarray) -> np.ndarray:
            seen.append(False)
            return self.det.score_many(x)

    class Timed(ValuesOnly):
        def score_many(self, x: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
            seen.append(ts is not None)
            return self.det.score_many(x, ts=ts)

    data, labels = tmp_path, NAB / "labels" / "combined_windows.json"
    plain = run_nab(data, labels, detector_factory=ValuesOnly)
    assert seen and not any(seen)
    seen.clear()
    timed = run_nab(data, labels, detector_factory=Timed)
    assert seen and all(seen)
    assert timed["standard"] == pytest.approx(run_nab(data, labels)["standard"])
    assert timed["standard"] != plain["standard"]  # the calendar changes the scores (nyc_taxi)


def test_skab_defaults_are_the_leave_one_file_out_choice() -> None:
    """The detector's defaults are what the pre-declared selection rule picks, in every fold."""
    _needs(SKAB)
    from tvilling.analytics.detectors.mv_selection import leave_one_file_out
    from tvilling.analytics.evaluation.skab import load_skab

    files = [d for p in sorted(SKAB.rglob("*.csv")) if (d := load_skab(p)) is not None]
    r = leave_one_file_out(files)
    d = MultivariateDetector()
    assert r["chosen"] == {"alpha": d.alpha, "threshold": d.threshold, "hold": d.hold}
    assert r["fold_choices"] == {str((d.alpha, d.threshold, d.hold)): 20}
    cv = r["cv"]  # held-out figures of the selection procedure
    assert cv["f1"] >= 0.80 and cv["far"] <= 13.5 and cv["nab_standard"] >= 35.0
