"""Production plans: the contract between the production planner and the dispatcher.

The planner (``production_*`` modules) writes :class:`ProductionPlan` values; the plant side only reads
the plan in force through :func:`current_plan`. The planner never sends commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["PlanReader", "PlannedOperation", "ProductionPlan", "current_plan"]


@dataclass(frozen=True, slots=True)
class PlannedOperation:
    """One operation of a production order placed on a machine for a time window."""

    order: str  # production order id
    op: int  # index of the operation in the order's routing (from 0)
    machine: str  # machine twin id, e.g. "line-1-m02"
    start: datetime  # UTC, plant time as the twins see it (the timestamps readings carry)
    end: datetime
    quantity: int  # parts to make
    speed_rpm: float  # the speed the plan assumes on that machine


@dataclass(frozen=True, slots=True)
class ProductionPlan:
    """A schedule of a line's production orders, with the downtimes it plans around and its KPIs."""

    id: str
    created: datetime
    line: str  # line twin id
    operations: tuple[PlannedOperation, ...]
    downtimes: tuple[dict[str, Any], ...]  # {"machine", "start", "end", "reason", "work_order"?}
    kpis: dict[str, float]  # makespan_h, total_tardiness_h, weighted_tardiness_h, throughput_per_h, ...
    previous: str | None = None  # the plan this one replaced
    reason: str = ""  # what triggered it ("initial", "maintenance inserted", "machine slowed", "breakdown", ...)

    def on_machine(self, machine: str) -> tuple[PlannedOperation, ...]:
        """The operations planned on ``machine``, in start order."""
        return tuple(sorted((o for o in self.operations if o.machine == machine), key=lambda o: o.start))

    def at(self, machine: str, when: datetime) -> PlannedOperation | None:
        """The operation ``machine`` should be running at ``when``, or ``None`` when it is idle."""
        for o in self.operations:
            if o.machine == machine and o.start <= when < o.end:
                return o
        return None


@runtime_checkable
class PlanReader(Protocol):
    """Anything that can return the plan in force for a line (the production plan store)."""

    def current(self, line: str) -> ProductionPlan | None: ...


def current_plan(platform_or_store: Any, line: str) -> ProductionPlan | None:
    """The plan in force for ``line``, or ``None`` when the line has never been planned.

    ``platform_or_store`` is the production plan store, a backend holding one (``backend.production``),
    a platform whose backend holds one (``platform.backend.production``), or a runtime over such a platform.
    """
    store = _plan_store(platform_or_store)
    return store.current(line)


def _plan_store(obj: Any) -> PlanReader:
    if isinstance(obj, PlanReader):
        return obj
    for path in (("production",), ("backend", "production"), ("platform", "backend", "production")):
        cur: Any = obj
        for name in path:
            cur = getattr(cur, name, None)
            if cur is None:
                break
        if cur is not None and isinstance(cur, PlanReader):
            return cur
    from tvilling.core.errors import Invalid  # local: keep the contract module light to import

    raise Invalid(f"{type(obj).__name__} holds no production plan store", field="platform_or_store")
