"""The online analytics engine: the I/O shell around the pure step, observing the ingest pipeline.

After the pipeline stores a batch, the engine

1. reads what the step needs: the runners of the promoted versions (registry) for the twins the
   batch touches, and, for a fleet model about to predict for a twin, that twin's earlier rows
   (history);
2. calls :func:`~tvilling.analytics.binding.step.process` — no I/O there;
3. carries out the requests in its outputs: registers a per-twin analytic's fitted version (and
   promotes it unless another was promoted meanwhile), keeps drift reports with the version;
4. writes the derived readings through the writer it was built with: reported properties (with the
   analytic's name and version as the metadata source) and history.

Per-twin analytics fit themselves on the twin's first ``train_rows`` rows; the fitted model is
registered as version 1 and promoted. Fleet analytics (``rul-fleet``) run the promoted fleet
version and wait (writing nothing) until one is trained. The version in use is reloaded when
another one is promoted (``reload``, or ``refresh`` for promotions made elsewhere).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.frames import history_rows
from tvilling.analytics.binding.outputs import Key, Outputs
from tvilling.analytics.binding.registry import AnalyticRegistry, load_artifact
from tvilling.analytics.binding.runners import FleetRulRunner, Runner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.analytics.binding.step import MARKER_EVERY_US, AnalyticsState, Batch, pending_start, process
from tvilling.core.readings import Readings
from tvilling.models.service import ModelRegistry

log = logging.getLogger("tvilling.analytics")
ANALYTICS_TRANSPORT = "analytics"
Writer = Callable[[Readings, "npt.NDArray[np.object_]"], int]
"""Stores derived readings with the source of each; returns how many were stored."""

__all__ = ["ANALYTICS_TRANSPORT", "MARKER_EVERY_US", "AnalyticsEngine", "Writer"]


class AnalyticsEngine:
    """The configured analytics over stored batches: call it as a pipeline observer.

    ``writer`` stores the outputs (None: they are computed and dropped); ``history`` (a store, or a
    callable returning one, so that it opens only when a fleet model needs it) seeds fleet models
    with a twin's earlier rows.
    """

    def __init__(self, specs: Sequence[AnalyticSpec], models: ModelRegistry, registry: AnalyticRegistry,
                 writer: Writer | None = None, history: Any = None) -> None:
        self.state = AnalyticsState(specs)
        self.models = models
        self.registry = registry
        self._writer = writer
        self._history = history
        self._lock = threading.RLock()

    @property
    def specs(self) -> Sequence[AnalyticSpec]:
        """The enabled analytics."""
        return self.state.specs

    @property
    def failures(self) -> dict[Key, str]:
        """The last failure of each (analytic, twin) that has not run cleanly since."""
        return self.state.failures

    @property
    def writer(self) -> Writer | None:
        """Where outputs go (given at construction)."""
        return self._writer

    def spec(self, name: str) -> AnalyticSpec | None:
        """The enabled analytic called ``name``."""
        return next((s for s in self.specs if s.name == name), None)

    def specs_for(self, model: str) -> list[AnalyticSpec]:
        """The analytics bound to twins of ``model`` (it or a model it extends)."""
        with self._lock:
            return list(self.state.specs_for(model, self.models.modelset))

    def reload(self, name: str | None = None) -> None:
        """Forget cached runners (of one analytic) so the promoted versions are loaded again."""
        with self._lock:
            self.state.forget(name)

    def refresh(self) -> list[str]:
        """Reload runners whose promoted version changed elsewhere (CLI, another worker); returns their names."""
        changed: set[str] = set()
        with self._lock:
            for (name, twin), runner in list(self.state.runners.items()):
                promoted = self.registry.promoted(name, runner.scope)
                now = None if promoted is None else promoted.version
                if now != runner.version and (runner.version is not None or now is not None):
                    del self.state.runners[(name, twin)]
                    changed.add(name)
        return sorted(changed)

    # -- the observer ---------------------------------------------------------------------
    def __call__(self, readings: Readings, models: Mapping[str, str], transport: str) -> None:
        if transport == ANALYTICS_TRANSPORT or not self.specs:
            return
        self.handle(readings, models)

    def handle(self, readings: Readings, models: Mapping[str, str]) -> int:
        """Run the analytics over a stored batch and store what they derive; returns how many readings."""
        derived = self.outputs(readings, models).derived()
        if derived is None or self._writer is None:
            return 0
        return self._writer(*derived)

    def outputs(self, readings: Readings, models: Mapping[str, str]) -> Outputs:
        """Read what the step needs, run it, register what it fitted; the outputs, not yet written."""
        with self._lock:
            batch = Batch(readings, models, self.models.modelset)
            self._load(batch)
            out = process(batch, self.state)
            self._register(out)
        for failed in out.failed:
            log.error("analytic %s failed on twin %s", *failed.key, exc_info=failed.error)
        return out

    # -- reads before the step ------------------------------------------------------------
    def _load(self, batch: Batch) -> None:
        """Put the runners of the promoted versions in the state for the twins the batch touches, and
        seed a fleet model with a twin's earlier rows before it first predicts for it."""
        state = self.state
        state.unavailable.clear()
        readings = batch.readings
        for spec in state.specs:
            touched = np.isin(readings.prop, spec.columns)
            if not touched.any():
                continue
            for twin in set(readings.twin[touched].tolist()):
                key = (spec.name, twin)
                try:
                    runner = state.runners.get(key)
                    if runner is None:
                        model = batch.models.get(twin)
                        if model is None or spec not in state.specs_for(model, batch.modelset):
                            continue
                        runner = state.runners[key] = self._promoted(spec, twin)
                    if isinstance(runner, FleetRulRunner) and runner.fitted and not runner.seeded:
                        self._seed(runner, spec, twin, batch)
                except Exception as exc:  # the registry or history failing for one twin must not stop the others
                    why = f"{type(exc).__name__}: {exc}"
                    if state.failures.get(key) != why:
                        log.exception("analytic %s cannot be loaded for twin %s", spec.name, twin)
                    state.failures[key] = why
                    state.runners.pop(key, None)
                    state.unavailable.add(key)

    def _promoted(self, spec: AnalyticSpec, twin: str) -> Runner:
        scope = twin if spec.per_twin else FLEET
        runner = make_runner(spec, scope)
        promoted = self.registry.promoted(spec.name, scope)
        if promoted is not None and promoted.fingerprint != spec.fingerprint:
            why = (f"version {promoted.version} of {spec.name!r} ({scope}) was trained with another "
                   f"configuration (fingerprint {promoted.fingerprint}, now {spec.fingerprint})")
            if spec.per_twin:
                log.warning("%s: the twin learns afresh", why)
            else:
                self.state.failures[(spec.name, twin)] = f"{why}: retrain it (tvilling analytics train)"
                log.warning("%s: retrain it", why)
            promoted = None
        if promoted is not None:
            runner.load(load_artifact(self.registry.artifact(spec.name, scope, promoted.version)), promoted.version)
        return runner

    def _seed(self, runner: FleetRulRunner, spec: AnalyticSpec, twin: str, batch: Batch) -> None:
        history = self._history() if callable(self._history) else self._history
        if history is None:
            return
        start = pending_start(spec, twin, batch.readings, self.state)
        if start is not None:
            _ts, before = history_rows(history, twin, spec.inputs, 0, start)
            runner.seed(before)

    # -- writes after the step ------------------------------------------------------------
    def _register(self, out: Outputs) -> None:
        """Register (and promote) fitted versions; keep drift reports with the versions in use."""
        settled: dict[Key, int] = {}
        for fit in out.fitted:
            try:
                promote = self.registry.promoted(fit.analytic, fit.scope) is None  # one promoted meanwhile wins
                v = self.registry.add(fit.analytic, fit.scope, fit.artifact, fingerprint=fit.fingerprint,
                                      params=fit.params, metrics=fit.metrics, promote=promote)
            except Exception as exc:  # not registered: nothing of it is written, and the twin learns again
                log.exception("analytic %s: the version fitted for %s cannot be registered", *fit.key)
                self.state.failures[fit.key] = f"{type(exc).__name__}: {exc}"
                promote = False
            if not promote:
                self.state.runners.pop(fit.key, None)
                out.drop(fit.key)
                continue
            settled[fit.key] = v.version
            self.state.settle(fit.key, v.version)
            out.settle(fit.key, v.version)
            log.info("analytic %s fitted for %s: version %d", fit.analytic, fit.key[1], v.version)
        for drift in out.drifted:
            if drift.report["drifting"]:
                log.warning("analytic %s on %s is drifting: %s", drift.analytic, drift.key[1], drift.report)
            version = drift.version if drift.version is not None else settled.get(drift.key)
            if version is None:
                continue
            try:
                self.registry.annotate(drift.analytic, drift.scope, version, drift=drift.report)
            except Exception:  # the report is on the twin's marker still; the next change is kept again
                log.exception("analytic %s: the drift report of version %d cannot be kept", drift.analytic, version)
