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

Crash safety: given a cursor store, the engine follows the history's readings feed instead of the
batches handed to it. It keeps the feed position of the last batch it analysed under the cursor
``analytics``, saved after the batch's outputs are written; the observer call and the runtime's
consumer (:mod:`tvilling.runtime.analytics`) both go through :meth:`AnalyticsEngine.take`, which
analyses a batch only if it lies after that position, in feed order. A batch stored before a crash
and not analysed is therefore analysed when the runtime starts again; a batch is analysed twice
only when the process dies between writing its outputs and saving the position. Derived batches
(the outputs, written inside the store's ``deriving()`` block) are passed over.

Per-twin analytics fit themselves on the twin's first ``train_rows`` rows; the fitted model is
registered as version 1 and promoted. After maintenance, :meth:`AnalyticsEngine.reset` makes a twin's
analytics start again (:mod:`tvilling.analytics.binding.maintenance`). Fleet analytics (``rul-fleet``)
run the promoted fleet version and wait (writing nothing) until one is trained. The version in use is reloaded when
another one is promoted (``reload``, or ``refresh`` for promotions made elsewhere).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.frames import history_rows
from tvilling.analytics.binding.maintenance import Reset, forget, reset_after, reset_outputs
from tvilling.analytics.binding.outputs import Key, Outputs
from tvilling.analytics.binding.registry import AnalyticRegistry, load_artifact
from tvilling.analytics.binding.runners import FleetRulRunner, Runner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.analytics.binding.step import MARKER_EVERY_US, AnalyticsState, Batch, pending_start, process
from tvilling.core.readings import Readings
from tvilling.history.ports import FeedBatch
from tvilling.models.service import ModelRegistry
from tvilling.streams.offsets import CursorStore

log = logging.getLogger("tvilling.analytics")
ANALYTICS_TRANSPORT = "analytics"
CURSOR = "analytics"  # the cursor holding the feed position + 1 of the last batch analysed (0: never saved)
FEED_ROWS = 100_000  # rows of the feed read at a time
Writer = Callable[[Readings, "npt.NDArray[np.object_]"], int]
"""Stores derived readings with the source of each; returns how many were stored."""

__all__ = ["ANALYTICS_TRANSPORT", "CURSOR", "MARKER_EVERY_US", "AnalyticsEngine", "Writer"]


class AnalyticsEngine:
    """The configured analytics over stored batches: call it as a pipeline observer.

    ``writer`` stores the outputs (None: they are computed and dropped); ``history`` (a store, or a
    callable returning one, so that it opens only when a fleet model needs it) seeds fleet models
    with a twin's earlier rows. ``cursors`` (see :meth:`follow`, which can also give it later) makes
    the engine follow history's readings feed from a saved position; ``twins`` (a twin store) tells
    the model of a twin in a batch read back from the feed.
    """

    def __init__(self, specs: Sequence[AnalyticSpec], models: ModelRegistry, registry: AnalyticRegistry,
                 writer: Writer | None = None, history: Any = None, *, cursors: CursorStore | None = None,
                 twins: Any = None) -> None:
        self.state = AnalyticsState(specs)
        self.models = models
        self.registry = registry
        self._writer = writer
        self._history = history
        self._lock = threading.RLock()
        self._feed_lock = threading.RLock()  # one batch of the feed at a time, in order
        self._cursors: CursorStore | None = None
        self._twins: Any = twins
        self._position: int | None = None
        if cursors is not None:
            self.follow(cursors, twins=twins)

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

    # -- following the readings feed ---------------------------------------------------------
    def follow(self, cursors: CursorStore, *, twins: Any = None) -> None:
        """Follow history's readings feed from the position saved in ``cursors`` (analyse what comes after).

        A cursor never saved starts at the feed's head: what history held before is taken as analysed
        (it was, by the observer of an earlier version, or never configured), and the position is saved
        at once, so that a batch stored after this call is analysed even if the process dies first.
        """
        store = self._store()
        if store is None or not hasattr(store, "batches_after"):
            raise ValueError("following the readings feed needs a history store that has one")
        with self._feed_lock:
            self._cursors = cursors
            if twins is not None:
                self._twins = twins
            saved = cursors.cursor(CURSOR)
            if saved == 0:
                self._position = int(store.head())
                cursors.set_cursor(CURSOR, self._position + 1)
            else:
                self._position = saved - 1

    @property
    def following(self) -> bool:
        """True when the engine follows the readings feed (see :meth:`follow`)."""
        return self._cursors is not None

    @property
    def position(self) -> int | None:
        """The feed position of the last batch analysed (None: not following the feed)."""
        return self._position

    def catch_up(self, models: Mapping[str, str] | None = None, *, max_rows: int = FEED_ROWS) -> int:
        """Analyse every batch of the feed after the saved position; returns how many batches were taken.

        ``models``: twin → model for twins the caller knows already (the rest are read from the twins).
        """
        store = self._store()
        taken = 0
        with self._feed_lock:
            while self._position is not None:
                page = store.batches_after(self._position, max_rows)
                if not page:
                    break
                for batch in page:
                    taken += self.take(batch, models)
        return taken

    def take(self, batch: FeedBatch, models: Mapping[str, str] | None = None) -> int:
        """Analyse one batch of the feed if it lies after the saved position, write what the analytics
        derive, then save its position; returns 1 if it was taken, 0 if it was analysed before.

        Batches must come in feed order (positions may skip numbers). A derived batch is passed over.
        """
        with self._feed_lock:
            if self._cursors is None or self._position is None:
                raise ValueError("take() needs an engine that follows the readings feed (call follow())")
            if batch.position <= self._position:
                return 0
            if not batch.derived and self.specs and len(batch.readings):
                twins = sorted(set(batch.readings.twin.tolist()))
                known = dict(models or {})
                missing = [t for t in twins if t not in known]
                if missing and self._twins is not None:
                    known.update({k: t.model for k, t in self._twins.get_many(missing).items()})
                derived = self.outputs(batch.readings, known).derived()
                if derived is not None and self._writer is not None:
                    store = self._store()
                    with store.deriving():  # the outputs are not fed back to the analytics
                        self._writer(*derived)
            self._cursors.set_cursor(CURSOR, batch.position + 1)
            self._position = batch.position
            return 1

    def _store(self) -> Any:
        return self._history() if callable(self._history) else self._history

    # -- the observer ---------------------------------------------------------------------
    def __call__(self, readings: Readings, models: Mapping[str, str], transport: str) -> None:
        if transport == ANALYTICS_TRANSPORT or not self.specs:
            return
        if self.following:  # the batch just stored is in the feed: take it (and any before it) from there
            self.catch_up(models)
            return
        self.handle(readings, models)

    def handle(self, readings: Readings, models: Mapping[str, str]) -> int:
        """Run the analytics over a stored batch and store what they derive; returns how many readings."""
        with self._feed_lock:  # a reset waits for a batch's outputs to be written, and a batch for a reset's
            derived = self.outputs(readings, models).derived()
            if derived is None or self._writer is None:
                return 0
            return self._writer(*derived)

    # -- maintenance ----------------------------------------------------------------------
    def reset(self, models: Mapping[str, str], *, reason: str, at: datetime | None = None,
              by: str = "analytics") -> list[Reset]:
        """Start the analytics bound to each twin (twin → model) again as at first start: after maintenance.

        Per-twin analytics retire their promoted version and learn anew; fleet analytics start the
        twin's history again. The twins' outputs are removed and their markers say ``learning``
        (see :mod:`tvilling.analytics.binding.maintenance`). Returns what was reset.
        """
        when = at or datetime.now(UTC)
        done: list[Reset] = []
        with self._feed_lock, self._lock:
            for twin, model in models.items():
                for spec in self.state.specs_for(model, self.models.modelset):
                    retired = self.registry.retire(spec.name, twin) if spec.per_twin else None
                    after = forget(self.state, (spec.name, twin))
                    done.append(Reset(spec.name, twin, None if retired is None else retired.version, after))
            derived = reset_outputs(done, {s.name: s for s in self.specs}, reason=reason, at=when, by=by)
            if derived is not None and self._writer is not None:
                if self.following:
                    with self._store().deriving():  # not analysed: the outputs of the analytics
                        self._writer(*derived)
                else:
                    self._writer(*derived)
        for r in done:
            log.info("analytic %s on %s reset (%s): it learns again", r.analytic, r.twin, reason)
        return done

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
        history = self._store()
        if history is None:
            return
        start = pending_start(spec, twin, batch.readings, self.state)
        if start is not None:
            after = self._reset_after(spec, twin)  # a maintained twin's history starts after its reset
            _ts, before = history_rows(history, twin, spec.inputs, 0 if after is None else after + 1, start)
            runner.seed(before)

    def _reset_after(self, spec: AnalyticSpec, twin: str) -> int | None:
        key = (spec.name, twin)
        after = self.state.resets.get(key)
        if after is None and self._twins is not None:  # reset before a restart: the twin's marker keeps it
            found = self._twins.get_many([twin]).get(twin)
            after = None if found is None else reset_after(found.reported.get("analytics"), spec.name)
            if after is not None:
                self.state.resets[key] = after
        return after

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
