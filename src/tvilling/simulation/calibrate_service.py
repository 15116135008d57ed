"""Calibration of a configured simulation from one twin's stored history, registered as a new version.

:meth:`CalibrationService.calibrate` reads the twin's bound inputs and measured outputs over the fit
window and the validation window after it (:mod:`.calibrate_history`), fits the chosen parameters —
and the start values of the states named in ``start_states`` — with :func:`.calibrate.calibrate`,
scores the free-running prediction over the validation window (nRMSE and R² per output), optionally
saves the measured-vs-simulated figure, and registers the fitted parameters as a new version of
``sim:<name>`` for the twin in the analytic registry (a candidate unless ``promote``; see
:mod:`.binding_versions`). The version's ``params`` hold the parameters, start values and standard
errors (what scenarios sample from); its ``metrics`` the windows, the fit and validation metrics and
the estimates.

Defaults:

* the fit starts from the parameters the twin runs with now (model defaults, the configuration,
  the promoted fleet and twin versions);
* the parameters fitted: ``--parameters``, else those the model lists as ``calibratable``, else
  every parameter with both bounds;
* the validation window: as long as the fit window, right after it;
* the start state: the model's steady state for the first inputs where it offers one, with the
  states that are also measured outputs (temperatures, speed) at their first measured values — as
  shadow mode starts a twin — overridden by ``start_values``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvilling.core.errors import Invalid, NotFound, Unavailable
from tvilling.simulation.binding import Binder, load_model
from tvilling.simulation.binding_versions import parameters_for
from tvilling.simulation.calibrate import Calibration, calibrate
from tvilling.simulation.calibrate_history import MIN_SAMPLES, HistoryWindow, iso, now_us, parse_time, read_window
from tvilling.simulation.ports import Array, BehaviourModel, Instances
from tvilling.simulation.spec import SimulationSpec

#: the most points per output in the series a result carries (thinned evenly)
MAX_POINTS = 1000
#: the longest step between samples a request may ask for (seconds)
MAX_STEP_S = 604_800.0
_KEYS = {"twin", "from", "to", "validate_to", "parameters", "start_states", "start_values", "outputs", "step",
         "promote", "max_evaluations"}

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``reading`` (series read of all), ``fitting`` (optimiser
evaluations of at most ``max_evaluations``), ``done``."""


@dataclass(frozen=True)
class CalibrationRequest:
    """What to calibrate: times in microseconds since the epoch; ``None``: the default (module docstring)."""

    twin: str
    start_us: int
    end_us: int
    validate_to_us: int | None = None
    parameters: tuple[str, ...] | None = None
    start_states: tuple[str, ...] = ()
    start_values: dict[str, float] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    step_s: float | None = None
    promote: bool = False
    max_evaluations: int = 200


