"""What the production planner reads from the twins: a line's machines, their speeds and rates, plant time.

A line's machines are the targets of its ``hasMachine`` (or ``contains``) relationships, in station order
(the relationship's ``position``, then the id). Each machine's planned speed is its commanded
``speedSetpoint`` (desired, else reported), else its measured ``speed``, else the model's nominal speed.
Its parts per hour at a speed come from the twin's own behaviour model
(:class:`tvilling.simulation.machine.MachineModel`, throughput = ``ratePerHour · n / nominalSpeed``), with
the parameters a configured simulation of that model gives the twin (defaults, configuration, promoted
calibrations), not from the plant's physics. Plant time is the newest reading time of the line's machines,
advanced by the wall-clock time since that twin was last written (a plant that sends nothing keeps its clock
running; a replay of old readings keeps its own time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tvilling.core.errors import Invalid, NotFound
from tvilling.core.twin import Twin

LINE_RELATIONSHIPS = ("hasMachine", "contains")
MACHINE_MODEL_CLASS = "tvilling.simulation.machine:MachineModel"
#: the machine's readings whose times tell plant time
TELEMETRY = ("speed", "throughput", "quality", "operatingHours", "motor")


@dataclass(frozen=True, slots=True)
class LineMachine:
    """One machine of a line as the planner sees it."""

    id: str
    position: int | None
    state: str | None  # reported state: idle, running, stopped, fault (None: not reported)
    speed_rpm: float  # the speed the plan assumes
    parameters: Mapping[str, float]  # behaviour model parameters (only those that differ from the defaults)
    parts: tuple[str, ...] = ()  # twins the machine holds (bearings, spindle): work on them stops it


@dataclass(frozen=True, slots=True)
class LineView:
    """A line's machines, in station order, and the plant time of its newest reading."""

    line: str
    machines: tuple[LineMachine, ...]
    now: datetime | None  # plant time (None: no machine has a reading)

    def index(self) -> dict[str, int]:
        return {m.id: i for i, m in enumerate(self.machines)}

    def machine_of(self, twin: str) -> str | None:
        """The machine ``twin`` is, or is part of; ``None`` when it is not on this line."""
        for m in self.machines:
            if twin == m.id or twin in m.parts:
                return m.id
        return None


def read_line(platform: Any, line: str, *, wall: datetime | None = None) -> LineView:
    """The line ``line`` from the twins; ``NotFound`` when there is no such twin, ``Invalid`` without machines.

    ``wall`` is the wall-clock time now (default: the system's), used to advance plant time."""
    wall = wall or datetime.now(UTC)
    twins = platform.twins
    line_twin: Twin = twins.get(line)
    rels = [r for r in line_twin.relationships.values() if r.name in LINE_RELATIONSHIPS]
    if not rels:
        raise Invalid(f"twin {line!r} has no machines: a line names them with {'/'.join(LINE_RELATIONSHIPS)} "
                      "relationships", line=line, rule="no-machines")
    rels.sort(key=lambda r: (_position(r.properties.get("position")) is None,
                            _position(r.properties.get("position")) or 0, r.target))
    machines: list[LineMachine] = []
    newest: datetime | None = None
    seen: set[str] = set()
    for r in rels:
        if r.target in seen:
            continue
        seen.add(r.target)
        try:
            twin = twins.get(r.target)
        except NotFound:
            continue  # a dangling relationship: the machine is gone
        params = machine_parameters(platform, twin)
        speed = planned_speed(twin, params)
        parts = tuple(x.target for x in twin.relationships.values())
        machines.append(LineMachine(twin.id, _position(r.properties.get("position")), _text(twin.reported, "state"),
                                    speed, params, parts))
        newest = _later(newest, plant_time(twin, wall))
    if not machines:
        raise Invalid(f"line {line!r}: none of its machines exists as a twin", line=line, rule="no-machines")
    return LineView(line, tuple(machines), newest)


def planned_speed(twin: Twin, parameters: Mapping[str, float]) -> float:
    """The speed a plan assumes: commanded setpoint (desired, else reported), measured speed, else nominal."""
    for section, name in ((twin.desired, "speedSetpoint"), (twin.reported, "speedSetpoint"),
                          (twin.reported, "speed")):
        value = section.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value)
    return nominal_speed(parameters)


