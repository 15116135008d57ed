"""One decision, end to end: a predictive alarm → options weighed by the what-if → a work order → production re-planned.

:meth:`DecisionService.decide` (:func:`decide_on_alarm`) takes an alarm (the alarm feed's item or the
alarm itself: its ``origin``/``twin``, ``rule``, ``raised``) or a twin id, and for that asset

1. asks the what-if engine (:class:`~tvilling.simulation.scenario_service.ScenarioService`, the
   simulation bound to the asset's machine) one scenario with the options: run to failure (no
   intervention), slow down (``setSpeed`` to ``decision.slow_rpm`` at once) and preventive work at
   the start of each of the next feasible windows (the task's ``whatif`` maintenance action, e.g.
   ``replaceBearing``, on the asset's part, lasting the task's duration);
2. turns each option's simulated time to failure into a failure distribution
   (:func:`~.decision_options.distribution_from_kpis`), so the planner's costs are the what-if's;
3. runs the maintenance optimiser for the asset with the run-to-failure distribution, respecting
   crews, parts, windows and the other orders; idle time of the machine in the production plan in
   force is a window (work there loses no production); the option of least expected cost wins —
   the optimiser's work order, slowing down, or running to failure;
4. proposes the work order (its rationale lists every option: predicted time to failure, failure
   probability, lost production, expected cost, and why the chosen one), through the work-order
   service, on the twin that receives the task's command;
5. asks production planning to re-plan the line around it (:func:`replan_production`), keeping the
   plan's KPIs before and after;
6. stores the decision (:mod:`.decision_store`): id, trigger, options, choice, work order, plans, status.

A decision is ``evaluating``, then ``proposed`` (a work order waits for approval), ``recommended``
(no work order: slow down or run to failure), ``approved`` (:meth:`DecisionService.approve_and_schedule`),
``done`` or ``rejected`` (its work order done or cancelled) or ``failed``. While one is ``evaluating``,
``proposed`` or ``approved`` for an asset, :meth:`~DecisionService.decide` answers it instead of making a
second one.
"""

from __future__ import annotations

import builtins
import logging
import math
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Conflict, Invalid, NotFound, TvillingError
from tvilling.core.principal import Principal
from tvilling.planning.decision_options import (
    cautious,
    distribution_from_kpis,
    failure_cost,
    lost_outside,
    p_fail,
    slow_cost,
    stretched,
)
from tvilling.planning.decision_store import DecisionStore, decision_store
from tvilling.planning.maintenance_service import Built, MaintenanceService
from tvilling.planning.maintenance_types import Window, downtime_rate, stopped_ids
from tvilling.planning.workorders import CANCELLED, DONE
from tvilling.security.audit_events import record as audit

if TYPE_CHECKING:
    from tvilling.planning.workorders_service import WorkOrderService

log = logging.getLogger("tvilling.planning.decision")
OPEN = ("evaluating", "proposed", "approved")
ACTOR = "decision"
H = 3600.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def trigger_of(alarm_or_twin: Any) -> dict[str, Any]:
    """The asset and the trigger of a decision from an alarm (its feed item, or the alarm) or a twin id."""
    if isinstance(alarm_or_twin, str):
        if not alarm_or_twin:
            raise Invalid("the decision needs an asset (a twin id) or an alarm", field="twin", rule="required")
        return {"kind": "manual", "twin": alarm_or_twin}
    if not isinstance(alarm_or_twin, Mapping):
        raise Invalid(f"a decision is triggered by an alarm or a twin id, not {type(alarm_or_twin).__name__}",
                      field="alarm", rule="type")
    alarm = alarm_or_twin.get("alarm", alarm_or_twin)
    if not isinstance(alarm, Mapping):
        raise Invalid("the alarm item holds no alarm", field="alarm", rule="type")
    twin = alarm.get("origin") or alarm.get("twin")
    if not isinstance(twin, str) or not twin:
        raise Invalid("the alarm names no twin (origin or twin)", field="alarm.twin", rule="required")
    return {"kind": "alarm", "twin": twin, "alarm": alarm.get("id"), "rule": alarm.get("rule"),
            "severity": alarm.get("severity"), "raised": alarm.get("raised"), "message": alarm.get("message")}


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None
    return None


