"""Diagnostics of detected anomalies: which sensors drive them and which fault family they resemble.

* :func:`segment_signature`, :func:`onset_signature` — signatures of an anomaly segment from per-sensor
  deviations (e.g. :meth:`~tvilling.analytics.detectors.MultivariateDetector.score_details`).
* :class:`FamilyClassifier` — names the fault family of a signature (with a confidence); trained on
  labelled segments, usable online on the rows of an ongoing anomaly (:meth:`FamilyClassifier.classify_rows`),
  storable as plain data (``to_dict`` / ``from_dict``).
* :func:`family_evaluation`, :func:`leave_one_out_accuracy` — leave-one-file-out accuracy, balanced
  accuracy, confusion matrix and majority baseline.
* :func:`train_family_classifier` — a classifier trained from labelled SKAB-layout files.
"""

from tvilling.analytics.diagnostics.family import FamilyClassifier, family_evaluation, leave_one_out_accuracy
from tvilling.analytics.diagnostics.signature import onset_signature, segment_signature, signature
from tvilling.analytics.diagnostics.training import (
    DEFAULT_HORIZON,
    FamilySegment,
    first_alarm_rows,
    skab_family_segments,
    train_family_classifier,
)

__all__ = [
    "DEFAULT_HORIZON",
    "FamilyClassifier",
    "FamilySegment",
    "family_evaluation",
    "first_alarm_rows",
    "leave_one_out_accuracy",
    "onset_signature",
    "segment_signature",
    "signature",
    "skab_family_segments",
    "train_family_classifier",
]
