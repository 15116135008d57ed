"""Signatures of an anomaly segment, built from per-sensor deviations of its rows.

The rows are deviations standardised by the twin's training rows: either the multivariate detector's
signed scaled deviations ``z_i / k_i`` (:meth:`~tvilling.analytics.detectors.MultivariateDetector.score_details`)
or raw inputs standardised as ``(x - mean_train) / std_train``. Two signatures:

* :func:`segment_signature` — ``[direction, shares]``: the mean signed deviation scaled to unit length
  (which sensors move, and which way) followed by the mean contribution shares (which sensors drive the
  score). Scale-free, so segments of different severity compare.
* :func:`onset_signature` — ``[level, log_spread]`` of the rows since the anomaly began: each sensor's
  mean deviation (how far, and which way, it moved, in training standard deviations) and the log of its
  standard deviation over those rows (whether it turned noisier or calmer: turbulence, cavitation,
  throttling). Causal: it reads only the rows seen so far, so it can be computed online.

>>> import numpy as np
>>> dev = np.array([[0.0, -3.0], [0.0, -4.0], [1.0, 0.0]])
>>> segment_signature(dev, np.array([True, True, False])).round(2).tolist()
[0.0, -1.0, 0.0, 1.0]
>>> onset_signature(np.array([[0.0, -3.0], [0.0, -5.0]])).round(2).tolist()
[0.0, -4.0, -6.91, 0.0]
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SIGNATURES", "SPREAD_FLOOR", "onset_signature", "segment_signature", "signature"]

FloatArray = npt.NDArray[np.float64]

SPREAD_FLOOR: Final = 1e-3
"""Added to a sensor's standard deviation before the log in :func:`onset_signature` (a flat sensor
gives ``log(1e-3)`` rather than minus infinity)."""

SIGNATURES: Final = ("onset", "segment")
"""Names accepted by :func:`signature`."""


def _rows(deviations: npt.ArrayLike, mask: npt.ArrayLike | None) -> FloatArray:
    D = np.atleast_2d(np.asarray(deviations, dtype=np.float64))
    if D.ndim != 2 or D.shape[0] == 0 or D.shape[1] == 0:
        raise ValueError("deviations must be a non-empty 2-D array (rows × sensors)")
    if not np.isfinite(D).all():
        raise ValueError("deviations must be finite")
    if mask is not None:
        m = np.asarray(mask, dtype=bool).ravel()
        if m.size != D.shape[0]:
            raise ValueError("mask and deviations differ in length")
        if m.any():
            D = D[m]
    return D


def segment_signature(deviations: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> FloatArray:
    """Signature (length ``2 × sensors``) of the rows of ``deviations`` selected by ``mask``.

    ``deviations`` is rows × sensors (signed scaled deviations); ``mask`` selects the segment's rows
    (all rows when ``None`` or when it selects none).
    """
    D = _rows(deviations, mask)
    mean = D.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    direction = mean / norm if norm > 0 else np.zeros_like(mean)
    sq = D**2
    tot = sq.sum(axis=1, keepdims=True)
    shares = np.where(tot > 0, sq / np.where(tot > 0, tot, 1.0), 1.0 / D.shape[1]).mean(axis=0)
    return np.asarray(np.r_[direction, shares], dtype=np.float64)


def onset_signature(deviations: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> FloatArray:
    """Signature (length ``2 × sensors``) of the rows since an anomaly began: per-sensor mean deviation,
    then per-sensor ``log(std + SPREAD_FLOOR)`` (see the module notes). ``mask`` as in
    :func:`segment_signature`."""
    D = _rows(deviations, mask)
    return np.asarray(np.r_[D.mean(axis=0), np.log(D.std(axis=0) + SPREAD_FLOOR)], dtype=np.float64)


def signature(kind: str, deviations: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> FloatArray:
    """The signature named ``kind`` (one of :data:`SIGNATURES`) of the selected rows."""
    if kind == "onset":
        return onset_signature(deviations, mask)
    if kind == "segment":
        return segment_signature(deviations, mask)
    raise ValueError(f"unknown signature {kind!r}; expected one of {', '.join(SIGNATURES)}")