def replan_production(platform: Any, line: str, work_order: str, now: datetime | None,
                      service: Any = None) -> dict[str, Any]:
    """Ask production planning to re-plan ``line`` around ``work_order``: the plan's KPIs before and after.

    Calls ``service.replan`` when a production service is given (the demo's, planning on its plant's clock),
    else ``tvilling.planning.production.replan(line, reason, event)`` when that module offers it, else the
    production service's ``replan`` (:mod:`tvilling.planning.production_service`); what went wrong is
    recorded, never raised: the maintenance decision stands without a production plan.
    """
    try:
        from tvilling.planning import production
        from tvilling.planning.production import current_plan

        before = current_plan(platform, line)
        event = {"work_order": work_order}
        replan = getattr(production, "replan", None)
        if service is not None:
            result: Any = service.replan(line, "maintenance inserted", event, now=now)
        elif callable(replan):
            result = replan(line, "maintenance inserted", event)
        else:
            from tvilling.planning.production_service import service_for

            result = service_for(platform).replan(line, "maintenance inserted", event, now=now)
    except (TvillingError, ImportError) as exc:
        return {"line": line, "replanned": False, "reason": getattr(exc, "message", str(exc))}
    plan = getattr(result, "plan", result)
    return {"line": line, "replanned": True, "reason": "maintenance inserted",
            "before": None if before is None else {"plan": before.id, "kpis": dict(before.kpis)},
            "after": {"plan": plan.id, "kpis": dict(plan.kpis)},
            "comparison": getattr(result, "comparison", None)}


def production_windows(platform: Any, line: str | None, machine: str, built: Built) -> list[Window]:
    """Idle time of ``machine`` in the production plan in force for ``line``, as windows (no plan: none)."""
    if line is None:
        return []
    try:
        from tvilling.planning.production import current_plan

        plan = current_plan(platform, line)
    except (TvillingError, ImportError):
        return []
    if plan is None or not plan.operations:
        return []
    clock, horizon = built.clock, built.problem.horizon_h
    busy = sorted((clock.hours(o.start), clock.hours(o.end)) for o in plan.operations if o.machine == machine)
    out: list[Window] = []
    t = 0.0
    for a, b in [*busy, (horizon, horizon)]:
        if a > t + 1e-6 and t < horizon:
            out.append(Window(f"idle-{machine}-{len(out) + 1}", t, min(a, horizon), "production-idle", (machine,)))
        t = max(t, b)
    return out


