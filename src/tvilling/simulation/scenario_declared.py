"""A scenario vocabulary declared in configuration, for a model that has none built in (an FMU).

A simulation's ``[simulations.scenario]`` table says what its what-ifs may name; it becomes the same
:class:`~.scenario_vocabulary.Vocabulary` the machine model has in code::

    [simulations.scenario]
    failed = "level < 0.5 or level > 1.9"   # outputs/states: name op number (< <= > >= == !=), joined by 'or'
    failure = "the tank ran dry or overflowed"   # optional: the failure in words, for reports
    production = "q_out"                    # optional: an output, a rate per hour
    power = "pump_power"                    # optional: an output, kW
    running = "pump_on"                     # optional: the input a maintenance stop holds at 0
    record = ["level", "q_out"]             # optional: the outputs kept as series (default: all)
    commands = { setInflow = { input = "q_in", min = 0, max = 10 }, stop = { input = "q_in", value = 0 } }
    faults = { leak = { parameter = "leak" } }                      # the fault's size is the parameter's value
    maintenance = { repair = { parameters = { leak = 0.0 }, states = { } } }   # parts = [...] optional
    start = { level = "level" }             # optional: model state ← twin property, as inputs are bound

A command either sets its input to a fixed ``value`` or takes the request's value within
``[min, max]`` (default: the input's own bounds). A maintenance action may list ``parts``; ``{part}``
in its names stands for the part, as in the machine's vocabulary. The table's shape is checked when
the configuration is read (:func:`parse_declared`); the names it uses are checked against the model
when it is opened (:func:`declared_vocabulary`). Each error names the key.

Without ``running``, a maintenance stop cannot stop the model itself: it runs on, and its production
and power count as zero while the stop lasts (:class:`DeclaredModel` adds an input
:data:`HOLD_INPUT` for that). A run starts from the twin's reported state through the simulation's
binding (:func:`start_from_binding`): each input from its source, and each state from ``start`` or,
failing that, from the output of the same name.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Array, Instances, Signature, Variable
from tvilling.simulation.scenario import Start
from tvilling.simulation.scenario_vocabulary import Action, CommandSpec, Mask, Vocabulary

if TYPE_CHECKING:
    from tvilling.simulation.scenario_runner import ScenarioModel
    from tvilling.simulation.spec import SimulationSpec, Source

#: the input a maintenance stop holds at 0 when the declaration names no ``running`` input
HOLD_INPUT = "scenario:running"
_KEYS = {"commands", "faults", "maintenance", "failed", "failure", "production", "power", "running", "record",
         "start"}
_OPS: dict[str, Callable[[Any, float], Any]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CLAUSE = re.compile(rf"\s*(?P<name>[^<>=!]*?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>{_NUMBER})\s*")
_WATCHED = "scenario:outputs"  # where DeclaredModel keeps the last outputs, in the instances' data


@dataclass(frozen=True)
class Comparison:
    """One clause of a failure condition: ``name op value``."""

    name: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value:g}"


@dataclass(frozen=True)
class DeclaredScenario:
    """The ``[simulations.scenario]`` table, its shape checked (names are checked against the model later)."""

    commands: dict[str, CommandSpec] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    failed: tuple[Comparison, ...] = ()
    failure: str | None = None
    production: str | None = None
    power: str | None = None
    running: str | None = None
    record: tuple[str, ...] | None = None
    start: dict[str, Source] = field(default_factory=dict)


# -- reading the table ---------------------------------------------------------------------------------------

def _fail(message: str, where: str, rule: str) -> Invalid:
    return Invalid(message, field=where, rule=rule)


def _table(value: Any, at: str, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{at}: {where.rsplit('.', 1)[-1]} must be a table ({what}), not {value!r}", where, "type")
    return value


def _keys(doc: Mapping[str, Any], allowed: set[str], at: str, where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise _fail(f"{at}: {where} has no key {unknown[0]!r} ({', '.join(sorted(allowed))})",
                    f"{where}.{unknown[0]}", "unknown")


def _name(value: Any, at: str, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{at}: {where} must name {what}, not {value!r}", where, "type" if value is not None else
                    "required")
    return value.strip()


def _number(value: Any, at: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(f"{at}: {where} must be a number, not {value!r}", where, "type")
    return float(value)


def parse_condition(text: Any, at: str, where: str) -> tuple[Comparison, ...]:
    """``"level < 0.5 or level > 1.9"`` as its comparisons; :class:`Invalid` naming ``where`` if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise _fail(f"{at}: {where} must be a condition such as \"level > 1.9\", not {text!r}", where, "type")
    out: list[Comparison] = []
    for clause in re.split(r"\s+or\s+", text.strip()):
        m = _CLAUSE.fullmatch(clause)
        if m is None or not m["name"]:
            raise _fail(f"{at}: {where}: {clause.strip()!r} is not 'name op number' (op one of "
                        f"{', '.join(_OPS)}; clauses joined by 'or')", where, "condition")
        out.append(Comparison(m["name"], m["op"], float(m["value"])))
    return tuple(out)


