"""Vectorised causal exponentially weighted moving averages (shared by the detectors)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_BLOCK = 128


def ewma(x: npt.ArrayLike, alpha: float, initial: npt.ArrayLike | None = None) -> FloatArray:
    """Causal EWMA ``y_t = (1 − α)·y_{t−1} + α·x_t`` along axis 0, vectorised in blocks.

    ``initial`` is ``y_{−1}``; when ``None`` the recursion starts at ``y_0 = x_0``. Works on 1-D and 2-D
    arrays (rows are time). Blocks keep the powers of ``1 − α`` far from under/overflow.

    >>> ewma([1.0, 1.0, 3.0], 0.5).tolist()
    [1.0, 1.0, 2.0]
    """
    a = np.asarray(x, dtype=np.float64)
    if not 0.0 < alpha <= 1.0:
        raise ValueError("alpha must lie in (0, 1]")
    out = np.empty_like(a)
    if a.shape[0] == 0:
        return out
    prev = a[0].copy() if initial is None else np.asarray(initial, dtype=np.float64)
    beta = 1.0 - alpha
    if beta == 0.0:
        return a.copy()
    block = int(min(_BLOCK, max(1.0, 300.0 / -math.log(beta))))
    for s in range(0, a.shape[0], block):
        blk = a[s : s + block]
        n = blk.shape[0]
        k = np.arange(n, dtype=np.float64)
        pw = beta ** (k + 1.0)  # weight of prev at step k
        inv = beta ** (-k)  # (1−α)^{−k}, bounded because n ≤ _BLOCK
        shape = (n,) + (1,) * (blk.ndim - 1)
        cum = np.cumsum(alpha * blk * inv.reshape(shape), axis=0)
        y = cum * (beta**k).reshape(shape) + pw.reshape(shape) * prev
        out[s : s + n] = y
        prev = y[-1]
    return out
