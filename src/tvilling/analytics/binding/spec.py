"""The configuration of one analytic: which twins (by model), which inputs, which method.

In ``tvilling.toml``::

    [[analytics]]
    name = "bearing-anomaly"
    model = "dtmi:tvilling:plant:Bearing"      # this model and every model extending it
    method = "mewma"                           # multivariate detector (two or more inputs)
    inputs = ["vibration", "temperature", "vibrationBandBpfo"]
    train_rows = 300                           # rows each twin learns before it is scored
    context = ["shaftSpeed"]                   # the operating point: inputs are judged at it (optional)
    params = { alpha = 0.5, threshold = 3.0, hold = 15, exponents = { vibrationBandBpfo = 1.5 } }

``context`` (``mewma``, ``univariate``, ``rul-trend``) names properties of the same twin that set the operating point —
speed, load. Inputs are conditioned on them (:mod:`tvilling.analytics.detectors.operating_point`):
a power law per input, learned from training rows that span several operating points or declared
in ``params.exponents``; rows where the first context input is at or below ``params.running_above``
(default 10 % of its training median) are a stopped machine and are not scored, and rows at an
operating point the training never saw (without declared exponents) are not scored either. The
analytic's marker (``analytics.<name>.scoring``) says why scoring is suspended.

Methods and what they write on the twin (reserved outputs, see :mod:`tvilling.models.outputs`):

* ``mewma`` — multivariate detector (per-sensor EWMA deviations from the training rows, scaled
  and averaged; an alarm is held ``hold`` rows), fitted per twin on its first ``train_rows`` rows:
  ``anomaly_score`` (1.0 = threshold), ``anomaly``, ``contributions``, ``fault_family````
  (when a fault classifier is configured);
* ``univariate`` — one input, contextual novelty + anomaly likelihood + repeat suppression
  (``threshold`` 0.5 by default): ``anomaly_score``, ``anomaly``;
* ``rul-trend`` — one degradation indicator (e.g. vibration RMS) extrapolated to a failure
  level (``params.failure_level``, required): ``rul``, ``rul_p10``, ``rul_p90`` (null while there is
  no credible trend), ``health`` (the lower of the level's distance to failure and the remaining life as a share of
  ``params.health_horizon``);
* ``rul-fleet`` — a regressor trained on run-to-failure histories stored in the platform
  (``tvilling analytics train``): ``rul``, ``rul_p10``, ``rul_p90``, ``health``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from tvilling.core.errors import Invalid
from tvilling.core.ids import parse_dtmi

METHODS = {
    "mewma": ("anomaly", "anomaly_score", "anomaly", "contributions", "fault_family"),
    "univariate": ("anomaly", "anomaly_score", "anomaly"),
    "rul-trend": ("rul", "rul", "rul_p10", "rul_p90", "health"),
    "rul-fleet": ("rul", "rul", "rul_p10", "rul_p90", "health"),
}
PER_TWIN = frozenset({"mewma", "univariate", "rul-trend"})  # fitted per twin; rul-fleet is one fleet model
FLEET = "*"  # the scope of a fleet-wide version


class AnalyticSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    model: str
    method: str
    inputs: list[str]
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    train_rows: int = 300
    enabled: bool = True
    context: list[str] = msgspec.field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Every property a row holds: the inputs, then the context inputs."""
        return [*self.inputs, *self.context]

    @property
    def kind(self) -> str:
        return METHODS[self.method][0]

    @property
    def outputs(self) -> tuple[str, ...]:
        return METHODS[self.method][1:]

    @property
    def per_twin(self) -> bool:
        return self.method in PER_TWIN

    @property
    def fingerprint(self) -> str:
        """A short hash of the configuration: a version records which configuration trained it."""
        doc = json.dumps(msgspec.to_builtins(self), sort_keys=True, default=str)
        return hashlib.sha256(doc.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.update(kind=self.kind, outputs=list(self.outputs), fingerprint=self.fingerprint)
        return out


def parse_spec(doc: Mapping[str, Any], where: str = "analytics") -> AnalyticSpec:
    """One analytic from its configuration mapping; :class:`Invalid` names the field that is wrong."""
    if not isinstance(doc, Mapping):
        raise Invalid(f"{where} must be a table (an object)", field=where, rule="type")
    name = doc.get("name")
    if not isinstance(name, str) or not name[:1].isalpha() or not all(c.isalnum() or c in "-_" for c in name):
        raise Invalid(f"{where}.name must start with a letter and hold only letters, digits, '-' or '_'",
                      field=f"{where}.name", rule="name")
    at = f"analytics {name!r}"
    try:
        spec = msgspec.convert(dict(doc), AnalyticSpec)
    except msgspec.ValidationError as exc:
        raise Invalid(f"{at}: {exc}", field=where, rule="type") from None
    parse_dtmi(spec.model, field=f"{at}.model")
    if spec.method not in METHODS:
        raise Invalid(f"{at}: method {spec.method!r} is not one of {', '.join(sorted(METHODS))}",
                      field=f"{where}.method", rule="method")
    if not spec.inputs or not all(isinstance(i, str) and i for i in spec.inputs):
        raise Invalid(f"{at}: inputs must list at least one property path", field=f"{where}.inputs",
                      rule="required")
    if len(set(spec.inputs)) != len(spec.inputs):
        raise Invalid(f"{at}: inputs name a property twice", field=f"{where}.inputs", rule="unique")
    if spec.method == "mewma" and len(spec.inputs) < 2:
        raise Invalid(f"{at}: method mewma needs two or more inputs (use univariate for one)",
                      field=f"{where}.inputs", rule="count")
    if spec.method in ("univariate", "rul-trend") and len(spec.inputs) != 1:
        raise Invalid(f"{at}: method {spec.method} takes exactly one input", field=f"{where}.inputs", rule="count")
    if spec.context:
        _check_context(spec, at, where)
    if spec.method == "rul-trend":
        level = spec.params.get("failure_level")
        if not isinstance(level, int | float) or isinstance(level, bool) or level <= 0:
            raise Invalid(f"{at}: rul-trend needs params.failure_level, a positive number (the indicator's "
                          "value at failure)", field=f"{where}.params.failure_level", rule="required")
    _check_params(spec, at, where)
    if spec.train_rows < 10:
        raise Invalid(f"{at}: train_rows must be at least 10", field=f"{where}.train_rows", rule="range")
    return spec


def _check_context(spec: AnalyticSpec, at: str, where: str) -> None:
    from tvilling.analytics.detectors.operating_point import parse_exponents

    if spec.method == "rul-fleet":
        raise Invalid(f"{at}: context applies to mewma, univariate and rul-trend, not {spec.method}",
                      field=f"{where}.context", rule="context")
    if not all(isinstance(c, str) and c for c in spec.context) or len(set(spec.context)) != len(spec.context):
        raise Invalid(f"{at}: context must list distinct property paths", field=f"{where}.context", rule="unique")
    both = sorted(set(spec.context) & set(spec.inputs))
    if both:
        raise Invalid(f"{at}: {both[0]!r} is both an input and a context input", field=f"{where}.context",
                      rule="unique")
    try:
        parse_exponents(spec.params.get("exponents"), spec.inputs, spec.context)
    except ValueError as exc:
        raise Invalid(f"{at}: params.{exc}", field=f"{where}.params.exponents", rule="exponents") from None


TREND_PARAMS = {"failure_level", "unit", "time_scale", "window", "max_rul", "min_rows", "t_min", "health_horizon"}
TIME_UNITS = ("second", "minute", "hour", "day")
CONTEXT_PARAMS = {"exponents", "running_above"}


def _allowed_params(method: str) -> set[str]:
    import dataclasses

    if method == "mewma":
        from tvilling.analytics.detectors.multivariate import MultivariateDetector

        return ({f.name for f in dataclasses.fields(MultivariateDetector) if f.init} - {"names"}
                | {"family_classifier"} | CONTEXT_PARAMS)
    if method == "univariate":
        from tvilling.analytics.detectors.univariate import UnivariateDetector

        return {f.name for f in dataclasses.fields(UnivariateDetector) if f.init} | {"threshold"} | CONTEXT_PARAMS
    if method == "rul-trend":
        return TREND_PARAMS | CONTEXT_PARAMS
    from tvilling.analytics.rul.model import RulConfig

    return {f.name for f in dataclasses.fields(RulConfig)}


def _check_params(spec: AnalyticSpec, at: str, where: str) -> None:
    """Unknown parameters and impossible values are configuration errors, found before any data arrives."""
    allowed = _allowed_params(spec.method)
    unknown = sorted(set(spec.params) - allowed)
    if unknown:
        raise Invalid(f"{at}: {spec.method} has no parameter {unknown[0]!r}; it takes {', '.join(sorted(allowed))}",
                      field=f"{where}.params.{unknown[0]}", rule="unknown_param")
    p = spec.params
    if "unit" in p and p["unit"] not in TIME_UNITS:
        raise Invalid(f"{at}: params.unit must be one of {', '.join(TIME_UNITS)}, not {p['unit']!r}",
                      field=f"{where}.params.unit", rule="enum")
    if ("exponents" in p or "running_above" in p) and not spec.context:
        raise Invalid(f"{at}: params.exponents and params.running_above need context inputs (context = [...])",
                      field=f"{where}.context", rule="required")
    if "running_above" in p and (isinstance(p["running_above"], bool) or not isinstance(p["running_above"], int | float)
                                 or p["running_above"] < 0):
        raise Invalid(f"{at}: params.running_above must be a number ≥ 0, not {p['running_above']!r}",
                      field=f"{where}.params.running_above", rule="range")
    for name in ("time_scale", "window", "max_rul", "min_rows", "t_min", "threshold", "alpha", "health_horizon"):
        if name in p and (isinstance(p[name], bool) or not isinstance(p[name], int | float) or p[name] <= 0):
            raise Invalid(f"{at}: params.{name} must be a positive number, not {p[name]!r}",
                          field=f"{where}.params.{name}", rule="range")


def parse_specs(docs: Iterable[Mapping[str, Any]]) -> list[AnalyticSpec]:
    specs = [parse_spec(d, f"analytics[{i}]") for i, d in enumerate(docs)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise Invalid(f"analytics {s.name!r} is configured twice", field="analytics", rule="unique")
        seen.add(s.name)
    return specs


def drift_rules(specs: Iterable[AnalyticSpec], limit: float = 2.0) -> list[dict[str, Any]]:
    """Alarm rules (warnings) raised when a detector's inputs drift from its training distribution.

    The engine writes ``analytics.<name>.drift.input_shift`` (the largest long-horizon shift of an
    input, in training standard deviations) and ``retrain_shift``: the same, but 0 while an ongoing
    anomaly explains the shift (a fault is not a new normal; see ``Drift``). Past ``limit`` a warning
    is raised on the twin, and it clears below ``limit / 2``.
    """
    return [{"name": f"{s.name}-drift", "model": s.model, "property": f"analytics.{s.name}.drift.retrain_shift",
             "kind": "threshold", "above": limit, "clear": limit / 2, "severity": "warning", "propagate": False,
             "message": f"inputs of analytic {s.name} have drifted from its training data: retrain it"}
            for s in specs if s.enabled and s.kind == "anomaly"]