def _command(name: str, doc: Any, at: str, where: str) -> CommandSpec:
    doc = _table(doc, at, where, "input and value, or input with min/max")
    _keys(doc, {"input", "value", "min", "max"}, at, where)
    target = _name(doc.get("input"), at, f"{where}.input", "the model input the command sets")
    if "value" in doc:
        if "min" in doc or "max" in doc:
            raise _fail(f"{at}: command {name!r} sets a fixed value: it takes no min/max", f"{where}.value",
                        "exclusive")
        return CommandSpec(target, fixed=_number(doc["value"], at, f"{where}.value"))
    lower = None if doc.get("min") is None else _number(doc["min"], at, f"{where}.min")
    upper = None if doc.get("max") is None else _number(doc["max"], at, f"{where}.max")
    if lower is not None and upper is not None and lower > upper:
        raise _fail(f"{at}: command {name!r}: min ({lower:g}) exceeds max ({upper:g})", f"{where}.min", "range")
    return CommandSpec(target, lower=lower, upper=upper)


def _action(doc: Any, at: str, where: str) -> Action:
    doc = _table(doc, at, where, "parameters and/or states to reset, parts")
    _keys(doc, {"parameters", "states", "parts"}, at, where)
    values: dict[str, dict[str, float]] = {}
    for key in ("parameters", "states"):
        table = _table(doc.get(key, {}), at, f"{where}.{key}", "name = value")
        values[key] = {str(k): _number(v, at, f"{where}.{key}.{k}") for k, v in table.items()}
    if not values["parameters"] and not values["states"]:
        raise _fail(f"{at}: {where} must reset at least one parameter or state", f"{where}.parameters", "required")
    parts = doc.get("parts", [])
    if not isinstance(parts, list) or not all(isinstance(p, str) and p for p in parts):
        raise _fail(f"{at}: {where}.parts must be a list of part names", f"{where}.parts", "type")
    return Action(parts=tuple(parts), states=values["states"], parameters=values["parameters"])


def parse_declared(doc: Any, at: str, where: str, source: Callable[..., Source]) -> DeclaredScenario:
    """The ``[simulations.scenario]`` table ``doc`` of the simulation ``at``, its shape checked; ``source``
    reads a ``start`` entry as the binding reads an input (:func:`tvilling.simulation.spec.parse_source`)."""
    doc = _table(doc, at, where, "commands, faults, maintenance, failed, production, power …")
    _keys(doc, _KEYS, at, where)
    commands = {str(k): _command(str(k), v, at, f"{where}.commands.{k}")
                for k, v in _table(doc.get("commands", {}), at, f"{where}.commands", "name = {input …}").items()}
    faults: dict[str, str] = {}
    for k, v in _table(doc.get("faults", {}), at, f"{where}.faults", "name = {parameter}").items():
        entry = _table(v, at, f"{where}.faults.{k}", "parameter = the parameter the fault sets")
        _keys(entry, {"parameter"}, at, f"{where}.faults.{k}")
        faults[str(k)] = _name(entry.get("parameter"), at, f"{where}.faults.{k}.parameter", "a model parameter")
    actions = {str(k): _action(v, at, f"{where}.maintenance.{k}")
               for k, v in _table(doc.get("maintenance", {}), at, f"{where}.maintenance",
                                  "name = {parameters, states}").items()}
    failed = () if doc.get("failed") is None else parse_condition(doc["failed"], at, f"{where}.failed")
    failure = doc.get("failure")
    if failure is not None and not isinstance(failure, str):
        raise _fail(f"{at}: {where}.failure must be text", f"{where}.failure", "type")
    named = {key: None if doc.get(key) is None else _name(doc[key], at, f"{where}.{key}", f"a model {what}")
             for key, what in (("production", "output"), ("power", "output"), ("running", "input"))}
    record = doc.get("record")
    if record is not None and (not isinstance(record, list) or not record
                               or not all(isinstance(r, str) and r for r in record)):
        raise _fail(f"{at}: {where}.record must be a non-empty list of output names", f"{where}.record", "type")
    start = {str(k): source(v, at, f"{where}.start.{k}", constant=True)
             for k, v in _table(doc.get("start", {}), at, f"{where}.start", "state = property").items()}
    return DeclaredScenario(commands=commands, faults=faults, actions=actions, failed=failed, failure=failure,
                            production=named["production"], power=named["power"], running=named["running"],
                            record=None if record is None else tuple(record), start=start)


