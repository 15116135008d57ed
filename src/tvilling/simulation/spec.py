"""The configuration of one simulation: which twins (by model), which behaviour model, how it is bound.

In ``tvilling.toml``::

    [[simulations]]
    name = "machine"
    model = "dtmi:tvilling:example:Machine;3"        # this model and every model extending it
    kind = "python"                                  # or "fmu" with path = "models/machine.fmu"
    class = "tvilling.simulation.machine:MachineModel"
    time_scale = 1.0        # model seconds per second of the readings' timestamps (an accelerated plant: > 1)
    step = 5.0              # longest model step, seconds (a longer gap between readings is split)
    learn_rows = 60         # rows whose residuals set each output's normal size (the scale)
    alpha = 0.3             # smoothing of the normalised residuals (1: none)
    alarm = { above = 6.0, clear = 3.0, severity = "major" }   # optional: one alarm rule per output

    [simulations.inputs]    # model input ← where its value comes from
    speedSetpoint = "speedSetpoint"                          # a property of the simulated twin
    "spindle:load" = "hasSpindle/load"                       # the target of a relationship
    running = { path = "state", map = { running = 1, idle = 0, stopped = 0, fault = 0 } }
    ambient = 22.0                                           # a constant

    [simulations.outputs]   # model output → the measured property it predicts
    speed = "speed"
    "motor.current" = "motor.current"
    "de:vibration" = "hasBearing[location=de]/vibration"     # the bearing whose location is "de"

    [simulations.parameters]                 # for every twin
    tauMotor = 1200.0
    [simulations.twins.line-1-m02]           # for one twin (over the above)
    motorRise = 60.0

    [simulations.scenario]   # optional: the what-if words of a model that has none built in (an FMU);
                             # see tvilling.simulation.scenario_declared

A source is a property path of the simulated twin (``motor.current``), or ``relationship/path``:
the twin at the end of the simulated twin's relationship, chosen by ``[key=value]`` when there
are several (the relationship's own property ``key``, else the target's reported ``key``). The
table form ``{path, relationship, where = {key = value}, map = {text = number}}`` can also turn a
text value (an enum such as a machine's ``state``) into a number through ``map``; a plain number
is a constant input.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.core.ids import parse_dtmi
from tvilling.simulation.scenario_declared import DeclaredScenario, parse_declared

KINDS = ("python", "fmu")
SEVERITIES = ("critical", "major", "minor", "warning")
REGISTRY_PREFIX = "sim:"  # a simulation's parameter versions live in the analytic registry under this prefix
FLEET = "*"  # the scope of a fleet-wide parameter version
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*")
_SOURCE = re.compile(r"(?:(?P<rel>[A-Za-z_][A-Za-z0-9_\-]*)"
                     r"(?:\[(?P<key>[A-Za-z_][A-Za-z0-9_\-.]*)=(?P<value>[^\]]+)\])?/)?(?P<path>.+)")
_TOP = {"name", "model", "kind", "class", "path", "interface", "inputs", "outputs", "parameters", "twins", "step",
        "time_scale", "learn_rows", "alpha", "tolerance", "alarm", "enabled", "scenario"}
_ALARM = {"above", "clear", "severity", "for_s"}


@dataclass(frozen=True)
class Source:
    """Where an input's value, or an output's measured value, is read: a property path of the simulated
    twin or of the target of one of its relationships (``where``: which target), or a constant."""

    path: str = ""
    relationship: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    map: tuple[tuple[str, float], ...] = ()
    constant: float | None = None

    @property
    def target(self) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """Which twin the source reads: (relationship or None for the simulated twin itself, where)."""
        return self.relationship, self.where

    def number(self, text: str) -> float:
        """A text value (JSON) as a number through ``map``; NaN when it maps to nothing."""
        try:
            value = json.loads(text)
        except ValueError:
            return math.nan
        if isinstance(value, bool):
            value = "true" if value else "false"
        return dict(self.map).get(str(value), math.nan)


@dataclass(frozen=True)
class AlarmSpec:
    """One threshold alarm rule per output on its normalised residual (see :func:`residual_rules`)."""

    above: float
    clear: float
    severity: str = "major"
    for_s: float = 0.0


@dataclass(frozen=True)
class SimulationSpec:
    """A behaviour model bound to the twins of one model (see the module docstring)."""

    name: str
    model: str
    kind: str
    inputs: dict[str, Source]
    outputs: dict[str, Source]
    model_class: str | None = None
    path: str | None = None
    interface: str | None = None
    parameters: dict[str, float] = field(default_factory=dict)
    twins: dict[str, dict[str, float]] = field(default_factory=dict)
    step: float | None = None
    time_scale: float = 1.0
    learn_rows: int = 60
    alpha: float = 0.3
    tolerance: dict[str, float] = field(default_factory=dict)
    alarm: AlarmSpec | None = None
    enabled: bool = True
    scenario: DeclaredScenario | None = None  # [simulations.scenario]: what-ifs of a model without built-in words

    @property
    def registry_name(self) -> str:
        """The name its parameter versions have in the analytic registry (``sim:<name>``)."""
        return REGISTRY_PREFIX + self.name

    @property
    def fingerprint(self) -> str:
        """A short hash of the configuration: a parameter version records which configuration made it (the
        scenario words, which no parameter depends on, left out)."""
        doc = json.dumps({k: v for k, v in asdict(self).items() if k != "scenario"}, sort_keys=True, default=str)
        return hashlib.sha256(doc.encode()).hexdigest()[:12]

    def prefix(self) -> str:
        """The twin property under which its outputs are written: ``simulation.<name>``."""
        return f"simulation.{self.name}"


def output_path(output: str) -> str:
    """The property path segment of a model output: ``de:vibration`` → ``de.vibration`` (parts as in the twin)."""
    return output.replace(":", ".")


def _fail(message: str, field: str, rule: str) -> Invalid:
    return Invalid(message, field=field, rule=rule)


def _number(value: Any, at: str, field: str, *, positive: bool = False, lower: float | None = None,
            upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(f"{at}: {field} must be a number, not {value!r}", field, "type")
    if positive and value <= 0:
        raise _fail(f"{at}: {field} must be > 0, not {value!r}", field, "range")
    if (lower is not None and value < lower) or (upper is not None and value > upper):
        raise _fail(f"{at}: {field} must lie in [{lower}, {upper}], not {value!r}", field, "range")
    return float(value)


def parse_source(value: Any, at: str, field: str, *, constant: bool) -> Source:
    """One source from its configuration (a path string, a table, or — for an input — a number)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not constant:
            raise _fail(f"{at}: {field} must name the measured property, not a constant", field, "type")
        return Source(constant=_number(value, at, field))
    if isinstance(value, str):
        m = _SOURCE.fullmatch(value.strip())
        if m is None:
            raise _fail(f"{at}: {field} = {value!r} is not 'path', 'relationship/path' or "
                        "'relationship[key=value]/path'", field, "source")
        doc: dict[str, Any] = {"path": m["path"]}
        if m["rel"]:
            doc["relationship"] = m["rel"]
        if m["key"]:
            doc["where"] = {m["key"]: m["value"]}
        value = doc
    if not isinstance(value, Mapping):
        raise _fail(f"{at}: {field} must be a property path, a table{' or a number' if constant else ''}, "
                    f"not {value!r}", field, "type")
    unknown = sorted(set(value) - {"path", "relationship", "where", "map"})
    if unknown:
        raise _fail(f"{at}: {field} has no key {unknown[0]!r} (path, relationship, where, map)",
                    f"{field}.{unknown[0]}", "unknown")
    path = value.get("path")
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise _fail(f"{at}: {field}.path must be a dotted property path, not {path!r}", f"{field}.path", "path")
    rel = value.get("relationship")
    if rel is not None and (not isinstance(rel, str) or not _NAME.fullmatch(rel)):
        raise _fail(f"{at}: {field}.relationship must be a relationship name, not {rel!r}",
                    f"{field}.relationship", "name")
    where = value.get("where") or {}
    if not isinstance(where, Mapping) or not all(isinstance(k, str) and isinstance(v, str | int | float)
                                                 for k, v in where.items()):
        raise _fail(f"{at}: {field}.where must be a table of property = value", f"{field}.where", "type")
    if where and rel is None:
        raise _fail(f"{at}: {field}.where chooses among a relationship's targets: give the relationship",
                    f"{field}.where", "required")
    mapping = value.get("map") or {}
    if not isinstance(mapping, Mapping):
        raise _fail(f"{at}: {field}.map must be a table of text = number", f"{field}.map", "type")
    pairs = tuple(sorted((str(k), _number(v, at, f"{field}.map.{k}")) for k, v in mapping.items()))
    return Source(path=path, relationship=rel, where=tuple(sorted((k, str(v)) for k, v in where.items())),
                  map=pairs)


