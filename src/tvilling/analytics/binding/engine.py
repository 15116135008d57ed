"""The online analytics engine: an ingest observer that runs each twin's configured analytics.

After the pipeline stores a batch, the engine picks, per twin, the analytics whose model
the twin's model is or extends, builds rows of their inputs (one per timestamp, filled
forward from the twin's earlier values), and lets each runner learn or score. Outputs are
written back through the pipeline's derived-value path: reported properties (with the
analytic's name and version as the metadata source) and history, in one event per twin.

Per-twin analytics fit themselves on the twin's first ``train_rows`` rows; the fitted
model is registered as version 1 and promoted. Fleet analytics (``rul-fleet``) run the
promoted fleet version and wait (writing nothing) until one is trained. The version in
use is reloaded when another one is promoted (``reload``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.frames import ffill, history_rows, rows_of
from tvilling.analytics.binding.registry import AnalyticRegistry, dump_artifact, load_artifact
from tvilling.analytics.binding.runners import FleetRulRunner, Output, Runner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.core.readings import Readings
from tvilling.models.service import ModelRegistry

log = logging.getLogger("tvilling.analytics")
ANALYTICS_TRANSPORT = "analytics"
MARKER_EVERY_US = 10_000_000  # the analytics marker (version, drift) is refreshed at least every 10 s of data
Writer = Callable[[Readings, "npt.NDArray[np.object_]"], int]


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


class AnalyticsEngine:
    """Call it as a pipeline observer: ``pipeline.observers.append(engine)``; ``engine.writer`` stores outputs."""

    def __init__(self, specs: Sequence[AnalyticSpec], models: ModelRegistry, registry: AnalyticRegistry,
                 writer: Writer | None = None, history: Any = None) -> None:
        self.specs = [s for s in specs if s.enabled]
        self.models = models
        self.registry = registry
        self.writer = writer
        self.history = history
        self._runners: dict[tuple[str, str], Runner] = {}
        self._last: dict[tuple[str, str], npt.NDArray[np.float64]] = {}
        self._seen_ts: dict[tuple[str, str], int] = {}
        self._marker: dict[tuple[str, str], tuple[Any, int]] = {}
        self._by_model: dict[str, list[AnalyticSpec]] = {}
        self._lock = threading.RLock()
        self.failures: dict[tuple[str, str], str] = {}

    def spec(self, name: str) -> AnalyticSpec | None:
        return next((s for s in self.specs if s.name == name), None)

    def specs_for(self, model: str) -> list[AnalyticSpec]:
        found = self._by_model.get(model)
        if found is None:
            modelset = self.models.modelset
            found = []
            for s in self.specs:
                try:
                    if model in modelset and modelset.is_a(model, s.model):
                        found.append(s)
                except Exception:  # a spec naming a model that is not registered (yet) matches nothing
                    continue
            self._by_model[model] = found
        return found

    def reload(self, name: str | None = None) -> None:
        """Forget cached runners (of one analytic) so the promoted versions are loaded again."""
        with self._lock:
            self._by_model.clear()
            for key in [k for k in self._runners if name is None or k[0] == name]:
                del self._runners[key]

    def refresh(self) -> list[str]:
        """Reload runners whose promoted version changed elsewhere (CLI, another worker); returns their names."""
        changed: set[str] = set()
        with self._lock:
            for (name, twin), runner in list(self._runners.items()):
                promoted = self.registry.promoted(name, runner.scope)
                now = None if promoted is None else promoted.version
                if now != runner.version and (runner.version is not None or now is not None):
                    del self._runners[(name, twin)]
                    changed.add(name)
        return sorted(changed)

    # -- the observer ---------------------------------------------------------------------
    def __call__(self, readings: Readings, models: Mapping[str, str], transport: str) -> None:
        if transport == ANALYTICS_TRANSPORT or not self.specs:
            return
        outputs = self.process(readings, models)
        if outputs is not None and self.writer is not None:
            self.writer(*outputs)

    def process(self, readings: Readings, models: Mapping[str, str]) -> tuple[Readings, npt.NDArray[np.object_]] | None:
        """Outputs for a stored batch: (readings to write, the source of each), or None."""
        wanted = sorted({i for s in self.specs for i in s.columns})
        relevant = np.flatnonzero(np.isin(readings.prop, wanted))
        if not relevant.size:
            return None
        sub = readings.take(relevant)
        order = np.argsort(sub.twin, kind="stable")
        twins, starts = np.unique(sub.twin[order], return_index=True)
        bounds = np.append(starts, order.size)
        parts: list[Readings] = []
        sources: list[npt.NDArray[np.object_]] = []
        text_rows: list[tuple[str, str, int, Any]] = []
        text_sources: list[str] = []
        markers: dict[str, tuple[int, dict[str, Any]]] = {}
        with self._lock:
            for g, twin in enumerate(twins.tolist()):
                model = models.get(twin)
                specs = self.specs_for(model) if model is not None else []
                if not specs:
                    continue
                group = sub.take(order[bounds[g]:bounds[g + 1]])
                for spec in specs:
                    mask = np.isin(group.prop, spec.columns)
                    if not mask.any():
                        continue
                    key = (spec.name, twin)
                    try:
                        out, version = self._run(spec, twin, group, mask)
                    except Exception as exc:  # one analytic failing must not stop the others
                        why = f"{type(exc).__name__}: {exc}"
                        if self.failures.get(key) != why:
                            log.exception("analytic %s failed on twin %s", spec.name, twin)
                        self.failures[key] = why
                        continue
                    if version is not None:
                        self.failures.pop(key, None)
                    source = f"analytics:{spec.name}@{version}"
                    for name, ts, value in out:
                        if name == "analytics":  # one marker row per twin, naming every analytic that ran
                            at, merged = markers.get(twin, (ts, {}))
                            markers[twin] = (max(at, ts), {**merged, **value})
                        elif isinstance(ts, np.ndarray):  # a numeric column
                            n = ts.size
                            parts.append(Readings(np.full(n, twin, dtype=object), np.full(n, name, dtype=object),
                                                  ts.astype(np.int64), np.asarray(value, dtype=np.float64)))
                            sources.append(np.full(n, source, dtype=object))
                        else:
                            text_rows.append((twin, name, ts, value))
                            text_sources.append(source)
            for twin, (ts, merged) in markers.items():
                text_rows.append((twin, "analytics", ts, merged))
                text_sources.append("analytics")
        if text_rows:
            parts.append(Readings.from_rows(text_rows))
            sources.append(np.asarray(text_sources, dtype=object))
        if not parts:
            return None
        return Readings.concat(parts), np.concatenate(sources)

    def _run(self, spec: AnalyticSpec, twin: str, readings: Readings,
             mask: npt.NDArray[np.bool_]) -> tuple[list[Output], int | None]:
        ts, X = rows_of(readings, mask, spec.columns)
        key = (spec.name, twin)
        seen = self._seen_ts.get(key)
        if seen is not None:  # rows at or before the newest one already scored arrive late: state moves forward only
            newer = ts > seen
            ts, X = ts[newer], X[newer]
            if not ts.size:
                return [], None
        X = ffill(X, self._last.get(key))
        self._last[key] = X[-1].copy()
        self._seen_ts[key] = int(ts[-1])
        complete = ~np.isnan(X).any(axis=1)
        ts, X = ts[complete], X[complete]
        if not ts.size:
            return [], None
        runner = self._runner(spec, twin)
        history = self.history() if callable(self.history) else self.history
        if isinstance(runner, FleetRulRunner) and runner.fitted and not runner.seeded and history is not None:
            _before_ts, before = history_rows(history, twin, spec.inputs, 0, int(ts[0]))
            runner.seed(before)
        if not runner.fitted:
            if not spec.per_twin:
                return [], None
            ts, X, train = runner.take_training(ts, X)
            if train is None:
                return [], None
            metrics = runner.fit(train)
            promote = self.registry.promoted(spec.name, twin) is None  # a version promoted meanwhile wins
            v = self.registry.add(spec.name, twin, dump_artifact(runner.artifact()), fingerprint=spec.fingerprint,
                                  params=dict(spec.params), metrics=metrics, promote=promote)
            if not promote:
                del self._runners[key]
                return [], None
            runner.version = v.version
            log.info("analytic %s fitted for %s: version %d", spec.name, twin, v.version)
            if not ts.size:
                return [], runner.version
        out = runner.run(ts, X)
        marker: dict[str, Any] = {"version": runner.version, "time": _iso(int(ts[-1]))}
        scoring = getattr(runner, "scoring", None)
        if scoring is not None:
            marker["scoring"] = scoring
        trend = getattr(runner, "trend", None)
        if trend is not None:
            marker["trend"] = trend
        confidence = getattr(runner, "family_confidence", None)
        if confidence is not None:
            marker["fault_confidence"] = confidence
        if runner.drift is not None:
            report = runner.drift.report(list(spec.inputs))
            marker["drift"] = report
            self._note_drift(spec, twin, runner, report)
        # the marker is written when what it says changes, and at most every MARKER_EVERY_US of data time
        gist = (runner.version, confidence, scoring, trend, None if runner.drift is None else report["drifting"],
                None if runner.drift is None else round(float(report["input_shift"]), 1))
        last = self._marker.get(key)
        if last is None or last[0] != gist or int(ts[-1]) - last[1] >= MARKER_EVERY_US:
            self._marker[key] = (gist, int(ts[-1]))
            out.append(("analytics", int(ts[-1]), {spec.name: marker}))
        return out, runner.version

    def _note_drift(self, spec: AnalyticSpec, twin: str, runner: Runner, report: dict[str, Any]) -> None:
        was = getattr(runner, "_drifting", False)
        if report["drifting"] != was:
            runner._drifting = report["drifting"]  # type: ignore[attr-defined]
            if report["drifting"]:
                log.warning("analytic %s on %s is drifting: %s", spec.name, twin, report)
            if runner.version is not None:
                self.registry.annotate(spec.name, runner.scope, runner.version, drift={**report, "twin": twin})

    def _runner(self, spec: AnalyticSpec, twin: str) -> Runner:
        key = (spec.name, twin)
        runner = self._runners.get(key)
        if runner is None:
            scope = twin if spec.per_twin else FLEET
            runner = make_runner(spec, scope)
            promoted = self.registry.promoted(spec.name, scope)
            if promoted is not None and promoted.fingerprint != spec.fingerprint:
                why = (f"version {promoted.version} of {spec.name!r} ({scope}) was trained with another "
                       f"configuration (fingerprint {promoted.fingerprint}, now {spec.fingerprint})")
                if spec.per_twin:
                    log.warning("%s: the twin learns afresh", why)
                else:
                    self.failures[key] = f"{why}: retrain it (tvilling analytics train)"
                    log.warning("%s: retrain it", why)
                promoted = None
            if promoted is not None:
                runner.load(load_artifact(self.registry.artifact(spec.name, scope, promoted.version)),
                            promoted.version)
            self._runners[key] = runner
        return runner
