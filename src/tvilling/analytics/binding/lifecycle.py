"""Train, backtest, retrain and promote analytics from the history stored in the platform.

* :func:`train` fits a new *candidate* version from stored history: a fleet RUL model from
  the run-to-failure histories of the chosen twins (each history's last row is its failure),
  or a per-twin detector/trend from one twin's rows in a time range.
* :func:`backtest` replays a version over a chosen history range, with a fresh online state,
  and reports what it would have said (alarm rate and episodes for detectors; RMSE against
  the realised remaining life and interval coverage for RUL on run-to-failure twins). The
  report is kept with the version.
* Promotion (:meth:`AnalyticRegistry.promote`) makes a version the one the engine runs;
  ``retrain`` is :func:`train` with ``promote=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tvilling.analytics.binding.frames import history_rows
from tvilling.analytics.binding.registry import AnalyticRegistry, Version, dump_artifact, load_artifact
from tvilling.analytics.binding.runners import FleetRulRunner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.core.errors import Invalid

Progress = Callable[[int, int], None]
END = 2**62


def _fleet_rows(history: Any, spec: AnalyticSpec, twins: Sequence[str], start_us: int, end_us: int,
                progress: Progress | None) -> tuple[np.ndarray, list[str]]:
    parts: list[np.ndarray] = []
    used: list[str] = []
    for i, twin in enumerate(twins):
        _, X = history_rows(history, twin, spec.inputs, start_us, end_us)
        if progress is not None:
            progress(i + 1, len(twins))
        if X.shape[0] < 2:
            continue
        n = X.shape[0]
        unit = np.full((n, 1), float(len(used) + 1))
        cycle = np.arange(1, n + 1, dtype=np.float64)[:, None]
        parts.append(np.hstack([unit, cycle, X]))
        used.append(twin)
    if not parts:
        raise Invalid(f"analytic {spec.name!r}: none of the {len(twins)} twin(s) has stored history of "
                      f"{', '.join(spec.inputs)} in that range", rule="no_history")
    return np.vstack(parts), used


def train(spec: AnalyticSpec, registry: AnalyticRegistry, history: Any, twins: Sequence[str], *,
          start_us: int = 0, end_us: int = END, promote: bool = False,
          progress: Progress | None = None) -> Version:
    """Fit a new version from stored history; a candidate unless ``promote``."""
    if not twins:
        raise Invalid(f"analytic {spec.name!r}: name the twins to train on", field="twins", rule="required")
    started = time.perf_counter()
    if not spec.per_twin:
        from tvilling.analytics.evaluation.cmapss import train_rul
        from tvilling.analytics.rul.model import RulConfig, RulModel

        rows, used = _fleet_rows(history, spec, twins, start_us, end_us, progress)
        if rows.shape[1] < 6:
            raise Invalid(f"analytic {spec.name!r}: rul-fleet needs three operating settings then at least "
                          "one sensor as inputs", field="inputs", rule="count")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.params.items()}
        config = RulConfig(**kwargs)
        model = RulModel(config).learn_many(rows, train_rul(rows, None))
        runner = make_runner(spec, FLEET)
        runner.model = model
        metrics = {"units": len(used), "rows": int(rows.shape[0]), "train_seconds":
                   round(time.perf_counter() - started, 2), "twins": used[:1000]}
        return registry.add(spec.name, FLEET, dump_artifact(runner.artifact()), fingerprint=spec.fingerprint,
                            params=dict(spec.params), metrics=metrics, promote=promote)
    if len(twins) != 1:
        raise Invalid(f"analytic {spec.name!r} is fitted per twin: train it on one twin at a time",
                      field="twins", rule="count")
    twin = twins[0]
    _, X = history_rows(history, twin, spec.inputs, start_us, end_us)
    if X.shape[0] < 10:
        raise Invalid(f"analytic {spec.name!r}: twin {twin!r} has {X.shape[0]} complete rows of "
                      f"{', '.join(spec.inputs)} in that range; at least 10 are needed", rule="no_history")
    runner = make_runner(spec, twin)
    metrics = runner.fit(X)
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    return registry.add(spec.name, twin, dump_artifact(runner.artifact()), fingerprint=spec.fingerprint,
                        params=dict(spec.params), metrics=metrics, promote=promote)


def backtest(spec: AnalyticSpec, registry: AnalyticRegistry, history: Any, version: Version,
             twins: Sequence[str], *, start_us: int = 0, end_us: int = END, clip: float = 125.0) -> dict[str, Any]:
    """Replay ``version`` over stored history of ``twins``; the report is also kept with the version."""
    blob = registry.artifact(version.analytic, version.scope, version.version)
    per_twin: dict[str, Any] = {}
    errors: list[float] = []
    inside: list[bool] = []
    rows_total = alarms_total = 0
    for twin in twins:
        ts, X = history_rows(history, twin, spec.inputs, start_us, end_us)
        if not ts.size:
            per_twin[twin] = {"rows": 0}
            continue
        runner = make_runner(spec, version.scope)
        runner.load(load_artifact(blob), version.version)  # a fresh copy per twin: no state carries over
        if spec.kind == "anomaly":
            out = runner.run(ts, X)
            scores = np.concatenate([np.asarray(v, dtype=np.float64) for name, _, v in out
                                     if name == "anomaly_score"])
            # the flags as the twin would show them (the detector's own decisions, with its alarm hold)
            changes = [(int(t), bool(v)) for name, t, v in out if name == "anomaly"]
            flags = np.zeros(ts.size, dtype=bool)
            for t, v in changes:
                flags[np.searchsorted(ts, t):] = v
            episodes = int(np.sum(np.diff(np.r_[0, flags.astype(int)]) == 1))
            first = int(np.argmax(flags)) if flags.any() else None
            per_twin[twin] = {"rows": int(ts.size), "alarm_rate": round(float(flags.mean()), 4),
                              "episodes": episodes, "score_p50": round(float(np.median(scores)), 4),
                              "score_p99": round(float(np.quantile(scores, 0.99)), 4),
                              "score_max": round(float(scores.max()), 4),
                              "first_alarm": None if first is None else int(ts[first])}
            rows_total += int(ts.size)
            alarms_total += int(flags.sum())
        else:
            if not isinstance(runner, FleetRulRunner):
                per_twin[twin] = {"rows": int(ts.size), "note": "rul-trend backtests give no error figures: its "
                                  "remaining life is in time units, the truth of a history is not known"}
                continue
            # the whole history in one call: the features are causal, so row i sees rows ≤ i only
            rows = np.hstack([np.zeros((ts.size, 1)), np.arange(1, ts.size + 1, dtype=np.float64)[:, None], X])
            full = runner.model.predict_many(rows)
            point, lo, hi = full.point, full.p10, full.p90
            truth = np.minimum(np.arange(point.size - 1, -1, -1, dtype=np.float64), clip)
            err = point - truth
            errors.extend(err.tolist())
            inside.extend(((truth >= lo) & (truth <= hi)).tolist())
            per_twin[twin] = {"rows": int(ts.size), "rmse": round(float(np.sqrt(np.mean(err ** 2))), 3),
                              "last": round(float(point[-1]), 3)}
    report: dict[str, Any] = {"twins": len(twins), "start_us": start_us, "end_us": min(end_us, END),
                              "per_twin": per_twin}
    if spec.kind == "anomaly":
        report["rows"] = rows_total
        report["alarm_rate"] = round(alarms_total / rows_total, 4) if rows_total else None
    elif errors:
        e = np.asarray(errors)
        report["rmse_clipped_truth"] = round(float(np.sqrt(np.mean(e ** 2))), 3)
        report["p10_p90_coverage"] = round(float(np.mean(inside)), 3)
        report["note"] = "truth: rows to the end of each twin's history (run to failure), clipped at 125"
    registry.annotate(version.analytic, version.scope, version.version, backtest=report)
    return report
