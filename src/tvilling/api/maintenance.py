"""Maintenance planning and decisions over HTTP.

``POST /api/maintenance/plan`` plans preventive maintenance from the twins' predicted remaining life
(body, all optional: ``horizon_h``, ``solver`` ``highs``|``cpsat``, ``time_limit_s``, ``assets``: twin
ids, ``now``: an ISO time) and stores the proposals as ``proposed`` work orders; the answer lists
the orders proposed, the assets left to run to failure with why, the totals and the solver's status.
A plan that cannot be made is 409 listing the conflicts. ``GET /api/maintenance/config`` is the
effective ``[maintenance]`` settings. ``GET /api/decisions`` and ``GET /api/decisions/{id}`` are the
decisions taken on predictive alarms; ``POST /api/decisions`` (``{"twin": id}`` or ``{"alarm": {...}}``)
decides now and ``POST /api/decisions/{id}/approve`` approves and schedules its work order.

While the app runs, predictive alarms (``[maintenance.decision] rules``) start a decision each on a
worker thread (:class:`~tvilling.planning.decision_watch.DecisionWatch`), unless ``auto = false``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.api.workorders import workorder_service
from tvilling.core.errors import Invalid
from tvilling.planning.decision import DecisionService
from tvilling.planning.maintenance_service import MaintenanceService
from tvilling.planning.workorders import parse_time

_LOCK = threading.Lock()
_PLAN_KEYS = {"horizon_h", "solver", "time_limit_s", "assets", "now"}
_PLAN = {"type": "object", "properties": {
    "horizon_h": {"type": "number", "exclusiveMinimum": 0, "description": "planning horizon in plant hours"},
    "solver": {"type": "string", "enum": ["highs", "cpsat"]},
    "time_limit_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
    "assets": {"type": "array", "items": {"type": "string"}, "description": "only these twins"},
    "now": {"type": "string", "description": "plan as of this ISO time (default: now)"}}}
_DECIDE = {"type": "object", "properties": {"twin": {"type": "string"}, "alarm": {"type": "object"},
                                            "now": {"type": "string"}}}


def _services(request: Request) -> tuple[MaintenanceService, DecisionService]:
    state = request.app.state
    with _LOCK:
        found = getattr(state, "decisions", None)
        if found is None:
            workorders = workorder_service(request)
            maintenance = MaintenanceService(state.platform, workorders)
            found = DecisionService(state.platform, workorders, maintenance=maintenance)
            state.decisions = found
        return found.maintenance, found


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Watch the alarms for predictive ones while the app runs (``[maintenance.decision] auto``)."""
    from tvilling.planning.decision_watch import DecisionWatch
    from tvilling.planning.maintenance_service_config import parse_maintenance

    platform = app.state.platform
    config = parse_maintenance(platform.settings.maintenance).decision
    if not config.auto or not config.rules or not platform.alarm_rule_docs():
        yield
        return

    def service() -> DecisionService:
        with _LOCK:
            found = getattr(app.state, "decisions", None)
            if found is None:
                from tvilling.analytics.binding.maintenance import maintenance_reset
                from tvilling.planning.workorders_service import WorkOrderService

                workorders = getattr(app.state, "workorders", None)
                if workorders is None:
                    runtime = app.state.runtime
                    workorders = WorkOrderService(platform.backend.workorders, platform.twins,
                                                  commands=runtime.commands,
                                                  analytics_reset=maintenance_reset(platform))
                    app.state.workorders = workorders
                found = DecisionService(platform, workorders)
                app.state.decisions = found
            return found

    hub = getattr(app.state, "hub", None)
    async with DecisionWatch(platform, service, config.rules, wake=None if hub is None else hub.advanced) as watch:
        app.state.decision_watch = watch
        yield


router = APIRouter(tags=["maintenance"], lifespan=lifespan)


@router.post("/api/maintenance/plan", openapi_extra=json_body(_PLAN, required=False),
             responses=problems(400, 404, 409, 413, 422),
             summary="Plan preventive maintenance from predicted remaining life; store the proposals")
async def plan(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = await read_json(request) if raw.strip() else {}
    if not isinstance(body, Mapping):
        raise Invalid(f"the plan request is a JSON object, not {type(body).__name__}", field="body", rule="type")
    unknown = sorted(str(k) for k in body if k not in _PLAN_KEYS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}; the plan takes {sorted(_PLAN_KEYS)}", field=unknown[0],
                      rule="unknown_field")
    assets = body.get("assets")
    if assets is not None and (not isinstance(assets, list) or not all(isinstance(a, str) and a for a in assets)
                               or len(assets) > 10_000):
        raise Invalid("assets must be a list of twin ids", field="assets", rule="type")
    now = parse_time(body["now"], "now") if body.get("now") is not None else None
    maintenance, _ = _services(request)
    actor = principal(request).actor
    result: dict[str, Any] = await run_in_threadpool(
        maintenance.plan, now=now, horizon_h=body.get("horizon_h"), solver=body.get("solver", "highs"),
        time_limit_s=body.get("time_limit_s", 10.0), assets=assets, by=actor)
    return result


@router.get("/api/maintenance/config", summary="The effective maintenance settings: tasks, technicians, parts, "
                                              "windows, downtime costs, decisions")
async def config(request: Request) -> dict[str, Any]:
    maintenance, _ = _services(request)
    doc = maintenance.settings.to_json()
    doc["time_scale_effective"] = maintenance.time_scale()
    return doc


@router.get("/api/decisions", responses=problems(400, 422), summary="Decisions on predictive alarms, newest first")
async def list_decisions(request: Request, asset: str | None = Query(None), status: str | None = Query(None),
                         limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    _, decisions = _services(request)
    items = await run_in_threadpool(decisions.list, asset=asset, status=status, limit=limit)
    return {"items": items}


@router.get("/api/decisions/{decision_id}", responses=problems(404),
            summary="One decision: trigger, options weighed, choice, work order, production plans")
async def get_decision(request: Request, decision_id: str) -> dict[str, Any]:
    _, decisions = _services(request)
    record: dict[str, Any] = await run_in_threadpool(decisions.get, decision_id)
    return record


@router.post("/api/decisions", openapi_extra=json_body(_DECIDE), responses=problems(400, 404, 409, 413, 422),
             summary="Decide now for a twin or an alarm (the twin's open decision if it has one)")
async def decide(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, Mapping) or ("twin" in body) == ("alarm" in body):
        raise Invalid("give either 'twin' (a twin id) or 'alarm' (an alarm)", field="body", rule="required")
    unknown = sorted(str(k) for k in body if k not in ("twin", "alarm", "now"))
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0], rule="unknown_field")
    now = parse_time(body["now"], "now") if body.get("now") is not None else None
    _, decisions = _services(request)
    trigger = body["twin"] if "twin" in body else body["alarm"]
    record: dict[str, Any] = await run_in_threadpool(decisions.decide, trigger, now=now,
                                                     by=principal(request).actor)
    return record


@router.post("/api/decisions/{decision_id}/approve", responses=problems(404, 409),
             summary="Approve a decision: its work order is approved and scheduled")
async def approve(request: Request, decision_id: str) -> dict[str, Any]:
    _, decisions = _services(request)
    record: dict[str, Any] = await run_in_threadpool(decisions.approve_and_schedule, decision_id, principal(request))
    return record
