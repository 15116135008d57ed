"""Twin routes: create/replace, read (also as of a revision or a time), patch, delete, migrate."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import if_match, read_json
from tvilling.api.openapi import IF_MATCH, json_body, problems
from tvilling.api.principal import principal
from tvilling.core.errors import Malformed
from tvilling.core.principal import Principal
from tvilling.core.twin import Twin
from tvilling.security.enforce import view_of, visible
from tvilling.twins.service import parse_time

#: Every route addresses a twin by id: an id that is not one (too long, bad characters) is a 413/422.
router = APIRouter(prefix="/api/twins", tags=["twins"], responses=problems(400, 404, 413, 422))
#: Changes honour If-Match (412 when stale) and refuse what the current state does not allow (409).
WRITE = problems(409, 412)

_VALUES = {"type": "object", "description": "property name → value, validated against the twin's model "
           "(a component's values nested under its name)"}
_PROVENANCE = {
    "source": {"type": "string", "maxLength": 256, "description": "who measured or set the values"},
    "quality": {"type": "string", "enum": ["good", "uncertain", "bad"], "default": "good"},
    "time": {"type": ["string", "number"], "description": "when the values held: ISO 8601 with a zone, or epoch ms"},
}
TWIN_BODY = {
    "type": "object", "required": ["model"], "additionalProperties": False,
    "properties": {"model": {"type": "string", "description": "the twin's model, a DTMI"},
                   "attributes": {"type": "object", "description": "free-form attributes"},
                   "reported": _VALUES, "desired": _VALUES, **_PROVENANCE},
}
PATCH_BODY = {
    "type": "object", "additionalProperties": False,
    "description": "JSON merge patch (RFC 7396) of the twin's attributes, reported and desired values",
    "properties": {"attributes": {"type": "object"}, "reported": _VALUES, "desired": _VALUES, **_PROVENANCE},
}
MIGRATE_BODY = {
    "type": "object", "required": ["model"], "additionalProperties": False,
    "properties": {"model": {"type": "string", "description": "the model version to move to, a DTMI"},
                   "dry_run": {"type": "boolean", "default": False,
                               "description": "only report what the migration would do"}},
}

IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "* to create the twin only if it does not exist (412 if it does)"}


def twin_response(twin: Twin, status: int = 200, request: Request | None = None) -> JSONResponse:
    doc = twin.to_json()
    view = None if request is None else view_of(request)  # auth required: without the paths it may not read
    if view is not None:
        doc = view.twin(doc) or {"id": twin.id, "revision": twin.revision}
    return JSONResponse(doc, status_code=status, headers={"ETag": twin.etag})


@router.put("/{twin_id}", responses={201: {"description": "Created: the twin did not exist"}, **WRITE},
            openapi_extra={**json_body(TWIN_BODY), "parameters": [IF_MATCH, IF_NONE_MATCH]},
            summary="Create a twin or replace its state")
async def put_twin(request: Request, twin_id: str) -> JSONResponse:
    body = await read_json(request)
    svc = request.app.state.platform.twins
    create_only = request.headers.get("if-none-match", "").strip() == "*"
    twin, created = await run_in_threadpool(svc.put, twin_id, body, actor=_actor(request),
                                            if_match=if_match(request), create_only=create_only)
    return twin_response(twin, 201 if created else 200, request)


@router.get("/{twin_id}", summary="A twin; with revision= or at= as it was then (time travel)")
async def get_twin(request: Request, twin_id: str, revision: int | None = Query(None, ge=1),
                   at: str | None = None) -> JSONResponse:
    svc = request.app.state.platform.twins
    if revision is not None or at is not None:
        when = parse_time(at, field="at") if at is not None else None
        twin = await run_in_threadpool(svc.get_at, twin_id, revision=revision, at=when)
    else:
        twin = await run_in_threadpool(svc.get, twin_id)
    return twin_response(twin, request=request)


@router.patch("/{twin_id}", openapi_extra={**json_body(PATCH_BODY), "parameters": [IF_MATCH]}, responses=WRITE,
              summary="Merge-patch a twin's attributes, reported and desired values")
async def patch_twin(request: Request, twin_id: str) -> JSONResponse:
    body = await read_json(request)
    svc = request.app.state.platform.twins
    twin = await run_in_threadpool(svc.patch, twin_id, body, actor=_actor(request),
                                   if_match=if_match(request))
    return twin_response(twin, request=request)


@router.delete("/{twin_id}", status_code=204, responses=WRITE, openapi_extra={"parameters": [IF_MATCH]},
               summary="Delete a twin (it must have no incoming relationships)")
async def delete_twin(request: Request, twin_id: str) -> Response:
    svc = request.app.state.platform.twins
    await run_in_threadpool(svc.delete, twin_id, actor=_actor(request), if_match=if_match(request))
    return Response(status_code=204)


@router.post("/{twin_id}/migrate", openapi_extra={**json_body(MIGRATE_BODY), "parameters": [IF_MATCH]},
             responses=WRITE, summary="Migrate a twin to another model version, with a validation report")
async def migrate_twin(request: Request, twin_id: str) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"model", "dry_run"}:
        raise Malformed('the body must be {"model": DTMI, "dry_run": true|false}', field="body")
    model, dry_run = body.get("model"), body.get("dry_run", False)
    if not isinstance(model, str):
        raise Malformed("model must be a DTMI string", field="model")
    if not isinstance(dry_run, bool):
        raise Malformed(f"dry_run must be true or false, not {type(dry_run).__name__}", field="dry_run")
    svc = request.app.state.platform.twins
    out: dict[str, Any] = await run_in_threadpool(svc.migrate, twin_id, model, actor=_actor(request),
                                                  dry_run=dry_run, if_match=if_match(request))
    return out


@router.get("/{twin_id}/events", summary="A twin's events after a revision, in order")
async def twin_events(request: Request, twin_id: str, after: int = Query(0, ge=0),
                      limit: int | None = Query(None, ge=1)) -> Response:
    svc = request.app.state.platform.twins
    events = await run_in_threadpool(svc.events, twin_id, after=after, limit=limit)
    nxt = events[-1].revision if events else after
    return _json({"items": visible(request, [e.to_json() for e in events]), "next": nxt})


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def _actor(request: Request) -> Principal:
    return principal(request)
