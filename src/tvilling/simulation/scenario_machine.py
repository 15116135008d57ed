"""The demo machine's scenario words, and a start from its twins' reported state.

:data:`MACHINE` is the :class:`~.scenario_vocabulary.Vocabulary` of
:class:`~tvilling.simulation.machine.MachineModel`:

* commands as the plant takes them: ``setSpeed`` (rpm, 0–10,000) sets ``speedSetpoint``; ``stop`` and
  ``start`` set ``running``;
* faults: ``de:bearingDefect`` / ``nde:bearingDefect`` (the seed size of a growing defect),
  ``imbalance``, ``misalignment`` (g) and ``overheat`` (degraded cooling);
* maintenance: ``replaceBearing`` on ``de`` or ``nde`` — wear, defect and defect seed to 0, the fault
  cleared (the model sets it again at once if the other bearing is failed), hours since maintenance 0;
* failure: the model's ``fault`` state, which it sets when a bearing's damage (wear + defect) reaches 1;
* production: the ``throughput`` output (parts per hour);
* power: the motor's electrical input, ``P = √3 · 400 V · I · 0.85`` (a 400 V three-phase motor at a
  power factor of 0.85) from the ``motor.current`` output, in kW.

:func:`start_from_reported` turns a machine twin's reported properties (and its parts') into a
:class:`~.scenario.Start`: what the twin measures is taken as it is; the bearing damage, which no
sensor reports, is inferred from the BPFO vibration band the model predicts for it.

>>> flat = flatten({"speed": 1500.0, "speedSetpoint": 1500.0, "state": "running"},
...                {"de": {"vibrationBandBpfo": 0.155}, "spindle": {"load": 75.0}})
>>> start = start_from_reported(flat)
>>> round(start.states["de:defect"], 3), start.inputs["running"]
(0.05, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tvilling.simulation.machine import BEARINGS, INPUTS, PARAMETERS, STATES
from tvilling.simulation.ports import Array
from tvilling.simulation.scenario import Start
from tvilling.simulation.scenario_vocabulary import Action, CommandSpec, Mask, Vocabulary

#: line voltage and power factor of the motor assumed for energy (kW from the current)
VOLTAGE, POWER_FACTOR = 400.0, 0.85
_DEFAULTS = {v.name: float(v.default) for v in PARAMETERS if v.default is not None}


def _failed(states: Mapping[str, Array]) -> Mask:
    return states["fault"] > 0.5


def _power(outputs: Mapping[str, Array]) -> Array:
    return math.sqrt(3.0) * VOLTAGE * outputs["motor.current"] * POWER_FACTOR / 1000.0


MACHINE = Vocabulary(
    commands={"setSpeed": CommandSpec("speedSetpoint", lower=0.0, upper=10_000.0),
              "stop": CommandSpec("running", fixed=0.0), "start": CommandSpec("running", fixed=1.0)},
    faults={**{f"{b}:bearingDefect": f"{b}:defectSeed" for b in BEARINGS},
            "imbalance": "imbalance", "misalignment": "misalignment", "overheat": "overheat"},
    actions={"replaceBearing": Action(parts=BEARINGS,
                                      states={"{part}:wear": 0.0, "{part}:defect": 0.0, "fault": 0.0,
                                              "operatingHours": 0.0},
                                      parameters={"{part}:defectSeed": 0.0})},
    failed=_failed, running="running", production="throughput", power=_power,
    record=("speed", "throughput", "motor.current", "motor.temperature", "de:vibration", "nde:vibration",
            "de:temperature", "nde:temperature"),
    failure="a bearing's damage (wear + defect) reached 1: the machine stopped on a fault",
)


def flatten(machine: Mapping[str, Any], parts: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A machine twin's reported properties and its parts' (``{"de": {...}, "spindle": {...}}``) as one
    mapping with ``part:property`` names, as the model names its outputs."""
    out = dict(machine)
    for part, values in (parts or {}).items():
        out.update({f"{part}:{name}": value for name, value in values.items()})
    return out


def _num(values: Mapping[str, Any], name: str) -> float | None:
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def start_from_reported(reported: Mapping[str, Any], parameters: Mapping[str, float] | None = None) -> Start:
    """A :class:`Start` for one machine from its reported state (flat ``part:property`` names, see
    :func:`flatten`), with the twin's calibrated ``parameters`` where known (else the model's defaults).

    Speed, temperatures and operating hours are taken as reported; ``state`` ``"fault"`` sets the
    fault; the setpoint, load and running flag become inputs. A bearing's damage is inferred from its
    reported BPFO band: ``D = (bpfo / r^1.5 − bandBpfo) / defectBpfo`` at speed ratio ``r`` (≥ 0.2),
    counted as defect; a reported ``wear``/``defect`` wins. What is missing keeps the model's default."""
    p = {**_DEFAULTS, **(parameters or {})}
    states: dict[str, float] = {}
    inputs: dict[str, float] = {}
    for name in ("speed", "motor.temperature", "operatingHours", *(f"{b}:temperature" for b in BEARINGS)):
        value = _num(reported, name)
        if value is not None:
            states[name] = max(value, 0.0) if name in ("speed", "operatingHours") else value
    state = reported.get("state")
    if state == "fault":
        states["fault"] = 1.0
    speed = states.get("speed")
    ratio = None if speed is None else speed / p["nominalSpeed"]
    for b in BEARINGS:
        wear, defect = _num(reported, f"{b}:wear"), _num(reported, f"{b}:defect")
        bpfo = _num(reported, f"{b}:vibrationBandBpfo")
        if defect is None and bpfo is not None and ratio is not None and ratio >= 0.2:
            damage = (bpfo / ratio**1.5 - p["bandBpfo"]) / p["defectBpfo"] if p["defectBpfo"] > 0 else 0.0
            defect = max(damage - (wear or 0.0), 0.0)
        if wear is not None:
            states[f"{b}:wear"] = max(wear, 0.0)
        if defect is not None:
            states[f"{b}:defect"] = max(defect, 0.0)
    setpoint = _num(reported, "speedSetpoint")
    if setpoint is None:
        setpoint = speed
    if setpoint is not None:
        inputs["speedSetpoint"] = max(setpoint, 0.0)
    load = _num(reported, "spindle:load")
    if load is not None:
        inputs["spindle:load"] = max(load, 0.0)
    if isinstance(state, str):
        inputs["running"] = 1.0 if state == "running" else 0.0
    elif speed is not None:
        inputs["running"] = 1.0 if speed > 0.5 else 0.0
    ambient = _num(reported, "ambient")
    if ambient is not None:
        inputs["ambient"] = ambient
    return Start(states, inputs)


def stack(starts: list[Start]) -> Start:
    """Several machines' starts as one (a line): each state or input one value per machine; a name some
    machines lack takes, for them, the value the model would default to (so give all or none)."""
    names_s = sorted({n for s in starts for n in s.states})
    names_i = sorted({n for s in starts for n in s.inputs})
    defaults = {v.name: v.default for v in (*STATES, *INPUTS)}

    def column(name: str, kind: str) -> Array:
        values = [getattr(s, kind).get(name, defaults.get(name)) for s in starts]
        return np.array([np.nan if v is None else float(v) for v in values])

    return Start({n: column(n, "states") for n in names_s}, {n: column(n, "inputs") for n in names_i})


__all__ = ["MACHINE", "POWER_FACTOR", "VOLTAGE", "flatten", "stack", "start_from_reported"]