# -- the vocabulary, checked against the model -------------------------------------------------------------

def _known(name: str, known: Sequence[str], kind: str, at: str, where: str) -> None:
    if name not in known:
        raise _fail(f"{at}: {where} names {name!r}, which is not {kind} of the model; it has "
                    f"{', '.join(known) or 'none'}", where, "unknown")


def declared_vocabulary(declared: DeclaredScenario, signature: Signature, at: str = "simulation",
                        where: str = "scenario") -> Vocabulary:
    """The :class:`Vocabulary` the declaration describes, every name checked against ``signature``
    (:class:`Invalid` naming the key). The failure condition reads outputs and states."""
    inputs, outputs = signature.names("inputs"), signature.names("outputs")
    params, states = signature.names("parameters"), signature.names("states")
    bounds = {v.name: v for v in signature.inputs}
    commands: dict[str, CommandSpec] = {}
    for name, spec in declared.commands.items():
        _known(spec.input, inputs, "an input", at, f"{where}.commands.{name}.input")
        if spec.fixed is None:  # the input's own bounds where the command gives none
            var = bounds[spec.input]
            spec = replace(spec, lower=var.lower if spec.lower is None else spec.lower,
                           upper=var.upper if spec.upper is None else spec.upper)
        commands[name] = spec
    for name, parameter in declared.faults.items():
        _known(parameter, params, "a parameter", at, f"{where}.faults.{name}.parameter")
    for name, action in declared.actions.items():
        for part in action.parts or (None,):
            set_states, set_params = action.resolved(part)
            for s in set_states:
                _known(s, states, "a state", at, f"{where}.maintenance.{name}.states")
            for p in set_params:
                _known(p, params, "a parameter", at, f"{where}.maintenance.{name}.parameters")
    for c in declared.failed:
        _known(c.name, [*outputs, *(s for s in states if s not in outputs)], "an output or state", at,
               f"{where}.failed")
    for key in ("production", "power"):
        name = getattr(declared, key)
        if name is not None:
            _known(name, outputs, "an output", at, f"{where}.{key}")
    if declared.running is not None:
        _known(declared.running, inputs, "an input", at, f"{where}.running")
    for name in declared.record or ():
        _known(name, outputs, "an output", at, f"{where}.record")
    for name in declared.start:
        _known(name, states, "a state", at, f"{where}.start.{name}")
    comparisons = declared.failed

    def failed(values: Mapping[str, Array]) -> Mask:
        n = len(next(iter(values.values()))) if values else 0
        out: Mask = np.zeros(n, dtype=bool)
        for c in comparisons:
            out |= np.asarray(_OPS[c.op](np.asarray(values[c.name]), c.value), dtype=bool)
        return out

    words = declared.failure or (" or ".join(map(str, comparisons)) if comparisons else "never (no condition)")
    return Vocabulary(commands=commands, faults=dict(declared.faults), actions=dict(declared.actions),
                      failed=failed, running=declared.running or HOLD_INPUT, production=declared.production,
                      power=None if declared.power is None else _output(declared.power),
                      record=declared.record or outputs, failure=words)


def _output(name: str) -> Callable[[Mapping[str, Array]], Array]:
    def value(y: Mapping[str, Array]) -> Array:
        return np.asarray(y[name], dtype=np.float64)

    return value


# -- the model as the runner sees it -------------------------------------------------------------------------

