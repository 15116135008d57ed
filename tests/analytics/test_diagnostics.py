"""Tests of the anomaly diagnostics: segment signatures, the fault-family classifier, and its
leave-one-file-out evaluation on SKAB (read in place from ``$TVILLING_DATASETS``; skipped when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tvilling.analytics.detectors import MultivariateDetector
from tvilling.analytics.diagnostics import (
    FamilyClassifier,
    family_evaluation,
    first_alarm_rows,
    leave_one_out_accuracy,
    onset_signature,
    segment_signature,
    train_family_classifier,
)
from tvilling.analytics.evaluation.runs import run_skab

SKAB = Path(os.environ.get("TVILLING_DATASETS", "/work/shared/datasets")) / "skab"


def _segment(rng: np.random.Generator, family: str, rows: int = 60) -> np.ndarray:
    """Signed deviations of a synthetic fault: family 'a' pulls sensor 0 down, 'b' pushes sensor 2 up."""
    dev = rng.normal(scale=0.5, size=(rows, 4))
    if family == "a":
        dev[:, 0] -= 6.0
    else:
        dev[:, 2] += 6.0
        dev[:, 0] -= 2.0
    return dev


def test_signature_direction_and_shares() -> None:
    dev = np.zeros((10, 3))
    dev[:, 1] = -4.0
    sig = segment_signature(dev)
    assert sig.shape == (6,)
    np.testing.assert_allclose(sig, [0, -1, 0, 0, 1, 0])
    mask = np.zeros(10, bool)
    with pytest.raises(ValueError):
        segment_signature(dev, mask[:5])
    np.testing.assert_allclose(segment_signature(dev, mask), sig)  # empty mask: all rows


def test_onset_signature_level_and_spread() -> None:
    dev = np.zeros((4, 2))
    dev[:, 0] = [1.0, 3.0, 1.0, 3.0]
    np.testing.assert_allclose(onset_signature(dev), [2.0, 0.0, np.log(1.0 + 1e-3), np.log(1e-3)])
    np.testing.assert_allclose(onset_signature(dev, [True, True, False, False]), [2.0, 0, np.log(1.001), np.log(1e-3)])
    with pytest.raises(ValueError):
        onset_signature(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        FamilyClassifier(signature="nope")


def test_first_alarm_rows_is_causal() -> None:
    dev = np.arange(20, dtype=float).reshape(10, 2)
    alarm = np.array([1, 0, 0, 1, 1, 1, 1, 0, 1, 1], bool)  # an early false alarm, then the fault's alarm
    fault = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0], bool)
    rows = first_alarm_rows(dev, alarm, fault, horizon=2)
    assert rows is not None and rows.tolist() == [[6.0, 7.0], [8.0, 9.0]]  # from the alarm's start (row 3)
    rows = first_alarm_rows(dev, alarm, fault, horizon=10)
    assert rows is not None and rows.shape == (4, 2)  # never past the alarm's end
    assert first_alarm_rows(dev, alarm & ~fault, fault) is None


def test_classifier_separates_families_online() -> None:
    rng = np.random.default_rng(0)
    sigs, labels = [], []
    for fam in ("a", "b"):
        for _ in range(6):
            sigs.append(segment_signature(_segment(rng, fam)))
            labels.append(fam)
    clf = FamilyClassifier(signature="segment").fit(sigs, labels)
    assert clf.families_ == ["a", "b"]
    # online: the first 10 rows of an ongoing anomaly are enough here
    fam, conf = clf.classify_rows(_segment(rng, "b", rows=10))
    assert fam == "b" and 0.5 < conf <= 1.0
    proba = clf.predict_proba(segment_signature(_segment(rng, "a")))
    assert sum(proba.values()) == pytest.approx(1.0) and proba["a"] > 0.9
    res = leave_one_out_accuracy(list(zip(labels, sigs, strict=True)))
    assert res["family_accuracy"] == 1.0 and res["family_balanced_accuracy"] == 1.0
    with pytest.raises(ValueError):
        FamilyClassifier().fit(sigs[:3], labels[:3])  # one family only
    # the onset signature (default) on the same synthetic faults, and a stored copy that answers the same
    onset = FamilyClassifier().fit([onset_signature(_segment(rng, f)) for f in labels], labels)
    copy = FamilyClassifier.from_dict(json.loads(json.dumps(onset.to_dict())))
    rows = _segment(rng, "a", rows=15)
    assert onset.classify_rows(rows)[0] == "a"
    assert copy.classify_rows(rows) == pytest.approx(onset.classify_rows(rows))
    with pytest.raises(ValueError):
        FamilyClassifier.from_dict({"signature": "onset"})
    with pytest.raises(RuntimeError):
        FamilyClassifier().predict([0.0])


def test_shrink_uses_correlation_between_features() -> None:
    """Two families differing only along a direction against the features' shared noise: full LDA
    (``shrink=0``) separates them, the diagonal rule (``shrink=1``) cannot."""
    rng = np.random.default_rng(3)
    common = rng.normal(scale=3.0, size=(40, 1))
    X = np.hstack([common, common]) + rng.normal(scale=0.1, size=(40, 2))
    fam = np.array(["a", "b"] * 20)
    X[fam == "b"] += [0.4, -0.4]
    full = family_evaluation(list(zip(fam.tolist(), X, strict=True)), shrink=0.0)
    diag = family_evaluation(list(zip(fam.tolist(), X, strict=True)), shrink=1.0)
    assert full["family_accuracy"] > 0.9 > 0.75 > diag["family_accuracy"]


def test_family_evaluation_holds_out_whole_files() -> None:
    """A file's own second segment must not teach the model about its first: with grouping by file, a
    family seen in one file only is unknown when that file is held out."""
    rng = np.random.default_rng(2)
    segs = [("a", segment_signature(_segment(rng, "a"))) for _ in range(4)]
    segs += [("b", segment_signature(_segment(rng, "b"))) for _ in range(4)]
    odd = rng.normal(scale=0.5, size=(60, 4))
    odd[:, 3] += 6.0
    segs += [("c", segment_signature(odd)), ("c", segment_signature(odd + 0.01))]
    by_segment = family_evaluation(segs)
    by_file = family_evaluation(segs, [f"f{i}" for i in range(8)] + ["fc", "fc"])
    assert by_segment["family_accuracy"] == 1.0
    assert by_file["family_accuracy"] == pytest.approx(0.8)
    assert by_file["predictions"][-2:] == [None, None]
    assert by_file["families"] == ["a", "b", "c"] and by_file["confusion"][2] == [0, 0, 0]
    assert by_file["family_majority_accuracy"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        family_evaluation(segs, ["x"])


def test_leave_one_out_counts_unseen_family_wrong() -> None:
    rng = np.random.default_rng(1)
    segs = [("a", segment_signature(_segment(rng, "a"))) for _ in range(3)]
    segs += [("b", segment_signature(_segment(rng, "b"))) for _ in range(3)]
    odd = rng.normal(scale=0.5, size=(60, 4))
    odd[:, 3] += 6.0  # a third pattern seen once: left out, its family is unknown to the model
    segs.append(("c", segment_signature(odd)))
    res = leave_one_out_accuracy(segs)
    assert res["family_accuracy"] == pytest.approx(6 / 7)
    assert res["family_balanced_accuracy"] == pytest.approx(2 / 3)


def test_skab_contributions_point_at_flow_and_family_figures() -> None:
    """On SKAB dev data the valve faults are explained by the flow sensor. The valve1-vs-valve2 family,
    named from the detector's deviations over the first 15 s of the fault's alarm, is evaluated
    leave-one-file-out: measured accuracy 0.90 (majority baseline 0.80), balanced 0.84 (baseline 0.50),
    confusion [[15, 1], [1, 3]]. Twenty files with four valve2: weak evidence (one valve2 file more or
    less moves balanced accuracy by 0.125); longer windows (60 s and up) are at chance."""
    if not SKAB.exists():
        pytest.skip(f"dataset not found at {SKAB} (set TVILLING_DATASETS to the shared datasets folder)")
    r = run_skab(SKAB)
    assert r["family_segments"] == 20
    assert r["family_majority_accuracy"] == pytest.approx(0.8)
    assert r["family_confusion"] == [[15, 1], [1, 3]]
    assert r["family_accuracy"] == pytest.approx(0.9)
    assert r["family_balanced_accuracy"] == pytest.approx(0.84375)
    from tvilling.analytics.evaluation.skab import TRAIN_ROWS, load_skab

    loaded = load_skab(SKAB / "valve1" / "13.csv")
    assert loaded is not None
    _ts, X, anomaly, _cp, cols = loaded
    det = MultivariateDetector(names=cols).fit(X[:TRAIN_ROWS])
    scores, dev = det.score_details(X[TRAIN_ROWS:])
    alarmed = det.decide_many(scores) & anomaly[TRAIN_ROWS:]
    assert alarmed.sum() > 200
    sig = segment_signature(dev, alarmed)
    shares = sig[len(cols) :]
    assert cols[int(np.argmax(shares))] == "Volume Flow RateRMS" and shares.max() > 0.8


def test_train_family_classifier_on_skab_classifies_online() -> None:
    if not SKAB.exists():
        pytest.skip(f"dataset not found at {SKAB} (set TVILLING_DATASETS to the shared datasets folder)")
    clf = train_family_classifier(SKAB)
    assert clf.families_ == ["valve1", "valve2"]
    from tvilling.analytics.evaluation.runs import skab_scales
    from tvilling.analytics.evaluation.skab import TRAIN_ROWS, load_skab

    files = [load_skab(p) for p in sorted(SKAB.rglob("*.csv"))]
    scales = skab_scales([f for f in files if f is not None and f[2].any()], alpha=MultivariateDetector.alpha)
    loaded = load_skab(SKAB / "valve2" / "3.csv")
    assert loaded is not None
    _ts, X, anomaly, _cp, cols = loaded
    det = MultivariateDetector(scales=scales, names=cols).fit(X[:TRAIN_ROWS])
    scores, dev = det.score_details(X[TRAIN_ROWS:])
    rows = first_alarm_rows(dev, det.decide_many(scores), anomaly[TRAIN_ROWS:], 15)
    assert rows is not None and rows.shape == (15, len(cols))
    fam, conf = clf.classify_rows(rows)  # a file the classifier was trained on: it should know it
    assert fam == "valve2" and 0.5 < conf <= 1.0
