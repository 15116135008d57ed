"""Known-point tests of the SKAB and NAB metric code (issue 4, item 6).

Tests on the real corpora read ``$TVILLING_DATASETS`` (default ``/work/shared/datasets``) in place and
skip with a message when the data is absent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from tvilling.analytics.evaluation.nab import (
    PROFILES,
    load_nab_series,
    load_windows,
    probationary_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
    sweep_file,
    window_indices,
)
from tvilling.analytics.evaluation.skab import (
    TRAIN_ROWS,
    ChangepointCounts,
    PointCounts,
    changepoint_scores,
    changepoint_weight,
    load_skab,
    point_metrics,
    predicted_changepoints,
)
from tvilling.core.errors import Invalid

DATASETS = Path(os.environ.get("TVILLING_DATASETS", "/work/shared/datasets"))
SKAB = DATASETS / "skab"
NAB = DATASETS / "nab"


def _needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"dataset not found at {path} (set TVILLING_DATASETS to the shared datasets folder)")


# ---------------------------------------------------------------- SKAB: point metrics


def test_point_metrics_hand_case() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = point_metrics(y, p)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["f1"] == pytest.approx(2 / (2 + 1))  # TP / (TP + (FP + FN)/2)
    assert m["far"] == pytest.approx(20.0)  # 1 / 5
    assert m["mar"] == pytest.approx(100 / 3)  # 1 / 3


def test_point_counts_pool_over_files() -> None:
    acc = PointCounts()
    acc.add([1, 0, 0], [1, 1, 0])
    acc.add([1, 1], [0, 1])
    m = acc.metrics()
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["f1"] == pytest.approx(2 / 3)


def test_point_metrics_rejects_mismatch() -> None:
    with pytest.raises(Invalid):
        point_metrics([1, 0], [1])


# ---------------------------------------------------------------- SKAB: changepoints


def test_predicted_changepoints() -> None:
    assert predicted_changepoints([1, 1, 0, 0, 1]).tolist() == [2, 4]
    assert predicted_changepoints(np.ones(5)).tolist() == []


def test_changepoint_weight_endpoints() -> None:
    w = changepoint_weight([0.0, 0.5, 1.0], 1.0, -0.22)
    assert w.tolist() == pytest.approx([1.0, 0.39, -0.22])
    assert np.all(np.diff(changepoint_weight(np.linspace(0, 1, 50), 1.0, -0.11)) < 0)


def test_changepoint_scores_hand_case() -> None:
    t = np.arange(300.0)  # seconds, 1 Hz
    cp = np.zeros(300, bool)
    cp[[100, 200]] = True
    pred = np.zeros(300, bool)
    pred[130:280] = True  # flips at 130 (middle of the first window) and 280 (outside every window)
    s = changepoint_scores(t, cp, pred)
    # standard: 0.445 (r = 0.5: (1 + (-0.11)) / 2) - 0.11 (FP) - 1 (second window missed) = -0.665
    assert s["nab_standard"] == pytest.approx(100 * (-0.665 + 2) / 4)
    # low FP: (1 - 0.22)/2 - 0.22 - 1 = -0.83
    assert s["nab_low_fp"] == pytest.approx(100 * (-0.83 + 2) / 4)
    # low FN: 0.445 - 0.11 - 2 = -1.665, null -4, perfect 2
    assert s["nab_low_fn"] == pytest.approx(100 * (-1.665 + 4) / 6)
    assert (s["missed"], s["false_positives"]) == (1.0, 1.0)


def test_changepoint_perfect_and_null() -> None:
    t = np.arange(200.0)
    cp = np.zeros(200, bool)
    cp[[50, 150]] = True
    perfect = np.zeros(200, bool)
    perfect[50:150] = True
    null = np.zeros(200, bool)
    for name in ("nab_standard", "nab_low_fp", "nab_low_fn"):
        assert changepoint_scores(t, cp, perfect)[name] == pytest.approx(100.0)
        assert changepoint_scores(t, cp, null)[name] == pytest.approx(0.0)


def test_changepoint_close_windows_are_cut() -> None:
    t = np.arange(300.0)
    cp = np.zeros(300, bool)
    cp[[100, 130]] = True  # second changepoint inside the first one's 60 s window
    pred = np.zeros(300, bool)
    pred[130:] = True  # one flip, exactly at the second changepoint
    s = changepoint_scores(t, cp, pred)
    assert (s["missed"], s["false_positives"]) == (1.0, 0.0)
    assert s["nab_standard"] == pytest.approx(100 * (1.0 - 1.0 + 2) / 4)


def test_skab_always_anomalous_known_point() -> None:
    """The always-anomalous detector over the labelled files: F1 ≈ 0.70 at FAR 100 %, MAR 0 %."""
    _needs(SKAB)
    acc, cps, files = PointCounts(), ChangepointCounts(), 0
    for path in sorted(SKAB.rglob("*.csv")):
        loaded = load_skab(path)
        if loaded is None:
            assert path.name == "anomaly-free.csv"
            continue
        ts, x, anomaly, changepoint, columns = loaded
        assert x.shape == (ts.size, 8) and len(columns) == 8
        assert not anomaly[:TRAIN_ROWS].any()
        files += 1
        always = np.ones(ts.size - TRAIN_ROWS, bool)
        acc.add(anomaly[TRAIN_ROWS:], always)
        cps.add(ts[TRAIN_ROWS:], changepoint[TRAIN_ROWS:], always)
    m = acc.metrics()
    assert files == 20
    assert round(float(m["f1"]), 2) == 0.70
    assert m["far"] == 100.0 and m["mar"] == 0.0
    s = cps.scores()
    assert s["changepoints"] == 79  # README: 79 true changepoints in the valve1 + valve2 test parts
    assert s["nab_standard"] == s["nab_low_fp"] == s["nab_low_fn"] == 0.0  # never changes: null detector


# ---------------------------------------------------------------- NAB: building blocks


def test_probationary_length() -> None:
    assert probationary_length(1000) == 150
    assert probationary_length(7) == 1  # floor(1.05)
    assert probationary_length(5000) == 750
    assert probationary_length(22695) == 750  # machine_temperature_system_failure.csv


def test_scaled_sigmoid_values() -> None:
    # 2 / (1 + e^{5x}) - 1 == -tanh(5x/2)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(-1.0) == pytest.approx(math.tanh(2.5))
    assert scaled_sigmoid(0.5) == pytest.approx(-math.tanh(1.25))
    assert scaled_sigmoid(3.0) == pytest.approx(-math.tanh(7.5))
    assert scaled_sigmoid(3.01) == -1.0


def test_window_indices_numeric_and_datetime() -> None:
    assert window_indices(np.arange(10.0), [(2, 4), (7.5, 20)]).tolist() == [[2, 4], [8, 9]]
    ts = np.arange("2020-01-01T00:00", "2020-01-01T00:10", dtype="datetime64[m]")
    got = window_indices(ts, [("2020-01-01 00:03:00.000000", "2020-01-01 00:05:00.000000")])
    assert got.tolist() == [[3, 5]]


def _hand_file() -> tuple[np.ndarray, np.ndarray]:
    # 20 rows, probation floor(0.15*20) = 3, one window on rows 10..14 (width 5).
    scores = np.zeros(20)
    scores[[1, 5, 12, 14, 16]] = 1.0
    return scores, np.array([[10, 14]])


def test_score_file_hand_case() -> None:
    scores, win = _hand_file()
    sw = sweep_file(scores, win, PROFILES["standard"])
    tp = math.tanh(2.5 * 3 / 5) / math.tanh(2.5)  # earliest detection row 12: x = -(14-12+1)/5
    fp_before = -0.11  # row 5: before the first window
    fp_after = -0.11 * math.tanh(2.5 * 2 / 4)  # row 16: x = |16-14| / (5-1)
    # row 1 lies in the probationary period and is ignored
    assert score_file(sw, 0.5) == pytest.approx(tp + fp_before + fp_after)
    assert score_file(sw, 2.0) == pytest.approx(-1.0)  # nothing detected: one missed window
    low_fn = sweep_file(scores, win, PROFILES["reward_low_fn"])
    assert score_file(low_fn, 2.0) == pytest.approx(-2.0)


def test_window_start_scores_exactly_a_tp() -> None:
    scores = np.zeros(20)
    scores[10] = 1.0
    sw = sweep_file(scores, np.array([[10, 14]]), PROFILES["standard"])
    assert score_file(sw, 0.5) == pytest.approx(1.0)


def test_normalisation_hand_case() -> None:
    scores, _win = _hand_file()
    ts = np.arange(20.0)
    raw = math.tanh(1.5) / math.tanh(2.5) - 0.11 - 0.11 * math.tanh(1.25)
    res = score_corpus({"f": (ts, scores)}, {"f": [(10, 14)]}, threshold=0.5)
    assert res["fixed"]["standard"] == pytest.approx(100 * (raw + 1) / 2)  # null -1, perfect +1
    assert res["standard"] >= res["fixed"]["standard"]
    assert res["files"] == 1 and res["windows"] == 1


def test_threshold_search_is_exact() -> None:
    """The optimised threshold beats every threshold on a fine grid, and its score is reproducible."""
    rng = np.random.default_rng(7)
    files, windows = {}, {}
    for k in range(3):
        ts = np.arange(400.0)
        s = rng.random(400) * 0.6
        s[200 + 30 * k] = 0.9  # one strong early detection in each window
        files[f"f{k}"] = (ts, s)
        windows[f"f{k}"] = [(190 + 30 * k, 230 + 30 * k)]
    res = score_corpus(files, windows)
    for name, prof in PROFILES.items():
        sweeps = [sweep_file(s, window_indices(t, windows[f]), prof) for f, (t, s) in files.items()]
        best = res["thresholds"][name]
        at_best = sum(score_file(sw, best) for sw in sweeps)
        assert at_best == pytest.approx(res["raw"][name])
        grid = max(sum(score_file(sw, g) for sw in sweeps) for g in np.linspace(0, 1.05, 211))
        assert res["raw"][name] >= grid - 1e-9


def test_synthetic_null_and_perfect_detectors() -> None:
    ts = np.arange(1000.0)
    windows = {"a": [(300.0, 349.0), (700.0, 749.0)], "b": [], "c": [(500.0, 520.0)]}
    null = {k: (ts, np.zeros(1000)) for k in windows}
    perfect = {}
    for k, wins in windows.items():
        s = np.zeros(1000)
        for start, _end in wins:
            s[int(start)] = 1.0
        perfect[k] = (ts, s)
    for det, expected in ((null, 0.0), (perfect, 100.0)):
        res = score_corpus(det, windows, threshold=0.5)
        for name in PROFILES:
            assert res[name] == pytest.approx(expected)
            assert res["fixed"][name] == pytest.approx(expected)


def test_nab_corpus_null_and_perfect_detectors() -> None:
    """On the real NAB corpus: never firing scores 0 and firing at each window start 100, every profile."""
    _needs(NAB)
    windows = load_windows(NAB / "labels" / "combined_windows.json")
    data = {name: load_nab_series(NAB / "data" / name) for name in windows}
    null = {k: (t, np.zeros(t.size)) for k, (t, _v) in data.items()}
    perfect = {}
    for k, (t, _v) in data.items():
        s = np.zeros(t.size)
        s[window_indices(t, windows[k])[:, 0]] = 1.0
        perfect[k] = (t, s)
    for det, expected in ((null, 0.0), (perfect, 100.0)):
        res = score_corpus(det, windows, threshold=0.5)
        assert res["files"] == 41 and res["windows"] == 86
        for name in PROFILES:
            assert res[name] == pytest.approx(expected)
            assert res["fixed"][name] == pytest.approx(expected)
