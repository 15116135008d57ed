"""The study's reference policies: run to failure, and preventive work every T operating hours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.planning.study_fleet import Observation, PlanContext, Request


@dataclass
class RunToFailure:
    """No preventive work: a bearing is replaced when it has failed."""

    name: str = "run_to_failure"
    needs_signals: bool = False
    plan_every_h: float = 0.0
    plan_offset_h: float = 0.0

    def observe(self, obs: Observation) -> None:
        """Nothing to watch."""

    def plan(self, obs: Observation, ctx: PlanContext) -> list[Request]:
        return []

    def maintained(self, machine: int, time_h: float) -> None:
        """Nothing to remember."""


@dataclass
class FixedInterval:
    """Replace the bearings every ``interval_h`` operating hours (the hour meter), in the nightly window.

    Planned at each window's start: a machine whose meter would pass its interval before the next
    window (one production day later) is done in this one. ``intervals`` holds one interval per block
    of a :func:`~tvilling.planning.study_fleet.simulate` run, so one run can try several.
    """

    intervals: Sequence[float]
    name: str = "fixed_interval"
    needs_signals: bool = False
    plan_every_h: float = 24.0
    plan_offset_h: float = field(default=22.0)

    def __post_init__(self) -> None:
        if not self.intervals or any(not v > 0 for v in self.intervals):
            raise Invalid("fixed-interval policies need positive intervals (operating hours)", field="interval_h",
                          rule="range")

    def observe(self, obs: Observation) -> None:
        """Only the hour meters matter, read at planning time."""

    def plan(self, obs: Observation, ctx: PlanContext) -> list[Request]:
        limit = np.repeat(np.asarray(self.intervals, dtype=np.float64), ctx.block_size)
        if limit.size != obs.operating_h.size:
            raise Invalid(f"{len(self.intervals)} intervals for {obs.operating_h.size // ctx.block_size} blocks",
                          field="intervals", rule="count")
        # a machine that would pass its interval before the next window (a production day later) goes now,
        # the most worn first, as many as the window holds (technicians free × jobs that fit in it)
        shop, costs = ctx.shop, ctx.costs
        day_h = shop.day_end_h - shop.day_start_h
        slots = int((24.0 - day_h) // costs.preventive_h)
        due = (obs.operating_h + day_h >= limit) & ~ctx.failed & (ctx.busy_until <= obs.time_h)
        out: list[Request] = []
        for b in range(limit.size // ctx.block_size):
            lo = b * ctx.block_size
            mine = lo + np.flatnonzero(due[lo:lo + ctx.block_size])
            capacity = int((ctx.tech_free_at[b] <= obs.time_h + 1e-9).sum()) * max(slots, 1)
            order = mine[np.argsort(-obs.operating_h[mine], kind="stable")][:capacity]
            out += [Request(int(j), obs.time_h, "interval") for j in order]
        return out

    def maintained(self, machine: int, time_h: float) -> None:
        """The hour meter restarts with the new bearings."""


__all__ = ["FixedInterval", "RunToFailure"]
