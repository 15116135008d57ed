"""Benchmark runs of Tvilling's detectors under the published SKAB and NAB protocols.

* :func:`run_skab` — every labelled SKAB CSV under a folder (recursively); in each file the first
  :data:`~tvilling.analytics.evaluation.skab.TRAIN_ROWS` rows train a fresh detector, the rest are scored;
  point counts and changepoint raw scores are pooled over files.
* :func:`run_nab` — every NAB series under a folder scored by a fresh univariate detector, then NAB v1.1
  scoring with the per-profile corpus-optimal threshold and a fixed threshold.
* :func:`table` renders either result as a human table; :func:`plot` draws one (needs matplotlib).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from tvilling.analytics.detectors import MultivariateDetector, UnivariateDetector
from tvilling.analytics.detectors.mv_calibration import calibrate_scales
from tvilling.analytics.diagnostics import DEFAULT_HORIZON, family_evaluation, first_alarm_rows, onset_signature
from tvilling.analytics.evaluation.nab import load_nab_series, load_windows, probationary_length, score_corpus
from tvilling.analytics.evaluation.skab import TRAIN_ROWS, ChangepointCounts, PointCounts, load_skab
from tvilling.core.errors import Invalid

__all__ = ["NAB_FIXED_THRESHOLD", "plot", "run_nab", "run_skab", "table"]

NAB_FIXED_THRESHOLD = 0.5
"""Fixed threshold reported next to NAB's corpus-optimal ones (the detector's natural decision level)."""


class SkabDetector(Protocol):
    """What :func:`run_skab` needs from a multivariate detector (a :class:`MultivariateDetector` also
    gets its alarm hold)."""

    threshold_: float

    def fit(self, X_train: npt.ArrayLike) -> Any: ...

    def score_many(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


class NabDetector(Protocol):
    """What :func:`run_nab` needs from a univariate detector."""

    def score_many(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


class _TimedNabDetector(Protocol):
    """A :class:`NabDetector` whose ``score_many`` also takes the rows' timestamps."""

    def score_many(self, x: npt.ArrayLike, ts: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]: ...


def skab_scales(files: list[Any], *, alpha: float) -> npt.NDArray[np.float64]:
    """Sensor scales of :class:`MultivariateDetector` learned on the training parts (first
    :data:`TRAIN_ROWS` rows, no labels) of the given SKAB files (label-free pre-training)."""
    return calibrate_scales([f[1][:TRAIN_ROWS] for f in files], alpha=alpha)


def _skab_files(root: Path) -> list[tuple[Path, Any]]:
    out: list[tuple[Path, Any]] = []
    for path in sorted(root.rglob("*.csv")):
        data = load_skab(path)
        if data is not None and data[1].shape[0] > TRAIN_ROWS:
            out.append((path, data))
    return out


