"""Tests of the anomaly diagnostics: segment signatures, the fault-family classifier, and its
leave-one-file-out evaluation on SKAB (read in place from ``$TVILLING_DATASETS``; skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tvilling.analytics.detectors import MultivariateDetector
from tvilling.analytics.diagnostics import FamilyClassifier, leave_one_out_accuracy, segment_signature
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


def test_classifier_separates_families_online() -> None:
    rng = np.random.default_rng(0)
    sigs, labels = [], []
    for fam in ("a", "b"):
        for _ in range(6):
            sigs.append(segment_signature(_segment(rng, fam)))
            labels.append(fam)
    clf = FamilyClassifier().fit(sigs, labels)
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
    """On SKAB dev data the valve faults are explained by the flow sensor; the valve1-vs-valve2 family
    is evaluated leave-one-file-out (measured: accuracy 0.55, balanced 0.34, i.e. no better than chance:
    the two valves leave the same signature on these sensors)."""
    if not SKAB.exists():
        pytest.skip(f"dataset not found at {SKAB} (set TVILLING_DATASETS to the shared datasets folder)")
    r = run_skab(SKAB)
    assert r["family_segments"] == 20
    assert r["family_accuracy"] == pytest.approx(0.55, abs=0.051)
    assert r["family_balanced_accuracy"] == pytest.approx(0.344, abs=0.05)
    from tvilling.analytics.evaluation.skab import TRAIN_ROWS, load_skab

    loaded = load_skab(SKAB / "valve1" / "13.csv")
    assert loaded is not None
    _ts, X, anomaly, _cp, cols = loaded
    det = MultivariateDetector(names=cols).fit(X[:TRAIN_ROWS])
    scores, dev = det.score_details(X[TRAIN_ROWS:])
    alarmed = det.decide_many(scores) & anomaly[TRAIN_ROWS:]
    assert alarmed.sum() > 200
    sig = segment_signature(dev, alarmed)
    shares = sig[len(cols):]
    assert cols[int(np.argmax(shares))] == "Volume Flow RateRMS" and shares.max() > 0.8
