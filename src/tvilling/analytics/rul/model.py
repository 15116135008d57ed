"""Remaining-useful-life regressor: regime-normalised windowed features, random-Fourier ridge ensemble.

Each member is a ridge regression on random Fourier features (an approximation of an
RBF kernel ridge) fitted on a bootstrap sample of *units*. The point prediction is the
ensemble mean; the p10/p90 interval adds the out-of-bag residual quantiles (per band of
predicted RUL) to the point, so it covers both model spread and noise. CPU and NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tvilling.analytics.evaluation.cmapss import UNIT, last_rows
from tvilling.analytics.rul.features import RegimeNormalizer, window_features
from tvilling.core.errors import Invalid

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RulConfig:
    """Hyper-parameters, chosen by unit-grouped cross-validation on training data."""

    windows: tuple[int, ...] = (10, 30, 60, 120)
    n_features: int = 1000
    gamma: float = 0.02
    ridge: float = 1.0
    members: int = 8
    clip: float = 125.0
    bands: int = 5
    seed: int = 0


@dataclass(frozen=True)
class RulPrediction:
    """Point prediction and 10 %/90 % interval bounds per row (cycles)."""

    point: FloatArray
    p10: FloatArray
    p90: FloatArray


class RulModel:
    """Ensemble RUL regressor with the streaming-style batch verbs ``learn_many``/``predict_many``.

    ``rows`` are in the C-MAPSS layout (unit, cycle, 3 settings, 21 sensors) sorted by
    unit then cycle; each row is predicted from its unit's history up to that row.
    """

    def __init__(self, config: RulConfig | None = None) -> None:
        self.config = config or RulConfig()
        self.normalizer = RegimeNormalizer()
        self._mu = np.zeros(0)
        self._sd = np.ones(0)
        self._omega = np.zeros((0, 0))
        self._phase = np.zeros(0)
        self._weights: list[FloatArray] = []
        self._edges = np.zeros(0)
        self._q10 = np.zeros(0)
        self._q90 = np.zeros(0)

    def _features(self, rows: FloatArray) -> FloatArray:
        return window_features(rows, self.normalizer.transform(rows), self.config.windows)

    def _rff(self, feats: FloatArray) -> FloatArray:
        x = (feats - self._mu) / self._sd
        scale = np.sqrt(2.0 / self._omega.shape[1])
        z = scale * np.cos(x @ self._omega + self._phase)
        return np.hstack([z, np.ones((z.shape[0], 1))])

    def learn_many(self, rows: FloatArray, rul: FloatArray) -> RulModel:
        """Fit on training rows and their RUL (targets are capped at ``config.clip``)."""
        cfg = self.config
        y = np.minimum(np.asarray(rul, dtype=np.float64).reshape(-1), cfg.clip)
        if rows.shape[0] != y.shape[0] or rows.shape[0] == 0:
            raise Invalid("rows and targets must be non-empty and of equal length", rows=rows.shape[0])
        rng = np.random.default_rng(cfg.seed)
        self.normalizer = RegimeNormalizer().fit(rows)
        feats = self._features(rows)
        self._mu = feats.mean(axis=0)
        self._sd = np.maximum(feats.std(axis=0), 1e-9)
        d = feats.shape[1]
        self._omega = rng.normal(0.0, np.sqrt(2.0 * cfg.gamma), size=(d, cfg.n_features))
        self._phase = rng.uniform(0.0, 2.0 * np.pi, size=cfg.n_features)
        z = self._rff(feats)
        units, inverse = np.unique(rows[:, UNIT], return_inverse=True)
        oob_sum = np.zeros(y.shape[0])
        oob_n = np.zeros(y.shape[0])
        self._weights = []
        penalty = cfg.ridge * np.eye(z.shape[1])
        penalty[-1, -1] = 0.0
        for _ in range(cfg.members):
            counts = np.bincount(rng.integers(0, units.size, units.size), minlength=units.size)
            w_row = counts[inverse].astype(np.float64)
            zw = z * w_row[:, None]
            w: FloatArray = np.linalg.solve(z.T @ zw + penalty, zw.T @ y).astype(np.float64)
            self._weights.append(w)
            out = w_row == 0
            oob_sum[out] += z[out] @ w
            oob_n[out] += 1
        seen = oob_n > 0
        oob = np.clip(oob_sum[seen] / oob_n[seen], 0.0, cfg.clip)
        resid = y[seen] - oob
        self._edges = np.quantile(oob, np.linspace(0, 1, cfg.bands + 1)[1:-1]) if oob.size else np.zeros(0)
        band = np.searchsorted(self._edges, oob)
        self._q10 = np.array([np.quantile(resid[band == b], 0.1) if np.any(band == b) else 0.0
                              for b in range(cfg.bands)])
        self._q90 = np.array([np.quantile(resid[band == b], 0.9) if np.any(band == b) else 0.0
                              for b in range(cfg.bands)])
        return self

    def predict_many(self, rows: FloatArray) -> RulPrediction:
        """Point prediction and p10/p90 for every row."""
        if not self._weights:
            raise Invalid("RulModel is not fitted", rule="learn_many first")
        z = self._rff(self._features(rows))
        preds = np.stack([z @ w for w in self._weights])
        point = np.clip(preds.mean(axis=0), 0.0, self.config.clip)
        band = np.searchsorted(self._edges, point)
        p10 = np.maximum(point + self._q10[band], 0.0)
        p90 = np.maximum(point + self._q90[band], p10)
        return RulPrediction(point=point, p10=p10, p90=p90)

    def predict_last(self, rows: FloatArray) -> RulPrediction:
        """Prediction at the last cycle of each unit (the C-MAPSS test convention)."""
        full = self.predict_many(rows)
        idx = last_rows(rows)
        return RulPrediction(point=full.point[idx], p10=full.p10[idx], p90=full.p90[idx])

    def predict_last_point(self, rows: FloatArray) -> FloatArray:
        """Point prediction at the last cycle of each unit."""
        return self.predict_last(rows).point
