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
from tvilling.history.readings import Readings
from tvilling.models.service import ModelRegistry

log = logging.getLogger("tvilling.analytics")
ANALYTICS_TRANSPORT = "analytics"
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
                if runner.version is not None and now != runner.version:
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
        rows: list[tuple[str, str, int, Any]] = []
        sources: list[str] = []
        markers: dict[str, tuple[int, dict[str, Any]]] = {}
        with self._lock:
            twins, _first = np.unique(readings.twin, return_index=True)
            for twin in twins.tolist():
                model = models.get(twin)
                if model is None:
                    continue
                specs = self.specs_for(model)
                if not specs:
                    continue
                is_twin = readings.twin == twin
                for spec in specs:
                    mask = is_twin & np.isin(readings.prop, spec.inputs)
                    if not mask.any():
                        continue
                    try:
                        out, version = self._run(spec, twin, readings, mask)
                    except Exception as exc:  # one analytic failing must not stop the others
                        key = (spec.name, twin)
                        if key not in self.failures:
                            log.exception("analytic %s failed on twin %s", spec.name, twin)
                        self.failures[key] = f"{type(exc).__name__}: {exc}"
                        continue
                    if not out:
                        continue
                    source = f"analytics:{spec.name}@{version}"
                    for name, ts, value in out:
                        if name == "analytics":  # one marker row per twin, naming every analytic that ran
                            at, merged = markers.get(twin, (ts, {}))
                            markers[twin] = (max(at, ts), {**merged, **value})
                            continue
                        rows.append((twin, name, ts, value))
                        sources.append(source)
            for twin, (ts, merged) in markers.items():
                rows.append((twin, "analytics", ts, merged))
                sources.append("analytics")
        if not rows:
            return None
        return Readings.from_rows(rows), np.asarray(sources, dtype=object)

    def _run(self, spec: AnalyticSpec, twin: str, readings: Readings,
             mask: npt.NDArray[np.bool_]) -> tuple[list[Output], int | None]:
        ts, X = rows_of(readings, mask, spec.inputs)
        key = (spec.name, twin)
        X = ffill(X, self._last.get(key))
        self._last[key] = X[-1].copy()
        complete = ~np.isnan(X).any(axis=1)
        ts, X = ts[complete], X[complete]
        if not ts.size:
            return [], None
        runner = self._runner(spec, twin)
        if isinstance(runner, FleetRulRunner) and runner.fitted and not runner.seeded and self.history is not None:
            _before_ts, before = history_rows(self.history, twin, spec.inputs, 0, int(ts[0]))
            runner.seed(before)
        if not runner.fitted:
            if not spec.per_twin:
                return [], None
            ts, X, train = runner.take_training(ts, X)
            if train is None:
                return [], None
            metrics = runner.fit(train)
            v = self.registry.add(spec.name, twin, dump_artifact(runner.artifact()), fingerprint=spec.fingerprint,
                                  params=dict(spec.params), metrics=metrics, promote=True)
            runner.version = v.version
            log.info("analytic %s fitted for %s: version %d", spec.name, twin, v.version)
            if not ts.size:
                return [], runner.version
        out = runner.run(ts, X)
        marker: dict[str, Any] = {"version": runner.version, "time": _iso(int(ts[-1]))}
        confidence = getattr(runner, "family_confidence", None)
        if confidence is not None:
            marker["fault_confidence"] = confidence
        if runner.drift is not None:
            report = runner.drift.report(list(spec.inputs))
            marker["drift"] = report
            self._note_drift(spec, twin, runner, report)
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
            if promoted is not None:
                runner.load(load_artifact(self.registry.artifact(spec.name, scope, promoted.version)),
                            promoted.version)
            self._runners[key] = runner
        return runner