class DecisionService:
    """Decides on predictive alarms for the twins of ``platform`` (see the module text)."""

    def __init__(self, platform: Any, workorders: WorkOrderService, *, maintenance: MaintenanceService | None = None,
                 scenarios: Any = None, store: DecisionStore | None = None, production: Any = None) -> None:
        self.platform = platform
        self.workorders = workorders
        self.production = production  # the production service re-plans go to (None: the platform's default)
        self.maintenance = maintenance or MaintenanceService(platform, workorders)
        self.config = self.maintenance.settings.decision
        self._scenarios = scenarios
        self.store = store if store is not None else decision_store(platform.backend)
        self._lock = threading.Lock()

    @property
    def scenarios(self) -> Any:
        if self._scenarios is None:
            from tvilling.simulation.scenario_service import service_for

            self._scenarios = service_for(self.platform)
        return self._scenarios

    # -- reading -----------------------------------------------------------------------------------------------
    def get(self, decision_id: str) -> dict[str, Any]:
        """The decision ``decision_id`` (its status brought up to date with its work order); ``NotFound``."""
        record = self.store.get(decision_id)
        if record is None:
            raise NotFound(f"no decision {decision_id!r}", field="id", decision=decision_id)
        return self._refresh(record)

    def list(self, *, asset: str | None = None, status: str | None = None,
             limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Decisions, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise Invalid(f"limit must be a whole number in [1, 1000], not {limit!r}", field="limit", rule="range")
        return [self._refresh(r) for r in self.store.list(asset=asset, status=status, limit=limit)]

    def open_for(self, asset: str) -> dict[str, Any] | None:
        """The asset's open decision (evaluating, proposed or approved), if any."""
        for record in self.store.list(asset=asset, limit=20):
            record = self._refresh(record)
            if record["status"] in OPEN:
                return record
        return None

    def _refresh(self, record: dict[str, Any]) -> dict[str, Any]:
        wo = record.get("work_order")
        if record.get("status") not in ("proposed", "approved") or not wo:
            return record
        try:
            state = self.workorders.get(wo).state
        except TvillingError:
            return record
        status = {DONE: "done", CANCELLED: "rejected"}.get(state)
        if status is None and state != "proposed":
            status = "approved"
        if status is not None and status != record["status"]:
            record = {**record, "status": status, "updated": _now(), "work_order_state": state}
            self.store.save(record)
        return record

    # -- deciding ----------------------------------------------------------------------------------------------
    def decide(self, alarm_or_twin: Any, *, now: datetime | None = None, by: str = ACTOR) -> dict[str, Any]:
        """Decide for the alarm's (or twin's) asset; the asset's open decision instead when there is one."""
        trigger = trigger_of(alarm_or_twin)
        asset = trigger["twin"]
        twin = self.platform.twins.get(asset)
        task = self.maintenance.task_of(twin.model)
        if task is None:
            raise Invalid(f"twin {asset!r} (model {twin.model}) has no maintenance task: [[maintenance.tasks]] names "
                          "no model of it", field="twin", rule="no_task", twin=asset)
        with self._lock:
            current = self.open_for(asset)
            if current is not None:
                return {**current, "duplicate": True}
            record: dict[str, Any] = {"id": f"dec-{uuid.uuid4().hex[:12]}", "created": _now(), "updated": _now(),
                                      "asset": asset, "status": "evaluating", "trigger": trigger}
            self.store.save(record)
        at = now or _time(trigger.get("raised")) or self.maintenance.clock()
        try:
            record = self._decide(record, twin, task, at, by)
        except Exception as exc:
            record = {**record, "status": "failed", "updated": _now(),
                      "error": getattr(exc, "message", f"{type(exc).__name__}: {exc}")}
            self.store.save(record)
            raise
        self.store.save(record)
        return record

    def _decide(self, record: dict[str, Any], twin: Any, task: Any, at: datetime, by: str) -> dict[str, Any]:
        m = self.maintenance
        machine = m.target_of(twin, task.command)
        lines = m.parents(machine) if machine != twin.id else ()
        line = lines[0] if lines else None
        built = m.build(now=at, assets=[twin.id])
        horizon = built.problem.horizon_h
        extra = production_windows(self.platform, line, machine, built)
        scope = stopped_ids(built.problem, twin.id)
        windows = sorted([w for w in (*built.problem.windows, *extra) if not w.scope or scope & set(w.scope)],
                         key=lambda w: w.start)
        rate = downtime_rate(built.problem, twin.id)
        fail = failure_cost(task.corrective_cost, task.corrective_downtime_h, rate)
        starts = [w for w in windows if max(w.start, 0.0) + task.duration_h <= horizon][: self.config.max_windows]
        whatif, kpis = self._whatif(twin, machine, task, starts, horizon)
        base = built.problem.assets[0].failure if built.problem.assets else None
        names = _option_names(self.config.slow_rpm, starts)
        simulated = distribution_from_kpis(kpis[names[0]], horizon) if names[0] in kpis else None
        rtf_dist, source = cautious(simulated, base, horizon) if kpis else (base, "rul-analytic")
        current = self._setpoint(machine)
        ratio = self.config.slow_rpm / current if current else 1.0
        if source == "what-if":
            slow_dist = distribution_from_kpis(kpis[names[1]], horizon) if names[1] in kpis else None
        else:  # the analytic's prediction, its wear slowed as the speed ratio squared (the machine model's law)
            slow_dist = stretched(base, 1.0 / ratio ** 2) if ratio > 0 else base
        options = self._options(names, kpis, rtf_dist, slow_dist, ratio, current, horizon, fail, rate, task,
                                starts, windows)
        plan = m.plan(now=at, assets=[twin.id], failures={twin.id: rtf_dist}, extra_windows=extra, store=False,
                      solver=self.config.solver, time_limit_s=self.config.time_limit_s)
        pick = next((o for o in plan["work_orders"] if o["asset"] == twin.id and not o["firm"]), None)
        if pick is not None:
            start_h = float(pick["start_h"])
            label = f"preventive {task.name} at {pick['start']}" + (f" ({pick['window']})" if pick["window"] else "")
            options.append({"name": label, "kind": "preventive", "window": pick["window"], "start": pick["start"],
                            "crew": pick["crew"], "whatif": None, "p_fail_before": _r(p_fail(rtf_dist, start_h), 4),
                            "lost_production_h": None, "expected_cost": pick["expected_cost"], "feasible": True,
                            "optimiser": True, "note": pick["summary"]})
        chosen = min((o for o in options if o["feasible"] and o["expected_cost"] is not None),
                     key=lambda o: o["expected_cost"])
        for o in options:
            o["chosen"] = o is chosen
        why = _why(chosen, options)
        record = {**record, "machine": machine, "line": line, "now": at.isoformat(), "horizon_h": horizon,
                  "time_scale": built.clock.scale, "failure_source": source, "failure_cost": _r(fail),
                  "downtime_rate_per_h": _r(rate),
                  "whatif": whatif, "options": options,
                  "chosen": {"name": chosen["name"], "kind": chosen["kind"], "expected_cost": chosen["expected_cost"],
                             "why": why},
                  "optimiser": {"status": plan["solver"]["status"], "solver": plan["solver"]["name"],
                                "conflicts": plan["conflicts"], "run_to_failure": plan["run_to_failure"]},
                  "updated": _now()}
        if chosen["kind"] != "preventive":
            return {**record, "status": "recommended", "work_order": None, "production": None}
        note = {"decision": record["id"], "decision_summary": why,
                "decision_options": [{k: o.get(k) for k in ("name", "kind", "ttf_p10_h", "ttf_p50_h", "ttf_p90_h",
                                                            "p_fail_horizon", "lost_production", "expected_cost",
                                                            "chosen", "note")} for o in options]}
        stored = m.plan(now=at, assets=[twin.id], failures={twin.id: rtf_dist}, extra_windows=extra, by=by,
                        note=note, solver=self.config.solver, time_limit_s=self.config.time_limit_s)
        orders = stored["proposed"] or [self.workorders.get(i).to_json() for i in stored["kept"]]
        if not orders:
            return {**record, "status": "recommended", "work_order": None, "production": None,
                    "error": "the optimiser proposed no work order on the second run"}
        order = orders[0]
        production = None
        if self.config.replan_production and line is not None:
            production = replan_production(self.platform, line, order["id"], at, self.production)
        return {**record, "status": "proposed", "work_order": order["id"],
                "work_order_window": {"start": order["planned_start"], "end": order["planned_end"]},
                "production": production}

    def _whatif(self, twin: Any, machine: str, task: Any, starts: builtins.list[Window], horizon: float
                ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Run the options on the machine's simulation; (what ran, KPIs by option name)."""
        part = _part_of(self.platform, machine, twin.id)
        names = _option_names(self.config.slow_rpm, starts)
        options: builtins.list[dict[str, Any]] = [{"name": names[0], "interventions": []},
                                         {"name": names[1], "interventions": [
                                             {"at": 0, "command": "setSpeed", "value": self.config.slow_rpm}]}]
        if task.whatif:
            for name, w in zip(names[2:], starts, strict=True):
                action: dict[str, Any] = {"at": max(w.start, 0.0) * H, "maintenance": task.whatif,
                                          "duration": task.duration_h * H}
                if part is not None:
                    action["part"] = part
                options.append({"name": name, "interventions": [action]})
        doc = {"twin": machine, "horizon": horizon * H, "step": self.config.step_s, "samples": self.config.samples,
               "options": options, **({"seed": self.config.seed} if self.config.seed is not None else {})}
        try:
            prepared = self.scenarios.prepare(doc)
        except TvillingError as exc:
            return {"ran": False, "reason": exc.message}, {}
        result = self.scenarios.execute(prepared)
        info = {"ran": result.get("status") == "done", "scenario": result.get("id"),
                "simulation": result.get("simulation"), "seconds": result.get("seconds"),
                "samples": self.config.samples, "status": result.get("status")}
        if result.get("status") != "done":
            return {**info, "reason": result.get("error")}, {}
        return info, dict(result.get("kpis") or {})

    def _options(self, names: builtins.list[str], kpis: Mapping[str, Mapping[str, Any]], rtf: Any, slow: Any,
                 ratio: float, current: float | None, horizon: float, fail: float, rate: float, task: Any,
                 starts: builtins.list[Window], windows: builtins.list[Window]) -> builtins.list[dict[str, Any]]:
        """Every option with the what-if's KPIs and its expected cost under the planner's distributions."""
        def sim(name: str) -> dict[str, Any]:
            k = kpis.get(name, {})
            return {key: k.get(key) for key in ("ttf_p10_h", "ttf_p50_h", "ttf_p90_h", "p_fail_horizon",
                                                "p_fail_shift", "production", "lost_production")}

        out = [{"name": names[0], "kind": "run_to_failure", **sim(names[0]),
                "p_fail_horizon_planned": _r(p_fail(rtf, horizon), 4),
                "expected_cost": _r(p_fail(rtf, horizon) * fail), "feasible": True,
                "note": "no work: the failure, if it comes, costs the corrective work and its downtime"}]
        if ratio < 1.0:
            cost, hours = slow_cost(slow, horizon, fail, rate, ratio)
            out.append({"name": names[1], "kind": "slow_down", **sim(names[1]),
                        "p_fail_horizon_planned": _r(p_fail(slow, horizon), 4), "lost_production_h": _r(hours),
                        "expected_cost": _r(cost), "feasible": True,
                        "note": f"slower by {1 - ratio:.0%} from {current or 0:,.0f} rpm for the horizon"})
        for name, w in zip(names[2:], starts, strict=True):
            s = max(w.start, 0.0)
            cost = task.preventive_cost + p_fail(rtf, s) * fail + lost_outside(s, task.duration_h, windows, rate)
            out.append({"name": name, "kind": "window", "window": w.id, "start_h": _r(s), **sim(name),
                        "p_fail_before": _r(p_fail(rtf, s), 4), "expected_cost": _r(cost), "feasible": False,
                        "note": "what the work at this window's start costs; the optimiser's work order below "
                                "is the one crews, parts and other orders allow"})
        return out

    def _setpoint(self, machine: str) -> float | None:
        try:
            rep = self.platform.twins.get(machine).reported
        except TvillingError:
            return None
        for key in ("speedSetpoint", "speed"):
            value = rep.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    # -- approval ----------------------------------------------------------------------------------------------
    def approve_and_schedule(self, decision_id: str, principal: Principal | str) -> dict[str, Any]:
        """Approve the decision's work order and schedule it (firm); the decision, ``approved``."""
        record = self.get(decision_id)
        if record["status"] != "proposed" or not record.get("work_order"):
            raise Conflict(f"decision {decision_id} is {record['status']}"
                           + ("" if record.get("work_order") else " and has no work order") + ": nothing to approve",
                           decision=decision_id, status=record["status"], rule="not_proposed")
        actor = Principal.of(principal).actor
        wo = record["work_order"]
        self.workorders.move(wo, "approve", actor, body={"note": f"decision {decision_id} approved"})
        order = self.workorders.move(wo, "schedule", actor)
        record = {**record, "status": "approved", "updated": _now(), "approved_by": actor,
                  "work_order_state": order.state}
        self.store.save(record)
        audit(self.platform, principal, "decision.approve", f"decision:{decision_id}",
              {"asset": record.get("asset"), "work_order": wo, "work_order_state": order.state})
        return record


def _option_names(slow_rpm: float, starts: list[Window]) -> list[str]:
    return ["run to failure", f"slow to {slow_rpm:,.0f} rpm",
            *(f"preventive work in {w.id} ({w.kind})" for w in starts)]


def _part_of(platform: Any, machine: str, asset: str) -> str | None:
    """What the machine's simulation calls the asset (a bearing's ``location``), None if it is the machine."""
    from tvilling.simulation.scenario_service import part_name

    if machine == asset:
        return None
    try:
        holder = platform.twins.get(machine)
        target = platform.twins.get(asset)
    except TvillingError:
        return None
    for rel in holder.relationships.values():
        if rel.target == asset:
            return part_name(rel.name, rel.properties, target.reported)
    return None


def _why(chosen: Mapping[str, Any], options: list[dict[str, Any]]) -> str:
    others = sorted((o for o in options if o is not chosen and o["expected_cost"] is not None),
                    key=lambda o: o["expected_cost"])
    cheaper = [o for o in others if o["expected_cost"] < chosen["expected_cost"]]
    text = f"{chosen['name']}: expected cost {chosen['expected_cost']:,.0f}"
    if others:
        text += "; " + ", ".join(f"{o['name']} {o['expected_cost']:,.0f}" for o in others[:4])
    if cheaper:
        text += (". Cheaper options at a window's start could not be planned: " +
                 ", ".join(o["name"] for o in cheaper) + " (crews, parts or other orders)")
    return text + "."


def decide_on_alarm(service: DecisionService, alarm_or_twin: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Decide on a predictive alarm (or for a twin): see :meth:`DecisionService.decide`."""
    return service.decide(alarm_or_twin, now=now)


def decision_service_for(platform: Any, workorders: WorkOrderService) -> DecisionService:
    """The decision service of a platform over its work-order service."""
    return DecisionService(platform, workorders)


__all__ = ["OPEN", "DecisionService", "decide_on_alarm", "decision_service_for", "production_windows",
           "replan_production", "trigger_of"]
