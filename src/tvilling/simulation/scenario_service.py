"""What-if scenarios of live twins: checked at once, run off the caller's thread on a fork, kept in the backend.

:meth:`ScenarioService.submit` reads a request (:mod:`.scenario_request`), finds the simulation bound
to the twin's model, forks the backend at ``at`` (the twin and the twins its relationships reach:
its parts), starts from the fork's reported state (:func:`.scenario_machine.start_from_reported`)
and checks the whole scenario against the model before it answers; the run itself goes on in a
worker thread, saving its progress to the backend's scenario store (whose change feed is the
stream source ``scenarios``). The live backend is only read: the fork is in memory and closed
after the start is taken, and the run touches nothing but the scenario store.

Parameters: the model's defaults, overlaid by the configuration and the promoted versions of the
fleet and the twin (:mod:`.binding_versions`). A calibrated version's standard errors are the
uncertainty of its parameters; a parameter without one gets :data:`DEFAULT_RELATIVE_SE` of its value.

Analytics: given the live analytics engine, the analytics bound to the twin and its parts are copied
at the fork (:func:`.scenario_analytics.fork_analytics`) and run on each option's simulated series
after the run (:func:`.scenario_analytics.analyse`); their KPIs (first anomaly flag, remaining life at
the start and end, the RUL-based time to failure) join the physics' in each option's KPIs and the
record gets an ``analytics`` section (what ran, on which state, what was left out and why, the
sources of the two times to failure, the analytics' output bands). Should they fail, the physics'
answer stands and the section says why.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from tvilling.core.errors import Invalid, NotFound, TooLarge
from tvilling.simulation.binding import load_model
from tvilling.simulation.scenario import Scenario, Uncertainty
from tvilling.simulation.scenario_analytics import (
    AnalyticsFork,
    AnalyticsResult,
    analyse,
    analytic_kpis,
    analytics_doc,
    fork_analytics,
    kpi_fields,
)
from tvilling.simulation.scenario_declared import DeclaredModel, declared_model, start_from_binding
from tvilling.simulation.scenario_kpis import Kpis, bands, kpis
from tvilling.simulation.scenario_machine import MACHINE, flatten, start_from_reported
from tvilling.simulation.scenario_request import Request, parse_request
from tvilling.simulation.scenario_runner import ScenarioModel, ScenarioResult, run
from tvilling.simulation.scenario_vocabulary import Vocabulary, check
from tvilling.simulation.spec import FLEET, SimulationSpec

if TYPE_CHECKING:
    from tvilling.backend.factory import Backend

#: the relative standard error given to a parameter no calibration has measured
DEFAULT_RELATIVE_SE = 0.05
#: the most points per output series in a record (thinned evenly, the last kept)
MAX_POINTS = 500
#: progress is saved when it has moved by this much
PROGRESS_STEP = 0.05
#: the share of a scenario's progress the twin's analytics take, when they run on its series
ANALYTICS_SHARE = 0.5

Record = dict[str, Any]


def vocabulary_of(model: object) -> Vocabulary | None:
    """The scenario words of a behaviour model (None: it has none, it cannot run what-ifs)."""
    from tvilling.simulation.machine import MachineModel

    return MACHINE if isinstance(model, MachineModel) else None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _paths(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested reported values as dotted paths (``motor.temperature``); the simulation's own residuals left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not prefix and key == "simulation":
            continue
        if isinstance(value, Mapping):
            out.update(_paths(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def part_name(relationship: str, properties: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """What a part is called in the model's names: its ``location`` (``de``), else the relationship
    without ``has`` (``hasSpindle`` → ``spindle``)."""
    location = properties.get("location", target.get("location"))
    if isinstance(location, str) and location:
        return location
    return relationship[3:4].lower() + relationship[4:] if relationship.startswith("has") else relationship


def _thin(n: int) -> list[int]:
    stride = max(1, math.ceil(n / MAX_POINTS))
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        idx[-1] = n - 1
    return idx


def _clean(values: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 6) for v in values]


def kpi_doc(row: Kpis) -> dict[str, Any]:
    """The API's KPI names for one option (hours; ``None`` time to failure: beyond the horizon)."""
    ttf = [None if math.isinf(v) else round(v, 4) for v in row.time_to_failure_h]
    return {"ttf_p10_h": ttf[0], "ttf_p50_h": ttf[1], "ttf_p90_h": ttf[2],
            "p_fail_horizon": row.failure_probability, "p_fail_shift": row.failure_probability_shift,
            "production": round(row.production_mean, 4),
            "energy_kwh": None if row.energy_kwh_mean is None else round(row.energy_kwh_mean, 4),
            "lost_production": round(row.lost_production, 4)}


