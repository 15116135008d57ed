"""Causal multivariate online anomaly detector for multi-sensor assets (SKAB-style data).

Method (all statistics come from the training rows only):

1. Standardise each sensor with the training mean and standard deviation.
2. Fit a shrunk correlation matrix ``Σ = (1 − λ)·R + λ·I`` on the standardised training rows.
3. Smooth the standardised vector causally with a multivariate EWMA (MEWMA, Lowry et al. 1992):
   ``e_t = (1 − α)·e_{t−1} + α·z_t``; the score is Hotelling's ``T²`` of ``e_t`` under the stationary
   EWMA covariance ``α/(2 − α)·Σ``, divided by the number of sensors (≈ 1 in normal operation).
4. The threshold is a rule on the training scores: ``margin × quantile_q(train scores)``.

The detector is causal: the score at row ``t`` depends on rows ``≤ t`` only. ``contributions`` splits
``T²`` over the sensors with the symmetric whitening ``Σ^{-1/2}``, so the shares are non-negative and
sum to 1.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = MultivariateDetector().fit(rng.normal(size=(400, 3)))
>>> det.score_many(rng.normal(size=(5, 3))).shape
(5,)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tvilling.analytics.detectors._ewma import ewma

__all__ = ["MultivariateDetector"]

FloatArray = npt.NDArray[np.float64]


@dataclass
class MultivariateDetector:
    """MEWMA-``T²`` detector with a threshold taken from the training-score distribution.

    Parameters: ``alpha`` (EWMA weight of the newest row), ``shrinkage`` ``λ`` of the correlation matrix,
    ``quantile`` and ``margin`` of the threshold rule, ``min_std`` (floor on a sensor's training standard
    deviation, relative to its mean absolute level, so a flat sensor does not explode), and optional
    ``names`` of the sensors (used by :meth:`explain`).

    Streaming use: :meth:`learn_one` collects training rows (the model is refitted lazily on the next
    score); :meth:`score_one` scores a row and advances the EWMA state; :meth:`reset` clears the state.
    :meth:`score_many` scores a block from the current state and advances it the same way, so scoring a
    series row by row or in one block gives the same scores.
    """

    alpha: float = 0.05
    shrinkage: float = 0.1
    quantile: float = 0.99
    margin: float = 1.0
    min_std: float = 1e-3
    drift_ratio: float | None = 2.0
    names: Sequence[str] | None = None
    mean_: FloatArray | None = field(default=None, init=False, repr=False)
    std_: FloatArray | None = field(default=None, init=False, repr=False)
    precision_: FloatArray | None = field(default=None, init=False, repr=False)
    whitener_: FloatArray | None = field(default=None, init=False, repr=False)
    active_: npt.NDArray[np.bool_] | None = field(default=None, init=False, repr=False)
    threshold_: float = field(default=float("inf"), init=False)
    train_scores_: FloatArray | None = field(default=None, init=False, repr=False)
    _state: FloatArray | None = field(default=None, init=False, repr=False)
    _buffer: list[FloatArray] = field(default_factory=list, init=False, repr=False)
    _stale: bool = field(default=False, init=False, repr=False)

    # ------------------------------------------------------------------ fitting

    def fit(self, X_train: npt.ArrayLike) -> MultivariateDetector:
        """Fit standardisation, correlation and threshold on training rows (assumed normal)."""
        X = self._as_matrix(X_train)
        if X.shape[0] < 2:
            raise ValueError("need at least two training rows")
        self._buffer = [row for row in X]
        self._fit_matrix(X)
        return self

    def _fit_matrix(self, X: FloatArray) -> None:
        mean = X.mean(axis=0)
        std = X.std(axis=0, ddof=1)
        floor = self.min_std * np.maximum(np.abs(mean), 1.0)
        self.mean_, self.std_ = mean, np.maximum(std, floor)
        self.active_ = self._stationary(X)
        Z = ((X - mean) / self.std_)[:, self.active_]
        corr = np.atleast_2d(np.cov(Z, rowvar=False))
        sigma = (1.0 - self.shrinkage) * corr + self.shrinkage * np.eye(Z.shape[1])
        vals, vecs = np.linalg.eigh(sigma)
        vals = np.maximum(vals, 1e-9)
        self.precision_ = (vecs / vals) @ vecs.T
        self.whitener_ = (vecs / np.sqrt(vals)) @ vecs.T  # symmetric Σ^{-1/2}
        self._state = None
        self.train_scores_ = self._score_block(X, None)[0]
        self.threshold_ = self.margin * float(np.quantile(self.train_scores_, self.quantile))
        self._state = None
        self._stale = False

    def _stationary(self, X: FloatArray) -> npt.NDArray[np.bool_]:
        """Sensors kept in the statistic: those without a strong linear trend over the training rows.

        A sensor whose fitted trend over the training span exceeds ``drift_ratio`` times its residual
        standard deviation drifts (e.g. a warming temperature); its training distribution does not
        describe the test period, so it is left out (its contribution is reported as 0). At least one
        sensor (the least drifting) is always kept.
        """
        n, d = X.shape
        if self.drift_ratio is None or n < 3:
            return np.ones(d, dtype=bool)
        A = np.c_[np.linspace(0.0, 1.0, n), np.ones(n)]
        coef = np.linalg.lstsq(A, X, rcond=None)[0]
        resid = np.maximum((X - A @ coef).std(axis=0), self.min_std * np.maximum(np.abs(X.mean(axis=0)), 1.0))
        ratio = np.abs(coef[0]) / resid
        keep = ratio <= self.drift_ratio
        if not keep.any():
            keep[int(np.argmin(ratio))] = True
        return np.asarray(keep, dtype=bool)

    def learn_one(self, x: npt.ArrayLike) -> None:
        """Add one training row; the model is refitted on the next call that needs it."""
        self._buffer.append(np.asarray(x, dtype=np.float64).ravel())
        self._stale = True

    def learn_many(self, X: npt.ArrayLike) -> None:
        """Add a block of training rows (see :meth:`learn_one`)."""
        self._buffer.extend(row for row in self._as_matrix(X))
        self._stale = True

    def _ready(self) -> None:
        if self._stale or self.precision_ is None:
            if len(self._buffer) < 2:
                raise RuntimeError("detector is not fitted: call fit() or learn_one() on training rows first")
            self._fit_matrix(np.vstack(self._buffer))

    def reset(self) -> None:
        """Forget the EWMA state (start of a new series); the fitted model is kept."""
        self._state = None

    # ------------------------------------------------------------------ scoring

    @staticmethod
    def _as_matrix(X: npt.ArrayLike) -> FloatArray:
        a = np.asarray(X, dtype=np.float64)
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.ndim != 2:
            raise ValueError("expected a 2-D array (rows × sensors)")
        return a

    def _standardise(self, X: FloatArray) -> FloatArray:
        assert self.mean_ is not None and self.std_ is not None
        if X.shape[1] != self.mean_.size:
            raise ValueError(f"expected {self.mean_.size} sensors, got {X.shape[1]}")
        assert self.active_ is not None
        return ((X - self.mean_) / self.std_)[:, self.active_]

    def _score_block(self, X: FloatArray, state: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        assert self.precision_ is not None
        Z = self._standardise(X)
        init = np.zeros(Z.shape[1]) if state is None else state
        E = ewma(Z, self.alpha, initial=init)
        scale = (2.0 - self.alpha) / self.alpha / Z.shape[1]
        t2 = np.einsum("ij,jk,ik->i", E, self.precision_, E) * scale
        return t2, E[-1] if E.shape[0] else init

    def score_many(self, X: npt.ArrayLike) -> FloatArray:
        """Scores of a block of rows (continuing from the current state, which is advanced)."""
        self._ready()
        A = self._as_matrix(X)
        scores, self._state = self._score_block(A, self._state)
        return scores

    def score_one(self, x: npt.ArrayLike) -> float:
        """Score of one row (advances the EWMA state)."""
        return float(self.score_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0])

    def predict_many(self, X: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Binary decisions ``score > threshold`` for a block of rows."""
        return self.score_many(X) > self.threshold_

    # ------------------------------------------------------------------ diagnostics

    def contributions(self, x: npt.ArrayLike, *, smoothed: bool = False) -> FloatArray:
        """Per-sensor share of the anomaly statistic of row(s) ``x`` (non-negative, each row sums to 1).

        Uses the symmetric whitening ``w = Σ^{-1/2} z`` so that ``Σ_i w_i² = zᵀ Σ^{-1} z``; the share of
        sensor ``i`` is ``w_i² / Σ_j w_j²``. With ``smoothed=True`` the current EWMA state is explained
        instead of ``x``. Returns a 1-D array for one row, 2-D for several.
        """
        self._ready()
        assert self.whitener_ is not None
        if smoothed:
            if self._state is None:
                raise RuntimeError("no EWMA state yet: score some rows first")
            Z = self._state.reshape(1, -1)
        else:
            Z = self._standardise(self._as_matrix(x))
        assert self.active_ is not None
        W = np.zeros((Z.shape[0], self.active_.size))
        W[:, self.active_] = (Z @ self.whitener_) ** 2
        tot = W.sum(axis=1, keepdims=True)
        n = int(self.active_.sum())
        shares = np.where(tot > 0, W / np.where(tot > 0, tot, 1.0), self.active_ / n)
        return shares[0] if (smoothed or np.asarray(x).ndim == 1) else shares

    def explain(self, x: npt.ArrayLike) -> dict[str, float]:
        """:meth:`contributions` of one row keyed by sensor name (``s0``, ``s1``, … without names)."""
        c = self.contributions(np.asarray(x, dtype=np.float64).ravel())
        names = list(self.names) if self.names is not None else [f"s{i}" for i in range(c.size)]
        return dict(zip(names, (float(v) for v in c), strict=True))