class DeclaredModel:
    """A behaviour model under a declared vocabulary: its ``state_values`` hold the outputs of the last
    step as well (the failure condition may read them), and without a declared ``running`` input it
    has an input :data:`HOLD_INPUT` (default 1) whose 0 — a maintenance stop — zeroes the outputs
    ``zeroed`` (production and power). Everything else is the model's own."""

    def __init__(self, model: ScenarioModel, vocabulary: Vocabulary, zeroed: Sequence[str] = ()) -> None:
        self.model = model
        self.name: str = model.name
        self._hold = vocabulary.running == HOLD_INPUT
        self._zeroed = list(zeroed)
        sig = model.signature
        self.signature: Signature = (replace(sig, inputs=(*sig.inputs, Variable(HOLD_INPUT, default=1.0,
                                                                                lower=0.0, upper=1.0)))
                                     if self._hold else sig)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def start(self, n: int, parameters: Mapping[str, Any] | None = None,
              start_values: Mapping[str, Any] | None = None, t0: float = 0.0, *,
              noise: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None) -> Instances:
        return self.model.start(n, parameters, start_values, t0, noise=noise, rng=rng)

    def _own(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        own = dict(inputs)
        return own, own.pop(HOLD_INPUT, None)

    def _seen(self, instances: Instances, y: dict[str, Array], hold: Any) -> dict[str, Array]:
        if self._hold and hold is not None:
            held = np.broadcast_to(np.asarray(hold, dtype=np.float64), (instances.n,)) <= 0.0
            if held.any():
                y = {**y, **{name: np.where(held, 0.0, y[name]) for name in self._zeroed}}
        instances.data[_WATCHED] = y
        return y

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Any]) -> dict[str, Array]:
        own, hold = self._own(inputs)
        return self._seen(instances, self.model.step(instances, dt, own), hold)

    def read_outputs(self, instances: Instances, inputs: Mapping[str, Any]) -> dict[str, Array]:
        own, hold = self._own(inputs)
        return self._seen(instances, self.model.read_outputs(instances, own), hold)

    def state_values(self, instances: Instances) -> dict[str, Array]:
        return {**instances.data.get(_WATCHED, {}), **self.model.state_values(instances)}

    def set_states(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        self.model.set_states(instances, values, where)

    def set_parameters(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        self.model.set_parameters(instances, values, where)

    def close(self, instances: Instances) -> None:
        self.model.close(instances)  # type: ignore[attr-defined]


def declared_model(model: Any, spec: SimulationSpec) -> tuple[DeclaredModel, Vocabulary]:
    """The model of ``spec`` as its declared scenarios run it, with their vocabulary; :class:`Invalid`
    when the simulation declares none or a name in it is not the model's."""
    at = f"simulation {spec.name!r}"
    if spec.scenario is None:
        raise Invalid(f"scenario request: simulation {spec.name!r} ({type(model).__name__}) has no scenario "
                      "vocabulary: declare one in [simulations.scenario]", field="simulation", rule="no_vocabulary")
    missing = [m for m in ("read_outputs", "state_values", "set_states", "set_parameters") if not hasattr(model, m)]
    if missing:
        raise Invalid(f"{at}: {type(model).__name__} cannot run what-ifs: it has no {missing[0]}()",
                      field="simulation", rule="capability")
    vocabulary = declared_vocabulary(spec.scenario, model.signature, at)
    zeroed = [n for n in (spec.scenario.production, spec.scenario.power) if n]
    return DeclaredModel(model, vocabulary, zeroed), vocabulary


# -- the start from the twin's reported state ----------------------------------------------------------------

def _key(source: Source) -> str:
    """Where a source's value lies in the flat reported mapping of a scenario's fork (``part:path``)."""
    if source.relationship is None:
        return source.path
    from tvilling.simulation.scenario_service import part_name

    where = dict(source.where)
    part = where.get("location") or part_name(source.relationship, {}, {})
    return f"{part}:{source.path}"


def _value(source: Source, reported: Mapping[str, Any]) -> float | None:
    if source.constant is not None:
        return source.constant
    value = reported.get(_key(source))
    if isinstance(value, bool):
        value = dict(source.map).get("true" if value else "false", float(value))
    elif isinstance(value, str):
        value = dict(source.map).get(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def start_from_binding(spec: SimulationSpec, signature: Signature, reported: Mapping[str, Any]) -> Start:
    """A :class:`Start` from a twin's reported state (flat ``part:path`` names, as the scenario service
    reads a fork): each bound input from its source; each state from the declaration's ``start``, else
    from the bound output of the same name. What is not reported keeps the model's default. A part is
    found by its ``location`` in ``where`` or by the relationship's name without ``has``."""
    inputs = {name: v for name, source in spec.inputs.items() if (v := _value(source, reported)) is not None}
    states: dict[str, float] = {}
    declared = spec.scenario.start if spec.scenario is not None else {}
    for name in signature.names("states"):
        source = declared.get(name) or spec.outputs.get(name)
        value = None if source is None else _value(source, reported)
        if value is not None:
            states[name] = value
    return Start(states, inputs)


__all__ = ["HOLD_INPUT", "Comparison", "DeclaredModel", "DeclaredScenario", "declared_model", "declared_vocabulary",
           "parse_condition", "parse_declared", "start_from_binding"]
