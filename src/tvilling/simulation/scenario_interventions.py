"""The interventions of a what-if option: what is done to the simulated asset, and when.

Every time is in seconds from the scenario's start and must lie inside its horizon. An
intervention applies at the first step boundary at or after its time and, unless ``machine`` names
one (its index in the scenario's start), to every machine of the option.

* :class:`Command` — a command as the asset would receive it (``setSpeed`` with a value, ``stop``,
  ``start``); the model's :class:`~.scenario_vocabulary.Vocabulary` turns it into inputs;
* :class:`Profile` — an input held piecewise constant: a load or production profile, a shift pattern;
* :class:`ParameterChange` — parameters set to new values from a time on;
* :class:`Fault` — an injected fault (a vocabulary name, e.g. ``de:bearingDefect``) of a size;
* :class:`Maintenance` — a maintenance action on a part (``replaceBearing`` on ``de``): the asset
  stands still for ``duration`` seconds, then the part's states are reset.

>>> Profile("spindle:load", at=(0, 3600), values=(75.0, 60.0)).times()
[('at[0]', 0.0), ('at[1]', 3600.0)]
>>> Maintenance(at=3600, action="replaceBearing", part="de", duration=1800).times()
[('at', 3600.0), ('at + duration', 5400.0)]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tvilling.core.errors import Invalid


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"scenario: {what} must be a number, not {value!r}", field=what, rule="type")
    out = float(value)
    if not math.isfinite(out):
        raise Invalid(f"scenario: {what} must be a finite number, not {value!r}", field=what, rule="type")
    return out


def _machine(value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise Invalid(f"scenario: machine must be an index ≥ 0 into the start's machines, not {value!r}",
                      field="machine", rule="type")


@dataclass(frozen=True)
class Intervention(ABC):
    """Base of the interventions: something done at one or more times."""

    @abstractmethod
    def times(self) -> list[tuple[str, float]]:
        """Each time the intervention acts, with the field that gives it (checked against the horizon)."""


@dataclass(frozen=True)
class Command(Intervention):
    """A command sent at ``at``: ``setSpeed`` (``value`` in rpm), ``stop`` or ``start``."""

    at: float
    command: str
    value: float | None = None
    machine: int | None = None

    def __post_init__(self) -> None:
        _number(self.at, "at")
        if self.value is not None:
            _number(self.value, "value")
        _machine(self.machine)

    def times(self) -> list[tuple[str, float]]:
        return [("at", float(self.at))]


@dataclass(frozen=True)
class Profile(Intervention):
    """Input ``input`` takes ``values[i]`` from ``at[i]`` on (times increasing)."""

    input: str
    at: Sequence[float]
    values: Sequence[float]
    machine: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", tuple(_number(t, "at") for t in self.at))
        object.__setattr__(self, "values", tuple(_number(v, "values") for v in self.values))
        if not self.at or len(self.at) != len(self.values):
            raise Invalid(f"scenario: a profile of {self.input!r} needs as many values as times, at least one",
                          field="values", rule="shape")
        if any(b <= a for a, b in zip(self.at, self.at[1:], strict=False)):
            raise Invalid(f"scenario: the times of the profile of {self.input!r} must increase", field="at",
                          rule="order")
        _machine(self.machine)

    def times(self) -> list[tuple[str, float]]:
        return [(f"at[{i}]", float(t)) for i, t in enumerate(self.at)]


@dataclass(frozen=True)
class ParameterChange(Intervention):
    """Parameters set to ``values`` from ``at`` on (checked against the model's bounds)."""

    at: float
    values: Mapping[str, float]
    machine: int | None = None

    def __post_init__(self) -> None:
        _number(self.at, "at")
        if not self.values:
            raise Invalid("scenario: a parameter change names at least one parameter", field="values",
                          rule="required")
        for name, value in self.values.items():
            _number(value, f"values.{name}")
        _machine(self.machine)

    def times(self) -> list[tuple[str, float]]:
        return [("at", float(self.at))]


@dataclass(frozen=True)
class Fault(Intervention):
    """A fault ``fault`` of ``size`` injected at ``at`` (the vocabulary maps it to a parameter)."""

    at: float
    fault: str
    size: float
    machine: int | None = None

    def __post_init__(self) -> None:
        _number(self.at, "at")
        _number(self.size, "size")
        _machine(self.machine)

    def times(self) -> list[tuple[str, float]]:
        return [("at", float(self.at))]


@dataclass(frozen=True)
class Maintenance(Intervention):
    """Maintenance ``action`` on ``part`` from ``at``: the asset stands still for ``duration`` seconds,
    then the part is as new (the vocabulary says which states and parameters that resets)."""

    at: float
    action: str
    part: str | None = None
    duration: float = 0.0
    machine: int | None = None

    def __post_init__(self) -> None:
        _number(self.at, "at")
        if _number(self.duration, "duration") < 0:
            raise Invalid(f"scenario: a maintenance duration must be ≥ 0 seconds, not {self.duration!r}",
                          field="duration", rule="range")
        _machine(self.machine)

    def times(self) -> list[tuple[str, float]]:
        return [("at", float(self.at)), ("at + duration", float(self.at) + float(self.duration))]


__all__ = ["Command", "Fault", "Intervention", "Maintenance", "ParameterChange", "Profile"]