def run_skab(
    data_dir: str | Path,
    *,
    detector_factory: Callable[[], SkabDetector] | None = None,
    keep_series: bool = False,
    families: bool = True,
) -> dict[str, Any]:
    """Evaluate a multivariate detector on SKAB under the official protocol.

    Without ``detector_factory`` each file gets a fresh :class:`MultivariateDetector` with its default
    settings and sensor scales pre-trained (:func:`skab_scales`) on the training parts of all the files
    evaluated: only the first :data:`TRAIN_ROWS` rows of each file, never a test row or a label. The
    binary prediction is ``predict_many`` where the detector has it (alarm hold), else
    ``score > threshold_``.

    Returns ``f1``, ``far`` and ``mar`` (percent), ``nab_standard``, ``nab_low_fp``, ``nab_low_fn``
    (changepoint scores, 60 s window), ``files``, plus ``tp``/``fp``/``fn``/``tn``, ``changepoints``,
    ``missed``, ``false_positives``, ``seconds`` and ``per_file`` (with ``keep_series`` also the scores,
    threshold and labels of each file's test part under ``series``). With ``families`` (and the default
    detector) also ``family_accuracy``, ``family_balanced_accuracy``, ``family_segments``,
    ``family_majority_accuracy`` and ``family_confusion`` (rows true, columns predicted, families sorted):
    the fault family (the parent folder name) of each file's detected anomaly, named from the detector's
    deviations over the first :data:`~tvilling.analytics.diagnostics.DEFAULT_HORIZON` rows of the first
    alarm overlapping the labelled fault (causal: what is known online then) by a classifier trained on
    the other files (leave-one-file-out, :mod:`tvilling.analytics.diagnostics`); files whose fault raises
    no alarm are not counted.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise Invalid("SKAB folder not found", path=str(root))
    start = time.perf_counter()
    loaded = _skab_files(root)
    if not loaded:
        raise Invalid("no labelled SKAB CSV found", path=str(root))
    factory: Callable[[], SkabDetector]
    default = detector_factory is None
    if detector_factory is None:
        scales = skab_scales([d for _p, d in loaded], alpha=MultivariateDetector.alpha)

        def factory() -> SkabDetector:
            return MultivariateDetector(scales=scales)
    else:
        factory = detector_factory
    points, cps = PointCounts(), ChangepointCounts()
    per_file: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    segments: list[tuple[str, npt.NDArray[np.float64]]] = []
    seg_files: list[str] = []
    for path, (ts, X, anomaly, changepoint, cols) in loaded:
        det = factory()
        det.fit(X[:TRAIN_ROWS])
        if isinstance(det, MultivariateDetector):
            det.names = cols
            scores, dev = det.score_details(X[TRAIN_ROWS:])
            pred = det.decide_many(scores)
            if default and families:
                onset = first_alarm_rows(dev, pred, anomaly[TRAIN_ROWS:], DEFAULT_HORIZON)
                if onset is not None:
                    segments.append((path.parent.name, onset_signature(onset)))
                    seg_files.append(str(path.relative_to(root)))
        else:
            scores = det.score_many(X[TRAIN_ROWS:])
            pred = scores > det.threshold_
        y, c, t = anomaly[TRAIN_ROWS:], changepoint[TRAIN_ROWS:], ts[TRAIN_ROWS:]
        points.add(y, pred)
        cps.add(t, c, pred)
        fc = PointCounts()
        fc.add(y, pred)
        per_file.append({"file": str(path.relative_to(root)), **fc.metrics()})
        if keep_series:
            series.append(
                {
                    "file": str(path.relative_to(root)),
                    "time": t,
                    "score": scores,
                    "threshold": float(det.threshold_),
                    "anomaly": y,
                }
            )
    out: dict[str, Any] = {**points.metrics(), **cps.scores(), "files": len(per_file)}
    if segments and len({fam for fam, _s in segments}) > 1:
        fam = family_evaluation(segments, seg_files)
        out.update({k: float(fam[k]) for k in ("family_accuracy", "family_balanced_accuracy", "family_segments")})
        out["family_majority_accuracy"] = float(fam["family_majority_accuracy"])
        out["family_confusion"] = fam["confusion"]
    out["seconds"] = time.perf_counter() - start
    out["per_file"] = per_file
    if keep_series:
        out["series"] = series
    return out


def run_nab(
    data_dir: str | Path,
    labels_json: str | Path,
    *,
    detector_factory: Callable[[int], NabDetector] | None = None,
    fixed_threshold: float = NAB_FIXED_THRESHOLD,
    keep_series: bool = False,
) -> dict[str, Any]:
    """Evaluate a univariate detector on NAB v1.1.

    Every ``*.csv`` under ``data_dir`` (named ``category/file.csv`` relative to it) is scored by a fresh
    detector made by ``detector_factory(probation)``, where ``probation`` is the file's probationary period
    in rows (NAB hands it to every detector, which may learn during it; those rows are not scored). The
    default is ``UnivariateDetector(warmup=probation)``. A detector whose ``score_many`` takes a ``ts``
    keyword also gets the rows' timestamps (``datetime64``). Returns ``standard``, ``reward_low_fp``,
    ``reward_low_fn`` (corpus-optimal threshold per profile), ``files``, ``windows``, ``thresholds``,
    ``raw``, ``fixed`` (the three scores at ``fixed_threshold``) and ``seconds``.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise Invalid("NAB data folder not found", path=str(root))
    windows = load_windows(labels_json)
    start = time.perf_counter()
    files: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.float64]]] = {}
    for path in sorted(root.rglob("*.csv")):
        name = path.relative_to(root).as_posix()
        ts, values = load_nab_series(path)
        factory = detector_factory or _nab_detector
        det = factory(probationary_length(values.size))
        # Timestamps go to detectors that take them (``score_many(x, ts=...)``), causally like the values.
        if _takes_ts(det):
            scores = cast(_TimedNabDetector, det).score_many(values, ts=ts)
        else:
            scores = det.score_many(values)
        files[name] = (ts, scores)
    if not files:
        raise Invalid("no NAB series found", path=str(root))
    out = score_corpus(files, windows, threshold=fixed_threshold)
    out["seconds"] = time.perf_counter() - start
    if keep_series:
        out["series"] = [{"file": k, "time": t, "score": s} for k, (t, s) in files.items()]
    return out


