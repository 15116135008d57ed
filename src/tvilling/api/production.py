"""Production routes: orders of a line, its plan (CP-SAT), re-plans on events with KPI deltas.

``POST /api/production/orders`` takes an order (``line``, ``product``, ``quantity``, ``routing``: a list of
steps, each a list of eligible machine twin ids, empty for any machine of the line; ``due``, and
``release``, ``priority``, ``id`` if wanted) and answers ``201``; an unknown line is 404, an unknown machine,
an empty routing, a step no machine can run or a due time before the release 422 naming it.
``POST /api/production/orders/{id}/cancel`` cancels an open order. ``POST /api/production/plans`` plans a line
now; ``POST /api/production/plans/replan`` re-plans it after an event (``reason``: maintenance inserted,
machine slowed, breakdown; ``event``: its fields) and answers the new plan with the change in each KPI and
the operations that moved. ``GET /api/production/plans/current?line=`` is the plan in force.
``GET /api/production/dispatch?line=`` is how the line's dispatcher carries it out (planned and actual
times, progress, lateness per operation); whoever runs a dispatcher registers it with
:func:`register_dispatcher`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.core.errors import Invalid, NotFound
from tvilling.planning.production_dispatch import STATES as DISPATCH_STATES
from tvilling.planning.production_dispatch import ProductionDispatcher, dispatch_status
from tvilling.planning.production_events import EVENT_REASONS
from tvilling.planning.production_json import plan_to_json
from tvilling.planning.production_orders import STATES, ProductionOrder, parse_time
from tvilling.planning.production_service import ProductionService, Replanned

router = APIRouter(tags=["production"])
_LOCK = threading.Lock()

_TIME = {"type": "string", "description": "ISO 8601 time with a zone, e.g. 2026-03-03T06:00:00Z"}
_ORDER = {
    "type": "object", "required": ["line", "product", "quantity", "routing", "due"],
    "properties": {
        "id": {"type": "string", "description": "the order's id (default: one is made)"},
        "line": {"type": "string", "description": "the line twin"},
        "product": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1, "description": "parts to make"},
        "routing": {"type": "array", "minItems": 1, "description": "steps in order; each the machine twins that may "
                    "run it (empty: any machine of the line)",
                    "items": {"type": "array", "items": {"type": "string"}}},
        "due": _TIME, "release": {**_TIME, "description": "not before this time (default: now)"},
        "priority": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "weight of its lateness"},
    },
}
_PLAN = {
    "type": "object", "required": ["line"],
    "properties": {
        "line": {"type": "string", "description": "the line twin to plan"},
        "time_limit": {"type": "number", "exclusiveMinimum": 0, "description": "solver seconds (default: setting)"},
        "at": {**_TIME, "description": "the plan's instant (default: the line's newest reading time)"},
    },
}
_REPLAN = {
    "type": "object", "required": ["line", "reason", "event"],
    "properties": {
        **_PLAN["properties"],  # type: ignore[dict-item]
        "reason": {"type": "string", "enum": list(EVENT_REASONS)},
        "event": {"type": "object", "description": "maintenance inserted: work_order, or machine, start, end; "
                  "machine slowed: machine, speed_rpm; breakdown: machine, repair_h, start",
                  "properties": {"work_order": {"type": "string"}, "machine": {"type": "string"},
                                 "start": _TIME, "end": _TIME, "speed_rpm": {"type": "number"},
                                 "repair_h": {"type": "number"}}},
    },
}


def production_service(request: Request) -> ProductionService:
    """The app's production planner, made on first use over its platform."""
    state = request.app.state
    with _LOCK:
        svc = getattr(state, "production", None)
        if svc is None:
            svc = ProductionService(state.platform)
            state.production = svc
        return svc


def _order(order: ProductionOrder, status: int = 200) -> JSONResponse:
    headers = {"ETag": f'"{order.version}"'}
    if status == 201:
        headers["Location"] = f"/api/production/orders/{order.id}"
    return JSONResponse(order.to_json(), status_code=status, headers=headers)


def _answer(result: Replanned, status: int = 201) -> JSONResponse:
    body = {"plan": plan_to_json(result.plan), "comparison": result.comparison, "solver": result.solver}
    return JSONResponse(body, status_code=status, headers={"Location": f"/api/production/plans/{result.plan.id}"})


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object", field="body", rule="type")
    return body


def _plan_args(body: Mapping[str, Any]) -> tuple[str, Any, Any]:
    line = body.get("line")
    if not isinstance(line, str) or not line or len(line) > 200:
        raise Invalid(f"line must be the id of a line twin, not {line!r}"[:200], field="line", rule="type")
    at = parse_time(body["at"], "at") if body.get("at") is not None else None
    return line, body.get("time_limit"), at


@router.post("/api/production/orders", status_code=201, openapi_extra=json_body(_ORDER),
             responses=problems(400, 404, 409, 413, 422), summary="Create a production order of a line")
async def create_order(request: Request) -> JSONResponse:
    body = await read_json(request)
    svc = production_service(request)
    order = await run_in_threadpool(svc.create_order, body, principal(request).actor)
    return _order(order, 201)


@router.get("/api/production/orders", responses=problems(400, 422),
            summary="Production orders in the order they were created, by line and state")
