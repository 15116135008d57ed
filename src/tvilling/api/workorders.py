"""Work order routes: propose, list, read and move maintenance work orders; a twin's maintenance record.

``POST /api/workorders`` takes a proposal (``task``, ``asset``, ``planned_start``, ``planned_end``, and
``crew``, ``parts``, ``expected_cost``, ``failure_probability``, ``rationale``, ``notes``, ``firm``,
``maintenance_command``, ``id`` if wanted) and answers ``201`` with the order, its ``ETag`` (the
version) and a ``Location``; an unknown asset is 404 naming it, a bad field 422 naming it.
``POST /api/workorders/{id}/approve|schedule|start|done|cancel`` moves it (``If-Match`` or the body's
``version`` guard against a stale read: 412); a move its state does not allow is 409 naming both
states. ``done`` sends the asset its maintenance command when this server reaches the devices.
``GET /api/twins/{id}/maintenance`` is the twin's maintenance record. Changes stream as the source
``workorders``.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.analytics.binding.maintenance import maintenance_reset
from tvilling.api.alarms import service as alarm_service
from tvilling.api.body import if_match, read_json
from tvilling.api.openapi import IF_MATCH, json_body, problems
from tvilling.api.principal import principal
from tvilling.planning.workorders import STATES, WorkOrder, parse_time
from tvilling.planning.workorders_service import WorkOrderService
from tvilling.security.enforce import visible

router = APIRouter(tags=["workorders"])
_LOCK = threading.Lock()

_TIME = {"type": "string", "description": "ISO 8601 time with a zone, e.g. 2026-03-03T06:00:00Z"}
_PROPOSAL = {
    "type": "object", "required": ["task", "asset", "planned_start", "planned_end"],
    "properties": {
        "id": {"type": "string", "description": "the order's id (default: one is made)"},
        "task": {"type": "string", "description": "the maintenance task, e.g. replace-bearing"},
        "asset": {"type": "string", "description": "the twin the work is on"},
        "planned_start": _TIME, "planned_end": _TIME,
        "crew": {"type": "array", "items": {"type": "string"}, "description": "technician ids"},
        "parts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
                  "description": "part number → quantity"},
        "expected_cost": {"type": "number", "minimum": 0},
        "failure_probability": {"type": "number", "minimum": 0, "maximum": 1,
                                "description": "probability that the asset fails before the work"},
        "rationale": {"type": "object", "description": "the planner's options and why this one"},
        "notes": {"type": "string"},
        "firm": {"type": "boolean", "description": "a re-plan must keep it in place"},
        "maintenance_command": {"type": "string", "description": "the command done sends (default: configured)"},
    },
}
_MOVE = {
    "type": "object",
    "description": "all optional. note, version (as If-Match); approve: firm; schedule: planned_start, "
                   "planned_end, crew, firm; start: actual_start; done: actual_end, parts (those used)",
    "properties": {
        "note": {"type": "string"}, "version": {"type": "integer", "minimum": 1}, "firm": {"type": "boolean"},
        "planned_start": _TIME, "planned_end": _TIME, "actual_start": _TIME, "actual_end": _TIME,
        "crew": {"type": "array", "items": {"type": "string"}},
        "parts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
    },
}
_SUMMARIES = {
    "approve": "Approve a proposed work order",
    "schedule": "Schedule an approved work order (optionally a new window and crew); it becomes firm",
    "start": "Start a scheduled work order (the actual start is recorded)",
    "done": "Complete a work order: records it and sends the asset its maintenance command",
    "cancel": "Cancel a work order that is not done or cancelled",
}


def workorder_service(request: Request) -> WorkOrderService:
    """The app's work order service, made on first use over its backend, twins and command service."""
    state = request.app.state
    with _LOCK:
        svc = getattr(state, "workorders", None)
        if svc is None:
            runtime = getattr(state, "runtime", None)
            platform = state.platform
            svc = WorkOrderService(platform.backend.workorders, platform.twins,
                                   commands=None if runtime is None else runtime.commands,
                                   analytics_reset=maintenance_reset(platform, alarms=alarm_service(request)))
            state.workorders = svc
        return svc


def _answer(order: WorkOrder, status: int = 200) -> JSONResponse:
    headers = {"ETag": order.etag}
    if status == 201:
        headers["Location"] = f"/api/workorders/{order.id}"
    return JSONResponse(order.to_json(), status_code=status, headers=headers)


@router.post("/api/workorders", status_code=201, openapi_extra=json_body(_PROPOSAL),
             responses=problems(400, 404, 409, 413, 422), summary="Propose a maintenance work order")
async def create_workorder(request: Request) -> JSONResponse:
    body = await read_json(request)
    svc = workorder_service(request)
    order = await run_in_threadpool(svc.propose, body, principal(request))
    return _answer(order, 201)


@router.get("/api/workorders", responses=problems(400, 422),
            summary="Work orders by planned start, filtered by state, asset and a time range")
async def list_workorders(
        request: Request,
        state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
        asset: str | None = Query(None, description="only this twin's"),
        start: str | None = Query(None, description="only orders whose planned window ends after this time"),
        end: str | None = Query(None, description="only orders whose planned window starts before this time"),
        after: str | None = Query(None, description="the `next` of the previous page"),
        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    svc = workorder_service(request)
    since = _time(start, "start")
    until = _time(end, "end")
    items = await run_in_threadpool(svc.list, state=state, asset=asset, start=since, end=until, after=after,
                                    limit=limit)
    return {"items": visible(request, [o.to_json() for o in items], twin_key="asset", kind="workorders"),
            "next": items[-1].id if len(items) == limit else None}


@router.get("/api/workorders/{workorder_id}", responses=problems(400, 404),
            summary="One work order: its state, window, crew, parts, rationale and history")
async def get_workorder(request: Request, workorder_id: str) -> JSONResponse:
    svc = workorder_service(request)
    return _answer(await run_in_threadpool(svc.get, workorder_id))


def _move_route(action: str) -> None:
    async def move(request: Request, workorder_id: str) -> JSONResponse:
        expected = if_match(request)
        body = await read_json(request) if await _has_body(request) else {}
        svc = workorder_service(request)
        order = await svc.act(workorder_id, action, principal(request), if_match=expected, body=body)
        return _answer(order)

    move.__name__ = f"{action}_workorder"
    extra = json_body(_MOVE, required=False)
    extra["parameters"] = [IF_MATCH]
    router.add_api_route(f"/api/workorders/{{workorder_id}}/{action}", move, methods=["POST"],
                         openapi_extra=extra, responses=problems(400, 404, 409, 412, 413, 422),
                         summary=_SUMMARIES[action], name=f"{action}_workorder")


for _action in _SUMMARIES:
    _move_route(_action)


@router.get("/api/twins/{twin_id}/maintenance", responses=problems(400, 404, 422),
            summary="A twin's maintenance record: orders done, parts replaced, operating hours, open orders")
async def maintenance_record(request: Request, twin_id: str) -> dict[str, Any]:
    svc = workorder_service(request)
    record: dict[str, Any] = await run_in_threadpool(svc.record, twin_id)
    return record


def _time(value: str | None, field: str) -> datetime | None:
    return None if value is None else parse_time(value, field)


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "chunked" in request.headers.get("transfer-encoding", "").lower()