def _takes_ts(det: NabDetector) -> bool:
    """Whether ``det.score_many`` accepts a ``ts`` keyword (timestamps of the values)."""
    try:
        params = inspect.signature(det.score_many).parameters
    except (TypeError, ValueError):
        return False
    return "ts" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _nab_detector(probation: int) -> NabDetector:
    """Tvilling's univariate detector with NAB's probationary period as its warm-up."""
    return UnivariateDetector(warmup=max(probation, 1))


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table(result: Mapping[str, Any]) -> str:
    """A human table of a :func:`run_skab` or :func:`run_nab` result (with the published records)."""
    if "f1" in result:
        rows = [
            ("F1", result["f1"], "0.78 (Conv-AE)"),
            ("FAR %", result["far"], "13.55 (Conv-AE)"),
            ("MAR %", result["mar"], "28.02 (Conv-AE)"),
            ("NAB standard", result["nab_standard"], "32.42 (MSCRED)"),
            ("NAB LowFP", result["nab_low_fp"], "21.54 (Conv-AE)"),
            ("NAB LowFN", result["nab_low_fn"], "40.28 (MSCRED)"),
            ("files", result["files"], "34 (records use all files)"),
        ]
        title = "SKAB (first 400 rows of each file train, rest test; counts pooled)"
    elif "standard" in result:
        fixed = result.get("fixed", {})
        rows = [
            ("standard", result["standard"], "74.9 (ARTime)"),
            ("reward_low_fp", result["reward_low_fp"], "67.0 (CAD OSE)"),
            ("reward_low_fn", result["reward_low_fn"], "80.4 (ARTime)"),
            ("files", result["files"], "58 (records use all files)"),
        ]
        for k in ("standard", "reward_low_fp", "reward_low_fn"):
            if k in fixed:
                rows.append((f"{k} @ fixed {fixed['threshold']:g}", fixed[k], ""))
        title = "NAB v1.1 (corpus-optimal threshold per profile)"
    else:
        raise Invalid("not a run_skab or run_nab result")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(_fmt(r[1])) for r in rows)
    lines = [title, f"{'metric':<{w0}}  {'value':>{w1}}  published record", "-" * (w0 + w1 + 22)]
    lines += [f"{name:<{w0}}  {_fmt(val):>{w1}}  {rec}" for name, val, rec in rows]
    if "seconds" in result:
        lines.append(f"({result['seconds']:.1f} s)")
    return "\n".join(lines)


def plot(result_or_series: Mapping[str, Any], path: str | Path) -> Path:
    """Draw scores against the truth to ``path`` (PNG). Needs ``matplotlib``.

    Accepts a result made with ``keep_series=True`` (draws up to 6 of its series) or one series dict
    with ``time``, ``score`` and optionally ``threshold`` and ``anomaly``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("plotting needs matplotlib: pip install matplotlib") from exc
    series = list(result_or_series.get("series", [result_or_series]))[:6]
    if not series or "score" not in series[0]:
        raise Invalid("nothing to plot: pass a result made with keep_series=True or one series")
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.2 * len(series)), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=False):
        x = np.arange(len(s["score"]))
        ax.plot(x, s["score"], lw=0.8, label="score")
        if "threshold" in s:
            ax.axhline(s["threshold"], color="r", lw=0.8, ls="--", label="threshold")
        if "anomaly" in s:
            top = float(np.max(s["score"])) if len(s["score"]) else 1.0
            ax.fill_between(
                x, 0, top, where=np.asarray(s["anomaly"], bool), color="orange", alpha=0.3, label="labelled anomaly"
            )
        ax.set_title(str(s.get("file", "")), fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
