"""Fault-family classifier on anomaly signatures, and its leave-one-file-out evaluation.

A Gaussian nearest-centroid rule: each family is the mean of its training signatures; all families
share one diagonal variance (pooled within-family, floored); a signature's log-likelihood under each
family gives, with equal priors (so a frequent family is not favoured), a probability per family. The
predicted family is the most probable one and its probability is the confidence.

>>> import numpy as np
>>> clf = FamilyClassifier().fit([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], ["a", "a", "b", "b"])
>>> clf.predict([0.8, 0.2])[0]
'a'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tvilling.analytics.diagnostics.signature import segment_signature

__all__ = ["FamilyClassifier", "leave_one_out_accuracy"]

FloatArray = npt.NDArray[np.float64]


@dataclass
class FamilyClassifier:
    """Names the fault family of an anomaly signature (see the module notes).

    ``var_floor`` bounds the shared variance from below so a feature constant in training does not
    dominate.
    """

    var_floor: float = 1e-3
    families_: list[str] = field(default_factory=list, init=False)
    centroids_: FloatArray | None = field(default=None, init=False, repr=False)
    var_: FloatArray | None = field(default=None, init=False, repr=False)

    def fit(self, signatures: npt.ArrayLike, families: Sequence[str]) -> FamilyClassifier:
        """Learn from signatures (rows) and their family names (at least two families)."""
        S = np.atleast_2d(np.asarray(signatures, dtype=np.float64))
        labels = np.asarray(list(families), dtype=object)
        if S.shape[0] != labels.size:
            raise ValueError("signatures and families differ in length")
        names = sorted({str(v) for v in labels})
        if len(names) < 2:
            raise ValueError("need signatures of at least two families")
        cents, resid = [], []
        for name in names:
            rows = S[labels == name]
            c = rows.mean(axis=0)
            cents.append(c)
            resid.append(rows - c)
        R = np.vstack(resid)
        dof = max(S.shape[0] - len(names), 1)
        self.families_ = names
        self.centroids_ = np.vstack(cents)
        self.var_ = np.maximum((R**2).sum(axis=0) / dof, self.var_floor)
        return self

    def predict_proba(self, signature: npt.ArrayLike) -> dict[str, float]:
        """Probability of each family for one signature (equal priors)."""
        if self.centroids_ is None or self.var_ is None:
            raise RuntimeError("classifier is not fitted")
        s = np.asarray(signature, dtype=np.float64).ravel()
        if s.size != self.centroids_.shape[1]:
            raise ValueError(f"expected a signature of length {self.centroids_.shape[1]}, got {s.size}")
        loglik = -0.5 * (((s - self.centroids_) ** 2) / self.var_).sum(axis=1)
        p = np.exp(loglik - loglik.max())
        p /= p.sum()
        return {name: float(v) for name, v in zip(self.families_, p, strict=True)}

    def predict(self, signature: npt.ArrayLike) -> tuple[str, float]:
        """``(family, confidence)`` of one signature."""
        proba = self.predict_proba(signature)
        best = max(proba, key=lambda k: proba[k])
        return best, proba[best]

    def classify_rows(self, deviations: npt.ArrayLike) -> tuple[str, float]:
        """``(family, confidence)`` of an ongoing anomaly from its rows of signed scaled deviations
        (rows × sensors, as :meth:`MultivariateDetector.score_details` returns them)."""
        return self.predict(segment_signature(deviations))


def leave_one_out_accuracy(segments: Sequence[tuple[str, npt.ArrayLike]]) -> dict[str, float]:
    """Classify each ``(family, signature)`` with a model fitted on all the others.

    Returns ``family_accuracy``, ``family_balanced_accuracy`` (mean per-family recall: a majority
    guess scores ``1 / families``) and ``family_segments``. A segment whose family is absent from the
    others counts as wrong.
    """
    labels = [f for f, _s in segments]
    S = np.vstack([np.asarray(s, dtype=np.float64).ravel() for _f, s in segments])
    correct = np.zeros(len(labels), dtype=bool)
    for i in range(len(labels)):
        keep = [j for j in range(len(labels)) if j != i]
        others = [labels[j] for j in keep]
        if len(set(others)) < 2 or labels[i] not in others:
            continue
        got, _conf = FamilyClassifier().fit(S[keep], others).predict(S[i])
        correct[i] = got == labels[i]
    fams = sorted(set(labels))
    lab = np.asarray(labels, dtype=object)
    recall = [float(correct[lab == f].mean()) for f in fams]
    return {
        "family_accuracy": float(correct.mean()),
        "family_balanced_accuracy": float(np.mean(recall)),
        "family_segments": float(len(labels)),
    }
