"""The maintenance-planning problem: assets, task types, technicians, parts, windows, orders.

Times are hours on one planning clock (``now`` is a number on it); ``epoch`` optionally names
the wall-clock instant of hour 0 so that outputs can carry datetimes. :func:`validate` raises
:class:`~tvilling.core.errors.Invalid` naming the first malformed field; conflicts between valid
inputs (a skill nobody has, a part that cannot arrive in time) are the planner's business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tvilling.core.errors import Invalid
from tvilling.planning.failure import FailureDistribution


@dataclass(frozen=True)
class Interval:
    """A half-open time interval ``[start, end)`` in planning hours."""

    start: float
    end: float


@dataclass(frozen=True)
class PartNeed:
    """A spare part a task consumes."""

    part: str
    quantity: int = 1


@dataclass(frozen=True)
class TaskType:
    """A maintenance task of a model.

    ``skills`` lists the crew's roles, one technician per entry (``("mech", "mech")`` is two
    mechanics); corrective figures are what the same failure costs when it happens unplanned.
    """

    name: str
    model: str
    duration_h: float
    skills: tuple[str, ...]
    preventive_cost: float
    corrective_cost: float
    corrective_downtime_h: float
    parts: tuple[PartNeed, ...] = ()


@dataclass(frozen=True)
class Asset:
    """An asset to plan for.

    ``stops`` is its criticality: the ids of the assets or lines that stop when it stops
    (transitively, through other assets' ``stops``); its downtime costs its own
    ``downtime_cost_per_h`` plus the rate of each of them (``MaintenanceProblem.stop_costs``).
    ``task`` names the task type when its model has several.
    """

    id: str
    model: str
    failure: FailureDistribution | None = None
    stops: tuple[str, ...] = ()
    downtime_cost_per_h: float = 0.0
    task: str | None = None


@dataclass(frozen=True)
class Technician:
    """A technician: skills and the shifts (intervals) in which they can work."""

    id: str
    skills: tuple[str, ...]
    shifts: tuple[Interval, ...]


@dataclass(frozen=True)
class PartStock:
    """Stock on hand of a part; more can be ordered and arrives ``lead_time_h`` after now."""

    part: str
    on_hand: int
    lead_time_h: float


@dataclass(frozen=True)
class Window:
    """A maintenance window: work inside it loses no production.

    ``scope`` holds the asset or line ids it stops (empty: the whole plant); ``kind`` is free
    text such as ``planned-stop``, ``shift-change`` or ``weekend``.
    """

    id: str
    start: float
    end: float
    kind: str = "planned-stop"
    scope: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExistingOrder:
    """A work order from an earlier plan: firm ones stay as they are, others may move at a churn cost."""

    id: str
    asset: str
    task: str
    start: float
    crew: tuple[str, ...]
    firm: bool = False


@dataclass(frozen=True)
class MaintenanceProblem:
    """Everything the planner weighs, at planning time ``now`` over ``horizon_h`` hours.

    ``step_h`` is the spacing of candidate start times (besides the windows' starts, the
    latest start that still ends inside each window, the parts' arrival times and previous
    starts). ``churn_penalty`` is charged when a non-firm previous order is moved or dropped.
    """

    now: float
    horizon_h: float
    assets: tuple[Asset, ...]
    tasks: tuple[TaskType, ...]
    technicians: tuple[Technician, ...]
    parts: tuple[PartStock, ...] = ()
    windows: tuple[Window, ...] = ()
    stop_costs: Mapping[str, float] = field(default_factory=dict)
    existing: tuple[ExistingOrder, ...] = ()
    churn_penalty: float = 0.0
    step_h: float = 1.0
    epoch: datetime | None = None

    @property
    def end(self) -> float:
        """The end of the horizon on the planning clock."""
        return self.now + self.horizon_h


def _num(value: float, where: str, *, minimum: float | None = 0.0, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{where} must be a finite number, got {value!r}", field=where, rule="finite")
    if positive and value <= 0:
        raise Invalid(f"{where} must be > 0, got {value}", field=where, rule="positive")
    if minimum is not None and value < minimum:
        raise Invalid(f"{where} must be ≥ {minimum}, got {value}", field=where, rule="minimum")


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if not isinstance(i, str) or not i:
            raise Invalid(f"{what} id must be a non-empty string, got {i!r}", field=what, rule="type")
        if i in seen:
            raise Invalid(f"duplicate {what} id {i!r}", field=what, rule="unique", id=i)
        seen.add(i)


def _interval(start: float, end: float, where: str) -> None:
    _num(start, f"{where}.start", minimum=None)
    _num(end, f"{where}.end", minimum=None)
    if end <= start:
        raise Invalid(f"{where} ends ({end}) at or before it starts ({start})", field=where, rule="interval")


def validate(problem: MaintenanceProblem) -> None:
    """Raise :class:`Invalid` naming the first malformed or dangling field of ``problem``."""
    _num(problem.now, "now", minimum=None)
    _num(problem.horizon_h, "horizon_h", positive=True)
    _num(problem.step_h, "step_h", positive=True)
    _num(problem.churn_penalty, "churn_penalty")
    _unique([a.id for a in problem.assets], "asset")
    _unique([t.id for t in problem.technicians], "technician")
    _unique([p.part for p in problem.parts], "part")
    _unique([w.id for w in problem.windows], "window")
    _unique([o.id for o in problem.existing], "order")
    task_keys: set[tuple[str, str]] = set()
    for t in problem.tasks:
        where = f"task {t.model}/{t.name}"
        if (t.model, t.name) in task_keys:
            raise Invalid(f"duplicate {where}", field="tasks", rule="unique")
        task_keys.add((t.model, t.name))
        _num(t.duration_h, f"{where}.duration_h", positive=True)
        for attr in ("preventive_cost", "corrective_cost", "corrective_downtime_h"):
            _num(getattr(t, attr), f"{where}.{attr}")
        if not t.skills or not all(isinstance(s, str) and s for s in t.skills):
            raise Invalid(f"{where} needs at least one skill (one technician per entry)", field=f"{where}.skills",
                          rule="required")
        for need in t.parts:
            if isinstance(need.quantity, bool) or not isinstance(need.quantity, int) or need.quantity < 1:
                raise Invalid(f"{where} part {need.part!r} quantity must be an integer ≥ 1, got {need.quantity!r}",
                              field=f"{where}.parts", rule="minimum")
    stock = {p.part for p in problem.parts}
    for p in problem.parts:
        if isinstance(p.on_hand, bool) or not isinstance(p.on_hand, int) or p.on_hand < 0:
            raise Invalid(f"part {p.part!r} on_hand must be an integer ≥ 0, got {p.on_hand!r}",
                          field=f"part {p.part}.on_hand", rule="minimum")
        _num(p.lead_time_h, f"part {p.part}.lead_time_h")
    for t in problem.tasks:
        for need in t.parts:
            if need.part not in stock:
                raise Invalid(f"task {t.model}/{t.name} needs part {need.part!r}, which has no stock entry "
                              "(give on_hand and lead_time_h)", field="parts", rule="reference", part=need.part)
    for tech in problem.technicians:
        for k, shift in enumerate(tech.shifts):
            _interval(shift.start, shift.end, f"technician {tech.id}.shifts[{k}]")
    for w in problem.windows:
        _interval(w.start, w.end, f"window {w.id}")
    asset_ids = {a.id for a in problem.assets}
    for key, rate in problem.stop_costs.items():
        _num(rate, f"stop_costs[{key}]")
    for a in problem.assets:
        _num(a.downtime_cost_per_h, f"asset {a.id}.downtime_cost_per_h")
        if a.failure is not None and not isinstance(a.failure, FailureDistribution):
            raise Invalid(f"asset {a.id}.failure must be a FailureDistribution (see fit_failure)",
                          field=f"asset {a.id}.failure", rule="type")
        for s in a.stops:
            if s not in asset_ids and s not in problem.stop_costs:
                raise Invalid(f"asset {a.id} stops {s!r}, which is neither an asset nor a key of stop_costs",
                              field=f"asset {a.id}.stops", rule="reference", target=s)
        if a.failure is not None or any(o.asset == a.id for o in problem.existing):
            task_for(problem, a)
    techs = {t.id for t in problem.technicians}
    for o in problem.existing:
        if o.asset not in asset_ids:
            raise Invalid(f"order {o.id} is for unknown asset {o.asset!r}", field=f"order {o.id}.asset",
                          rule="reference")
        _num(o.start, f"order {o.id}.start", minimum=None)
        if (next(a.model for a in problem.assets if a.id == o.asset), o.task) not in task_keys:
            raise Invalid(f"order {o.id} names task {o.task!r}, unknown for asset {o.asset}'s model",
                          field=f"order {o.id}.task", rule="reference")
        for c in o.crew:
            if c not in techs:
                raise Invalid(f"order {o.id} names unknown technician {c!r}", field=f"order {o.id}.crew",
                              rule="reference")
    for asset_id in {o.asset for o in problem.existing if not o.firm}:
        if sum(1 for o in problem.existing if o.asset == asset_id and not o.firm) > 1:
            raise Invalid(f"the previous plan holds several non-firm orders for asset {asset_id}",
                          field="existing", rule="unique", asset=asset_id)


def task_for(problem: MaintenanceProblem, asset: Asset) -> TaskType:
    """The task type planned for ``asset``: the one it names, or its model's only one."""
    candidates = [t for t in problem.tasks if t.model == asset.model]
    if asset.task is not None:
        for t in candidates:
            if t.name == asset.task:
                return t
        raise Invalid(f"asset {asset.id} names task {asset.task!r}, which model {asset.model!r} does not have",
                      field=f"asset {asset.id}.task", rule="reference")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise Invalid(f"model {asset.model!r} of asset {asset.id} has no maintenance task type",
                      field=f"asset {asset.id}.model", rule="reference")
    raise Invalid(f"model {asset.model!r} has {len(candidates)} task types; asset {asset.id} must name one",
                  field=f"asset {asset.id}.task", rule="required")


def downtime_rate(problem: MaintenanceProblem, asset_id: str) -> float:
    """Lost production per hour while ``asset_id`` is down: its own rate plus all it stops, transitively."""
    by_id = {a.id: a for a in problem.assets}
    seen: set[str] = set()
    stack = [asset_id]
    rate = 0.0
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        rate += float(problem.stop_costs.get(node, 0.0))
        asset = by_id.get(node)
        if asset is not None:
            rate += asset.downtime_cost_per_h
            stack.extend(asset.stops)
    return rate


def stopped_ids(problem: MaintenanceProblem, asset_id: str) -> frozenset[str]:
    """The asset itself and everything that stops with it (its criticality, transitively)."""
    by_id = {a.id: a for a in problem.assets}
    seen: set[str] = set()
    stack = [asset_id]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        asset = by_id.get(node)
        if asset is not None:
            stack.extend(asset.stops)
    return frozenset(seen)
