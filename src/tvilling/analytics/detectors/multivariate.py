"""Causal multivariate online anomaly detector for multi-sensor assets (SKAB-style data).

Method (per-asset statistics come from its training rows, assumed normal):

1. Standardise each sensor with the training mean and standard deviation: ``u_t = (x_t − μ) / σ``.
2. Smooth causally with an EWMA, ``e_t = (1 − α)·e_{t−1} + α·u_t`` (``e_{−1} = 0``), and rescale so
   that white noise would give unit variance: ``z_t = e_t / √(α / (2 − α))``.
3. Divide each sensor by its *scale* ``k_i``: how much larger than the white-noise theory the smoothed
   deviation of that sensor is, away from its own training window, in normal operation
   (autocorrelation, slow drift such as warming). Scales are learned label-free from normal data with
   :func:`~tvilling.analytics.detectors.mv_calibration.calibrate_scales` (a pre-trained component,
   e.g. from the training parts of other recordings of the same asset type); without them the
   detector estimates them from its own training rows.
4. The statistic is the mean of ``(z_i / k_i)²`` over the sensors, divided by ``threshold``: the
   score is ≥ 0 and the alarm level is 1.0.
5. Decisions (:meth:`MultivariateDetector.predict_many`): an alarm is raised when the score exceeds
   1.0 and is held for at least ``hold`` rows, then cleared at the first row whose score is back at or
   below 1.0 (anomalies are episodes, not single points).

Everything is causal: the score and the decision at row ``t`` depend on rows ``≤ t`` only. The
statistic is a sum over sensors, so :meth:`MultivariateDetector.contributions` splits it exactly: the
share of sensor ``i`` is ``(z_i / k_i)² / Σ_j (z_j / k_j)²`` (non-negative, summing to 1).

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
from tvilling.analytics.detectors.mv_calibration import calibrate_scales, hold_decisions, std_floor

__all__ = ["MultivariateDetector"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class MultivariateDetector:
    """Scaled EWMA chi-square detector with an alarm hold.

    Parameters: ``alpha`` (EWMA weight of the newest row), ``threshold`` (alarm level of the mean
    squared scaled deviation; the reported score is divided by it), ``hold`` (rows an alarm is kept at
    least once raised), ``scales`` (per-sensor scales ``k_i``; ``None``: estimated from the training
    rows), ``min_std`` (floor on a sensor's training standard deviation relative to its mean absolute
    level, so a flat sensor does not explode; see :func:`std_floor`) and optional sensor ``names``
    (used by :meth:`explain`).

    The defaults were chosen on the SKAB development files by leave-one-file-out cross-validation
    (see ``run_skab``); ``alpha=0.5, threshold=3, hold=15`` won in every fold.

    Streaming use: :meth:`learn_one`/:meth:`learn_many` collect training rows (the model is refitted
    lazily on the next score); :meth:`score_one`/:meth:`score_many` score rows and advance the EWMA
    state; :meth:`predict_one`/:meth:`predict_many` also advance the alarm state; :meth:`reset`
    clears both states. Scoring a series row by row or in blocks gives the same scores and decisions.
    """

    alpha: float = 0.5
    threshold: float = 3.0
    hold: int = 15
    scales: npt.ArrayLike | None = None
    min_std: float = 1e-4
    names: Sequence[str] | None = None
    mean_: FloatArray | None = field(default=None, init=False, repr=False)
    std_: FloatArray | None = field(default=None, init=False, repr=False)
    scale_: FloatArray | None = field(default=None, init=False, repr=False)
    threshold_: float = field(default=1.0, init=False)
    _state: FloatArray | None = field(default=None, init=False, repr=False)
    _alarm: tuple[bool, int] = field(default=(False, 0), init=False, repr=False)
    _buffer: list[FloatArray] = field(default_factory=list, init=False, repr=False)
    _stale: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError("alpha must lie in (0, 1]")
        if not self.threshold > 0.0:
            raise ValueError("threshold must be positive")
        if self.hold < 0:
            raise ValueError("hold must be >= 0")

    # ------------------------------------------------------------------ fitting

    def fit(self, X_train: npt.ArrayLike) -> MultivariateDetector:
        """Fit standardisation (and scales, when not given) on training rows assumed normal."""
        X = self._as_matrix(X_train)
        if X.shape[0] < 2:
            raise ValueError("need at least two training rows")
        self._buffer = [row for row in X]
        self._fit_matrix(X)
        return self

    def _fit_matrix(self, X: FloatArray) -> None:
        mean = X.mean(axis=0)
        std = X.std(axis=0, ddof=1)
        self.mean_, self.std_ = mean, np.maximum(std, std_floor(mean, self.min_std))
        if self.scales is not None:
            k = np.asarray(self.scales, dtype=np.float64).ravel()
            if k.size != X.shape[1]:
                raise ValueError(f"scales has {k.size} values for {X.shape[1]} sensors")
            if not np.all(np.isfinite(k) & (k > 0)):
                raise ValueError("scales must be finite and positive")
            self.scale_ = k
        elif X.shape[0] >= 20:
            self.scale_ = calibrate_scales([X], alpha=self.alpha, min_std=self.min_std)
        else:
            self.scale_ = np.ones(X.shape[1])
        self._state = None
        self._alarm = (False, 0)
        self._stale = False

    def learn_one(self, x: npt.ArrayLike) -> None:
        """Add one training row; the model is refitted on the next call that needs it."""
        self._buffer.append(np.asarray(x, dtype=np.float64).ravel())
        self._stale = True

    def learn_many(self, X: npt.ArrayLike) -> None:
        """Add a block of training rows (see :meth:`learn_one`)."""
        self._buffer.extend(row for row in self._as_matrix(X))
        self._stale = True

    def _ready(self) -> None:
        if self._stale or self.mean_ is None:
            if len(self._buffer) < 2:
                raise RuntimeError("detector is not fitted: call fit() or learn_one() on training rows first")
            self._fit_matrix(np.vstack(self._buffer))

    def reset(self) -> None:
        """Forget the EWMA and alarm states (start of a new series); the fitted model is kept."""
        self._state = None
        self._alarm = (False, 0)

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
        return (X - self.mean_) / self.std_

    def _scaled(self, E: FloatArray) -> FloatArray:
        assert self.scale_ is not None
        return np.asarray(E / np.sqrt(self.alpha / (2.0 - self.alpha)) / self.scale_, dtype=np.float64)

    def score_details(self, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Scores of a block of rows and the signed scaled deviations ``z_i / k_i`` behind them.

        Continues from the current EWMA state and advances it (like :meth:`score_many`). The second
        array (rows × sensors) is what :mod:`tvilling.analytics.diagnostics` reads.
        """
        self._ready()
        U = self._standardise(self._as_matrix(X))
        init = np.zeros(U.shape[1]) if self._state is None else self._state
        E = ewma(U, self.alpha, initial=init)
        if E.shape[0]:
            self._state = E[-1].copy()
        Zs = self._scaled(E)
        scores = np.mean(Zs**2, axis=1) / self.threshold
        return np.asarray(scores, dtype=np.float64), Zs

    def score_many(self, X: npt.ArrayLike) -> FloatArray:
        """Scores of a block of rows (continuing from the current state, which is advanced)."""
        return self.score_details(X)[0]

    def score_one(self, x: npt.ArrayLike) -> float:
        """Score of one row (advances the EWMA state)."""
        return float(self.score_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0])

    def decide_many(self, scores: npt.ArrayLike) -> BoolArray:
        """Alarm decisions for consecutive scores (advances the alarm state; see the module notes)."""
        out, self._alarm = hold_decisions(np.asarray(scores, dtype=np.float64), self.threshold_, self.hold, self._alarm)
        return out

    def predict_many(self, X: npt.ArrayLike) -> BoolArray:
        """Alarm decisions for a block of rows (score above 1.0, held ``hold`` rows at least)."""
        return self.decide_many(self.score_many(X))

    def predict_one(self, x: npt.ArrayLike) -> bool:
        """Alarm decision for one row (advances the EWMA and alarm states)."""
        return bool(self.predict_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0])

    # ------------------------------------------------------------------ diagnostics

    def contributions(self, x: npt.ArrayLike, *, smoothed: bool = False) -> FloatArray:
        """Per-sensor share of the anomaly statistic of row(s) ``x`` (non-negative, each row sums to 1).

        Without smoothing the standardised, scaled deviation of ``x`` itself is split; with
        ``smoothed=True`` the current EWMA state (what the last score measured) is explained instead of
        ``x``. Returns a 1-D array for one row, 2-D for several.
        """
        self._ready()
        if smoothed:
            if self._state is None:
                raise RuntimeError("no EWMA state yet: score some rows first")
            Zs = self._scaled(self._state.reshape(1, -1))
        else:
            assert self.scale_ is not None
            Zs = self._standardise(self._as_matrix(x)) / self.scale_
        shares = shares_of(Zs)
        return shares[0] if (smoothed or np.asarray(x).ndim == 1) else shares

    def explain(self, x: npt.ArrayLike) -> dict[str, float]:
        """:meth:`contributions` of one row keyed by sensor name (``s0``, ``s1``, … without names)."""
        c = self.contributions(np.asarray(x, dtype=np.float64).ravel())
        names = list(self.names) if self.names is not None else [f"s{i}" for i in range(c.size)]
        return dict(zip(names, (float(v) for v in c), strict=True))


def shares_of(Zs: npt.ArrayLike) -> FloatArray:
    """Row-wise shares ``z_i² / Σ_j z_j²`` (uniform where a row is all zeros)."""
    Z = np.atleast_2d(np.asarray(Zs, dtype=np.float64))
    W = Z**2
    tot = W.sum(axis=1, keepdims=True)
    d = max(Z.shape[1], 1)
    return np.asarray(np.where(tot > 0, W / np.where(tot > 0, tot, 1.0), 1.0 / d), dtype=np.float64)
