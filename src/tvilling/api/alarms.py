"""Alarm routes: list (filtered, paged), read, acknowledge and clear.

``POST /api/alarms/{id}/ack`` and ``/clear`` take an optional body ``{"actor": ..., "note": ...}``
(the actor defaults to the ``X-Tvilling-Actor`` header, else ``api``) and answer the alarm;
404 for an unknown alarm, 409 for a move its state does not allow. Acknowledging or
clearing an alarm derived on a parent twin acts on its source alarm, and so on every
alarm derived from it. Each step appears on ``/api/stream?types=alarm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.core.errors import Invalid
from tvilling.decisions.alarms.record import SEVERITIES, STATES
from tvilling.decisions.alarms.service import AlarmService

router = APIRouter(prefix="/api/alarms", tags=["alarms"])
_BODY_DOC = json_body({"type": "object", "additionalProperties": False,
                       "properties": {"actor": {"type": ["string", "null"], "description": "who (optional)"},
                                      "note": {"type": ["string", "null"], "description": "why (optional)"}}},
                      required=False)
STEP_ERRORS = problems(400, 404, 409, 413, 422)


def service(request: Request) -> AlarmService:
    hub = getattr(request.app.state, "hub", None)
    return AlarmService(request.app.state.platform.alarm_store, notify=None if hub is None else hub.notify)


@router.get("", responses=problems(400, 422),
            summary="Alarms, newest first, filtered by state, twin, severity and rule")
async def list_alarms(request: Request,
                      state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
                      twin: str | None = None,
                      severity: str | None = Query(None, description=f"one of {', '.join(SEVERITIES)}"),
                      rule: str | None = None,
                      after: str | None = Query(None, description="the `next` of the previous page"),
                      limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    items = await run_in_threadpool(service(request).list, state=state, twin=twin, severity=severity, rule=rule,
                                    after=after, limit=limit)
    return {"items": [a.to_json() for a in items], "next": items[-1].id if len(items) == limit else None}


@router.get("/{alarm_id}", responses=problems(404), summary="One alarm")
async def get_alarm(request: Request, alarm_id: str) -> dict[str, Any]:
    alarm = await run_in_threadpool(service(request).get, alarm_id)
    return alarm.to_json()


@router.post("/{alarm_id}/ack", openapi_extra=_BODY_DOC, responses=STEP_ERRORS, summary="Acknowledge an active alarm")
async def acknowledge(request: Request, alarm_id: str) -> dict[str, Any]:
    actor, note = await _step_body(request)
    alarm = await run_in_threadpool(service(request).acknowledge, alarm_id, actor=actor, note=note)
    return alarm.to_json()


@router.post("/{alarm_id}/clear", openapi_extra=_BODY_DOC, responses=STEP_ERRORS,
             summary="Clear an active or acknowledged alarm")
async def clear(request: Request, alarm_id: str) -> dict[str, Any]:
    actor, note = await _step_body(request)
    alarm = await run_in_threadpool(service(request).clear, alarm_id, actor=actor, note=note)
    return alarm.to_json()


async def _step_body(request: Request) -> tuple[str, str | None]:
    actor = request.headers.get("x-tvilling-actor", "api")[:128]
    length = request.headers.get("content-length")
    has_body = (length is not None and length.strip() != "0") or \
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    if not has_body:
        return actor, None
    body = await read_json(request)
    if not isinstance(body, Mapping) or set(body) - {"actor", "note"}:
        raise Invalid('the body must be an object with optional "actor" and "note" strings', field="body",
                      rule="type")
    for field in ("actor", "note"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise Invalid(f"{field} must be a string", field=field, rule="type")
    return (body.get("actor") or actor)[:128], body.get("note")
