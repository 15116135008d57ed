"""What-if scenarios: the description of a forward run with uncertainty, checked before it runs.

A :class:`Scenario` says where to start (:class:`Start`: the states and inputs of one machine or of a
set of machines), what is known about the parameters (:class:`Uncertainty`: calibrated means with
standard errors or a covariance, from which bounded Monte-Carlo samples are drawn), the process
noise, the horizon and step, and the options to compare: each an :class:`Option` with its
interventions (:mod:`.scenario_interventions`: commands, input profiles, parameter changes,
injected faults, maintenance actions at times). The do-nothing baseline is an option without
interventions; one is added when none is given.

Structural rules (a horizon within :data:`MAX_HORIZON_S`, times inside the horizon, names unique)
are checked on construction; what depends on the model (unknown parameter, command, input or
state, a value outside its bounds) by :func:`tvilling.simulation.scenario_check.check`, which the
runner calls first. Every error is an :class:`~tvilling.core.errors.Invalid` (or ``TooLarge`` for a
limit) whose ``field`` names the offending entry, e.g. ``options[1].interventions[0].at``.

>>> from tvilling.simulation.scenario_interventions import Command
>>> s = Scenario(Start({"de:defect": 0.05}, {"speedSetpoint": 1500.0}), horizon=8 * 3600, step=60,
...              options=(Option("slow down", (Command(at=0, command="setSpeed", value=900.0),)),))
>>> [o.name for o in s.all_options()], s.steps
(['do nothing', 'slow down'], 480)
>>> Scenario(Start({}), horizon=3600, step=60, options=(Option("late", (Command(at=7200, command="stop"),)),))
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: scenario: options[0].interventions[0].at = 7200 s is outside the horizon [0, 3600] s
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid, TooLarge
from tvilling.simulation.scenario_interventions import Intervention

#: the longest horizon a scenario may look ahead (one year)
MAX_HORIZON_S = 366 * 86_400.0
#: the most steps of one run (a year at 1-minute steps fits)
MAX_STEPS = 600_000
#: the most Monte-Carlo samples per option
MAX_SAMPLES = 10_000
#: the most instance-steps of one run (options × machines × samples × steps)
MAX_INSTANCE_STEPS = 2_000_000_000
#: the name of the baseline the runner adds when no option is without interventions
BASELINE = "do nothing"

Array = npt.NDArray[np.float64]


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise Invalid(f"scenario: {where} must be a number, not {value!r}", field=where, rule="type")
    out = float(value)
    if not math.isfinite(out):
        raise Invalid(f"scenario: {where} must be a finite number, not {value!r}", field=where, rule="type")
    return out


def _values(values: Mapping[str, Any], where: str) -> dict[str, Array]:
    """Each value as a 1-d float array (a scalar is one entry): one per machine."""
    out: dict[str, Array] = {}
    for name, value in values.items():
        try:
            a = np.atleast_1d(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise Invalid(f"scenario: {where}[{name!r}] must be a number or a list of numbers, not {value!r}",
                          field=f"{where}.{name}", rule="type") from None
        if a.ndim != 1 or not a.size or not np.isfinite(a).all():
            raise Invalid(f"scenario: {where}[{name!r}] must be finite numbers, one per machine",
                          field=f"{where}.{name}", rule="type")
        out[name] = a
    return out


@dataclass(frozen=True)
class Start:
    """Where the run starts: model states and inputs, each a number or one number per machine.

    States not given take the model's start defaults; inputs not given take the model's input
    defaults (an input without one must be given). ``machines`` is the longest list given (1 for
    scalars); every list must have that length. :func:`.scenario_machine.start_from_reported`
    builds one from a twin's reported state.
    """

    states: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def arrays(self) -> tuple[int, dict[str, Array], dict[str, Array]]:
        """The number of machines and the states and inputs as arrays of that length."""
        states, inputs = _values(self.states, "start.states"), _values(self.inputs, "start.inputs")
        sizes = {a.size for a in (*states.values(), *inputs.values())} - {1}
        if len(sizes) > 1:
            raise Invalid(f"scenario: start values list different numbers of machines: {sorted(sizes)}",
                          field="start", rule="shape")
        k = sizes.pop() if sizes else 1
        return (k, {n: np.broadcast_to(a, (k,)).copy() for n, a in states.items()},
                {n: np.broadcast_to(a, (k,)).copy() for n, a in inputs.items()})


@dataclass(frozen=True)
class Uncertainty:
    """What is known of the parameters: calibrated ``means`` with ``std_errors`` (independent), or a
    ``covariance`` over ``names`` (a square matrix in their order). Parameters not named keep the
    model's defaults. Samples outside a parameter's bounds are drawn again (then clipped)."""

    means: Mapping[str, float] = field(default_factory=dict)
    std_errors: Mapping[str, float] = field(default_factory=dict)
    covariance: Sequence[Sequence[float]] | None = None
    names: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name, value in self.means.items():
            _finite(value, f"uncertainty.means.{name}")
        for name, value in self.std_errors.items():
            if _finite(value, f"uncertainty.std_errors.{name}") < 0:
                raise Invalid(f"scenario: the standard error of {name!r} must be ≥ 0, not {value!r}",
                              field=f"uncertainty.std_errors.{name}", rule="range")
            if name not in self.means:
                raise Invalid(f"scenario: parameter {name!r} has a standard error but no mean",
                              field=f"uncertainty.std_errors.{name}", rule="required")
        if self.covariance is not None:
            if self.std_errors:
                raise Invalid("scenario: give standard errors or a covariance, not both", field="uncertainty",
                              rule="exclusive")
            try:
                cov = np.asarray(self.covariance, dtype=np.float64)
            except (TypeError, ValueError):
                raise Invalid("scenario: the covariance must be a square matrix of numbers",
                              field="uncertainty.covariance", rule="type") from None
            k = len(self.names)
            if cov.shape != (k, k) or not k:
                raise Invalid(f"scenario: the covariance must be {k}×{k}, one row per name in uncertainty.names, "
                              f"not of shape {cov.shape}", field="uncertainty.covariance", rule="shape")
            missing = [n for n in self.names if n not in self.means]
            if missing:
                raise Invalid(f"scenario: parameter {missing[0]!r} is in the covariance but has no mean",
                              field="uncertainty.names", rule="required")
            if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() < -1e-9 * max(1.0, abs(cov).max()):
                raise Invalid("scenario: the covariance must be symmetric positive semi-definite",
                              field="uncertainty.covariance", rule="psd")


@dataclass(frozen=True)
class Option:
    """One course of action: a name and its interventions (none: the do-nothing baseline)."""

    name: str
    interventions: Sequence[Intervention] = ()


@dataclass(frozen=True)
class Scenario:
    """A forward run of a model with uncertainty over several options (see the module text).

    ``horizon`` and ``step`` are seconds; ``samples`` Monte-Carlo samples per option and machine;
    ``noise``: process noise per state (standard deviation per √second); ``seed`` makes the run
    reproducible; ``record``: the outputs kept as series (default: the vocabulary's); ``shift``:
    the window of the short-term failure probability (8 h)."""

    start: Start
    horizon: float
    step: float = 60.0
    options: Sequence[Option] = ()
    uncertainty: Uncertainty = field(default_factory=Uncertainty)
    noise: Mapping[str, float] = field(default_factory=dict)
    samples: int = 100
    seed: int | None = None
    record: Sequence[str] | None = None
    shift: float = 8 * 3600.0

    def __post_init__(self) -> None:
        horizon = _finite(self.horizon, "horizon")
        step = _finite(self.step, "step")
        if horizon <= 0:
            raise Invalid(f"scenario: horizon must be > 0 seconds, not {self.horizon!r}", field="horizon",
                          rule="range")
        if horizon > MAX_HORIZON_S:
            raise TooLarge(f"scenario: horizon {horizon:g} s is beyond the limit of {MAX_HORIZON_S:g} s",
                           field="horizon", rule="limit", limit=MAX_HORIZON_S)
        if step <= 0 or step > horizon:
            raise Invalid(f"scenario: step must be > 0 and ≤ the horizon ({horizon:g} s), not {self.step!r}",
                          field="step", rule="range")
        if self.steps > MAX_STEPS:
            raise TooLarge(f"scenario: {self.steps} steps (horizon / step) are beyond the limit of {MAX_STEPS}",
                           field="step", rule="limit", limit=MAX_STEPS)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise Invalid(f"scenario: samples must be an integer ≥ 1, not {self.samples!r}", field="samples",
                          rule="range")
        if self.samples > MAX_SAMPLES:
            raise TooLarge(f"scenario: {self.samples} samples are beyond the limit of {MAX_SAMPLES}",
                           field="samples", rule="limit", limit=MAX_SAMPLES)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise Invalid(f"scenario: seed must be an integer, not {self.seed!r}", field="seed", rule="type")
        if _finite(self.shift, "shift") <= 0:
            raise Invalid(f"scenario: shift must be > 0 seconds, not {self.shift!r}", field="shift", rule="range")
        for name, sigma in self.noise.items():
            if _finite(sigma, f"noise.{name}") < 0:
                raise Invalid(f"scenario: the noise of {name!r} must be ≥ 0, not {sigma!r}", field=f"noise.{name}",
                              rule="range")
        names = [o.name for o in self.options]
        for i, option in enumerate(self.options):
            if not isinstance(option, Option):
                raise Invalid(f"scenario: options[{i}] is not an Option", field=f"options[{i}]", rule="type")
            if not option.name or not isinstance(option.name, str):
                raise Invalid(f"scenario: options[{i}] needs a name", field=f"options[{i}].name", rule="required")
            if option.name in names[:i]:
                raise Invalid(f"scenario: option name {option.name!r} is used twice", field=f"options[{i}].name",
                              rule="unique")
            for j, item in enumerate(option.interventions):
                where = f"options[{i}].interventions[{j}]"
                if not isinstance(item, Intervention):
                    raise Invalid(f"scenario: {where} is not an intervention", field=where, rule="type")
                for label, t in item.times():
                    if not 0.0 <= t <= horizon:
                        raise Invalid(f"scenario: {where}.{label} = {t:g} s is outside the horizon [0, {horizon:g}] s",
                                      field=f"{where}.{label}", rule="range")
        k = self.start.arrays()[0]
        total = len(self.all_options()) * k * self.samples * self.steps
        if total > MAX_INSTANCE_STEPS:
            raise TooLarge(f"scenario: {total} instance-steps (options × machines × samples × steps) are beyond "
                           f"the limit of {MAX_INSTANCE_STEPS}", field="samples", rule="limit",
                           limit=MAX_INSTANCE_STEPS)

    @property
    def steps(self) -> int:
        """The number of steps: the horizon over the step, rounded up."""
        return max(1, math.ceil(float(self.horizon) / float(self.step) - 1e-9))

    def all_options(self) -> list[Option]:
        """The options with the baseline first: the first option without interventions, else an added
        :data:`BASELINE`."""
        options = list(self.options)
        for i, option in enumerate(options):
            if not option.interventions:
                return [options.pop(i), *options]
        return [Option(BASELINE), *options]


__all__ = ["BASELINE", "MAX_HORIZON_S", "MAX_INSTANCE_STEPS", "MAX_SAMPLES", "MAX_STEPS", "Option", "Scenario",
           "Start", "Uncertainty"]
