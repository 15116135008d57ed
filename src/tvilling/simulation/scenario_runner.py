"""Running a what-if scenario: every sample of every option as instances of one model run.

The run starts ``options × machines × samples`` instances of the model at once (instance
``(o·machines + j)·samples + s``), so a step of the whole comparison is one vectorised model call.
The parameter samples are drawn once per machine and shared by every option (common random
numbers: the options differ by their interventions, not by luck of the draw); process noise is
drawn per instance. Interventions become events at step boundaries that change the inputs,
parameters or states of the instances of their option (and machine).

Along the way the run keeps the recorded outputs as series, the first time each instance counts as
failed (the vocabulary's ``failed`` on the states after each step; ``inf`` when not within the
horizon), the production (the production rate at the end of each step × the step, a rate per hour)
and the energy (the vocabulary's power the same way, kWh). :mod:`.scenario_kpis` reduces them.

>>> from tvilling.simulation.machine import MachineModel
>>> from tvilling.simulation.scenario import Option, Scenario, Start
>>> from tvilling.simulation.scenario_interventions import Command
>>> from tvilling.simulation.scenario_machine import MACHINE
>>> s = Scenario(Start({}, {"speedSetpoint": 1500.0, "spindle:load": 75.0}), horizon=3600, step=60, samples=4,
...              options=(Option("stop", (Command(at=1800, command="stop"),)),), seed=1)
>>> result = run(s, MachineModel(), MACHINE)
>>> result.options, result.series["throughput"].shape, [round(float(p)) for p in result.production[:, 0, 0]]
(['do nothing', 'stop'], (61, 2, 1, 4), [120, 60])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Array, Instances, Signature
from tvilling.simulation.scenario import Scenario, Uncertainty
from tvilling.simulation.scenario_interventions import Command, Fault, Maintenance, ParameterChange, Profile
from tvilling.simulation.scenario_vocabulary import Mask, Vocabulary, check

Progress = Callable[[float], None]
#: redraws of out-of-bounds samples before the remaining ones are clipped into the bounds
_REDRAWS = 50


class ScenarioModel(Protocol):
    """What a scenario needs of a model beyond the port: reading and overwriting instances
    (:class:`~tvilling.simulation.statespace.StateSpaceModel` has it all)."""

    name: str
    signature: Signature

    def start(self, n: int, parameters: Mapping[str, Any] | None = None,
              start_values: Mapping[str, Any] | None = None, t0: float = 0.0, *,
              noise: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None) -> Instances: ...

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Any]) -> dict[str, Array]: ...

    def read_outputs(self, instances: Instances, inputs: Mapping[str, Any]) -> dict[str, Array]: ...

    def state_values(self, instances: Instances) -> dict[str, Array]: ...

    def set_states(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None: ...

    def set_parameters(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None: ...


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """What a run produced. Arrays over instances have the shape ``(options, machines, samples)``;
    a series has the time axis first: ``(steps + 1, options, machines, samples)`` (float32)."""

    options: list[str]
    times: Array  # seconds from the start, steps + 1 of them
    series: dict[str, npt.NDArray[np.float32]]
    failed_at: Array  # seconds; inf: not failed within the horizon
    production: Array  # parts (the production rate integrated over the horizon)
    energy: Array | None  # kWh
    parameters: dict[str, Array]  # the drawn parameter samples, (machines, samples)
    horizon: float
    step: float
    shift: float
    seconds: float  # wall time of the run
    failure: str = "failed"

    @property
    def baseline(self) -> str:
        """The do-nothing option every other is compared with (the first)."""
        return self.options[0]

    def index(self, option: str) -> int:
        """The position of ``option``; :class:`Invalid` naming it when there is none."""
        try:
            return self.options.index(option)
        except ValueError:
            raise Invalid(f"scenario: no option {option!r}; the options are {self.options}", field="option",
                          rule="unknown") from None


def draw(uncertainty: Uncertainty, signature: Signature, size: int, rng: np.random.Generator) -> dict[str, Array]:
    """``size`` samples of the uncertain parameters (the others are left to their defaults). A sample
    outside a parameter's bounds is drawn again, up to 50 times, then clipped into them."""
    bounds = {v.name: (v.lower, v.upper) for v in signature.parameters}
    names = list(uncertainty.names) if uncertainty.covariance is not None else list(uncertainty.means)
    if not names:
        return {}
    mean = np.array([float(uncertainty.means[n]) for n in names])
    if uncertainty.covariance is not None:
        cov = np.asarray(uncertainty.covariance, dtype=np.float64)
    else:
        cov = np.diag([float(uncertainty.std_errors.get(n, 0.0)) ** 2 for n in names])
    lo = np.array([-np.inf if bounds[n][0] is None else bounds[n][0] for n in names])
    hi = np.array([np.inf if bounds[n][1] is None else bounds[n][1] for n in names])
    out = rng.multivariate_normal(mean, cov, size=size, method="eigh")
    for _ in range(_REDRAWS):
        bad = ((out < lo) | (out > hi)).any(axis=1)
        if not bad.any():
            break
        out[bad] = rng.multivariate_normal(mean, cov, size=int(bad.sum()), method="eigh")
    out = np.clip(out, lo, hi)
    extra = {n: np.full(size, float(v)) for n, v in uncertainty.means.items() if n not in names}
    return {**{n: out[:, i].copy() for i, n in enumerate(names)}, **extra}