def results_doc(result: ScenarioResult, outputs: Sequence[str] | None = None,
                analysed: AnalyticsResult | None = None) -> dict[str, Any]:
    """The KPIs by option and the p10/p50/p90 series (at most :data:`MAX_POINTS` per output; ``outputs``:
    those shown, default all recorded). With ``analysed``, each option's KPIs gain what the twin's analytics
    said of the simulated series (:func:`.scenario_analytics.kpi_fields`) and the record an ``analytics``
    section (:func:`.scenario_analytics.analytics_doc`)."""
    idx = _thin(len(result.times))
    shown: dict[str, Any] = {}
    for output in result.series if outputs is None else [o for o in outputs if o in result.series]:
        by_option = {}
        for option in result.options:
            b = bands(result, output, option)[:, idx]
            by_option[option] = {"p10": _clean(b[0]), "p50": _clean(b[1]), "p90": _clean(b[2])}
        shown[output] = by_option
    docs = {row.option: kpi_doc(row) for row in kpis(result)}
    out: dict[str, Any] = {"kpis": docs,
                           "series": {"t_s": [float(t) for t in np.asarray(result.times)[idx]], "outputs": shown}}
    if analysed is not None:
        for row in analytic_kpis(analysed):
            docs[row.option].update(kpi_fields(row))
        out["analytics"] = analytics_doc(analysed, idx, result.failure)
    return out


@dataclass
class Prepared:
    """A checked scenario, ready to run: its record (status ``running``), model and words; the twin's
    analytics taken at the fork (None: none run) and the outputs the record shows (None: all recorded)."""

    record: Record
    scenario: Scenario
    model: ScenarioModel
    vocabulary: Vocabulary
    analytics: AnalyticsFork | None = None
    shown: Sequence[str] | None = None


