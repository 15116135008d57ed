"""Online anomaly detectors: multivariate (multi-sensor assets) and univariate (single streams).

Both are causal (a score depends on the current and past rows only) and follow the streaming verbs of
``ARCHITECTURE.md``: ``learn_one``/``score_one`` and the batched ``learn_many``/``score_many`` over arrays.
"""

from tvilling.analytics.detectors.multivariate import MultivariateDetector
from tvilling.analytics.detectors.univariate import UnivariateDetector

__all__ = ["MultivariateDetector", "UnivariateDetector"]