def _table(doc: Mapping[str, Any], key: str, at: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(f"{at}: {key} must be a table", f"{where}.{key}", "type")
    return value


def _parameters(table: Mapping[str, Any], at: str, where: str) -> dict[str, float]:
    return {str(k): _number(v, at, f"{where}.{k}") for k, v in table.items()}


def parse_simulation(doc: Mapping[str, Any], where: str = "simulations") -> SimulationSpec:
    """One simulation from its configuration mapping; :class:`Invalid` names the field that is wrong.

    The names of inputs, outputs and parameters are checked against the model itself when it is
    loaded (:func:`tvilling.simulation.binding.load_model`).
    """
    if not isinstance(doc, Mapping):
        raise _fail(f"{where} must be a table (an object)", where, "type")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(f"{where}.name must start with a letter and hold only letters, digits, '-' or '_' "
                    f"(not {name!r})", f"{where}.name", "name")
    at = f"simulation {name!r}"
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise _fail(f"{at}: no setting {unknown[0]!r}; a simulation takes {', '.join(sorted(_TOP))}",
                    f"{where}.{unknown[0]}", "unknown")
    model: Any = doc.get("model")
    parse_dtmi(model, field=f"{where}.model")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise _fail(f"{at}: kind {kind!r} is not one of {', '.join(KINDS)}", f"{where}.kind", "enum")
    model_class, path = doc.get("class"), doc.get("path")
    if kind == "python":
        if not isinstance(model_class, str) or not re.fullmatch(r"[\w.]+:[A-Za-z_]\w*", model_class):
            raise _fail(f"{at}: a python simulation needs class = 'package.module:ClassName', not {model_class!r}",
                        f"{where}.class", "required")
        if path is not None:
            raise _fail(f"{at}: path is for fmu simulations; a python one names its class", f"{where}.path", "kind")
    else:
        if not isinstance(path, str) or not path:
            raise _fail(f"{at}: an fmu simulation needs path = 'the/model.fmu'", f"{where}.path", "required")
        if model_class is not None:
            raise _fail(f"{at}: class is for python simulations; an fmu one has a path", f"{where}.class", "kind")
    interface = doc.get("interface")
    if interface is not None and (kind != "fmu" or not isinstance(interface, str)):
        raise _fail(f"{at}: interface (co-simulation or model exchange) is a string, for fmu simulations",
                    f"{where}.interface", "type")
    inputs = {str(k): parse_source(v, at, f"{where}.inputs.{k}", constant=True)
              for k, v in _table(doc, "inputs", at, where).items()}
    outputs = {str(k): parse_source(v, at, f"{where}.outputs.{k}", constant=False)
               for k, v in _table(doc, "outputs", at, where).items()}
    if not outputs:
        raise _fail(f"{at}: outputs must map at least one model output to the property it predicts",
                    f"{where}.outputs", "required")
    parameters = _parameters(_table(doc, "parameters", at, where), at, f"{where}.parameters")
    twins: dict[str, dict[str, float]] = {}
    for twin, table in _table(doc, "twins", at, where).items():
        if not isinstance(table, Mapping):
            raise _fail(f"{at}: twins.{twin} must be a table of parameter = value", f"{where}.twins.{twin}", "type")
        twins[str(twin)] = _parameters(table, at, f"{where}.twins.{twin}")
    step = doc.get("step")
    tolerance = _parameters(_table(doc, "tolerance", at, where), at, f"{where}.tolerance")
    unknown_tol = sorted(set(tolerance) - set(outputs))
    if unknown_tol:
        raise _fail(f"{at}: tolerance names {unknown_tol[0]!r}, which is not a configured output",
                    f"{where}.tolerance.{unknown_tol[0]}", "unknown")
    learn_rows = doc.get("learn_rows", 60)
    if isinstance(learn_rows, bool) or not isinstance(learn_rows, int) or learn_rows < 10:
        raise _fail(f"{at}: learn_rows must be an integer ≥ 10, not {learn_rows!r}", f"{where}.learn_rows", "range")
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(f"{at}: enabled must be true or false", f"{where}.enabled", "type")
    return SimulationSpec(
        name=name, model=str(model), kind=str(kind), inputs=inputs, outputs=outputs,
        model_class=model_class, path=path, interface=interface, parameters=parameters, twins=twins,
        step=None if step is None else _number(step, at, f"{where}.step", positive=True),
        time_scale=_number(doc.get("time_scale", 1.0), at, f"{where}.time_scale", positive=True),
        learn_rows=learn_rows, alpha=_number(doc.get("alpha", 0.3), at, f"{where}.alpha", positive=True, upper=1.0),
        tolerance={k: _number(v, at, f"{where}.tolerance.{k}", positive=True) for k, v in tolerance.items()},
        alarm=_alarm(doc.get("alarm"), at, f"{where}.alarm"), enabled=enabled,
        scenario=None if doc.get("scenario") is None else parse_declared(doc["scenario"], at, f"{where}.scenario",
                                                                         parse_source))


def _alarm(doc: Any, at: str, where: str) -> AlarmSpec | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise _fail(f"{at}: alarm must be a table (above, clear, severity, for_s)", where, "type")
    unknown = sorted(set(doc) - _ALARM)
    if unknown:
        raise _fail(f"{at}: alarm has no key {unknown[0]!r} ({', '.join(sorted(_ALARM))})",
                    f"{where}.{unknown[0]}", "unknown")
    if "above" not in doc:
        raise _fail(f"{at}: alarm needs above (the normalised residual that raises it)", f"{where}.above",
                    "required")
    above = _number(doc["above"], at, f"{where}.above", positive=True)
    clear = _number(doc.get("clear", above / 2), at, f"{where}.clear", positive=True)
    if clear > above:
        raise _fail(f"{at}: alarm.clear ({clear:g}) must not exceed alarm.above ({above:g})", f"{where}.clear",
                    "range")
    severity = doc.get("severity", "major")
    if severity not in SEVERITIES:
        raise _fail(f"{at}: alarm.severity {severity!r} is not one of {', '.join(SEVERITIES)}",
                    f"{where}.severity", "enum")
    return AlarmSpec(above, clear, str(severity), _number(doc.get("for_s", 0.0), at, f"{where}.for_s", lower=0.0))


def parse_simulations(docs: Iterable[Mapping[str, Any]]) -> list[SimulationSpec]:
    """Every configured simulation; names are unique."""
    specs = [parse_simulation(d, f"simulations[{i}]") for i, d in enumerate(docs)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise _fail(f"simulation {s.name!r} is configured twice", "simulations", "unique")
        seen.add(s.name)
    return specs


def residual_rules(specs: Iterable[SimulationSpec]) -> list[dict[str, Any]]:
    """Alarm rules from the simulations that configure ``alarm``: one per output, on its normalised
    residual ``simulation.<name>.score.<output>``, so that the alarm raised names the output that
    diverged from the model."""
    rules: list[dict[str, Any]] = []
    for s in specs:
        if not s.enabled or s.alarm is None:
            continue
        for output in s.outputs:
            rules.append({
                "name": f"{s.name}-residual-{output}", "model": s.model, "kind": "threshold",
                "property": f"{s.prefix()}.score.{output_path(output)}", "above": s.alarm.above,
                "clear": s.alarm.clear, "severity": s.alarm.severity, "for_s": s.alarm.for_s,
                "propagate": False,
                "message": f"physics model {s.name}: {output} diverges from the model on {{twin}} "
                           "({value:.3g} × its normal residual)"})
    return rules


__all__ = ["FLEET", "KINDS", "REGISTRY_PREFIX", "AlarmSpec", "SimulationSpec", "Source", "output_path",
           "parse_simulation", "parse_simulations", "parse_source", "residual_rules"]