class ScenarioService:
    """What-if scenarios of the twins of ``backend`` with the simulations ``specs`` (see the module text)."""

    def __init__(self, backend: Backend, specs: Sequence[SimulationSpec], *, registry: Any = None,
                 analytics: Any = None, modelset: Any = None) -> None:
        self.backend = backend
        self.modelset = modelset  # the models (or a callable giving them): a twin of a model extending a spec's
        self.specs = [s for s in specs if s.enabled]
        self.registry = registry
        self.analytics = analytics  # the live analytics engine: its state is copied at the fork, never changed
        self._threads: dict[str, threading.Thread] = {}

    # -- reading a request -------------------------------------------------------------------------
    def _spec(self, twin_id: str, name: str | None) -> tuple[Any, SimulationSpec]:
        try:
            twin = self.backend.twin_store.get(twin_id)
        except NotFound:
            raise NotFound(f"no twin {twin_id!r}", field="twin", rule="exists") from None
        bound = [s for s in self.specs if s.model == twin.model or self._extends(twin.model, s.model)]
        if name is not None:
            chosen = [s for s in bound if s.name == name]
            if not chosen:
                raise Invalid(f"scenario request: simulation {name!r} is not bound to the model {twin.model} of twin "
                              f"{twin_id!r}; bound: {[s.name for s in bound]}", field="simulation", rule="unknown")
            return twin, chosen[0]
        if not bound:
            raise Invalid(f"scenario request: twin {twin_id!r} (model {twin.model}) has no simulation bound to its "
                          "model ([[simulations]] in the configuration)", field="twin", rule="no_simulation")
        return twin, bound[0]

    def _extends(self, model: str, base: str) -> bool:
        """Whether ``model`` extends ``base`` in the models this service was given (False without them)."""
        ms = self.modelset() if callable(self.modelset) else self.modelset
        return ms is not None and model in ms and base in ms and bool(ms.is_a(model, base))

    def _model(self, spec: SimulationSpec) -> tuple[ScenarioModel, Vocabulary]:
        model = load_model(spec)
        vocabulary = vocabulary_of(model)
        if vocabulary is None and spec.scenario is not None:  # the words [simulations.scenario] declares
            return declared_model(model, spec)
        if vocabulary is None:
            raise Invalid(f"scenario request: simulation {spec.name!r} ({type(model).__name__}) has no scenario "
                          "vocabulary; what-ifs need one: declare it in [simulations.scenario]", field="simulation",
                          rule="no_vocabulary")
        return model, vocabulary  # type: ignore[return-value]

    def _versions(self, spec: SimulationSpec, twin: str) -> tuple[dict[str, float], dict[str, float]]:
        """The layered parameter values and the standard errors the promoted versions carry."""
        values: dict[str, float] = dict(spec.parameters)
        errors: dict[str, float] = {}
        for scope in (FLEET, twin):
            if scope == twin:
                values.update(spec.twins.get(twin, {}))
            version = None if self.registry is None else self.registry.promoted(spec.registry_name, scope)
            if version is None:
                continue
            params = dict(version.params)
            if isinstance(params.get("parameters"), Mapping):  # a calibration's version
                values.update({k: float(v) for k, v in params["parameters"].items()})
                errors.update({k: float(v) for k, v in (params.get("stderr") or {}).items() if v is not None})
            else:
                values.update({k: float(v) for k, v in params.items() if isinstance(v, int | float)})
        return values, errors

    def _uncertainty(self, model: ScenarioModel, spec: SimulationSpec, twin: str) -> tuple[Uncertainty,
                                                                                          dict[str, float]]:
        values, errors = self._versions(spec, twin)
        means: dict[str, float] = {}
        ses: dict[str, float] = {}
        for var in model.signature.parameters:
            mean = values.get(var.name, var.default)
            if mean is None:
                continue
            means[var.name] = float(mean)
            ses[var.name] = errors.get(var.name, abs(float(mean)) * DEFAULT_RELATIVE_SE)
        return Uncertainty(means=means, std_errors=ses), values

    def _reported(self, twin_id: str, at: datetime | None) -> dict[str, Any]:
        """The twin's and its parts' reported state at ``at``, from a fork of the backend (closed at once)."""
        fork = self.backend.fork(at=at, twins=[twin_id])
        try:
            twin = fork.twin_store.get(twin_id)
            parts: dict[str, dict[str, Any]] = {}
            for rel in twin.relationships.values():
                try:
                    target = fork.twin_store.get(rel.target)
                except NotFound:
                    continue
                parts[part_name(rel.name, rel.properties, target.reported)] = _paths(target.reported)
            return flatten(_paths(twin.reported), parts)
        finally:
            fork.close()

    def prepare(self, doc: Any) -> Prepared:
        """Read and check the request ``doc``; every error is an :class:`Invalid` (or 404 for the twin)."""
        request = parse_request(doc)
        twin, spec = self._spec(request.twin, request.simulation)
        model, vocabulary = self._model(spec)
        uncertainty, values = self._uncertainty(model, spec, twin.id)
        reported = self._reported(twin.id, request.at)
        start = (start_from_binding(spec, model.signature, reported) if isinstance(model, DeclaredModel)
                 else start_from_reported(reported, values))
        scenario = self._scenario(request, start, uncertainty)
        shown = list(scenario.record if scenario.record is not None else vocabulary.record)
        analytics = self._analytics(twin.id, spec, model, request.at)
        if analytics is not None and analytics.feeds:  # record what the analytics read, show what was shown
            scenario = replace(scenario, record=[*shown, *(o for o in analytics.outputs if o not in shown)])
        check(scenario, model.signature, vocabulary)
        record: Record = {
            "id": uuid.uuid4().hex[:16], "twin": twin.id, "simulation": spec.name, "status": "running",
            "progress": 0.0, "created": _now(), "request": dict(doc),
            "at": (request.at or datetime.now(UTC)).isoformat(),
            "options": [o.name for o in scenario.all_options()]}
        return Prepared(record, scenario, model, vocabulary, analytics, shown)

    def _analytics(self, twin_id: str, spec: SimulationSpec, model: ScenarioModel,
                   at: datetime | None) -> AnalyticsFork | None:
        """The analytics of the twin and its parts as they are at the fork (None: no analytics configured)."""
        if self.analytics is None or not self.analytics.specs:
            return None
        try:
            history = self.backend.history
        except Exception:  # e.g. an embedded history another process holds: the reported values anchor
            history = None
        fork = self.backend.fork(at=at, twins=[twin_id])
        try:
            return fork_analytics(self.analytics, spec, model.signature, fork.twin_store, twin_id, history=history,
                                  at_us=None if at is None else int(at.timestamp() * 1e6))
        finally:
            fork.close()

    @staticmethod
    def _scenario(request: Request, start: Any, uncertainty: Uncertainty) -> Scenario:
        try:
            return Scenario(start, horizon=request.horizon, step=request.step, options=request.options,
                            uncertainty=uncertainty, samples=request.samples, seed=request.seed)
        except TooLarge as exc:  # a limit of the request is an invalid field here
            raise Invalid(str(exc).replace("scenario: ", "scenario request: ", 1),
                          field=exc.fields.get("field", "samples"), rule="limit") from None

    # -- running -----------------------------------------------------------------------------------
    def execute(self, prepared: Prepared, progress: Callable[[float], None] | None = None) -> Record:
        """Run a prepared scenario here, saving its progress and its end; the final record."""
        record = prepared.record
        self.backend.scenarios.save(record)
        last = [0.0]

        def report(fraction: float) -> None:
            if progress is not None:
                progress(fraction)
            if fraction - last[0] >= PROGRESS_STEP and fraction < 1.0:
                last[0] = fraction
                self.backend.scenarios.save({**record, "progress": round(fraction, 4)})

        forked = prepared.analytics
        share = ANALYTICS_SHARE if forked is not None and forked.feeds else 0.0
        try:
            result = run(prepared.scenario, prepared.model, prepared.vocabulary,
                         progress=lambda f: report(f * (1.0 - share)))
            analysed, trouble = None, None
            if forked is not None and forked.feeds:
                try:  # the physics' answer stands even when the analytics fail on it
                    analysed = analyse(result, forked, seed=prepared.scenario.seed,
                                       progress=lambda f: report(1.0 - share + share * f))
                except Exception as exc:
                    trouble = f"{type(exc).__name__}: {exc}"
            record = {**record, **results_doc(result, prepared.shown, analysed), "status": "done", "progress": 1.0,
                      "seconds": round(result.seconds, 3)}
            if analysed is not None:
                record["seconds_analytics"] = round(analysed.seconds, 3)
            if trouble is not None or (forked is not None and forked.skipped and not forked.feeds):
                record["analytics"] = {"ran": [], "skipped": dict(forked.skipped if forked else {}),
                                       **({"error": trouble} if trouble else {})}
        except Exception as exc:  # a failed run is recorded, not raised in a worker
            record = {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        record["finished"] = _now()
        self.backend.scenarios.save(record)
        return record

    def submit(self, doc: Any) -> Record:
        """Check the request now, run it in a worker thread; the record as it starts (``running``)."""
        prepared = self.prepare(doc)
        self.backend.scenarios.save(prepared.record)
        thread = threading.Thread(target=self.execute, args=(prepared,), name=f"scenario-{prepared.record['id']}",
                                  daemon=True)
        self._threads[prepared.record["id"]] = thread
        thread.start()
        return prepared.record

    def wait(self, scenario_id: str, timeout: float | None = None) -> Record:
        """Wait for a scenario started here to end (or ``timeout`` seconds); its record."""
        thread = self._threads.get(scenario_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(scenario_id)

    # -- reading records ---------------------------------------------------------------------------
    def get(self, scenario_id: str) -> Record:
        """The record ``scenario_id``, or :class:`NotFound`."""
        record = self.backend.scenarios.get(scenario_id)
        if record is None:
            raise NotFound(f"no scenario {scenario_id!r}", field="id", rule="exists")
        return record

    def newest(self, limit: int = 100) -> list[Record]:
        """The scenarios, newest first: ``id``, ``twin``, ``status``, ``created``, ``options``."""
        return [{k: r.get(k) for k in ("id", "twin", "status", "created", "options")}
                for r in self.backend.scenarios.newest(limit)]

    def compare(self, ids: Sequence[str]) -> list[Record]:
        """Each scenario's KPIs by option, in the order asked."""
        if not ids:
            raise Invalid("compare: give at least one scenario id (ids=a,b)", field="ids", rule="required")
        out = []
        for sid in ids:
            record = self.get(sid)
            out.append({"id": sid, "twin": record.get("twin"), "status": record.get("status"),
                        "kpis": record.get("kpis", {})})
        return out

    def score(self, scenario_id: str, *, modelset: Any, option: str | None = None,
              now: datetime | None = None) -> dict[str, Any]:
        """Once its horizon has passed, the scenario's ``option`` (default: the baseline) against what its twin
        measured (:func:`.scenario_score.score_scenario`); ``modelset``: the models, or a callable giving them."""
        from tvilling.simulation.scenario_score import score_scenario

        record = self.get(scenario_id)
        spec = next((s for s in self.specs if s.name == record.get("simulation")), None)
        if spec is None:
            raise Invalid(f"scenario {scenario_id!r}: its simulation {record.get('simulation')!r} is no longer "
                          "configured", field="simulation", rule="unknown")
        return score_scenario(record, spec, twins=self.backend.twin_store, modelset=modelset,
                              history=self.backend.history, option=option, now=now)

    def vocabulary(self, twin_id: str, simulation: str | None = None) -> dict[str, Any]:
        """What the twin's scenarios may name: commands (``fixed``: the value a command without one sets,
        else its ``lower``/``upper`` bounds), maintenance actions with their parts, faults, parameters
        with unit, bounds and the value the twin runs with, and outputs."""
        _, spec = self._spec(twin_id, simulation)
        model, vocabulary = self._model(spec)
        values, _ = self._versions(spec, twin_id)
        units = {v.name: v.unit for v in model.signature.inputs}
        return {
            "simulation": spec.name,
            "commands": [{"name": n, "input": c.input, "fixed": c.fixed, "lower": c.lower, "upper": c.upper,
                          "unit": units.get(c.input)} for n, c in vocabulary.commands.items()],
            "maintenance": [{"name": n, "parts": list(a.parts)} for n, a in vocabulary.actions.items()],
            "faults": list(vocabulary.faults),
            "parameters": [{"name": v.name, "unit": v.unit, "lower": v.lower, "upper": v.upper,
                            "default": values.get(v.name, v.default)} for v in model.signature.parameters],
            "outputs": [v.name for v in model.signature.outputs],
        }


def service_for(platform: Any) -> ScenarioService:
    """The scenario service of a platform: its backend, configured simulations and analytic registry."""
    from tvilling.simulation.spec import parse_simulations

    return ScenarioService(platform.backend, parse_simulations(platform.settings.simulations),
                           registry=platform.analytics_registry,
                           analytics=platform.analytics if platform.settings.analytics else None,
                           modelset=lambda: platform.models.modelset)


__all__ = ["DEFAULT_RELATIVE_SE", "MAX_POINTS", "Prepared", "ScenarioService", "kpi_doc", "part_name",
           "results_doc", "service_for", "vocabulary_of"]
