"""Signature of an anomaly segment, built from the multivariate detector's per-sensor deviations.

The detector reports, for every row, the signed scaled deviation ``z_i / k_i`` of each sensor (see
:mod:`tvilling.analytics.detectors.multivariate`); its squares are the sensors' contributions. A
segment's signature is ``[direction, shares]``: the mean signed deviation over the segment scaled to
unit length (which sensors move, and which way) followed by the mean contribution shares (which
sensors drive the score). Both halves are scale-free, so segments of different severity compare.

>>> import numpy as np
>>> dev = np.array([[0.0, -3.0], [0.0, -4.0], [1.0, 0.0]])
>>> segment_signature(dev, np.array([True, True, False])).round(2).tolist()
[0.0, -1.0, 0.0, 1.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["segment_signature"]

FloatArray = npt.NDArray[np.float64]


def segment_signature(deviations: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> FloatArray:
    """Signature (length ``2 × sensors``) of the rows of ``deviations`` selected by ``mask``.

    ``deviations`` is rows × sensors (signed scaled deviations); ``mask`` selects the segment's rows
    (all rows when ``None`` or when it selects none).
    """
    D = np.atleast_2d(np.asarray(deviations, dtype=np.float64))
    if D.ndim != 2 or D.shape[0] == 0:
        raise ValueError("deviations must be a non-empty 2-D array (rows × sensors)")
    if mask is not None:
        m = np.asarray(mask, dtype=bool).ravel()
        if m.size != D.shape[0]:
            raise ValueError("mask and deviations differ in length")
        if m.any():
            D = D[m]
    mean = D.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    direction = mean / norm if norm > 0 else np.zeros_like(mean)
    sq = D**2
    tot = sq.sum(axis=1, keepdims=True)
    shares = np.where(tot > 0, sq / np.where(tot > 0, tot, 1.0), 1.0 / D.shape[1]).mean(axis=0)
    return np.asarray(np.r_[direction, shares], dtype=np.float64)
