"""The demo's flagship walkthrough: the line produces to a plan, a bearing turns bad, the decision plans the
work, production is re-planned around it, the crew does it, and the machine comes back to health.

:class:`DemoFlow` runs inside the demo's server, beside its runtime, and tells each step through the narrator:

1. **production** — once the plant reports, it seeds production orders on the line and plans them
   (:class:`~tvilling.planning.production_service.ProductionService` on the plant's ``time_scale``, CP-SAT); the
   dispatcher (a runtime unit) sends
   the plan's jobs to the machines as ``runJob`` commands, and the twins show ``job``, ``jobProgress`` and
   ``partsDone``;
2. **the decision** — the API's decision watch decides on the bearing's predictive alarm (what-if options, the
   maintenance optimiser, one proposed work order, production re-planned); the flow reads the decision store
   and tells the options compared, the choice and why, the work order's window and the plan's KPIs before
   and after;
3. **approval** — in auto mode the flow approves and schedules the work order as the engineer would on the
   dashboard (a slow-down chosen instead is sent to the machine and production re-planned); in manual mode
   it waits for a person (dashboard, ``tvilling maintenance approve`` and ``schedule``);
4. **the work** — the demo's crew starts a scheduled order when plant time reaches its window (the machine
   stopped for it) and completes it at its planned end: the work-order service sends ``maintenanceDone``,
   the plant replaces the bearings, the twin's analytics learn afresh and its alarms clear; the machine is
   started again;
5. **back to health** — the relearned detector scores the new bearing, and the machine takes its next job.

Every step is kept in :attr:`DemoFlow.steps` (name, wall seconds, plant hours, details) for tests and tools;
:attr:`DemoFlow.finished` is set once a maintained machine is healthy and producing again. Plant time is the
readings' clock since the plant's first reading, × the plant's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import NotFound, TvillingError
from tvilling.planning.decision import DecisionService
from tvilling.planning.demo_plan import demo_orders, plant_kpis
from tvilling.planning.maintenance_service import MaintenanceService
from tvilling.planning.maintenance_service_config import parse_maintenance
from tvilling.planning.production_dispatch import DONE, FAILED_OP, RUNNING, Change, DispatchUnit, dispatcher_for
from tvilling.planning.production_orders import iso
from tvilling.planning.production_service import ProductionService
from tvilling.planning.production_twin import read_line
from tvilling.planning.workorders import APPROVED, CANCELLED, IN_PROGRESS, SCHEDULED, WorkOrder
from tvilling.planning.workorders_service import WorkOrderService

if TYPE_CHECKING:
    from tvilling.plant.plant import Frame
    from tvilling.plant.run import TickedPlant
    from tvilling.runtime import Runtime

log = logging.getLogger("tvilling.demo")
ACTOR = "demo-auto"  # who approves in auto mode (as an engineer would on the dashboard)
CREW = "demo-crew"  # the demo's maintenance crew: starts and completes scheduled work orders at their windows
POLL_S = 0.5  # wall seconds between reads of the alarm and decision stores
TICK_S = 0.1


@dataclass(frozen=True)
class Step:
    """One step of the story: what happened, when (wall seconds since the start; plant hours), the figures."""

    name: str
    wall_s: float
    plant_h: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Recovery:
    """A maintained asset the flow watches until it is healthy and producing again (``progress``: its machine's
    running operations when the work was done, which must move on)."""

    asset: str
    machine: str
    done_at: datetime
    progress: dict[str, float] = field(default_factory=dict)
    healthy: bool = False
    producing: bool = False


def _hours(value: Any, horizon: float) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.1f} h"
    return f"> {horizon:g} h"


def _money(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def option_name(option: Mapping[str, Any], clock: Callable[[datetime], str] | None = None) -> str:
    """An option's name, the optimiser's work order at its plant-clock time (``clock``) rather than an ISO time."""
    name = str(option.get("name", ""))
    start = option.get("start")
    if clock is not None and option.get("kind") == "preventive" and isinstance(start, str) and start in name:
        name = name.replace(start, clock(datetime.fromisoformat(start.replace("Z", "+00:00"))))
    return name


def option_lines(record: Mapping[str, Any], clock: Callable[[datetime], str] | None = None) -> list[str]:
    """The decision's options in words, one line each: the what-if's time to failure (p50, p10–p90; for work in
    a window, after the work), the failure probability the plan counts with (within the horizon, or before the
    work), the production lost and the expected cost."""
    horizon = float(record.get("horizon_h") or 0.0)
    options = list(record.get("options") or [])
    names = [option_name(o, clock) for o in options]
    width = max((len(n) for n in names), default=0)
    out = []
    for o, name in zip(options, names, strict=True):
        parts: list[str] = []
        simulated = o.get("ttf_p50_h") is not None or o.get("p_fail_horizon") is not None
        ttf = (f"{_hours(o.get('ttf_p50_h'), horizon)} (p10 {_hours(o.get('ttf_p10_h'), horizon)}, p90 "
               f"{_hours(o.get('ttf_p90_h'), horizon)})")
        if o.get("kind") in ("window", "preventive"):
            parts.append(f"P(failure before the work) {_share(o.get('p_fail_before'))}")
            if o.get("kind") == "window" and simulated:
                parts.append(f"what-if time to failure after it {ttf}")
        else:
            if simulated:
                parts.append(f"what-if time to failure {ttf}")
            parts.append(f"P(failure within {horizon:g} h) {_share(o.get('p_fail_horizon_planned'))}")
        if o.get("kind") == "slow_down" and o.get("lost_production_h") is not None:
            parts.append(f"lost production {o['lost_production_h']:.1f} machine-h")
        elif isinstance(o.get("lost_production"), int | float):
            lost = float(o["lost_production"])
            parts.append(f"lost production {lost:,.0f} parts" if lost >= 0.5 else "lost production none")
        if o.get("kind") == "preventive" and o.get("crew"):
            parts.append(f"crew {', '.join(o['crew'])}")
        parts.append(f"expected cost {_money(o.get('expected_cost'))}")
        mark = "   ← chosen" if o.get("chosen") else ("   (what-if at the window's start)" if o.get("kind") == "window"
                                                    else "")
        out.append(f"  {name:<{width}}  " + "; ".join(parts) + mark)
    return out


def kpi_text(production: Mapping[str, Any], time_scale: float) -> str:
    """A re-plan's KPIs, before → after, in plant hours."""
    comparison = production.get("comparison") or {}
    pairs = comparison.get("kpis") if isinstance(comparison, Mapping) else None
    if not pairs:
        before = plant_kpis(dict((production.get("before") or {}).get("kpis") or {}), time_scale)
        after = plant_kpis(dict((production.get("after") or {}).get("kpis") or {}), time_scale)
        pairs = {k: {"before": before.get(k), "after": v} for k, v in after.items()}
    else:
        pairs = {k: {"before": plant_kpis({k: v.get("before")}, time_scale)[k],
                     "after": plant_kpis({k: v.get("after")}, time_scale)[k]} for k, v in pairs.items()}

    def pair(name: str, label: str, fmt: str, unit: str) -> str | None:
        p = pairs.get(name)
        if not p or not isinstance(p.get("after"), int | float):
            return None
        b = p.get("before")
        left = format(b, fmt) if isinstance(b, int | float) else "—"
        return f"{label} {left} → {format(p['after'], fmt)}{unit}"

    bits = [pair("makespan_h", "makespan", ".1f", " plant h"), pair("total_tardiness_h", "total tardiness", ".1f",
                                                                      " plant h"),
            pair("late_orders", "late orders", ".0f", ""), pair("throughput_per_h", "throughput", ".0f",
                                                               " parts/plant h"),
            pair("lost_production", "lost production", ",.0f", " parts")]
    text = ", ".join(b for b in bits if b)
    if isinstance(comparison, Mapping) and comparison:
        avoided = comparison.get("downtime_avoided_h")
        if isinstance(avoided, int | float) and avoided > 0:
            text += f", downtime avoided {avoided * time_scale:.1f} machine-h"
        text += f"; {len(comparison.get('moved') or [])} operation(s) moved"
    return text


