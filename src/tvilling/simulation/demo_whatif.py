"""The demo's what-if: a bearing turns bad — keep running, slow down, or replace it at the next stop?

When the demo's detector flags a bearing, the twin forks its machine from the state its twins
report (:func:`~.scenario_machine.start_from_reported`) and runs three options over the next
shifts on the machine model (:class:`~.machine.MachineModel`), with Monte-Carlo samples over
what it knows of the defect's growth:

* *keep running at 1,500 rpm* — the baseline (no intervention while the machine already runs at
  that speed);
* *slow to 900 rpm* — a ``setSpeed`` at once: the defect grows with the speed ratio squared;
* *replace the bearing at the next stop* — a ``replaceBearing`` on the flagged bearing at the
  line's next planned stop, the machine down for the repair.

The answer is a :class:`WhatIf`: the KPIs per option (time to failure p10/p50/p90, the failure
probability over the next shift and the horizon, production and the production lost versus
keeping on) with the run itself. It is what a maintenance and production planner consumes; this
module only asks the question and words the answer (:func:`narrate`). :class:`WhatIfDesk` asks it
on a worker thread, once per machine, so the ingest path never waits for a simulation.

The defect-growth knowledge (:data:`DEFECT_GROWTH`) is the fleet's prior for a race spall on
these bearings (rate and seed with their standard errors); a calibration of the machine's own
history (``tvilling sim calibrate``) gives better values, passed as ``WhatIfSettings.growth``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from tvilling.core.errors import Invalid
from tvilling.simulation.machine import BEARINGS, MachineModel
from tvilling.simulation.scenario import Option, Scenario, Start, Uncertainty
from tvilling.simulation.scenario_interventions import Command, Maintenance
from tvilling.simulation.scenario_kpis import Kpis, kpis
from tvilling.simulation.scenario_machine import MACHINE, flatten, start_from_reported
from tvilling.simulation.scenario_runner import ScenarioResult, run

log = logging.getLogger("tvilling.simulation.demo_whatif")
H = 3600.0


@dataclass(frozen=True)
class Growth:
    """What the twin knows of a bearing defect's growth: rate (1/h at nominal speed and load) and seed
    (the model's ``defectSeed``), each a mean with a standard error."""

    rate: float = 0.2
    rate_se: float = 0.04
    seed: float = 0.15
    seed_se: float = 0.03

    def uncertainty(self, bearing: str) -> Uncertainty:
        """The scenario's parameter uncertainty for a defect on ``bearing``."""
        seed = f"{bearing}:defectSeed"
        return Uncertainty(means={"defectRate": self.rate, seed: self.seed},
                           std_errors={"defectRate": self.rate_se, seed: self.seed_se})


#: the fleet's prior for a race spall's growth (what the demo twin knows before any calibration)
DEFECT_GROWTH = Growth()


@dataclass(frozen=True)
class WhatIfSettings:
    """The question's numbers: speeds (rpm), the line's next planned stop and the repair's length, the
    horizon and the shift (plant hours), samples and step (seconds) of the run, and ``seed`` for a
    reproducible answer."""

    nominal_rpm: float = 1500.0
    slow_rpm: float = 900.0
    next_stop_h: float = 4.0
    repair_h: float = 1.0
    horizon_h: float = 24.0
    shift_h: float = 8.0
    samples: int = 100
    step_s: float = 60.0
    seed: int | None = 12
    growth: Growth = field(default_factory=Growth)

    def __post_init__(self) -> None:
        for name in ("nominal_rpm", "slow_rpm", "horizon_h", "shift_h", "step_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise Invalid(f"what-if: {name} must be a number > 0, not {value!r}", field=name, rule="range")
        for name in ("next_stop_h", "repair_h"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise Invalid(f"what-if: {name} must be a number ≥ 0, not {value!r}", field=name, rule="range")
        if self.next_stop_h + self.repair_h > self.horizon_h:
            raise Invalid(f"what-if: the next stop and its repair ({self.next_stop_h:g} h + {self.repair_h:g} h) "
                          f"must end within the horizon of {self.horizon_h:g} h", field="next_stop_h", rule="range")


def option_names(s: WhatIfSettings) -> tuple[str, str, str]:
    """The three options' names, in the order the comparison lists them."""
    return (f"keep running at {s.nominal_rpm:,.0f} rpm", f"slow to {s.slow_rpm:,.0f} rpm",
            "replace the bearing at the next stop")


def bearing_options(bearing: str, start: Start, s: WhatIfSettings) -> tuple[Option, Option, Option]:
    """Keep running (the baseline, or a ``setSpeed`` back to nominal when the machine runs at another
    setpoint), slow down at once, replace ``bearing`` at the next stop."""
    keep, slow, replace = option_names(s)
    setpoint = start.inputs.get("speedSetpoint")
    at_nominal = setpoint is not None and abs(float(setpoint) - s.nominal_rpm) < 1.0
    return (Option(keep, () if at_nominal else (Command(at=0.0, command="setSpeed", value=s.nominal_rpm),)),
            Option(slow, (Command(at=0.0, command="setSpeed", value=s.slow_rpm),)),
            Option(replace, (Maintenance(at=s.next_stop_h * H, action="replaceBearing", part=bearing,
                                         duration=s.repair_h * H),)))


def bearing_scenario(reported: Mapping[str, Any], bearing: str, s: WhatIfSettings) -> Scenario:
    """The scenario for a defect on ``bearing`` (``"de"``/``"nde"``) of a machine reporting ``reported``
    (flat ``part:property`` names, see :func:`~.scenario_machine.flatten`)."""
    if bearing not in BEARINGS:
        raise Invalid(f"what-if: bearing must be one of {list(BEARINGS)}, not {bearing!r}", field="bearing",
                      rule="unknown")
    start = start_from_reported(reported)
    return Scenario(start, horizon=s.horizon_h * H, step=s.step_s, options=bearing_options(bearing, start, s),
                    uncertainty=s.growth.uncertainty(bearing), noise={f"{bearing}:defect": 1e-4},
                    samples=s.samples, seed=s.seed, shift=s.shift_h * H)


@dataclass(frozen=True, eq=False)
class WhatIf:
    """The answer for one machine: the KPIs of each option (keep running first), the settings asked
    with, where it started (``reported``: the flat reported state; ``asked_at``: when) and the run."""

    machine: str
    bearing: str
    asked_at: datetime
    reported: Mapping[str, Any]
    settings: WhatIfSettings
    kpis: list[Kpis]
    result: ScenarioResult

    def option(self, name: str) -> Kpis:
        """The KPIs of the option called ``name``."""
        for row in self.kpis:
            if row.option == name:
                return row
        raise KeyError(f"what-if: no option {name!r}; options: {[r.option for r in self.kpis]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what a planner or the API would read)."""
        return {"machine": self.machine, "bearing": self.bearing, "asked_at": self.asked_at.isoformat(),
                "horizon_h": self.settings.horizon_h, "shift_h": self.settings.shift_h,
                "next_stop_h": self.settings.next_stop_h, "options": [k.to_dict() for k in self.kpis]}


def ask(reported: Mapping[str, Any], machine: str, bearing: str, s: WhatIfSettings | None = None,
        model: MachineModel | None = None) -> WhatIf:
    """Run the what-if for ``machine``'s ``bearing`` from its flat ``reported`` state."""
    s = s or WhatIfSettings()
    asked = datetime.now(UTC)
    result = run(bearing_scenario(reported, bearing, s), model or MachineModel(), MACHINE)
    return WhatIf(machine, bearing, asked, dict(reported), s, kpis(result, 0), result)


def _hours(value: float, horizon_h: float) -> str:
    return f"> {horizon_h:g} h" if math.isinf(value) else f"{value:.1f} h"


def _lost(k: Kpis, baseline: str) -> str:
    if k.option == baseline:
        return "lost production 0 (the reference)"
    if k.lost_production >= 0.5:
        return f"lost production {k.lost_production:,.0f} parts"
    return f"lost production none ({-k.lost_production:,.0f} parts more than keeping on)"


def narrate(answer: WhatIf) -> list[str]:
    """The comparison in words, one line per option: time to failure (p50 with p10), the failure
    probability within the next shift, the parts made over the horizon and the production lost versus
    keeping on (none when the option makes more: keeping on stops the machine on a fault)."""
    s = answer.settings
    lines = [f"what-if for {answer.machine} ({answer.bearing} bearing) over the next {s.horizon_h:g} plant h, "
             f"{s.samples} samples each; the next planned stop in {s.next_stop_h:g} h:"]
    width = max(len(k.option) for k in answer.kpis)
    baseline = answer.result.baseline
    for k in answer.kpis:
        p10, p50, _ = k.time_to_failure_h
        lines.append(f"  {k.option:<{width}}  time to failure {_hours(p50, s.horizon_h)} "
                     f"(p10 {_hours(p10, s.horizon_h)}); P(failure) in the next {s.shift_h:g} h shift "
                     f"{k.failure_probability_shift:.0%}; {k.production_mean:,.0f} parts; {_lost(k, baseline)}")
    return lines


class Twins(Protocol):
    """What :func:`machine_reported` needs of the twin service."""

    def get(self, twin_id: str) -> Any: ...


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def machine_reported(twins: Twins, machine: str) -> dict[str, Any]:
    """A machine twin's reported state with its bearings' (by their ``location``) and spindle's, flat
    (``motor.temperature``, ``de:vibrationBandBpfo``, ``spindle:load``), as the model names them."""
    twin = twins.get(machine)
    parts: dict[str, Mapping[str, Any]] = {}
    for rel in twin.relationships.values():
        part = rel.properties.get("location") if rel.name == "hasBearing" else (
            "spindle" if rel.name == "hasSpindle" else None)
        if isinstance(part, str):
            parts[part] = _flat(dict(twins.get(rel.target).reported))
    return flatten(_flat(dict(twin.reported)), parts)


class WhatIfDesk:
    """Asks the what-if on a worker thread, once per machine, and keeps the answers.

    :meth:`request` returns at once; ``on_answer`` is called on the worker with the :class:`WhatIf`.
    :meth:`answer` is the seam for the planner: the latest answer for a machine (or ``None``)."""

    def __init__(self, twins: Twins, settings: WhatIfSettings | None = None,
                 on_answer: Callable[[WhatIf], None] | None = None) -> None:
        self.twins = twins
        self.settings = settings or WhatIfSettings()
        self.on_answer = on_answer
        self._lock = threading.Lock()
        self._answers: dict[str, WhatIf] = {}
        self._asked: set[str] = set()
        self._threads: list[threading.Thread] = []

    def request(self, machine: str, bearing: str, settings: WhatIfSettings | None = None) -> bool:
        """Start the what-if for ``machine``'s ``bearing`` unless one was asked for that machine already
        (``False`` then). The reported state is read now, on the caller's thread. ``settings`` replace the
        desk's for this question (e.g. the next stop as the maintenance plan has it)."""
        with self._lock:
            if machine in self._asked:
                return False
            self._asked.add(machine)
        reported = machine_reported(self.twins, machine)
        worker = threading.Thread(target=self._work, args=(reported, machine, bearing, settings or self.settings),
                                  name=f"what-if {machine}", daemon=True)
        self._threads.append(worker)
        worker.start()
        return True

    def _work(self, reported: Mapping[str, Any], machine: str, bearing: str, settings: WhatIfSettings) -> None:
        try:
            answer = ask(reported, machine, bearing, settings)
        except Exception:  # a failed question must not take the demo down; the log says why
            log.exception("what-if for %s", machine)
            return
        with self._lock:
            self._answers[machine] = answer
        if self.on_answer is not None:
            self.on_answer(answer)

    def answer(self, machine: str) -> WhatIf | None:
        """The latest answer for ``machine``, ``None`` before one is in."""
        with self._lock:
            return self._answers.get(machine)

    def answers(self) -> dict[str, WhatIf]:
        """Every answer so far, by machine."""
        with self._lock:
            return dict(self._answers)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the questions asked so far (tests, and a clean stop)."""
        for worker in list(self._threads):
            worker.join(timeout)


__all__ = ["DEFECT_GROWTH", "Growth", "WhatIf", "WhatIfDesk", "WhatIfSettings", "ask", "bearing_options",
           "bearing_scenario", "machine_reported", "narrate", "option_names"]