@dataclass
class _Event:
    step: int
    order: int
    option: int
    item: Any
    phase: str = ""  # a maintenance acts twice: "hold" at its time, "done" when its duration is over


def _events(scenario: Scenario, options: list[Any], dt: float) -> list[_Event]:
    def at(t: float) -> int:
        return max(0, int(np.ceil(t / dt - 1e-9)))

    out: list[_Event] = []
    for o, option in enumerate(options):
        for item in option.interventions:
            if isinstance(item, Profile):
                for t, value in zip(item.at, item.values, strict=True):
                    out.append(_Event(at(t), len(out), o, item, str(value)))
            elif isinstance(item, Maintenance):
                out.append(_Event(at(item.at), len(out), o, item, "hold"))
                out.append(_Event(at(item.at + item.duration), len(out), o, item, "done"))
            else:
                out.append(_Event(at(item.at), len(out), o, item))
    out.sort(key=lambda e: (e.step, e.order))
    return out


class _Run:
    """The mutable state of one run: instances, current inputs, maintenance holds, accumulators."""

    def __init__(self, scenario: Scenario, model: ScenarioModel, vocabulary: Vocabulary) -> None:
        self.scenario, self.model, self.vocabulary = scenario, model, vocabulary
        self.options = scenario.all_options()
        self.k, states, inputs = scenario.start.arrays()
        self.m, self.s = len(self.options), scenario.samples
        n = self.n = self.m * self.k * self.s
        rng = np.random.default_rng(scenario.seed)
        drawn = draw(scenario.uncertainty, model.signature, self.k * self.s, rng)
        self.parameters = {name: a.reshape(self.k, self.s) for name, a in drawn.items()}
        per_machine = np.repeat  # a machine's value for each of its samples
        start_values = {name: np.tile(per_machine(a, self.s), self.m) for name, a in states.items()}
        self.instances = model.start(n, {name: np.tile(a, self.m) for name, a in drawn.items()}, start_values,
                                     noise=dict(scenario.noise) or None, rng=rng if scenario.noise else None)
        self.inputs: dict[str, Array] = {v.name: np.full(n, float(v.default)) for v in model.signature.inputs
                                         if v.default is not None}
        self.inputs.update({name: np.tile(per_machine(a, self.s), self.m) for name, a in inputs.items()})
        self.hold = np.zeros(n)
        option_of = np.repeat(np.arange(self.m), self.k * self.s)
        machine_of = np.tile(np.repeat(np.arange(self.k), self.s), self.m)
        self._option_of, self._machine_of = option_of, machine_of

    def mask(self, option: int, machine: int | None) -> Mask:
        mask: Mask = self._option_of == option
        if machine is not None:
            mask &= self._machine_of == machine
        return mask

    def effective_inputs(self) -> dict[str, Array]:
        running = self.vocabulary.running
        if not self.hold.any():
            return self.inputs
        return {**self.inputs, running: np.where(self.hold > 0, 0.0, self.inputs[running])}

    def apply(self, event: _Event) -> None:
        item, model, vocab = event.item, self.model, self.vocabulary
        mask = self.mask(event.option, item.machine)
        if isinstance(item, Command):
            spec = vocab.commands[item.command]
            value = spec.fixed if spec.fixed is not None else float(item.value or 0.0)  # checked: given
            self.inputs[spec.input] = np.where(mask, value, self.inputs[spec.input])
        elif isinstance(item, Profile):
            self.inputs[item.input] = np.where(mask, float(event.phase), self.inputs[item.input])
        elif isinstance(item, ParameterChange):
            model.set_parameters(self.instances, dict(item.values), where=mask)
        elif isinstance(item, Fault):
            model.set_parameters(self.instances, {vocab.faults[item.fault]: item.size}, where=mask)
        elif isinstance(item, Maintenance):
            if event.phase == "hold":
                self.hold[mask] += 1.0
            else:
                states, params = vocab.actions[item.action].resolved(item.part)
                if states:
                    model.set_states(self.instances, states, where=mask)
                if params:
                    model.set_parameters(self.instances, params, where=mask)
                self.hold[mask] -= 1.0


