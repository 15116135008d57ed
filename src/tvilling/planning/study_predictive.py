"""The predictive policy of the maintenance study: the twin's remaining life, planned by the product's optimiser.

Every shift (06:00, 14:00, 22:00) the policy

1. runs the twin's remaining-life analytic on the readings of the shift (:class:`~.study_twin.TwinRul`);
2. turns each machine's prediction (``rul``, ``rul_p10``, ``rul_p90`` of its bearing predicted to fail
   first) into a failure-time distribution (:func:`tvilling.planning.failure.fit_failure`, with the
   band's ``coverage``);
3. hands the machines with a prediction, the technicians' free time, the nightly planned stops and the
   costs to :func:`tvilling.planning.maintenance.plan_maintenance` (the planner the product uses), over
   ``horizon_h``;
4. commits the work orders that start before the next shift; the rest is planned again next shift,
   with the newer predictions.

A machine without a credible trend (the analytic writes no ``rul``) has no failure distribution and
is not planned. The policy sees sensor readings, states and hour meters, never the plant's damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tvilling.core.errors import Invalid
from tvilling.planning.failure import FailureDistribution, fit_failure
from tvilling.planning.maintenance import MaintenancePlan, plan_maintenance
from tvilling.planning.maintenance_types import Asset, Interval, MaintenanceProblem, TaskType, Technician, Window
from tvilling.planning.study_fleet import Observation, PlanContext, Request
from tvilling.planning.study_twin import TwinRul
from tvilling.plant.plant import MODELS

TASK = "replace-bearings"
SKILL = "mech"


def machine_id(i: int) -> str:
    return f"m{i:03d}"


@dataclass
class Predictive:
    """Plan preventive work from the twin's remaining-life predictions with the maintenance optimiser."""

    machines: int
    horizon_h: float = 72.0
    coverage: float = 0.8
    solver: str = "highs"
    time_limit_s: float = 5.0
    name: str = "predictive"
    needs_signals: bool = True
    plan_every_h: float = 8.0
    plan_offset_h: float = 6.0
    twin: TwinRul = field(init=False)
    plans: int = field(default=0, init=False)
    last_plan: MaintenancePlan | None = field(default=None, init=False)
    committed: dict[int, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.twin = TwinRul(self.machines)

    def observe(self, obs: Observation) -> None:
        if obs.values is None:
            return
        self.twin.observe(obs.time_h, obs.values)

    def maintained(self, machine: int, time_h: float) -> None:
        self.committed.pop(machine, None)
        self.twin.forget(machine)

    def distribution(self, machine: int) -> FailureDistribution | None:
        """The machine's failure-time distribution from the twin's latest prediction (None: no trend)."""
        pred = self.twin.machine(machine)
        if pred is None:
            return None
        return fit_failure(pred.rul, pred.p10, pred.p90, coverage=self.coverage, predicted_at=pred.at_h)

    def problem(self, obs: Observation, ctx: PlanContext) -> MaintenanceProblem | None:
        """The planning problem of this shift (None when no machine has a prediction)."""
        if ctx.tech_free_at.shape[0] != 1 or ctx.block_size != self.machines:
            raise Invalid(f"the predictive policy plans one fleet of {self.machines} machines, not "
                          f"{ctx.tech_free_at.shape[0]} blocks of {ctx.block_size}", field="blocks", rule="range")
        now, end = obs.time_h, obs.time_h + self.horizon_h
        costs, shop = ctx.costs, ctx.shop
        model = MODELS["machine"]
        assets: list[Asset] = []
        for i in range(self.machines):
            if ctx.failed[i] or ctx.busy_until[i] > now or i in self.committed:
                continue
            dist = self.distribution(i)
            if dist is None:
                continue
            if dist.predicted_at > now:  # a prediction stamped after now cannot be (the clock is the plant's)
                dist = FailureDistribution(dist.family, dist.shape, dist.scale, now, dist.fit_error, dist.why)
            assets.append(Asset(machine_id(i), model, dist, downtime_cost_per_h=costs.downtime_cost_h))
        if not assets:
            return None
        task = TaskType(TASK, model, costs.preventive_h, (SKILL,), costs.preventive_cost, costs.corrective_cost,
                        costs.corrective_h * shop.producing_share)
        techs = tuple(Technician(f"tech-{k + 1}", (SKILL,),
                                 (Interval(max(now, float(free)), end),) if free < end else ())
                      for k, free in enumerate(ctx.tech_free_at[0]))
        windows = tuple(Window(f"night-{int(s // 24)}", s, e, "planned-stop") for s, e in shop.windows(now, end))
        return MaintenanceProblem(now=now, horizon_h=self.horizon_h, assets=tuple(assets), tasks=(task,),
                                  technicians=techs, windows=windows, step_h=1.0)

    def plan(self, obs: Observation, ctx: PlanContext) -> list[Request]:
        self.twin.update()
        problem = self.problem(obs, ctx)
        if problem is None:
            return []
        plan = plan_maintenance(problem, solver=self.solver, time_limit_s=self.time_limit_s, allow_partial=True)
        self.plans += 1
        self.last_plan = plan
        nxt = obs.time_h + self.plan_every_h
        out: list[Request] = []
        for wo in plan.work_orders:
            if wo.start < nxt - 1e-9:
                i = int(wo.asset[1:])
                self.committed[i] = wo.start
                out.append(Request(i, wo.start, wo.rationale.summary))
        return out


__all__ = ["Predictive"]
