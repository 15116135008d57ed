"""Diagnostics of detected anomalies: which sensors drive them and which fault family they resemble.

* :func:`segment_signature` — the signature of an anomaly segment from the detector's signed scaled
  deviations (:meth:`~tvilling.analytics.detectors.MultivariateDetector.score_details`).
* :class:`FamilyClassifier` — names the fault family of a signature (with a confidence); trained on
  labelled segments, usable online on the rows of an ongoing anomaly (:meth:`FamilyClassifier.classify_rows`).
* :func:`leave_one_out_accuracy` — its accuracy when each labelled file is classified by a model
  trained on the other files.
"""

from tvilling.analytics.diagnostics.family import FamilyClassifier, leave_one_out_accuracy
from tvilling.analytics.diagnostics.signature import segment_signature

__all__ = ["FamilyClassifier", "leave_one_out_accuracy", "segment_signature"]