def run(scenario: Scenario, model: ScenarioModel, vocabulary: Vocabulary, *,
        progress: Progress | None = None) -> ScenarioResult:
    """Run ``scenario`` on ``model`` (checked first against the model and ``vocabulary``); ``progress``
    is called with the fraction done (0 < f ≤ 1) about a hundred times, the last time with 1.0."""
    check(scenario, model.signature, vocabulary)
    began = time.perf_counter()
    r = _Run(scenario, model, vocabulary)
    dt, steps = float(scenario.step), scenario.steps
    names = list(scenario.record if scenario.record is not None else vocabulary.record)
    series = {name: np.empty((steps + 1, r.n), dtype=np.float32) for name in names}
    first = model.read_outputs(r.instances, r.effective_inputs())
    for name in names:
        series[name][0] = first[name]
    failed_at = np.where(vocabulary.failed(model.state_values(r.instances)), 0.0, np.inf)
    production = np.zeros(r.n)
    energy = np.zeros(r.n) if vocabulary.power is not None else None
    events = _events(scenario, r.options, dt)
    e = 0
    every = max(1, steps // 100)
    for k in range(steps):
        while e < len(events) and events[e].step <= k:
            r.apply(events[e])
            e += 1
        h = min(dt, float(scenario.horizon) - k * dt)  # the last step may be short
        y = model.step(r.instances, h, r.effective_inputs())
        for name in names:
            series[name][k + 1] = y[name]
        if vocabulary.production is not None:
            production += y[vocabulary.production] * (h / 3600.0)
        if energy is not None and vocabulary.power is not None:
            energy += vocabulary.power(y) * (h / 3600.0)
        # an asset held for maintenance is not in service: its part is being replaced, what its states
        # do meanwhile (process noise on a stopped machine) is not a failure
        failed = vocabulary.failed(model.state_values(r.instances)) & (r.hold == 0)
        failed_at = np.where(failed & np.isinf(failed_at), r.instances.t, failed_at)
        if progress is not None and ((k + 1) % every == 0 or k + 1 == steps):
            progress((k + 1) / steps)
    shape = (r.m, r.k, r.s)
    times = np.minimum(np.arange(steps + 1) * dt, float(scenario.horizon))
    return ScenarioResult(
        options=[o.name for o in r.options], times=times,
        series={name: a.reshape(steps + 1, *shape) for name, a in series.items()},
        failed_at=failed_at.reshape(shape), production=production.reshape(shape),
        energy=None if energy is None else energy.reshape(shape), parameters=r.parameters,
        horizon=float(scenario.horizon), step=dt, shift=float(scenario.shift),
        seconds=time.perf_counter() - began, failure=vocabulary.failure)


__all__ = ["Progress", "ScenarioModel", "ScenarioResult", "draw", "run"]