def nominal_speed(parameters: Mapping[str, float]) -> float:
    from tvilling.simulation.machine import MachineModel

    default = next(v.default for v in MachineModel.signature.parameters if v.name == "nominalSpeed")
    return float(parameters.get("nominalSpeed", default if default is not None else 1500.0))


def throughput_per_h(parameters: Iterable[Mapping[str, float]], speeds: Iterable[float]) -> list[float]:
    """Parts per hour of machines running steadily at ``speeds`` (rpm), by the twin's machine model."""
    from tvilling.simulation.machine import MachineModel

    params, rpm = list(parameters), np.asarray(list(speeds), dtype=np.float64)
    if len(params) != len(rpm):
        raise ValueError("one parameter set per speed")
    if not len(rpm):
        return []
    model = MachineModel()
    names = sorted({k for p in params for k in p})
    defaults = {v.name: float(v.default) for v in model.signature.parameters if v.default is not None}
    given = {k: np.array([float(p.get(k, defaults[k])) for p in params]) for k in names}
    n = len(rpm)
    inputs = {"speedSetpoint": rpm, "spindle:load": 75.0, "running": 1.0}
    runs = model.start(n, given, start_values=model.steady_start(n, inputs, given))
    rate = model.read_outputs(runs, inputs)["throughput"]
    return [max(0.0, float(r)) for r in rate]


def machine_parameters(platform: Any, twin: Twin) -> dict[str, float]:
    """The machine model's parameters for ``twin`` from a configured simulation of it ({} when none)."""
    settings = getattr(platform, "settings", None)
    docs = getattr(settings, "simulations", None) or []
    if not docs:
        return {}
    from tvilling.simulation.binding_versions import parameters_for
    from tvilling.simulation.machine import PARAMETERS
    from tvilling.simulation.spec import parse_simulations

    known = {v.name: v for v in PARAMETERS}
    modelset = platform.models.modelset
    for spec in parse_simulations(docs):
        if not spec.enabled or spec.model_class != MACHINE_MODEL_CLASS:
            continue
        if twin.model not in modelset or spec.model not in modelset or not modelset.is_a(twin.model, spec.model):
            continue
        registry = getattr(platform, "analytics_registry", None)
        values = parameters_for(registry, spec, twin.id)
        out: dict[str, float] = {}
        for name, value in values.items():
            var = known.get(name)
            if var is None or not math.isfinite(value):
                continue
            if (var.lower is not None and value < var.lower) or (var.upper is not None and value > var.upper):
                continue
            out[name] = float(value)
        return out
    return {}


def plant_time(twin: Twin, wall: datetime) -> datetime | None:
    """The twin's newest reading time plus the wall-clock time since the twin was last written."""
    newest = newest_reading(twin)
    if newest is None:
        return None
    return newest + max(wall - twin.updated.astimezone(UTC), timedelta(0))


def newest_reading(twin: Twin) -> datetime | None:
    """The newest time the machine's telemetry carries (its metadata: ``speed``, ``throughput``, ``quality``,
    ``operatingHours``, ``motor.*``), or ``None``. Other properties are left out: an import or an edit stamps
    them with the wall clock, which is not the plant's."""
    meta = twin.metadata.get("reported")
    best: datetime | None = None
    if isinstance(meta, Mapping):
        for name in TELEMETRY:
            for stamp in _times(meta.get(name)):
                best = _later(best, stamp)
    return best


def _times(meta: Any) -> Iterable[datetime]:
    if not isinstance(meta, Mapping):
        return
    value = meta.get("time")
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            ts = None
        if ts is not None and ts.tzinfo is not None:
            yield ts.astimezone(UTC)
    for key, child in meta.items():
        if key != "time" and isinstance(child, Mapping):
            yield from _times(child)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _position(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(section: Mapping[str, Any], name: str) -> str | None:
    value = section.get(name)
    return value if isinstance(value, str) else None


__all__ = ["LINE_RELATIONSHIPS", "LineMachine", "LineView", "machine_parameters", "newest_reading", "planned_speed",
           "plant_time", "read_line", "throughput_per_h"]
