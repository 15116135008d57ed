"""The maintenance study's plant: N machines of the plant's physics over D days, broken and repaired.

The truth is :class:`~tvilling.plant.physics.MachineArrays` (the same vectorised physics the demo plant
runs), advanced in steps of :data:`STEP_H` (10 plant minutes). Ten minutes is far below every time scale
the study depends on (a bearing defect's growth e-folds in 100–400 h here, a preventive job lasts
4 h, a shift 8 h), the physics' lags and growth are integrated exactly for any step, and a year of 20
machines is 52,560 steps: a few seconds. Failures are found to the step (≤ 10 min late).

Around it, what a maintenance department sees and does:

* a **calendar**: two production shifts 06:00–22:00 every day and a planned stop 22:00–06:00, the
  maintenance window; the machines run at nominal speed while producing and are stopped at night;
* **bearing defects at random times**: each bearing installed on machine ``i`` (install ``k``) starts a
  race defect after a Weibull-distributed number of operating hours (shape 2: the hazard grows with
  age) and the defect then grows as the plant's ``bearing_defect`` fault does, at a rate drawn per
  bearing (log-normal). The draws come from a generator keyed by (seed, machine, install), so every
  policy meets the same bearings (common random numbers) and a seed gives one run;
* **technicians** (``Shop.technicians``): a job, preventive or corrective, holds one of them; a failed
  machine waits for a free one, and corrective work goes first;
* a **failure** (damage ≥ 1) stops the machine for ``Costs.corrective_h`` of repair and costs
  ``corrective_cost``; a **preventive** job stops it ``preventive_h`` and costs ``preventive_cost``; both
  end with new bearings (:meth:`MachineArrays.reset_wear`).

Downtime is the production hours (06:00–22:00) a machine spends failed, waiting or in maintenance;
preventive work inside the night window costs none. Throughput is the parts made: the plant's rate
(``Params.rate_per_h`` at nominal speed) while running.

While the whole fleet stands still (the nights) nothing wears, so the physics is advanced over those
hours in one call when a machine turns again (exact: its lags and the load's random walk are integrated
exactly for any step) and no readings are taken; a stopped machine's readings are ones the twin's
analytics leave out anyway.

Policies see :class:`Observation` values only: the time, each machine's reported state and hour meter,
and — for a policy that asks for them — the sensor readings of :meth:`MachineArrays.measure` (noise
included). The physics object never leaves :func:`simulate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.plant.physics import MachineArrays, Params
from tvilling.plant.signals import FAULT, RUNNING, STOPPED

F64 = npt.NDArray[np.float64]
STEP_H = 1.0 / 6.0  # 10 plant minutes
STEPS_PER_H = 6


@dataclass(frozen=True)
class Costs:
    """The money and the durations of the bearing replacement task (one place for the whole study).

    Defaults: a bearing set and four hours of a mechanic (1,200); an unplanned failure costs the
    same parts plus secondary damage (shaft, seals), call-out and expediting (6,000) and keeps the
    machine out 24 h (diagnosis, parts, repair); an hour of lost production costs 500 (120 parts/h
    of contribution margin).
    """

    preventive_cost: float = 1_200.0
    corrective_cost: float = 6_000.0
    preventive_h: float = 4.0
    corrective_h: float = 24.0
    downtime_cost_h: float = 500.0

    def __post_init__(self) -> None:
        for name in ("preventive_cost", "corrective_cost", "downtime_cost_h"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise Invalid(f"{name} must be a finite number ≥ 0, not {value!r}", field=name, rule="range")
        for name in ("preventive_h", "corrective_h"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise Invalid(f"{name} must be a positive number of hours, not {value!r}", field=name, rule="range")


@dataclass(frozen=True)
class Shop:
    """The calendar and the crew: production from ``day_start_h`` to ``day_end_h`` every day, a planned
    stop (the maintenance window) the rest of the night, ``technicians`` on duty around the clock."""

    technicians: int = 2
    day_start_h: float = 6.0
    day_end_h: float = 22.0

    def __post_init__(self) -> None:
        if self.technicians < 1:
            raise Invalid(f"technicians must be ≥ 1, not {self.technicians}", field="technicians", rule="range")
        if not 0 <= self.day_start_h < self.day_end_h <= 24:
            raise Invalid("the production day must satisfy 0 ≤ day_start_h < day_end_h ≤ 24",
                          field="day_start_h", rule="range")

    @property
    def producing_share(self) -> float:
        """The share of calendar hours the line is meant to produce."""
        return (self.day_end_h - self.day_start_h) / 24.0

    def producing(self, t_h: float) -> bool:
        """Whether hour ``t_h`` (from midnight of day 0) is production time."""
        hour = t_h % 24.0
        return self.day_start_h <= hour < self.day_end_h

    def windows(self, start_h: float, end_h: float) -> list[tuple[float, float]]:
        """The planned stops that overlap ``[start_h, end_h)``, as ``(start, end)`` hours."""
        out: list[tuple[float, float]] = []
        day = math.floor(start_h / 24.0) - 1
        while day * 24.0 < end_h:
            s, e = day * 24.0 + self.day_end_h, (day + 1) * 24.0 + self.day_start_h
            if e > start_h and s < end_h and e > s:
                out.append((s, e))
            day += 1
        return out


@dataclass(frozen=True)
class Wearout:
    """How bearings go bad: defect onset after a Weibull number of operating hours, then growth at a rate
    drawn per bearing (the ``growth`` of the plant's ``bearing_defect`` fault; 1.0 fails in ~10 h).

    With the defaults a machine (two bearings) starts a defect every ~2,500 operating hours on average
    and a defect grows to failure in 150–700 h; the first bearings are of random age (up to
    ``initial_age_h``), so the fleet does not start in step.
    """

    onset_shape: float = 2.0
    onset_scale_h: float = 4_000.0
    growth_median: float = 0.03
    growth_sigma: float = 0.4
    severity: float = 1.0
    initial_age_h: float = 3_000.0

    def draw(self, seed: int, machine: int, install: int, age_h: float = 0.0) -> tuple[F64, F64]:
        """Onset (operating hours of the machine's hour meter) and growth of both bearings of one install.

        The first install (``install`` 0) is ``age_h`` old: its onsets are drawn given no defect so far."""
        rng = np.random.default_rng([seed, machine, install])
        u = rng.random(2)
        k, lam = self.onset_shape, self.onset_scale_h
        onset = lam * ((age_h / lam) ** k - np.log(u)) ** (1.0 / k)
        growth = self.growth_median * np.exp(self.growth_sigma * rng.standard_normal(2))
        return onset.astype(np.float64), growth.astype(np.float64)


@dataclass(frozen=True)
class Observation:
    """What the twin knows of the fleet at ``time_h``: reported states (codes of
    :data:`tvilling.plant.signals.STATES`), hour meters, and the sensor matrix when asked for."""

    time_h: float
    states: npt.NDArray[np.int8]
    operating_h: F64
    values: F64 | None = None


@dataclass(frozen=True)
class PlanContext:
    """What the maintenance planner knows besides the sensors: its own jobs and the calendar."""

    now_h: float
    end_h: float
    busy_until: F64  # per machine: end of the maintenance in progress (≤ now: none)
    tech_free_at: F64  # per technician of the machine's block: when they are free again
    failed: npt.NDArray[np.bool_]
    shop: Shop
    costs: Costs
    block_size: int


@dataclass(frozen=True)
class Request:
    """Preventive work on ``machine`` (global index) to start at ``start_h`` (or when a technician is free)."""

    machine: int
    start_h: float
    reason: str = ""


@dataclass(frozen=True)
class Event:
    """A maintenance event for the timeline: ``kind`` is ``failure`` (start = failure, end = repaired) or
    ``preventive``."""

    machine: int
    kind: str
    start_h: float
    end_h: float


class Policy(Protocol):
    """A maintenance policy: what it watches and when it plans."""

    name: str
    needs_signals: bool
    plan_every_h: float
    plan_offset_h: float

    def observe(self, obs: Observation) -> None:
        """Every step (only when ``needs_signals``): the readings at the end of the step."""

    def plan(self, obs: Observation, ctx: PlanContext) -> list[Request]:
        """At each planning time: the preventive work to start before the next one."""

    def maintained(self, machine: int, time_h: float) -> None:
        """Machine ``machine`` got new bearings at ``time_h`` (its work order is done)."""


@dataclass
class Ledger:
    """One block's totals."""

    preventive: int = 0
    failures: int = 0
    preventive_cost: float = 0.0
    corrective_cost: float = 0.0
    downtime_h: float = 0.0
    throughput: float = 0.0
    running_h: float = 0.0

    def cost(self, costs: Costs) -> float:
        return self.preventive_cost + self.corrective_cost + self.downtime_h * costs.downtime_cost_h


@dataclass
class RunResult:
    """The totals of each block and the maintenance events of every machine."""

    ledgers: list[Ledger]
    events: list[Event] = field(default_factory=list)
    steps: int = 0
    running: npt.NDArray[np.bool_] | None = None  # steps × machines, with ``trace=True``: who ran in each step


@dataclass
class _Job:
    machine: int
    kind: str
    start: float
    end: float
    tech: int


def simulate(policy: Policy, *, machines: int, days: float, seed: int, blocks: int = 1, costs: Costs | None = None,
             shop: Shop | None = None, wearout: Wearout | None = None, params: Params | None = None,
             trace: bool = False) -> RunResult:
    """Run ``blocks`` independent fleets of ``machines`` machines for ``days`` under ``policy``.

    Blocks share one physics array (vectorised) but nothing else: each has its own technicians and
    ledger, and machine ``i`` of every block meets the same bearings (same seed). A policy tells blocks
    apart by ``machine // ctx.block_size``.
    """
    if machines < 1 or blocks < 1:
        raise Invalid("machines and blocks must be ≥ 1", field="machines", rule="range")
    if not days > 0:
        raise Invalid(f"days must be > 0, not {days!r}", field="days", rule="range")
    costs, shop, wear = costs or Costs(), shop or Shop(), wearout or Wearout()
    n = machines * blocks
    rng = np.random.default_rng([seed, 0xB0A7])
    m = MachineArrays(n, rng, params)
    p = m.p
    local = np.tile(np.arange(machines), blocks)
    block_of = np.repeat(np.arange(blocks), machines)
    # the first bearings: a random age per machine (the same in every block); wear as accumulated at that age
    ages = np.random.default_rng([seed, 0xA6E]).uniform(0.0, wear.initial_age_h, machines)[local]
    m.operating_h[:] = ages
    m.wear[:] = (ages / p.wear_life_h * (m.torque_mean / p.torque_base) ** 3)[:, None]
    installs = np.zeros(n, dtype=np.int64)
    onset = np.empty((n, 2))
    growth = np.empty((n, 2))
    for j in range(n):
        onset[j], growth[j] = wear.draw(seed, int(local[j]), 0, float(ages[j]))
    steps = round(days * 24 * STEPS_PER_H)
    ledgers = [Ledger() for _ in range(blocks)]
    result = RunResult(ledgers)
    tech_free = np.zeros((blocks, shop.technicians))
    busy_until = np.zeros(n)
    in_job = np.zeros(n, dtype=bool)
    failed_at = np.full(n, np.nan)
    waiting: list[int] = []  # failed machines waiting for a technician, in order of failure
    pending: list[Request] = []
    jobs: list[_Job] = []
    plan_every = round(policy.plan_every_h * STEPS_PER_H)
    plan_offset = round(policy.plan_offset_h * STEPS_PER_H) % max(plan_every, 1)
    dt_s = STEP_H * 3600.0
    trace_rows: list[npt.NDArray[np.bool_]] | None = [] if trace else None
    idle_s = 0.0

    def start_job(j: int, kind: str, t: float) -> bool:
        b = int(block_of[j])
        free = np.flatnonzero(tech_free[b] <= t + 1e-9)
        if not free.size:
            return False
        tech = int(free[0])
        end = t + (costs.corrective_h if kind == "corrective" else costs.preventive_h)
        tech_free[b, tech] = end
        busy_until[j] = end
        in_job[j] = True
        jobs.append(_Job(j, kind, t, end, tech))
        if kind == "preventive":
            ledgers[b].preventive += 1
            ledgers[b].preventive_cost += costs.preventive_cost
        return True

    for k in range(steps):
        t = k * STEP_H
        # jobs that end now: new bearings, the technician is free
        for job in [jb for jb in jobs if jb.end <= t + 1e-9]:
            jobs.remove(job)
            j = job.machine
            m.reset_wear(j)
            in_job[j] = False
            installs[j] += 1
            onset[j], growth[j] = wear.draw(seed, int(local[j]), int(installs[j]))
            if job.kind == "corrective":
                result.events.append(Event(j, "failure", float(failed_at[j]), job.end))
                failed_at[j] = np.nan
            else:
                result.events.append(Event(j, "preventive", job.start, job.end))
            policy.maintained(j, t)
        # repairs first, then the preventive work that is due
        waiting = [j for j in waiting if not start_job(j, "corrective", t)]
        keep: list[Request] = []
        for req in pending:
            j = req.machine
            if m.state[j] == FAULT or in_job[j]:
                continue  # overtaken by a failure, or already in the shop
            if req.start_h > t + 1e-9 or not start_job(j, "preventive", t):
                keep.append(req)
        pending = keep
        producing = shop.producing(t)
        faulted = m.state == FAULT
        stopped = in_job | faulted
        turning = producing and not stopped.all()
        if turning:
            if idle_s:  # catch up with the hours in which nothing turned (states as they were then)
                m.advance(idle_s)
                idle_s = 0.0
            m.state[:] = np.where(faulted, FAULT, np.where(in_job, STOPPED, RUNNING)).astype(np.int8)
            # defects start when the hour meter passes the bearing's onset
            fresh = (m.defect_offset <= 0) & (m.operating_h[:, None] >= onset)
            if fresh.any():
                m.defect_offset[fresh] = p.defect_offset * wear.severity
                m.defect_growth[fresh] = growth[fresh]
            running = m.state == RUNNING
            m.advance(dt_s)
        else:  # the whole fleet stands still: nothing wears; the physics is advanced when something turns again
            m.state[:] = np.where(faulted, FAULT, STOPPED).astype(np.int8)
            running = np.zeros(n, dtype=bool)
            idle_s += dt_s
        if producing:
            made = p.rate_per_h * m.speed / p.nominal_rpm * STEP_H * running
            lost = stopped.astype(np.float64) * STEP_H
            for b in range(blocks):
                sl = slice(b * machines, (b + 1) * machines)
                ledgers[b].throughput += float(made[sl].sum())
                ledgers[b].downtime_h += float(lost[sl].sum())
                ledgers[b].running_h += float(running[sl].sum()) * STEP_H
        if trace_rows is not None:
            trace_rows.append(running.copy())
        # failures at the end of the step
        new: list[int] = np.flatnonzero((m.state == FAULT) & np.isnan(failed_at)).tolist() if turning else []
        for j in new:
            failed_at[j] = t + STEP_H
            b = int(block_of[j])
            ledgers[b].failures += 1
            ledgers[b].corrective_cost += costs.corrective_cost
            waiting.append(j)
        now = t + STEP_H
        obs: Observation | None = None
        if policy.needs_signals and turning:
            obs = Observation(now, m.state.copy(), m.operating_h.copy(), m.measure())
            policy.observe(obs)
        if plan_every and (k + 1 - plan_offset) % plan_every == 0:
            if obs is None:
                obs = Observation(now, m.state.copy(), m.operating_h.copy())
            ctx = PlanContext(now, days * 24.0, np.where(in_job, busy_until, now), tech_free.copy(),
                              m.state == FAULT, shop, costs, machines)
            pending.extend(policy.plan(obs, ctx))
    horizon = steps * STEP_H
    for job in jobs:  # still in the shop when the study ends
        kind = "failure" if job.kind == "corrective" else "preventive"
        result.events.append(Event(job.machine, kind, float(failed_at[job.machine]) if kind == "failure"
                                   else job.start, job.end))
    for j in waiting:  # failed, no technician yet
        result.events.append(Event(j, "failure", float(failed_at[j]), horizon))
    result.steps = steps
    if trace_rows is not None:
        result.running = np.vstack(trace_rows) if trace_rows else np.zeros((0, n), dtype=bool)
    return result


__all__ = ["STEP_H", "Costs", "Event", "Ledger", "Observation", "PlanContext", "Policy", "Request", "RunResult",
           "Shop", "Wearout", "simulate"]