def _names(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Invalid(f"{where} must be a list of names (or one string of names separated by commas), not "
                      f"{value!r}", field=where, rule="type")
    return tuple(value)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{where} must be a number, not {value!r}", field=where, rule="type")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Invalid(f"{where} must be a finite number", field=where, rule="range")
    return number


def parse_request(doc: Any, *, now: int | None = None) -> CalibrationRequest:
    """A request from its JSON form (the API's body): ``twin``, ``from``, ``to``, and optionally
    ``validate_to``, ``parameters``, ``start_states``, ``start_values`` ({state: value}), ``outputs``,
    ``step`` (seconds between samples), ``promote``, ``max_evaluations``. Errors name the field."""
    if not isinstance(doc, Mapping):
        raise Invalid("the calibration request must be a JSON object", field="body", rule="type")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise Invalid(f"the calibration request has no field {unknown[0]!r}; it takes {', '.join(sorted(_KEYS))}",
                      field=unknown[0], rule="unknown")
    twin = doc.get("twin")
    if not isinstance(twin, str) or not twin:
        raise Invalid("twin must be the id of the twin to calibrate on", field="twin", rule="required")
    clock = now_us() if now is None else now
    for key in ("from", "to"):
        if doc.get(key) is None:
            raise Invalid(f"{key} is required: the fit window's {'start' if key == 'from' else 'end'}", field=key,
                          rule="required")
    start, end = parse_time(doc["from"], "from", now_us=clock), parse_time(doc["to"], "to", now_us=clock)
    if end <= start:
        raise Invalid(f"to ({iso(end)}) must come after from ({iso(start)})", field="to", rule="range")
    validate_to = None
    if doc.get("validate_to") is not None:
        validate_to = parse_time(doc["validate_to"], "validate_to", now_us=clock)
        if validate_to <= end:
            raise Invalid(f"validate_to ({iso(validate_to)}) must come after to ({iso(end)}): the validation window "
                          "follows the fit window", field="validate_to", rule="range")
    starts = doc.get("start_values") or {}
    if not isinstance(starts, Mapping):
        raise Invalid("start_values must be an object of state = value", field="start_values", rule="type")
    step = doc.get("step")
    step_s = None if step is None else _finite(step, "step")
    if step_s is not None and not 0 < step_s <= MAX_STEP_S:
        raise Invalid(f"step must be > 0 and at most {MAX_STEP_S:g} seconds (a week), not {step_s:g}", field="step",
                      rule="range")
    promote = doc.get("promote", False)
    if not isinstance(promote, bool):
        raise Invalid("promote must be true or false", field="promote", rule="type")
    evaluations = doc.get("max_evaluations", 200)
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or not 1 <= evaluations <= 10_000:
        raise Invalid(f"max_evaluations must be an integer from 1 to 10000, not {evaluations!r}",
                      field="max_evaluations", rule="range")
    return CalibrationRequest(
        twin=twin, start_us=start, end_us=end, validate_to_us=validate_to,
        parameters=_names(doc.get("parameters"), "parameters"),
        start_states=_names(doc.get("start_states"), "start_states") or (),
        start_values={str(k): _finite(v, f"start_values.{k}") for k, v in starts.items()},
        outputs=_names(doc.get("outputs"), "outputs"), step_s=step_s, promote=promote,
        max_evaluations=evaluations)


def default_parameters(model: BehaviourModel) -> list[str]:
    """The parameters fitted when none are named: the model's ``calibratable`` list, else every parameter
    with a lower and an upper bound."""
    listed = getattr(model, "calibratable", None)
    if listed:
        return [str(n) for n in listed]
    return [v.name for v in model.signature.parameters if v.lower is not None and v.upper is not None]


class _Counting:
    """The model, counting the runs a calibration makes (one ``start`` per run; one instance: an evaluation)."""

    def __init__(self, model: BehaviourModel, report: Callable[[int], None]) -> None:
        self._model = model
        self._report = report
        self.name = model.name
        self.signature = model.signature
        self.evaluations = 0

    def start(self, n: int, parameters: Mapping[str, Array], start_values: Mapping[str, Array] | None = None,
              t0: float = 0.0) -> Instances:
        if n == 1:
            self.evaluations += 1
            self._report(self.evaluations)
        return self._model.start(n, parameters, start_values, t0)

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return self._model.step(instances, dt, inputs)

    def close(self, instances: Instances) -> None:
        self._model.close(instances)


def _first(series: Array) -> float:
    finite = series[np.isfinite(series)]
    return float(finite[0]) if len(finite) else math.nan


def start_state(model: BehaviourModel, window: HistoryWindow, parameters: Mapping[str, float],
                given: Mapping[str, float]) -> dict[str, float]:
    """Where the simulation starts (see the module docstring): steady state for the first inputs, the
    measured first values of states that are outputs, then ``given``."""
    states = set(model.signature.names("states"))
    out: dict[str, float] = {}
    steady = getattr(model, "steady_start", None)
    if steady is not None:
        first = {name: _first(series) for name, series in window.inputs.items()}
        try:
            values = steady(1, {k: v for k, v in first.items() if math.isfinite(v)}, dict(parameters))
        except Invalid:
            values = {}
        out.update({k: float(np.asarray(v).reshape(-1)[0]) for k, v in values.items()})
    for name, series in window.measured.items():
        if name in states and math.isfinite(float(series[0])):
            out[name] = float(series[0])
    out = {k: v for k, v in out.items() if math.isfinite(v)}
    out.update(given)
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every float that is not finite (a diverged fit's metrics) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _clean(values: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 6) for v in values]


def _none_if_inf(value: float) -> float | None:
    return value if math.isfinite(value) else None


def estimates_doc(fit: Calibration) -> list[dict[str, Any]]:
    """Each fitted unknown: value, standard error (``None``: not determined), bounds, start of the fit."""
    return [{"name": e.name, "kind": e.kind, "estimate": e.estimate, "stderr": _none_if_inf(e.stderr),
             "relative_stderr": _none_if_inf(e.relative_stderr), "initial": e.initial,
             "lower": _none_if_inf(e.lower), "upper": _none_if_inf(e.upper), "at_bound": e.at_bound, "unit": e.unit}
            for e in fit.estimates]


def series_doc(fit: Calibration, window: HistoryWindow) -> dict[str, Any]:
    """Measured and simulated per output, thinned to at most :data:`MAX_POINTS` samples (for a chart)."""
    n = len(window.ts_us)
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(np.int64))
    return {"ts_ms": [int(v) // 1000 for v in window.ts_us[idx]], "t_s": _clean(fit.t[idx]),
            "outputs": {name: {"measured": _clean(fit.measured[name][idx]),
                               "simulated": _clean(fit.simulated[name][idx])} for name in fit.measured}}


class CalibrationService:
    """Calibrations of the configured simulations (see the module docstring).

    ``twins``: the twin store; ``models``: the model registry (``modelset``); ``history``: the history
    store or a callable returning it; ``registry``: the analytic registry; ``on_promote``: called after a
    version is promoted (a running shadow mode applies it)."""

    def __init__(self, specs: Sequence[SimulationSpec], *, twins: Any, models: Any, history: Any, registry: Any,
                 on_promote: Callable[[], object] | None = None) -> None:
        self.specs = {s.name: s for s in specs}
        self.twins = twins
        self.models = models
        self._history = history
        self.registry = registry
        self.on_promote = on_promote

    @property
    def history(self) -> Any:
        return self._history() if callable(self._history) else self._history

    def spec(self, name: str) -> SimulationSpec:
        """The configured simulation ``name`` (:class:`NotFound` names the ones there are)."""
        spec = self.specs.get(name)
        if spec is None:
            raise NotFound(f"no simulation named {name!r} is configured; there are "
                           f"{', '.join(sorted(self.specs)) or 'none'} ([[simulations]] in the settings)",
                           field="name", rule="simulation")
        return spec

    def calibrate(self, name: str, request: CalibrationRequest, *, progress: Progress | None = None,
                  plot: str | Path | None = None, series: bool = False) -> dict[str, Any]:
        """Fit, validate, plot (``plot``: a PNG path) and register; the result as JSON-able values (with the
        thinned series when ``series``)."""
        spec = self.spec(name)
        try:
            twin = self.twins.get(request.twin)
        except NotFound:
            raise NotFound(f"no twin {request.twin!r}", field="twin", rule="exists") from None
        binder = Binder(spec, self.twins, lambda: self.models.modelset)
        if not binder.matches(twin.model):
            raise Invalid(f"twin {twin.id!r} is of model {twin.model}, which simulation {spec.name!r} is not bound "
                          f"to (it simulates {spec.model} and the models extending it)", field="twin", rule="model")
        model = load_model(spec)
        chosen = list(request.parameters) if request.parameters is not None else default_parameters(model)
        known = set(model.signature.names("parameters"))
        for p in chosen:
            if p not in known:
                raise Invalid(f"{model.name} has no parameter {p!r}; its parameters are {sorted(known)}",
                              field=f"parameters.{p}", rule="unknown")
        end = request.end_us
        validate_to = request.validate_to_us or end + (end - request.start_us)
        window = read_window(self.history, spec, model.signature, binder.bind(twin.id, twin), request.start_us,
                             validate_to, step_us=None if request.step_s is None else round(request.step_s * 1e6),
                             outputs=request.outputs,
                             progress=None if progress is None else lambda d, t: progress("reading", d, t))
        fit_stop = window.index(end)
        if fit_stop < MIN_SAMPLES:
            raise Invalid(f"the fit window {iso(request.start_us)} – {iso(end)} holds {fit_stop} samples of "
                          f"{window.step_us / 1e6:g} s from its first reading on; a calibration needs at least "
                          f"{MIN_SAMPLES}: widen it", field="to", rule="too_short")
        if len(window.ts_us) - fit_stop < 2:
            raise Invalid(f"the validation window {iso(end)} – {iso(validate_to)} holds fewer than 2 samples",
                          field="validate_to", rule="too_short")
        measured = {k: v for k, v in window.measured.items() if np.isfinite(v[:fit_stop]).any()}
        if not measured:
            raise Invalid(f"no output has a reading in the fit window {iso(request.start_us)} – {iso(end)}",
                          field="from", rule="empty")
        if not any(np.isfinite(v[fit_stop:]).any() for v in measured.values()):
            raise Invalid(f"no output has a reading in the validation window {iso(end)} – {iso(validate_to)}: "
                          "give --validate-to (validate_to) over stored history", field="validate_to", rule="empty")
        missing = sorted(set(window.missing_outputs) | (set(window.measured) - set(measured)))
        values = {k: v for k, v in parameters_for(self.registry, spec, twin.id).items() if k in known}
        starts = start_state(model, window, values, request.start_values)
        counting = _Counting(model, lambda n: progress("fitting", min(n, request.max_evaluations),
                                                       request.max_evaluations) if progress is not None else None)
        t = window.t
        fit = calibrate(counting, t, window.inputs, measured, chosen, values=values,
                        window=(float(t[0]), float(t[fit_stop - 1])), holdout=(float(t[fit_stop]), float(t[-1])),
                        start_values=starts, start_states=request.start_states,
                        max_evaluations=request.max_evaluations)
        figure: dict[str, Any] | None = None
        if plot is not None:
            try:
                figure = {"path": str(fit.plot(plot)), "error": None}
            except Unavailable as exc:
                figure = {"path": None, "error": exc.message}
        doc: dict[str, Any] = json_safe(self._result(spec, twin.id, fit, window, request, validate_to, missing,
                                                     counting.evaluations))
        version = self._register(spec, twin.id, fit, doc, request.promote)
        doc.update(version=version.version, status=version.status, scope=version.scope, plot=figure)
        if series:
            doc["series"] = series_doc(fit, window)
        if progress is not None:
            progress("done", 1, 1)
        return doc

    @staticmethod
    def _result(spec: SimulationSpec, twin: str, fit: Calibration, window: HistoryWindow,
                request: CalibrationRequest, validate_to: int, missing: list[str], evaluations: int) -> dict[str, Any]:
        validation = fit.validation or {}
        worst = [m["nrmse"] for m in validation.values() if m.get("nrmse") is not None]
        return {
            "simulation": spec.name, "twin": twin, "model": fit.model,
            "window": {"from": iso(request.start_us), "to": iso(request.end_us)},
            "validation_window": {"from": iso(request.end_us), "to": iso(validate_to)},
            "step_s": window.step_us / 1e6 * spec.time_scale, "samples": len(window.ts_us),
            "outputs": list(fit.measured), "outputs_without_data": missing, "sources": dict(window.sources),
            "estimates": estimates_doc(fit), "start_values": dict(fit.start_values),
            "fit": fit.fit, "validation": validation, "max_nrmse": max(worst) if worst else None,
            "residual_sd": fit.residual_sd, "converged": fit.converged, "status_message": fit.status,
            "evaluations": evaluations, "model_runs": fit.model_runs, "seconds": round(fit.seconds, 3),
        }

    def _register(self, spec: SimulationSpec, twin: str, fit: Calibration, doc: Mapping[str, Any],
                  promote: bool) -> Any:
        version = fit.to_version()
        metrics = {"kind": "calibration", "twin": twin, "fingerprint": version["fingerprint"],
                   **{k: doc[k] for k in ("window", "validation_window", "step_s", "samples", "outputs", "estimates",
                                          "start_values", "fit", "validation", "max_nrmse", "residual_sd",
                                          "converged", "evaluations", "seconds")}}
        artifact = json.dumps(version["params"], sort_keys=True).encode()
        added = self.registry.add(spec.registry_name, twin, artifact, fingerprint=spec.fingerprint,
                                  params=json_safe(version["params"]), metrics=metrics, promote=promote)
        if promote and self.on_promote is not None:
            self.on_promote()
        return added

    def versions(self, name: str, twin: str | None = None) -> dict[str, Any]:
        """The versions of simulation ``name`` (of one twin, or ``*`` for the fleet, when ``twin`` is given)."""
        spec = self.spec(name)
        items = self.registry.versions(spec.registry_name, twin)
        return {"simulation": spec.name, "items": [v.to_json() for v in items],
                "promoted": {v.scope: v.version for v in items if v.status == "promoted"}}

    def promote(self, name: str, version: int, scope: str) -> dict[str, Any]:
        """Make ``version`` of ``scope`` (a twin id, or ``*``) the one that runs; the previous one retires."""
        spec = self.spec(name)
        if not isinstance(scope, str) or not scope:
            raise Invalid("name the version's scope: the twin id, or * for the fleet", field="twin", rule="required")
        promoted = self.registry.promote(spec.registry_name, scope, version)
        if self.on_promote is not None:
            self.on_promote()
        out: dict[str, Any] = promoted.to_json()
        return out


def service_for(platform: Any) -> CalibrationService:
    """The calibration service of a platform: its configured simulations, twins, history and registry; a
    promotion is applied at once to the platform's shadow mode when it runs."""
    from tvilling.simulation.spec import parse_simulations

    def refresh() -> None:
        if "simulations" in platform.__dict__:  # shadow mode is running in this process
            platform.simulations.refresh()

    return CalibrationService(parse_simulations(platform.settings.simulations), twins=platform.twin_store,
                              models=platform.models, history=lambda: platform.history,
                              registry=platform.analytics_registry, on_promote=refresh)


__all__ = ["MAX_POINTS", "CalibrationRequest", "CalibrationService", "Progress", "default_parameters",
           "estimates_doc", "json_safe", "parse_request", "series_doc", "service_for", "start_state"]