async def list_orders(
        request: Request,
        line: str | None = Query(None, description="only this line's"),
        state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
        after: str | None = Query(None, description="the `next` of the previous page"),
        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    svc = production_service(request)
    items = await run_in_threadpool(svc.list_orders, line=line, state=state, after=after, limit=limit)
    return {"items": [o.to_json() for o in items], "next": items[-1].id if len(items) == limit else None}


@router.get("/api/production/orders/{order_id}", responses=problems(400, 404, 422), summary="One production order")
async def get_order(request: Request, order_id: str) -> JSONResponse:
    svc = production_service(request)
    return _order(await run_in_threadpool(svc.get_order, order_id))


@router.post("/api/production/orders/{order_id}/cancel", responses=problems(400, 404, 409, 412),
             summary="Cancel an open production order (the next plan drops it)")
async def cancel_order(request: Request, order_id: str) -> JSONResponse:
    svc = production_service(request)
    return _order(await run_in_threadpool(svc.cancel_order, order_id))


@router.post("/api/production/plans", status_code=201, openapi_extra=json_body(_PLAN),
             responses=problems(400, 404, 409, 413, 422),
             summary="Plan a line now: its open orders on its machines around maintenance and faults")
async def make_plan(request: Request) -> JSONResponse:
    body = _object(await read_json(request))
    line, limit, at = _plan_args(body)
    svc = production_service(request)
    return _answer(await run_in_threadpool(svc.plan, line, time_limit=limit, now=at))


@router.post("/api/production/plans/replan", status_code=201, openapi_extra=json_body(_REPLAN),
             responses=problems(400, 404, 409, 413, 422),
             summary="Re-plan a line after an event; the new plan with each KPI before, after and the delta")
async def replan(request: Request) -> JSONResponse:
    body = _object(await read_json(request))
    line, limit, at = _plan_args(body)
    svc = production_service(request)
    return _answer(await run_in_threadpool(svc.replan, line, body.get("reason"), body.get("event"),
                                           time_limit=limit, now=at))


@router.get("/api/production/plans/current", responses=problems(400, 404, 413, 422),
            summary="The plan in force for a line")
async def current_plan(request: Request, line: str = Query(..., description="the line twin")) -> dict[str, Any]:
    svc = production_service(request)
    plan = await run_in_threadpool(svc.current, line)
    if plan is None:
        raise NotFound(f"line {line!r} has no production plan yet; POST /api/production/plans makes one", line=line)
    return plan_to_json(plan)


@router.get("/api/production/plans", responses=problems(400, 422), summary="A line's plans, newest first")
async def list_plans(request: Request, line: str = Query(..., description="the line twin"),
                     limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
    svc = production_service(request)
    plans = await run_in_threadpool(svc.store.plans, line, limit=limit)
    return {"items": [{"id": p.id, "created": plan_to_json(p)["created"], "reason": p.reason,
                       "previous": p.previous, "kpis": p.kpis} for p in plans]}


@router.get("/api/production/plans/{plan_id}", responses=problems(400, 404, 422), summary="One production plan")
async def get_plan(request: Request, plan_id: str) -> dict[str, Any]:
    svc = production_service(request)
    return plan_to_json(await run_in_threadpool(svc.get_plan, plan_id))


@router.get("/api/production/compare", responses=problems(400, 404, 422),
            summary="Two plans compared: KPIs before, after and the delta; operations moved, added, removed")
async def compare_plans(request: Request, before: str = Query(..., description="the earlier plan's id"),
                        after: str = Query(..., description="the later plan's id")) -> dict[str, Any]:
    svc = production_service(request)
    result: dict[str, Any] = await run_in_threadpool(svc.compare, before, after)
    return result


def dispatchers(app: Any) -> dict[str, ProductionDispatcher]:
    """The production dispatchers running in ``app``, by line (empty until one is registered)."""
    with _LOCK:
        found: dict[str, ProductionDispatcher] | None = getattr(app.state, "dispatchers", None)
        if found is None:
            found = {}
            app.state.dispatchers = found
        return found


def register_dispatcher(app: Any, dispatcher: ProductionDispatcher) -> Callable[[], None]:
    """Show ``dispatcher`` at ``GET /api/production/dispatch?line=`` (one per line, the latest wins); returns
    the call that takes it off again."""
    registry = dispatchers(app)
    with _LOCK:
        registry[dispatcher.line] = dispatcher

    def unregister() -> None:
        with _LOCK:
            if registry.get(dispatcher.line) is dispatcher:
                del registry[dispatcher.line]

    return unregister


def _idle(platform: Any, line: str) -> dict[str, Any]:
    from tvilling.planning.production_json import iso
    from tvilling.planning.production_twin import read_line

    platform.twins.get(line)  # NotFound: no such line
    try:
        now = read_line(platform, line).now
    except Invalid:
        now = None
    return {"line": line, "dispatching": False, "plan": None, "reason": None,
            "now": None if now is None else iso(now), "counts": dict.fromkeys(DISPATCH_STATES, 0), "operations": [],
            "detail": f"no dispatcher runs for line {line!r}: the plan's times are planned, not carried out"}


@router.get("/api/production/dispatch", responses=problems(400, 404, 413, 422),
            summary="How the line's dispatcher carries out its plan: per operation planned and actual times, "
                    "progress, lateness")
async def dispatch(request: Request, line: str = Query(..., min_length=1, max_length=200,
                                                       description="the line twin")) -> dict[str, Any]:
    dispatcher = dispatchers(request.app).get(line)
    if dispatcher is None:
        idle: dict[str, Any] = await run_in_threadpool(_idle, request.app.state.platform, line)
        return idle
    status = await run_in_threadpool(dispatch_status, dispatcher)
    return {**status, "dispatching": True}
