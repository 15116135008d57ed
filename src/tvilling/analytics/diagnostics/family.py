"""Fault-family classifier on anomaly signatures, and its leave-one-file-out evaluation.

A Gaussian linear discriminant with equal priors (a frequent family is not favoured): every family is
the mean of its training signatures; all families share one covariance, the pooled within-family
covariance shrunk towards its diagonal (``shrink = 1`` is the diagonal nearest-centroid rule, ``0`` full
LDA) and floored; features are standardised by the training signatures' spread first. A signature's
log-likelihood under each family gives a probability per family; the predicted family is the most
probable one and its probability is the confidence.

The classifier reads signatures of one kind (:func:`~tvilling.analytics.diagnostics.signature.signature`:
``"onset"`` by default, or ``"segment"``); :meth:`FamilyClassifier.classify_rows` turns the rows of an
ongoing anomaly into that signature, so it can run online. :meth:`FamilyClassifier.to_dict` /
:meth:`FamilyClassifier.from_dict` store a trained classifier as plain JSON-able data.

>>> import numpy as np
>>> clf = FamilyClassifier().fit([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], ["a", "a", "b", "b"])
>>> clf.predict([0.8, 0.2])[0]
'a'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.diagnostics.signature import SIGNATURES, signature

__all__ = ["FamilyClassifier", "family_evaluation", "leave_one_out_accuracy"]

FloatArray = npt.NDArray[np.float64]


@dataclass
class FamilyClassifier:
    """Names the fault family of an anomaly signature (see the module notes).

    ``signature`` names the signature :meth:`classify_rows` computes (the one the training signatures
    must be); ``shrink`` in ``[0, 1]`` pulls the shared covariance towards its diagonal; ``var_floor``
    bounds the (standardised) variances from below so a feature constant in training does not dominate.
    """

    signature: str = "onset"
    shrink: float = 0.5
    var_floor: float = 1e-3
    families_: list[str] = field(default_factory=list, init=False)
    centroids_: FloatArray | None = field(default=None, init=False, repr=False)
    center_: FloatArray | None = field(default=None, init=False, repr=False)
    scale_: FloatArray | None = field(default=None, init=False, repr=False)
    precision_: FloatArray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.signature not in SIGNATURES:
            raise ValueError(f"unknown signature {self.signature!r}; expected one of {', '.join(SIGNATURES)}")
        if not 0.0 <= self.shrink <= 1.0:
            raise ValueError("shrink must lie in [0, 1]")
        if not self.var_floor > 0.0:
            raise ValueError("var_floor must be positive")

    def fit(self, signatures: npt.ArrayLike, families: Sequence[str]) -> FamilyClassifier:
        """Learn from signatures (rows) and their family names (at least two families)."""
        S = np.atleast_2d(np.asarray(signatures, dtype=np.float64))
        labels = np.asarray([str(v) for v in families], dtype=object)
        if S.shape[0] != labels.size:
            raise ValueError("signatures and families differ in length")
        if not np.isfinite(S).all():
            raise ValueError("signatures must be finite")
        names = sorted(set(labels.tolist()))
        if len(names) < 2:
            raise ValueError("need signatures of at least two families")
        center = S.mean(axis=0)
        scale = S.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        U = (S - center) / scale
        cents, resid = [], []
        for name in names:
            rows = U[labels == name]
            c = rows.mean(axis=0)
            cents.append(c)
            resid.append(rows - c)
        R = np.vstack(resid)
        dof = max(S.shape[0] - len(names), 1)
        cov = R.T @ R / dof
        var = np.maximum(np.diag(cov), self.var_floor)
        shrunk = (1.0 - self.shrink) * cov + self.shrink * np.diag(var)
        shrunk[np.diag_indices_from(shrunk)] = np.maximum(np.diag(shrunk), self.var_floor)
        self.families_ = names
        self.centroids_ = np.vstack(cents)
        self.center_, self.scale_ = center, scale
        self.precision_ = np.asarray(np.linalg.pinv(shrunk, hermitian=True), dtype=np.float64)
        return self

    def _fitted(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if self.centroids_ is None or self.center_ is None or self.scale_ is None or self.precision_ is None:
            raise RuntimeError("classifier is not fitted")
        return self.centroids_, self.center_, self.scale_, self.precision_

    def predict_proba(self, signature: npt.ArrayLike) -> dict[str, float]:
        """Probability of each family for one signature (equal priors)."""
        cents, center, scale, prec = self._fitted()
        s = np.asarray(signature, dtype=np.float64).ravel()
        if s.size != cents.shape[1]:
            raise ValueError(f"expected a signature of length {cents.shape[1]}, got {s.size}")
        if not np.isfinite(s).all():
            raise ValueError("signature must be finite")
        d = (s - center) / scale - cents
        loglik = -0.5 * np.einsum("ij,jk,ik->i", d, prec, d)
        p = np.exp(loglik - loglik.max())
        p /= p.sum()
        return {name: float(v) for name, v in zip(self.families_, p, strict=True)}

    def predict(self, signature: npt.ArrayLike) -> tuple[str, float]:
        """``(family, confidence)`` of one signature."""
        proba = self.predict_proba(signature)
        best = max(proba, key=lambda k: proba[k])
        return best, proba[best]

    def classify_rows(self, deviations: npt.ArrayLike) -> tuple[str, float]:
        """``(family, confidence)`` of an ongoing anomaly from the rows seen since it began (rows ×
        sensors of deviations standardised by the twin's training rows, in the same representation
        as the training signatures: e.g. :meth:`MultivariateDetector.score_details`' second array)."""
        return self.predict(signature(self.signature, deviations))

    def to_dict(self) -> dict[str, Any]:
        """The trained classifier as plain data (lists and numbers; JSON-able)."""
        cents, center, scale, prec = self._fitted()
        return {
            "signature": self.signature,
            "shrink": self.shrink,
            "var_floor": self.var_floor,
            "families": list(self.families_),
            "centroids": cents.tolist(),
            "center": center.tolist(),
            "scale": scale.tolist(),
            "precision": prec.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FamilyClassifier:
        """Rebuild a classifier stored by :meth:`to_dict`."""
        try:
            clf = cls(
                signature=str(data["signature"]), shrink=float(data["shrink"]), var_floor=float(data["var_floor"])
            )
            families = [str(f) for f in data["families"]]
            cents = np.asarray(data["centroids"], dtype=np.float64)
            center = np.asarray(data["center"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            prec = np.asarray(data["precision"], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a stored FamilyClassifier: {exc}") from exc
        n = center.size
        if cents.shape != (len(families), n) or scale.shape != (n,) or prec.shape != (n, n) or len(families) < 2:
            raise ValueError("stored FamilyClassifier has inconsistent shapes")
        clf.families_, clf.centroids_, clf.center_, clf.scale_, clf.precision_ = families, cents, center, scale, prec
        return clf


def family_evaluation(
    segments: Sequence[tuple[str, npt.ArrayLike]],
    groups: Sequence[str] | None = None,
    **classifier: Any,
) -> dict[str, Any]:
    """Leave-one-group-out evaluation of :class:`FamilyClassifier` on ``(family, signature)`` segments.

    Every segment is classified by a model fitted on the segments of the other groups (``groups``: one
    name per segment, e.g. its file; by default each segment is its own group), so all segments of a
    held-out file stay out of training. ``classifier`` goes to :class:`FamilyClassifier`. A segment
    whose family is absent from the training part counts as wrong (predicted ``None``).

    Returns ``family_accuracy``, ``family_balanced_accuracy`` (mean per-family recall), the majority
    baseline ``family_majority_accuracy`` (always the most frequent family; its balanced accuracy is
    ``1 / families``), ``family_segments``, ``families`` (sorted), ``confusion`` (rows: true family,
    columns: predicted family, in ``families`` order) and ``predictions`` (per segment).
    """
    labels = [str(f) for f, _s in segments]
    if not labels:
        raise ValueError("no segments")
    S = np.vstack([np.asarray(s, dtype=np.float64).ravel() for _f, s in segments])
    grp = [str(i) for i in range(len(labels))] if groups is None else [str(g) for g in groups]
    if len(grp) != len(labels):
        raise ValueError("groups and segments differ in length")
    fams = sorted(set(labels))
    index = {f: i for i, f in enumerate(fams)}
    preds: list[str | None] = []
    for i in range(len(labels)):
        keep = [j for j in range(len(labels)) if grp[j] != grp[i]]
        others = [labels[j] for j in keep]
        if len(set(others)) < 2 or labels[i] not in others:
            preds.append(None)
            continue
        fam, _conf = FamilyClassifier(**classifier).fit(S[keep], others).predict(S[i])
        preds.append(fam)
    confusion = np.zeros((len(fams), len(fams)), dtype=np.int64)
    correct = np.zeros(len(labels), dtype=bool)
    for i, (true, got) in enumerate(zip(labels, preds, strict=True)):
        if got is not None:
            confusion[index[true], index[got]] += 1
            correct[i] = got == true
    lab = np.asarray(labels, dtype=object)
    recall = [float(correct[lab == f].mean()) for f in fams]
    counts = [labels.count(f) for f in fams]
    return {
        "family_accuracy": float(correct.mean()),
        "family_balanced_accuracy": float(np.mean(recall)),
        "family_majority_accuracy": max(counts) / len(labels),
        "family_segments": float(len(labels)),
        "families": fams,
        "confusion": confusion.tolist(),
        "predictions": preds,
    }


def leave_one_out_accuracy(
    segments: Sequence[tuple[str, npt.ArrayLike]],
    groups: Sequence[str] | None = None,
    **classifier: Any,
) -> dict[str, float]:
    """``family_accuracy``, ``family_balanced_accuracy`` (a majority guess scores ``1 / families``) and
    ``family_segments`` of :func:`family_evaluation` (leave-one-group-out; each segment its own group by
    default)."""
    r = family_evaluation(segments, groups, **classifier)
    return {k: float(r[k]) for k in ("family_accuracy", "family_balanced_accuracy", "family_segments")}
