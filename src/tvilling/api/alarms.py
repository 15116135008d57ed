"""Alarm routes: list (filtered, paged), read, acknowledge and clear; shelves.

``GET /api/alarms`` lists one row per condition: the alarm raised on the twin whose rule
fired, with ``affected`` naming the ancestors its propagated copies are on; ``twin=`` also
finds the conditions that affect that twin. ``grouped=false`` lists the copies as rows of
their own (``twin=`` then matches the row's own twin). ``shelved=true|false`` keeps only
the alarms a shelf holds now, or only the others.

``POST /api/alarms/{id}/ack`` and ``/clear`` take an optional body ``{"actor": ..., "note": ...}``
(without sign-in the actor defaults to the ``X-Tvilling-Actor`` header, else ``api``; a signed-in
caller always acts as itself) and answer the alarm;
404 for an unknown alarm, 409 for a move its state does not allow. Acknowledging or
clearing an alarm derived on a parent twin acts on its source alarm, and so on every
alarm derived from it. Each step appears on ``/api/stream?types=alarm``.

``POST /api/alarms/shelves`` ``{"twin", "for": "30m", "reason", "actor"?, "subtree"?}`` shelves
the alarms of a twin and (unless ``subtree`` is false) the twins below it, and answers 201
with the shelf and ``shelved``, the number of open conditions it took;
``GET /api/alarms/shelves?active=`` lists shelves; ``POST /api/alarms/shelves/{id}/end``
ends one early (409 when it is over).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.core.errors import Forbidden, Invalid
from tvilling.decisions.alarms.record import SEVERITIES, STATES
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.alarms.shelves import check_reason, descendants, parse_duration
from tvilling.security.enforce import visible

router = APIRouter(prefix="/api/alarms", tags=["alarms"])
_BODY_DOC = json_body({"type": "object", "additionalProperties": False,
                       "properties": {"actor": {"type": ["string", "null"], "description": "who (optional)"},
                                      "note": {"type": ["string", "null"], "description": "why (optional)"}}},
                      required=False)
STEP_ERRORS = problems(400, 404, 409, 413, 422)
_SHELF_DOC = json_body({"type": "object", "additionalProperties": False, "required": ["twin", "for", "reason"],
                        "properties": {
                            "twin": {"type": "string", "description": "the twin whose alarms are shelved"},
                            "for": {"type": ["string", "number"],
                                    "description": 'how long: "30m", "2h", "1h30m" or seconds (1 s to 7 days)'},
                            "reason": {"type": "string", "description": "why (e.g. planned stop)"},
                            "actor": {"type": ["string", "null"], "description": "who (optional)"},
                            "subtree": {"type": "boolean", "description": "the twins below it too (default)"}}})
_END_DOC = json_body({"type": "object", "additionalProperties": False,
                      "properties": {"actor": {"type": ["string", "null"], "description": "who (optional)"}}},
                     required=False)


def service(request: Request) -> AlarmService:
    hub = getattr(request.app.state, "hub", None)
    return AlarmService(request.app.state.platform.alarm_store, notify=None if hub is None else hub.notify)


@router.get("", responses=problems(400, 422),
            summary="Alarms, newest first, one per condition, filtered by state, twin, severity and rule")
async def list_alarms(request: Request,
                      state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
                      twin: str | None = Query(None, description="the twin's own conditions and those affecting it"
                                                                 " (with grouped=false: the rows on it)"),
                      severity: str | None = Query(None, description=f"one of {', '.join(SEVERITIES)}"),
                      rule: str | None = None,
                      after: str | None = Query(None, description="the `next` of the previous page"),
                      limit: int = Query(100, ge=1, le=1000),
                      grouped: bool = Query(True, description="one row per condition (false: every propagated"
                                                              " copy as a row)"),
                      shelved: bool | None = Query(None, description="only alarms a shelf holds now (true), or"
                                                                     " only the others (false)")) -> dict[str, Any]:
    svc = service(request)

    def run() -> dict[str, Any]:
        items = svc.list(state=state, twin=twin, severity=severity, rule=rule, after=after, limit=limit,
                         grouped=grouped, shelved=shelved)
        return {"items": visible(request, svc.view(items, grouped=grouped), kind="alarms"),  # the caller's twins
                "next": items[-1].id if len(items) == limit else None}

    return await run_in_threadpool(run)


# -- shelves (before /{alarm_id}: "shelves" is not an alarm id) ----------------------------------
@router.post("/shelves", openapi_extra=_SHELF_DOC, status_code=201, responses=problems(400, 404, 413, 422),
             summary="Shelve a twin's alarms (and its subtree's) for a while, with a reason")
async def shelve(request: Request) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, Mapping):
        raise Invalid('the body must be an object {"twin", "for", "reason", "actor"?, "subtree"?}', field="body",
                      rule="type")
    unknown = sorted(set(body) - {"twin", "for", "reason", "actor", "subtree"})
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}; a shelf takes twin, for, reason, actor and subtree",
                      field=unknown[0], rule="unknown")
    twin = body.get("twin")
    if not isinstance(twin, str) or not twin:
        raise Invalid("twin is required: the id of the twin whose alarms are shelved", field="twin",
                      rule="required")
    if "for" not in body:
        raise Invalid('for is required: how long, e.g. "30m"', field="for", rule="required")
    duration = parse_duration(body["for"])
    reason = check_reason(body.get("reason"))
    subtree = body.get("subtree", True)
    if not isinstance(subtree, bool):
        raise Invalid("subtree must be true or false", field="subtree", rule="type")
    actor = body.get("actor")
    if actor is not None and not isinstance(actor, str):
        raise Invalid("actor must be a string", field="actor", rule="type")
    caller = principal(request)
    who = caller.actor if caller.authenticated else (actor or caller.actor)[:128]  # a signed-in caller is who acts
    twins = request.app.state.platform.twins
    svc = service(request)

    def run() -> dict[str, Any]:
        twins.get(twin)  # NotFound (404) for an unknown twin
        covered = descendants(twin, lambda t: [r.target for r in twins.relationships(t)]) if subtree else [twin]
        shelf, taken = svc.shelve(twin, twins=covered, duration_s=duration, reason=reason, actor=who,
                                  subtree=subtree)
        return {**shelf.to_json(svc.clock()), "shelved": taken}

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("/shelves", responses=problems(400, 422), summary="Shelves, newest first")
async def list_shelves(request: Request,
                       active: bool | None = Query(None, description="only shelves in effect now (true), or only"
                                                                    " those over (false)"),
                       limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    svc = service(request)

    def run() -> dict[str, Any]:
        now = svc.clock()
        return {"items": [s.to_json(now) for s in svc.shelves(active=active, limit=limit)]}

    return await run_in_threadpool(run)


@router.post("/shelves/{shelf_id}/end", openapi_extra=_END_DOC, responses=STEP_ERRORS,
             summary="End a shelf now: its alarms count again")
async def end_shelf(request: Request, shelf_id: str) -> dict[str, Any]:
    actor, _ = await _step_body(request, allowed=("actor",))
    svc = service(request)

    def run() -> dict[str, Any]:
        return svc.end_shelf(shelf_id, actor=actor).to_json(svc.clock())

    return await run_in_threadpool(run)


@router.get("/{alarm_id}", responses=problems(404), summary="One alarm")
async def get_alarm(request: Request, alarm_id: str) -> dict[str, Any]:
    svc = service(request)
    doc: dict[str, Any] = await run_in_threadpool(lambda: svc.view([svc.get(alarm_id)])[0])
    if not visible(request, [doc], kind="alarms"):
        raise Forbidden("the caller's role or policies do not allow this", rule="policy")
    return doc


@router.post("/{alarm_id}/ack", openapi_extra=_BODY_DOC, responses=STEP_ERRORS, summary="Acknowledge an active alarm")
async def acknowledge(request: Request, alarm_id: str) -> dict[str, Any]:
    actor, note = await _step_body(request)
    svc = service(request)
    return await run_in_threadpool(lambda: svc.view([svc.acknowledge(alarm_id, actor=actor, note=note)])[0])


@router.post("/{alarm_id}/clear", openapi_extra=_BODY_DOC, responses=STEP_ERRORS,
             summary="Clear an active or acknowledged alarm")
async def clear(request: Request, alarm_id: str) -> dict[str, Any]:
    actor, note = await _step_body(request)
    svc = service(request)
    return await run_in_threadpool(lambda: svc.view([svc.clear(alarm_id, actor=actor, note=note)])[0])


async def _step_body(request: Request, allowed: tuple[str, ...] = ("actor", "note")) -> tuple[str, str | None]:
    actor = principal(request).actor
    length = request.headers.get("content-length")
    has_body = (length is not None and length.strip() != "0") or \
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    if not has_body:
        return actor, None
    body = await read_json(request)
    if not isinstance(body, Mapping) or set(body) - set(allowed):
        names = " and ".join(f'"{f}"' for f in allowed)
        raise Invalid(f"the body must be an object with optional {names} strings", field="body", rule="type")
    for field in allowed:
        if body.get(field) is not None and not isinstance(body[field], str):
            raise Invalid(f"{field} must be a string", field=field, rule="type")
    if principal(request).authenticated:  # the signed-in identity acts; a name in the body cannot replace it
        return actor, body.get("note")
    return (body.get("actor") or actor)[:128], body.get("note")
