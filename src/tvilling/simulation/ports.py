"""The behaviour-model port: what the shadow runner, calibration and scenarios need from a model.

A model is described by its variables (inputs, outputs, parameters, states) and runs many
instances at once — one per twin, or one per Monte-Carlo sample — as arrays: every value
passed in or out is a NumPy array of shape ``(n,)``, one entry per instance. A Python
state-space model computes all instances in one vectorised call; an FMU runs one FMU
instance per entry behind the same interface.

Time is in seconds from the start of the run (``t``); ``dt`` is the step to take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Variable:
    """One variable of a model: its name, unit, description and, for a parameter, default and bounds."""

    name: str
    unit: str | None = None
    description: str = ""
    default: float | None = None
    lower: float | None = None  # bounds a calibration respects and a scenario's change is checked against
    upper: float | None = None


@dataclass(frozen=True)
class Signature:
    """What a model reads, writes and has: the names the binding maps to twin properties and commands."""

    inputs: tuple[Variable, ...] = ()
    outputs: tuple[Variable, ...] = ()
    parameters: tuple[Variable, ...] = ()
    states: tuple[Variable, ...] = ()

    def names(self, kind: str) -> tuple[str, ...]:
        return tuple(v.name for v in getattr(self, kind))


@dataclass
class Instances:
    """The running state of ``n`` instances of one model (opaque to callers but for ``n`` and ``t``)."""

    n: int
    t: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


class BehaviourModel(Protocol):
    """A behaviour model of an asset, run as ``n`` instances at once."""

    name: str
    signature: Signature

    def start(self, n: int, parameters: Mapping[str, Array], start_values: Mapping[str, Array] | None = None,
              t0: float = 0.0) -> Instances:
        """``n`` instances at time ``t0``: parameters (defaults where not given) and initial states."""
        ...

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Advance every instance by ``dt`` seconds with these inputs (held over the step); the outputs
        at the end of the step, by output name. Changes ``instances`` (its ``t`` too)."""
        ...

    def close(self, instances: Instances) -> None:
        """Release what the instances hold (FMU instances); a no-op for pure Python models."""
        ...
