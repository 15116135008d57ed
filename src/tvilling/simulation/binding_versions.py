"""Versions of a simulation's parameters, kept in the analytic registry under ``sim:<name>``.

A version is a set of parameter values for one twin (scope = the twin id) or the fleet (scope
``*``), made by a calibration or by hand; like an analytic version it is a candidate until
promoted, and promoting one retires the one promoted before. The parameters a twin's model runs
with are layered, later over earlier:

1. the model's defaults,
2. the configuration's ``parameters``,
3. the promoted fleet version,
4. the configuration's ``twins.<id>``,
5. the promoted version of the twin.

>>> from tvilling.analytics.binding.registry import MemoryRegistry
>>> from tvilling.simulation.spec import parse_simulation
>>> spec = parse_simulation({"name": "m", "model": "dtmi:x:M;1", "kind": "python", "class": "a:B",
...                          "outputs": {"y": "y"}, "parameters": {"k": 1.0}})
>>> reg = MemoryRegistry()
>>> add_version(reg, spec, "*", {"k": 2.0}, promote=True).version
1
>>> parameters_for(reg, spec, "t1")
{'k': 2.0}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from tvilling.analytics.binding.registry import AnalyticRegistry, Version
from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Signature
from tvilling.simulation.spec import FLEET, SimulationSpec


def add_version(registry: AnalyticRegistry, spec: SimulationSpec, scope: str, parameters: Mapping[str, float], *,
                promote: bool = False, metrics: dict[str, Any] | None = None,
                signature: Signature | None = None) -> Version:
    """Register a parameter version of ``spec`` for ``scope`` (a twin id, or ``*``); checked against the
    model's parameters and bounds when ``signature`` is given."""
    clean: dict[str, float] = {}
    for name, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Invalid(f"simulation {spec.name!r}: parameter {name!r} must be a finite number, not {value!r}",
                          field=f"parameters.{name}", rule="type")
        clean[str(name)] = float(value)
    if signature is not None:
        known = {v.name: v for v in signature.parameters}
        for name, value in clean.items():
            var = known.get(name)
            if var is None:
                raise Invalid(f"simulation {spec.name!r}: the model has no parameter {name!r}",
                              field=f"parameters.{name}", rule="unknown")
            if (var.lower is not None and value < var.lower) or (var.upper is not None and value > var.upper):
                raise Invalid(f"simulation {spec.name!r}: parameter {name!r} = {value:g} lies outside its bounds "
                              f"[{var.lower}, {var.upper}]", field=f"parameters.{name}", rule="range")
    artifact = json.dumps(clean, sort_keys=True).encode()
    return registry.add(spec.registry_name, scope, artifact, fingerprint=spec.fingerprint, params=clean,
                        metrics=dict(metrics or {}), promote=promote)


def promoted_parameters(registry: AnalyticRegistry | None, spec: SimulationSpec, scope: str) -> dict[str, float]:
    """The parameters of the version of ``scope`` promoted now ({} when none)."""
    if registry is None:
        return {}
    version = registry.promoted(spec.registry_name, scope)
    return {} if version is None else version_parameters(version.params)


def version_parameters(params: Mapping[str, Any]) -> dict[str, float]:
    """A version's parameter values: flat (``{"name": value}``) or as a calibration registers them
    (``{"parameters": {...}, "startValues": {...}, "stderr": {...}}``, see ``Calibration.to_version``)."""
    nested = params.get("parameters")
    values: Mapping[str, Any] = nested if isinstance(nested, Mapping) else params
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def promoted_versions(registry: AnalyticRegistry | None, spec: SimulationSpec, twin: str) -> tuple[int | None, ...]:
    """The numbers of the fleet and twin versions promoted now (to notice a promotion made elsewhere)."""
    if registry is None:
        return (None, None)
    fleet, own = registry.promoted(spec.registry_name, FLEET), registry.promoted(spec.registry_name, twin)
    return (None if fleet is None else fleet.version, None if own is None else own.version)


def parameters_for(registry: AnalyticRegistry | None, spec: SimulationSpec, twin: str) -> dict[str, float]:
    """The parameters one twin's model runs with, layered as the module docstring says (defaults aside)."""
    return {**spec.parameters, **promoted_parameters(registry, spec, FLEET), **spec.twins.get(twin, {}),
            **promoted_parameters(registry, spec, twin)}


__all__ = ["add_version", "parameters_for", "promoted_parameters", "promoted_versions", "version_parameters"]
