"""A fault-family classifier file for a ``mewma`` analytic (``params.family_classifier``), trained from
labelled SKAB-layout files, each file's folder naming its fault family.

The file holds the classifier, the per-sensor scales it was calibrated with, the horizon (rows from an
alarm's start that name its family), the inputs, and the leave-one-file-out accuracy of the recipe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tvilling.core.errors import Invalid

#: the figures of the leave-one-file-out check that are kept in the file and reported
CHECK_KEYS = ("family_accuracy", "family_balanced_accuracy", "family_majority_accuracy")


def family_classifier_document(skab_dir: Path, *, horizon: int) -> dict[str, Any]:
    """Train on every labelled SKAB file under ``skab_dir``; the classifier file's document.

    Raises :class:`Invalid` when the folder holds no labelled file long enough to train on."""
    from tvilling.analytics.detectors.multivariate import MultivariateDetector
    from tvilling.analytics.detectors.mv_calibration import calibrate_scales
    from tvilling.analytics.diagnostics import FamilyClassifier, family_evaluation, skab_family_segments
    from tvilling.analytics.evaluation.runs import _skab_files
    from tvilling.analytics.evaluation.skab import TRAIN_ROWS

    files = _skab_files(skab_dir)
    if not files:
        raise Invalid(f"no labelled SKAB files longer than {TRAIN_ROWS} rows under {skab_dir}", path=str(skab_dir))
    scales = calibrate_scales([d[1][:TRAIN_ROWS] for _p, d in files], alpha=MultivariateDetector.alpha)
    segments = skab_family_segments(skab_dir, horizon=horizon, scales=scales)
    clf = FamilyClassifier().fit([g.signature for g in segments], [g.family for g in segments])
    check = family_evaluation([(g.family, g.signature) for g in segments], groups=[g.file for g in segments])
    return {"classifier": clf.to_dict(), "scales": [float(x) for x in scales], "horizon": horizon,
            "inputs": list(files[0][1][4]), "segments": len(segments),
            "leave_one_file_out": {k: check[k] for k in CHECK_KEYS}}


def write_family_classifier(skab_dir: Path, out_path: Path, *, horizon: int) -> dict[str, Any]:
    """Train (see :func:`family_classifier_document`) and write the file; returns ``out``, ``segments`` and the
    leave-one-file-out figures."""
    doc = family_classifier_document(skab_dir, horizon=horizon)
    out_path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return {"out": str(out_path), "segments": doc["segments"], **doc["leave_one_file_out"]}
