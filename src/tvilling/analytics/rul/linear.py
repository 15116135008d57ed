"""Linear RUL baseline: ordinary least squares from the current cycle's settings and sensors.

The target is the piecewise-linear RUL, ``min(RUL, 125)``; predictions are floored at 0.
It is the reference a learned model has to beat.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tvilling.analytics.evaluation.cmapss import SENSORS, SETTINGS, last_rows
from tvilling.core.errors import Invalid

FloatArray = NDArray[np.float64]


class LinearBaseline:
    """OLS on the 3 settings and 21 sensors of a row, with an intercept.

    >>> import numpy as np
    >>> rows = np.zeros((5, 26)); rows[:, 5] = np.arange(5.0)
    >>> m = LinearBaseline().learn_many(rows, 10.0 - 2.0 * np.arange(5.0))
    >>> [round(v, 6) for v in m.predict_many(rows[:2]).tolist()]
    [10.0, 8.0]
    """

    def __init__(self) -> None:
        self.coef: FloatArray | None = None

    @staticmethod
    def _design(rows: FloatArray) -> FloatArray:
        x = np.hstack([rows[:, SETTINGS], rows[:, SENSORS]])
        return np.hstack([np.ones((x.shape[0], 1)), x])

    def learn_many(self, rows: FloatArray, rul: FloatArray) -> LinearBaseline:
        """Fit on training rows (C-MAPSS layout) and their RUL targets."""
        if rows.shape[0] != np.asarray(rul).shape[0]:
            raise Invalid("rows and targets differ in length", rows=rows.shape[0], targets=len(rul))
        target = np.asarray(rul, dtype=np.float64)
        coef: FloatArray = np.linalg.lstsq(self._design(rows), target, rcond=None)[0].astype(np.float64)
        self.coef = coef
        return self

    def predict_many(self, rows: FloatArray) -> FloatArray:
        """Predicted RUL of each row, floored at 0."""
        if self.coef is None:
            raise Invalid("LinearBaseline is not fitted", rule="learn_many first")
        return np.maximum(self._design(rows) @ self.coef, 0.0)

    def predict_last_point(self, rows: FloatArray) -> FloatArray:
        """Prediction at the last cycle of each unit."""
        return self.predict_many(rows)[last_rows(rows)]
