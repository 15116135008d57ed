"""The analytics step: ``process(batch, state) -> outputs``, over values only.

:func:`process` picks, per twin of the batch, the analytics whose model the twin's model is or
extends, builds rows of their inputs (one per timestamp, filled forward from the twin's earlier
values; rows older than the newest already scored are left out), and lets each runner learn, then
score or predict. It calls no registry, history, store or clock: time comes from the readings.

The state is carried in the :class:`AnalyticsState` object, which ``process`` updates in place
(runners, fill-forward rows, markers, failures): copying a runner's fitted model for every batch
would cost more than the scoring itself. A what-if run or a shard that must leave a state as it
was works on :meth:`AnalyticsState.copy`. A runner the state lacks is created fresh (it learns from
the batch); the engine (:mod:`tvilling.analytics.binding.engine`) first puts there the runners of
the promoted versions, and carries out the requests in the :class:`~.outputs.Outputs` afterwards.

>>> import numpy as np
>>> from tvilling.analytics.binding import parse_specs
>>> from tvilling.core.readings import Readings
>>> spec = parse_specs([{"name": "a", "model": "dtmi:x:M", "method": "univariate", "inputs": ["v"],
...                      "train_rows": 10}])
>>> state = AnalyticsState(spec)
>>> r = Readings(np.full(12, "t1", dtype=object), np.full(12, "v", dtype=object),
...              np.arange(12, dtype=np.int64) * 1_000_000, np.linspace(1.0, 1.2, 12))
>>> out = process(Batch(r, {"t1": "dtmi:x:M;1"}), state)
>>> [(f.analytic, f.scope, f.metrics["train_rows"]) for f in out.fitted]
[('a', 't1', 10)]
>>> sorted({str(s) for s in out.derived()[1]})
['analytics', 'analytics:a@new']
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.frames import new_rows, rows_of
from tvilling.analytics.binding.outputs import RUNNING, Drifted, Failed, Fitted, Key, Outputs
from tvilling.analytics.binding.registry import dump_artifact
from tvilling.analytics.binding.runners import Runner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.core.ids import parse_dtmi
from tvilling.core.readings import Readings
from tvilling.models.modelset import ModelSet

MARKER_EVERY_US = 10_000_000  # the analytics marker (version, drift) is refreshed at least every 10 s of data


@dataclass(frozen=True, eq=False)
class Batch:
    """Stored readings and the model of each of their twins (``modelset`` resolves "is or extends";
    without one an analytic binds to twins of its own model, any version)."""

    readings: Readings
    models: Mapping[str, str]
    modelset: ModelSet | None = None


@dataclass(eq=False)
class AnalyticsState:
    """What the analytics carry from batch to batch, per (analytic, twin): runners (with their fitted
    models), the last filled-forward row, the newest timestamp scored, the last marker written, the
    last failure, and the data time of the last maintenance reset (see :mod:`.maintenance`)."""

    specs: Sequence[AnalyticSpec]
    runners: dict[Key, Runner] = field(default_factory=dict)
    last: dict[Key, npt.NDArray[np.float64]] = field(default_factory=dict)
    seen: dict[Key, int] = field(default_factory=dict)
    markers: dict[Key, tuple[Any, int]] = field(default_factory=dict)
    failures: dict[Key, str] = field(default_factory=dict)
    resets: dict[Key, int] = field(default_factory=dict)  # data time a maintenance reset cut the history at
    unavailable: set[Key] = field(default_factory=set)  # runners the shell could not load this batch
    columns: list[str] = field(init=False, default_factory=list)  # every input of every analytic
    _bound: dict[str, tuple[AnalyticSpec, ...]] = field(default_factory=dict)
    _bound_with: ModelSet | None = None

    def __post_init__(self) -> None:
        self.specs = tuple(s for s in self.specs if s.enabled)
        self.columns = sorted({c for s in self.specs for c in s.columns})

    def specs_for(self, model: str, modelset: ModelSet | None) -> tuple[AnalyticSpec, ...]:
        """The analytics bound to twins of ``model`` (remembered until another model set comes)."""
        if modelset is not self._bound_with:
            self._bound, self._bound_with = {}, modelset
        found = self._bound.get(model)
        if found is None:
            found = tuple(s for s in self.specs if _binds(model, s.model, modelset))
            self._bound[model] = found
        return found

    def runner(self, spec: AnalyticSpec, twin: str) -> Runner:
        """The runner of ``spec`` on ``twin``: the one held, or a fresh one that will learn."""
        key = (spec.name, twin)
        found = self.runners.get(key)
        if found is None:
            found = self.runners[key] = make_runner(spec, twin if spec.per_twin else FLEET)
        return found

    def settle(self, key: Key, version: int) -> None:
        """The registry numbered the version ``key`` fitted: its runner and marker carry the number."""
        runner = self.runners.get(key)
        if runner is not None:
            runner.version = version
        marker = self.markers.get(key)
        if marker is not None and marker[0][0] is None:
            self.markers[key] = ((version, *marker[0][1:]), marker[1])

    def forget(self, name: str | None = None) -> None:
        """Drop the runners (of one analytic) and the model bindings: they are built again on use."""
        self._bound, self._bound_with = {}, None
        for key in [k for k in self.runners if name is None or k[0] == name]:
            del self.runners[key]

    def copy(self) -> AnalyticsState:
        """An independent copy (runners and their models included), sharing the specs and model set."""
        memo: dict[int, Any] = {id(s): s for s in self.specs}
        if self._bound_with is not None:
            memo[id(self._bound_with)] = self._bound_with
        return copy.deepcopy(self, memo)


def _binds(model: str, base: str, modelset: ModelSet | None) -> bool:
    if modelset is None:
        try:
            return model == base or parse_dtmi(model).unversioned == base
        except Exception:  # not a model id: binds to nothing
            return False
    try:
        return model in modelset and modelset.is_a(model, base)
    except Exception:  # a spec naming a model that is not registered (yet) matches nothing
        return False


def process(batch: Batch, state: AnalyticsState) -> Outputs:
    """Run the bound analytics over a stored batch; ``state`` moves forward, the outputs come back."""
    out = Outputs()
    readings = batch.readings
    if not state.specs or not len(readings):
        return out
    relevant = np.flatnonzero(np.isin(readings.prop, state.columns))
    if not relevant.size:
        return out
    sub = readings.take(relevant)
    order = np.argsort(sub.twin, kind="stable")
    twins, starts = np.unique(sub.twin[order], return_index=True)
    bounds = np.append(starts, order.size)
    for g, twin in enumerate(twins.tolist()):
        model = batch.models.get(twin)
        specs = state.specs_for(model, batch.modelset) if model is not None else ()
        if not specs:
            continue
        group = sub.take(order[bounds[g]:bounds[g + 1]])
        for spec in specs:
            mask = np.isin(group.prop, spec.columns)
            if mask.any():
                _step(spec, twin, group, mask, state, out)
    return out


def pending_start(spec: AnalyticSpec, twin: str, readings: Readings, state: AnalyticsState) -> int | None:
    """The time of the first complete row ``process`` would give the runner of ``spec`` on ``twin`` from
    ``readings``, without moving the state; None when there is none (what a fleet runner is seeded up to)."""
    mask = (readings.twin == twin) & np.isin(readings.prop, spec.columns)
    if not mask.any():
        return None
    key = (spec.name, twin)
    ts, X = rows_of(readings, mask, spec.columns)
    ts, X, _ = new_rows(ts, X, state.last.get(key), state.seen.get(key))
    complete = np.flatnonzero(~np.isnan(X).any(axis=1))
    return int(ts[complete[0]]) if complete.size else None


def _step(spec: AnalyticSpec, twin: str, readings: Readings, mask: npt.NDArray[np.bool_], state: AnalyticsState,
          out: Outputs) -> None:
    key = (spec.name, twin)
    try:
        ran = _run(spec, twin, readings, mask, state, out)
    except Exception as exc:  # one analytic failing must not stop the others
        why = f"{type(exc).__name__}: {exc}"
        if state.failures.get(key) != why:
            out.failed.append(Failed(key, why, exc))
        state.failures[key] = why
        return
    if ran:
        state.failures.pop(key, None)


def _run(spec: AnalyticSpec, twin: str, readings: Readings, mask: npt.NDArray[np.bool_], state: AnalyticsState,
         out: Outputs) -> bool:
    """One analytic on one twin's rows; whether its runner is fitted and took them."""
    key = (spec.name, twin)
    ts, X = rows_of(readings, mask, spec.columns)
    ts, X, last = new_rows(ts, X, state.last.get(key), state.seen.get(key))
    if last is None:
        return False
    state.last[key] = last
    state.seen[key] = int(ts[-1])
    complete = ~np.isnan(X).any(axis=1)
    ts, X = ts[complete], X[complete]
    if not ts.size or key in state.unavailable:
        return False
    runner = state.runner(spec, twin)
    if not runner.fitted:
        if not spec.per_twin:  # a fleet model waits until one is trained and promoted
            return False
        ts, X, train = runner.take_training(ts, X)
        if train is None:
            return False
        metrics = runner.fit(train)  # the version is the registry's to number: None until the shell settles it
        out.fitted.append(Fitted(key, spec.name, runner.scope, dump_artifact(runner.artifact()),
                                 spec.fingerprint, dict(spec.params), metrics))
        if not ts.size:
            return True
    items = runner.run(ts, X)
    out.add(key, runner.version, items, _marker(spec, twin, runner, int(ts[-1]), state, out))
    return True


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def _marker(spec: AnalyticSpec, twin: str, runner: Runner, now: int, state: AnalyticsState,
            out: Outputs) -> tuple[int, dict[str, Any]] | None:
    """What the analytic says about itself (version, time, scoring, trend, drift), when that changed or
    ``MARKER_EVERY_US`` of data time passed since it was last written."""
    key = (spec.name, twin)
    marker: dict[str, Any] = {"version": runner.version, "time": _iso(now), "status": RUNNING}
    scoring = getattr(runner, "scoring", None)
    if scoring is not None:
        marker["scoring"] = scoring
    trend = getattr(runner, "trend", None)
    if trend is not None:
        marker["trend"] = trend
    confidence = getattr(runner, "family_confidence", None)
    if confidence is not None:
        marker["fault_confidence"] = confidence
    report: dict[str, Any] | None = None
    if runner.drift is not None:
        report = runner.drift.report(list(spec.inputs))
        marker["drift"] = report
        if report["drifting"] != runner.drifting:
            runner.drifting = bool(report["drifting"])
            out.drifted.append(Drifted(key, spec.name, runner.scope, runner.version, {**report, "twin": twin}))
    gist = (runner.version, confidence, scoring, trend, None if report is None else report["drifting"],
            None if report is None else round(float(report["input_shift"]), 1))
    last = state.markers.get(key)
    if last is not None and last[0] == gist and now - last[1] < MARKER_EVERY_US:
        return None
    state.markers[key] = (gist, now)
    return now, marker


__all__ = ["MARKER_EVERY_US", "AnalyticsState", "Batch", "pending_start", "process"]