class DemoFlow:
    """The walkthrough of one demo run (see the module text).

    The flow's work-order, production and decision services are put in ``app.state`` and its dispatcher is
    registered with the app (``GET /api/production/dispatch``), so that the dashboard, the API and the decision
    watch act through the same ones.
    ``maintenance(origin)`` gives the ``[maintenance]`` table once the plant's first reading fixes plant hour 0.
    """

    def __init__(self, runtime: Runtime, app: Any, plant: TickedPlant, say: Callable[[str], None], *,
                 speed: float, step_s: float, auto: bool, slow_rpm: float,
                 maintenance: Callable[[datetime], dict[str, Any]], poll: Callable[[], Any] | None = None) -> None:
        from tvilling.analytics.binding.maintenance import maintenance_reset
        from tvilling.decisions.alarms.service import AlarmService

        platform = runtime.platform
        self.runtime = runtime
        self.platform = platform
        self.app = app
        self.state = app.state
        self.plant = plant
        self.say = say
        self.speed = float(speed)
        self.step_s = float(step_s)
        self.auto = auto
        self.slow_rpm = slow_rpm
        self.maintenance_doc = maintenance
        self.poll_alarms = poll
        self.line = plant.line
        self.commands = runtime.commands
        alarms = AlarmService(platform.alarm_store, notify=runtime.hub.notify)
        self.workorders = WorkOrderService(platform.backend.workorders, platform.twins, commands=runtime.commands,
                                           analytics_reset=maintenance_reset(platform, alarms=alarms))
        self.production = ProductionService(platform, time_scale=self.speed)
        self.dispatcher = dispatcher_for(runtime, self.line, retry_s=5.0 * self.step_s) \
            if runtime.commands is not None else None
        self.state.workorders = self.workorders
        self.state.production = self.production
        self.decisions: DecisionService | None = None
        self.steps: list[Step] = []
        self.finished = asyncio.Event()
        self.origin: datetime | None = None
        self.started = time.monotonic()
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._framed = asyncio.Event()
        self._seen: dict[str, str] = {}
        self._orders: dict[str, str] = {}  # work order → its state as the flow last saw it
        self._mine: set[str] = set()  # work orders whose machine the crew stopped
        self._approved: set[str] = set()  # work orders whose approval was told
        self._routing: dict[str, int] = {}  # production order → its number of steps
        self._changes: deque[Change] = deque(maxlen=2000)
        self._recovering: dict[str, _Recovery] = {}
        self._dispatching = False
        self._window_starts: list[float] = []
        if self.dispatcher is not None:
            self.dispatcher.listeners.append(self._changes.append)

    # -- the clock ---------------------------------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        """The plant runner's hook: the first frame fixes plant hour 0; the last one is plant time now."""
        if self._first_ms is None:
            self._first_ms = frame.ts_ms
            self.origin = datetime.fromtimestamp(frame.ts_ms / 1000, UTC)
        self._last_ms = frame.ts_ms
        self._framed.set()

    def now(self) -> datetime:
        """Plant time as the twins see it: the stamp of the plant's last frame."""
        return datetime.fromtimestamp((self._last_ms or int(time.time() * 1000)) / 1000, UTC)

    def plant_h(self, at: datetime | None = None) -> float | None:
        """Plant hours since the first reading at ``at`` (default: now)."""
        if self._first_ms is None:
            return None
        ms = (at or self.now()).timestamp() * 1000.0
        return (ms - self._first_ms) / 1000.0 * self.speed / 3600.0

    def clock(self, at: datetime | None = None) -> str:
        """``HH:MM`` of plant time (``day N HH:MM`` past the first day)."""
        hours = self.plant_h(at)
        if hours is None:
            return "--:--"
        minutes = max(0, round(hours * 60.0))
        day, minutes = divmod(minutes, 24 * 60)
        text = f"{minutes // 60:02d}:{minutes % 60:02d}"
        return text if day == 0 else f"day {day} {text}"

    def reached(self, at: datetime) -> bool:
        """Whether the plant has taken its first step stamped at or after ``at``."""
        if self._first_ms is None:
            return False
        # within a millisecond: planned times carry float noise of microseconds against the frames' stamps
        step = max(0, math.ceil((at.timestamp() * 1000.0 - 1.0 - self._first_ms) / (self.step_s * 1000.0)))
        return self.plant.steps > step

    def next_stop_h(self) -> float | None:
        """Plant hours from now to the start of the next maintenance window (``None``: none configured yet)."""
        now = self.plant_h()
        if now is None or not self._window_starts:
            return None
        day = math.floor(now / 24.0) * 24.0
        return min(day + d + start - now for d in (0.0, 24.0) for start in self._window_starts
                   if day + d + start > now)

    def record(self, name: str, **detail: Any) -> None:
        self.steps.append(Step(name, round(time.monotonic() - self.started, 3), self.plant_h(), detail))

    # -- the run -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Set up maintenance and production once the plant reports, then follow the story until cancelled."""
        await self._framed.wait()
        await asyncio.to_thread(self._setup_maintenance)
        async with contextlib.AsyncExitStack() as stack:
            try:
                await self._seed_production()
            except TvillingError as exc:
                self.say(f"production: not planned ({exc.message})")
            except Exception:  # the rest of the story goes on without production
                log.exception("demo flow: seeding production")
                self.say("production: not planned (see the log)")
            if self.dispatcher is not None:
                from tvilling.api.production import register_dispatcher

                stack.callback(register_dispatcher(self.app, self.dispatcher))
                await stack.enter_async_context(DispatchUnit(self.dispatcher, interval_s=self.step_s))
            polled = 0.0
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    if time.monotonic() - polled >= POLL_S:
                        polled = time.monotonic()
                        if self.poll_alarms is not None:
                            await asyncio.to_thread(self._alarms)
                        for record in await asyncio.to_thread(self._decision_updates):
                            await self._on_decision(record)
                    await self._crew()
                    self._tell_production()
                    await self._watch_recovery()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the story goes on; the server keeps running
                    log.exception("demo flow")

    def _alarms(self) -> None:
        """The narrator tells the alarms raised and cleared; the flow keeps them as steps (a remaining life with
        its band for the remaining-life alarm)."""
        assert self.poll_alarms is not None
        for event in self.poll_alarms() or []:
            kind = str(event.get("type", "")).removeprefix("alarm.")
            self.record(f"alarm.{kind}", rule=event.get("rule"), twin=event.get("twin"), actor=event.get("actor"))
            if kind == "raised" and event.get("rule") == "bearing-rul":
                rep = self.platform.twins.get(str(event.get("twin"))).reported
                self.record("rul.predicted", twin=event.get("twin"), rul=rep.get("rul"), p10=rep.get("rul_p10"),
                            p90=rep.get("rul_p90"))

    def _setup_maintenance(self) -> None:
        assert self.origin is not None  # set by the first frame, which run() waited for
        doc = self.maintenance_doc(self.origin)
        settings = parse_maintenance(doc)
        maintenance = MaintenanceService(self.platform, self.workorders, settings=settings)
        self.decisions = DecisionService(self.platform, self.workorders, maintenance=maintenance,
                                         production=self.production)
        self.state.decisions = self.decisions
        for record in self.decisions.list(limit=1000):  # an earlier run's decisions (a kept data dir) are history
            self._seen[record["id"]] = record["status"]
        self._window_starts = sorted(w.daily.start_h for w in settings.windows if w.daily is not None)
        spans = ", ".join(_span(w.daily.start_h, w.daily.end_h) if w.daily is not None else w.id
                          for w in settings.windows)
        crews = ", ".join(f"{t.id} ({'+'.join(t.skills)}, {_span(t.shifts[0].start_h, t.shifts[0].end_h)})"
                          for t in settings.technicians)
        task = settings.tasks[0]
        self.say(f"maintenance: windows at {spans} plant time each day; crews {crews}; {task.name} takes "
                 f"{task.duration_h:g} plant h; decisions on {', '.join(settings.decision.rules)} alarms "
                 + ("(approved by the demo: --auto)" if self.auto else "(approval is yours: --manual)"))
        self.record("maintenance.configured", windows=[w.id for w in settings.windows],
                    technicians=[t.id for t in settings.technicians])

    async def _seed_production(self) -> None:
        """Seed the line's orders (unless an earlier run did) and make the first plan."""
        view = await asyncio.to_thread(read_line, self.production.platform, self.line)
        while view.now is None:
            await asyncio.sleep(self.step_s)
            view = await asyncio.to_thread(read_line, self.production.platform, self.line)
        bodies = demo_orders(self.line, [m.id for m in view.machines], view.now, self.speed)
        try:
            await asyncio.to_thread(self.production.get_order, bodies[0]["id"])
            seeded = False
        except NotFound:
            seeded = True
            for body in bodies:
                await asyncio.to_thread(self.production.create_order, body, ACTOR, now=view.now)
        open_orders = await asyncio.to_thread(self.production.list_orders, line=self.line, state="open", limit=1000)
        self._routing = {o.id: len(o.routing) for o in open_orders}
        result = await asyncio.to_thread(self.production.plan, self.line)
        plan, k = result.plan, plant_kpis(dict(result.plan.kpis), self.speed)
        parts = sum(o.quantity for o in open_orders)
        dues = sorted(o.due for o in open_orders)
        told = (f"production: {len(open_orders)} orders seeded on {self.line} ({parts:,} parts, routings over its "
                f"machines, due {self.clock(dues[0])} to {self.clock(dues[-1])} plant time)" if seeded and dues
                else f"production: {len(open_orders)} open orders on {self.line} from an earlier run")
        self.say(f"{told}; plan {plan.id} by CP-SAT ({result.solver.get('status')}, "
                 f"{result.solver.get('seconds', 0):.1f} s): makespan {k.get('makespan_h', 0):.1f} plant h, "
                 f"total tardiness {k.get('total_tardiness_h', 0):.1f} plant h, throughput "
                 f"{k.get('throughput_per_h', 0):.0f} parts/plant h")
        if self.dispatcher is not None:
            self.say("production: the dispatcher sends each machine its jobs as runJob commands when plant time "
                     "reaches them; the twins show job, jobProgress and partsDone")
        self.record("production.planned", plan=plan.id, orders=len(open_orders), seeded=seeded, kpis=k)

    # -- decisions ---------------------------------------------------------------------------------------------
    def _decision_updates(self) -> list[dict[str, Any]]:
        """Decisions new or changed since the last look, oldest first."""
        if self.decisions is None:
            return []
        out = []
        for record in self.decisions.list(limit=50):
            if self._seen.get(record["id"]) != record["status"]:
                self._seen[record["id"]] = record["status"]
                out.append(record)
        return out[::-1]

    async def _on_decision(self, record: dict[str, Any]) -> None:
        status, did, asset = record["status"], record["id"], record["asset"]
        trigger = record.get("trigger") or {}
        if status == "evaluating":
            self.say(f"decision {did}: weighing what to do about {asset} (alarm {trigger.get('rule', '?')}) with the "
                     "what-if, the maintenance optimiser and the production plan ...")
            self.record("decision.evaluating", decision=did, asset=asset)
            return
        if status == "failed":
            self.say(f"decision {did} on {asset} failed: {record.get('error')}")
            self.record("decision.failed", decision=did, error=record.get("error"))
            return
        if status in ("proposed", "recommended") and record.get("options"):
            self._tell_options(record)
        if status == "proposed":
            await self._proposed(record)
        elif status == "recommended":
            await self._recommended(record)
        elif status == "approved" and record.get("work_order") not in self._approved:
            order = record.get("work_order")
            self._approved.add(str(order))
            self.say(f"decision {did}: work order {order} approved by {record.get('approved_by')}")
            self.record("workorder.approved", decision=did, work_order=order, by=record.get("approved_by"))
        elif status in ("done", "rejected"):
            self.say(f"decision {did} on {asset}: {status}")
            self.record(f"decision.{status}", decision=did)

    def _tell_options(self, record: dict[str, Any]) -> None:
        whatif = record.get("whatif") or {}
        simulated = sum(1 for o in record["options"] if o.get("kind") != "preventive")
        ran = (f"the what-if ran {simulated} options × {whatif.get('samples')} samples in "
               f"{whatif.get('seconds') or 0:.1f} s" if whatif.get("ran") else
               f"no what-if ({whatif.get('reason', 'none ran')})")
        source = {"rul-analytic": "the remaining-life analytic's (it fails sooner than the what-if's)",
                  "what-if": "the what-if's"}.get(str(record.get("failure_source")), str(record.get("failure_source")))
        self.say(f"decision {record['id']} for {record['asset']} over the next {record.get('horizon_h'):g} plant h "
                 f"({ran}; the plan counts with {source} failure probability; an unplanned failure costs "
                 f"{_money(record.get('failure_cost'))}):")
        for line in option_lines(record, self.clock):
            self.say(line)
        chosen = record.get("chosen") or {}
        why = str(chosen.get("why", chosen.get("name")))
        for option in record["options"]:
            if option.get("kind") == "preventive":
                why = why.replace(str(option.get("name")), option_name(option, self.clock))
        self.say(f"chosen: {why}")
        self.record("decision.options", decision=record["id"], options=[o.get("name") for o in record["options"]],
                    chosen=chosen.get("name"), kind=chosen.get("kind"))

    async def _proposed(self, record: dict[str, Any]) -> None:
        did, wo_id = record["id"], record.get("work_order")
        if not wo_id:
            return
        order = await asyncio.to_thread(self.workorders.get, wo_id)
        ahead = (self.plant_h(order.planned_start) or 0.0) - (self.plant_h() or 0.0)
        parts = ", ".join(f"{p} ×{q}" for p, q in order.parts.items()) or "none"
        self.say(f"work order {order.id} proposed on {order.asset}: {order.task} {self.clock(order.planned_start)}–"
                 f"{self.clock(order.planned_end)} plant time ({ahead:+.1f} plant h from now, window "
                 f"{order.rationale.get('window') or 'none'}), crew {', '.join(order.crew) or 'none'}, parts "
                 f"{parts}, P(failure before it) {_share(order.failure_probability)}")
        self.record("workorder.proposed", decision=did, work_order=order.id, window=order.rationale.get("window"),
                    start=iso(order.planned_start), end=iso(order.planned_end))
        self._orders[order.id] = order.state
        production = record.get("production") or {}
        if production.get("replanned"):
            before = (production.get("before") or {}).get("plan")
            after = (production.get("after") or {}).get("plan")
            self.say(f"production re-planned around it ({before} → {after}, reason: {production.get('reason')}): "
                     + kpi_text(production, self.speed))
            self.record("production.replanned", plan=after, previous=before, reason=production.get("reason"))
        elif production:
            self.say(f"production: not re-planned ({production.get('reason')})")
        if not self.auto:
            self.say(f"waiting for your approval: the dashboard's decision {did}, or `tvilling maintenance approve "
                     f"{order.id}` then `tvilling maintenance schedule {order.id}`; the crew then does it in its "
                     "window")
            return
        assert self.decisions is not None
        try:
            approved = await asyncio.to_thread(self.decisions.approve_and_schedule, did, ACTOR)
        except TvillingError as exc:  # a person came first (or cancelled it): theirs stands
            self.say(f"auto mode: work order {order.id} not approved: {exc.message}")
            return
        self._seen[did] = approved["status"]
        self._orders[order.id] = approved.get("work_order_state", SCHEDULED)
        self._approved.add(order.id)
        self.say(f"auto mode: work order {order.id} approved and scheduled by {ACTOR} (as an engineer would on the "
                 "dashboard); it is firm now")
        self.record("workorder.approved", decision=did, work_order=order.id, by=ACTOR)

    async def _recommended(self, record: dict[str, Any]) -> None:
        chosen = record.get("chosen") or {}
        machine = record.get("machine")
        self.record("decision.recommended", decision=record["id"], kind=chosen.get("kind"))
        if chosen.get("kind") != "slow_down" or not isinstance(machine, str):
            self.say(f"no work now for {record['asset']}: {chosen.get('name')}")
            return
        if not self.auto or self.commands is None:
            self.say(f"recommended: slow {machine} to {self.slow_rpm:,.0f} rpm (send setSpeed from its page)")
            return
        sent = await self.commands.invoke(machine, "setSpeed", self.slow_rpm, actor=ACTOR)
        self.say(f"auto mode: setSpeed {self.slow_rpm:,.0f} rpm sent to {machine} (command {sent.id})")
        try:
            result = await asyncio.to_thread(self.production.replan, self.line, "machine slowed",
                                             {"machine": machine, "speed_rpm": self.slow_rpm})
        except TvillingError as exc:
            self.say(f"production: not re-planned ({exc.message})")
            return
        self.say(f"production re-planned ({result.plan.reason}): "
                 + kpi_text({"comparison": result.comparison or {}}, self.speed))
        self.record("production.replanned", plan=result.plan.id, reason=result.plan.reason)

    # -- the crew ----------------------------------------------------------------------------------------------
    async def _crew(self) -> None:
        """Start scheduled work orders when plant time reaches them; complete them at their planned end."""
        for wo_id, seen in list(self._orders.items()):
            if seen in ("done", CANCELLED):
                continue
            order = await asyncio.to_thread(self.workorders.get, wo_id)
            if order.state != seen:
                self._orders[wo_id] = order.state
                if order.state == CANCELLED:
                    self.say(f"work order {wo_id} cancelled")
                    self.record("workorder.cancelled", work_order=wo_id)
                    continue
                if order.state == "done":  # completed by someone else (the dashboard, the CLI)
                    await self._after_done(order, by_crew=False)
                    continue
                if order.state in (APPROVED, SCHEDULED) and wo_id not in self._approved:  # a person approved it
                    self._approved.add(wo_id)
                    self.say(f"work order {wo_id} approved by {order.approved_by}"
                             + (" and scheduled: the crew does it in its window" if order.state == SCHEDULED else
                                "; once scheduled, the crew does it in its window"))
                    self.record("workorder.approved", work_order=wo_id, by=order.approved_by)
            if order.state == SCHEDULED and self.reached(order.planned_start):
                await self._start(order)
            elif order.state == IN_PROGRESS and self.reached(order.planned_end):
                await self._finish(order)

    async def _start(self, order: WorkOrder) -> None:
        now = self.now()
        started = await asyncio.to_thread(self.workorders.move, order.id, "start", CREW,
                                          body={"actual_start": iso(now), "note": "the demo's crew starts the work"})
        self._orders[order.id] = started.state
        stopped = ""
        if self.commands is not None:
            sent = await self.commands.invoke(order.asset, "stop", None, actor=CREW)
            self._mine.add(order.id)
            stopped = f"; {order.asset} stopped for the work (command {sent.id})"
        self.say(f"work order {order.id} started by the crew at {self.clock(now)} plant time{stopped}")
        self.record("workorder.started", work_order=order.id, at=iso(now))

    async def _finish(self, order: WorkOrder) -> None:
        now = self.now()
        asset = str(order.rationale.get("planned_asset") or order.asset)
        location = asset.rpartition("-")[2]
        before = self._damage(order.asset, location)
        done = await self.workorders.complete(order.id, CREW, body={"actual_end": iso(now),
                                                                    "note": "the demo's crew completed the work"})
        self._orders[order.id] = done.state
        command = (done.completion or {}).get("command") or {}
        after = self._damage(order.asset, location)
        self.say(f"work order {order.id} done at {self.clock(now)} plant time: {command.get('name')} sent to "
                 f"{order.asset} (command {command.get('id')}, {command.get('status') or command.get('reason')})")
        self.record("workorder.done", work_order=order.id, command=command.get("status"))
        if before is not None and after is not None:
            self.say(f"the plant: {order.asset}'s bearings replaced ({location} damage {before:.3f} → {after:.3f})")
            self.record("plant.wear_reset", machine=order.asset, before=before, after=after)
        await self._after_done(done, by_crew=True)

    def _damage(self, machine: str, location: str) -> float | None:
        try:
            return float(self.plant.state_of(machine)["damage"][location])
        except (TvillingError, KeyError):
            return None

    async def _after_done(self, order: WorkOrder, *, by_crew: bool) -> None:
        completion = order.completion or {}
        reset = completion.get("analytics_reset") or {}
        if not by_crew:
            self.say(f"work order {order.id} done (by {order.history[-1].by if order.history else '?'})")
            self.record("workorder.done", work_order=order.id, command=(completion.get("command") or {}).get("status"))
        if reset.get("done"):
            names = sorted({str(a.get("analytic")) for a in reset.get("analytics") or []})
            cleared = reset.get("alarms_cleared") or []
            twins = ", ".join(reset.get("twins") or [])
            self.say(f"the twin learns afresh: {', '.join(names) or 'no analytic'} on {twins} start again from the "
                     f"new part's readings; {len(cleared)} alarm(s) cleared with the maintenance")
            self.record("analytics.reset", twins=list(reset.get("twins") or []), analytics=names)
            self.record("alarms.cleared", count=len(cleared))
        elif reset:
            self.say(f"the twin's analytics were not reset: {reset.get('reason')}")
        if order.id in self._mine and self.commands is not None:
            sent = await self.commands.invoke(order.asset, "start", None, actor=CREW)
            self.say(f"{order.asset} started again (command {sent.id})")
        asset = str(order.rationale.get("planned_asset") or order.asset)
        running = {} if self.dispatcher is None else {
            f"{o['order']}/{o['op']}": float(o["progress"]) for o in self.dispatcher.status()["operations"]
            if o["machine"] == order.asset and o["status"] == RUNNING}
        self._recovering[asset] = _Recovery(asset, order.asset, order.actual_end or self.now(), running)
        await self._replan_after(order)

    async def _replan_after(self, order: WorkOrder) -> None:
        """Re-plan the line with the machine back: its remaining jobs need not wait for the slots the
        maintenance left them."""
        try:
            result = await asyncio.to_thread(self.production.plan, self.line)
        except TvillingError as exc:
            self.say(f"production: not re-planned after the work ({exc.message})")
            return
        previous = result.plan.previous
        self.say(f"production re-planned with {order.asset} back ({previous} → {result.plan.id}): "
                 + kpi_text({"comparison": result.comparison or {}}, self.speed))
        self.record("production.replanned_after", plan=result.plan.id, previous=previous, reason=result.plan.reason)

    # -- after the work ----------------------------------------------------------------------------------------
    async def _watch_recovery(self) -> None:
        for rec in list(self._recovering.values()):
            if not rec.healthy:
                told = await asyncio.to_thread(self._healthy, rec)
                if told is not None:
                    rec.healthy = True
                    self.say(told)
            if not rec.producing and self.dispatcher is not None:
                self._producing(rec)
            if rec.healthy and (rec.producing or self.dispatcher is None):
                del self._recovering[rec.asset]
                if not self._recovering:
                    self.finished.set()

    def _healthy(self, rec: _Recovery) -> str | None:
        """The asset's state in words once its detector runs again on the new part (``None`` before)."""
        twin = self.platform.twins.get(rec.asset)
        rep = twin.reported
        marker = (rep.get("analytics") or {}).get("bearing-anomaly") or {}
        score = rep.get("anomaly_score")
        if marker.get("status") != "running" or not isinstance(score, int | float):
            return None
        open_alarms = [a for a in self.platform.alarm_store.list(state="active", twin=rec.asset, limit=100)
                       if a.twin == rec.asset]
        rul = rep.get("rul")
        life = "no failure trend" if rul is None else f"{rul:.1f} plant h"
        health = rep.get("health")
        self.record("health.back", asset=rec.asset, anomaly_score=score, alarms=len(open_alarms))
        return (f"{rec.asset} is back to health: its detector relearned on the new bearing (anomaly score "
                f"{score:.2f}, alarm at 1)" + (f", health {health:.2f}" if isinstance(health, int | float) else "")
                + f", remaining life: {life}; open alarms on it: {len(open_alarms) or 'none'}")

    def _producing(self, rec: _Recovery) -> None:
        """Tell when the maintained machine makes parts again: an operation on it running on from where it was,
        started since, or done since (or nothing left to make on it)."""
        assert self.dispatcher is not None
        ops = [o for o in self.dispatcher.status()["operations"] if o["machine"] == rec.machine]
        for o in ops:
            label = f"{o['order']}/{o['op']}"
            moved = (o["status"] == RUNNING and float(o["progress"]) > rec.progress.get(label, -1.0)) or (
                o["status"] == DONE and o["finished"] is not None and _time(o["finished"]) >= rec.done_at)
            if moved:
                rec.producing = True
                self.say(f"production: {rec.machine} is back at work: {label} {o['status']} "
                         f"({o['parts_done']} of {o['quantity']} parts)")
                self.record("production.continues", machine=rec.machine, order=o["order"], op=o["op"],
                            status=o["status"], progress=float(o["progress"]), progress_before=rec.progress.get(label),
                            finished=o["finished"])
                return
        if not any(o["status"] not in (DONE, FAILED_OP) for o in ops):
            rec.producing = True
            self.say(f"production: no more jobs planned on {rec.machine}")

    def _tell_production(self) -> None:
        """Tell the orders the line finishes, operations that fail, and a maintained machine's first job after."""
        while self._changes:
            change = self._changes.popleft()
            if not self._dispatching and change.status not in ("pending",):
                self._dispatching = True
                self.record("production.dispatching", order=change.order, machine=change.machine)
            if change.status == FAILED_OP:
                self.say(f"production: {change.order}/{change.op} on {change.machine} failed: {change.detail}")
            elif change.status == DONE and self._routing.get(change.order) == change.op + 1:
                self.say(f"production: order {change.order} done at {self.clock(change.at)} plant time "
                         f"(its last step on {change.machine})")
                self.record("production.order_done", order=change.order)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _span(start_h: float, end_h: float) -> str:
    def hm(h: float) -> str:
        minutes = round(h * 60.0) % (24 * 60) if h > 24.0 else round(h * 60.0)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return f"{hm(start_h)}-{hm(end_h)}"


__all__ = ["ACTOR", "CREW", "DemoFlow", "Step", "kpi_text", "option_lines"]
