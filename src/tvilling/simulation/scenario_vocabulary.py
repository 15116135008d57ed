"""What a model's scenarios may say, and the check of a scenario against it.

A :class:`Vocabulary` binds a behaviour model to the words of a what-if: its commands (each sets an
input), its injectable faults (each a parameter), its maintenance actions (states and parameters a
part is reset to), what counts as failed, which output is the production rate and how power is
computed. The machine's is :data:`tvilling.simulation.scenario_machine.MACHINE`.

:func:`check` finds everything a scenario names that the model lacks or that lies outside its
bounds, and raises :class:`~tvilling.core.errors.Invalid` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Array, Signature, Variable
from tvilling.simulation.scenario import Scenario
from tvilling.simulation.scenario_interventions import Command, Fault, Maintenance, ParameterChange, Profile

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CommandSpec:
    """A command: the input it sets and either a fixed value (``stop`` sets ``running`` to 0) or the
    command's own value, which must lie in ``[lower, upper]``."""

    input: str
    fixed: float | None = None
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class Action:
    """A maintenance action on a part: states and parameters set to these values when it is done.
    ``{part}`` in a name stands for the part (``{part}:wear`` on ``de`` is ``de:wear``)."""

    parts: Sequence[str]
    states: Mapping[str, float] = field(default_factory=dict)
    parameters: Mapping[str, float] = field(default_factory=dict)

    def resolved(self, part: str | None) -> tuple[dict[str, float], dict[str, float]]:
        """The states and parameters this action sets on ``part``."""
        name = part or ""
        return ({k.replace("{part}", name): v for k, v in self.states.items()},
                {k.replace("{part}", name): v for k, v in self.parameters.items()})


@dataclass(frozen=True)
class Vocabulary:
    """The words of a model's scenarios (see the module text).

    ``failed(states) -> mask``: which instances have failed; ``power(outputs) -> kW`` (None: the
    model has no power); ``production``: the output that is a rate per hour; ``running``: the input
    that a maintenance stop holds at 0; ``record``: the outputs a run keeps as series by default."""

    commands: Mapping[str, CommandSpec]
    faults: Mapping[str, str]
    actions: Mapping[str, Action]
    failed: Callable[[Mapping[str, Array]], Mask]
    running: str
    production: str | None = None
    power: Callable[[Mapping[str, Array]], Array] | None = None
    record: Sequence[str] = ()
    failure: str = "failed"  # what failure means, in words (for reports)


def _bounded(var: Variable, value: float, where: str) -> None:
    if var.lower is not None and value < var.lower:
        raise Invalid(f"scenario: {where} = {value:g} is below the lower bound {var.lower:g} of {var.name!r}",
                      field=where, rule="range", lower=var.lower)
    if var.upper is not None and value > var.upper:
        raise Invalid(f"scenario: {where} = {value:g} is above the upper bound {var.upper:g} of {var.name!r}",
                      field=where, rule="range", upper=var.upper)


def _known(name: str, known: Mapping[str, object], kind: str, where: str) -> None:
    if name not in known:
        raise Invalid(f"scenario: {where}: no {kind} {name!r}; the {kind}s are {sorted(known)}", field=where,
                      rule="unknown", name=name)


def check(scenario: Scenario, signature: Signature, vocabulary: Vocabulary) -> None:
    """Raise :class:`Invalid` for the first thing ``scenario`` names that the model or vocabulary lacks,
    or a value outside its bounds: start states and inputs, parameters (means, changes, faults,
    maintenance), noise, commands and their values, faults, actions and parts, recorded outputs."""
    params = {v.name: v for v in signature.parameters}
    states = {v.name: v for v in signature.states}
    inputs = {v.name: v for v in signature.inputs}
    outputs = {v.name: v for v in signature.outputs}
    k, start_states, start_inputs = scenario.start.arrays()
    for name, values in start_states.items():
        _known(name, states, "state", f"start.states.{name}")
        for value in values:
            _bounded(states[name], float(value), f"start.states.{name}")
    for name, values in start_inputs.items():
        _known(name, inputs, "input", f"start.inputs.{name}")
        for value in values:
            _bounded(inputs[name], float(value), f"start.inputs.{name}")
    missing = [v.name for v in signature.inputs if v.default is None and v.name not in start_inputs]
    if missing:
        raise Invalid(f"scenario: start.inputs must give {missing[0]!r} (the model has no default for it)",
                      field=f"start.inputs.{missing[0]}", rule="required")
    unc = scenario.uncertainty
    for name, mean in unc.means.items():
        _known(name, params, "parameter", f"uncertainty.means.{name}")
        _bounded(params[name], float(mean), f"uncertainty.means.{name}")
    for name in scenario.noise:
        _known(name, states, "state", f"noise.{name}")
    for name in scenario.record or ():
        _known(name, outputs, "output", f"record.{name}")
    for i, option in enumerate(scenario.options):
        for j, item in enumerate(option.interventions):
            _check_item(item, f"options[{i}].interventions[{j}]", k, params, states, inputs, vocabulary)


def _check_item(item: object, where: str, machines: int, params: Mapping[str, Variable],
                states: Mapping[str, Variable], inputs: Mapping[str, Variable], vocabulary: Vocabulary) -> None:
    machine = getattr(item, "machine", None)
    if machine is not None and machine >= machines:
        raise Invalid(f"scenario: {where}.machine = {machine} but the start has {machines} machine(s)",
                      field=f"{where}.machine", rule="range")
    if isinstance(item, Command):
        _known(item.command, vocabulary.commands, "command", f"{where}.command")
        spec = vocabulary.commands[item.command]
        if spec.fixed is None:
            if item.value is None:
                raise Invalid(f"scenario: {where}: command {item.command!r} needs a value", field=f"{where}.value",
                              rule="required")
            _bounded(Variable(item.command, lower=spec.lower, upper=spec.upper), float(item.value), f"{where}.value")
        elif item.value is not None:
            raise Invalid(f"scenario: {where}: command {item.command!r} takes no value", field=f"{where}.value",
                          rule="unexpected")
    elif isinstance(item, Profile):
        _known(item.input, inputs, "input", f"{where}.input")
        for value in item.values:
            _bounded(inputs[item.input], float(value), f"{where}.values")
    elif isinstance(item, ParameterChange):
        for name, value in item.values.items():
            _known(name, params, "parameter", f"{where}.values.{name}")
            _bounded(params[name], float(value), f"{where}.values.{name}")
    elif isinstance(item, Fault):
        _known(item.fault, vocabulary.faults, "fault", f"{where}.fault")
        _bounded(params[vocabulary.faults[item.fault]], float(item.size), f"{where}.size")
    elif isinstance(item, Maintenance):
        _known(item.action, vocabulary.actions, "maintenance action", f"{where}.action")
        action = vocabulary.actions[item.action]
        if action.parts and item.part not in action.parts:
            raise Invalid(f"scenario: {where}: {item.action!r} acts on a part, one of {list(action.parts)}, "
                          f"not {item.part!r}", field=f"{where}.part", rule="enum")
        set_states, set_params = action.resolved(item.part)
        for name, value in set_states.items():
            _bounded(states[name], value, f"{where}.action")
        for name, value in set_params.items():
            _bounded(params[name], value, f"{where}.action")


__all__ = ["Action", "CommandSpec", "Vocabulary", "check"]
