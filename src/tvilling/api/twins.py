"""Twin routes: create/replace, read (also as of a revision or a time), patch, delete, migrate."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import if_match, read_json
from tvilling.core.twin import Twin
from tvilling.twins.service import parse_time

router = APIRouter(prefix="/api/twins", tags=["twins"])


def _obj(description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": description}}}}}


def twin_response(twin: Twin, status: int = 200) -> JSONResponse:
    return JSONResponse(twin.to_json(), status_code=status, headers={"ETag": twin.etag})


@router.put("/{twin_id}", openapi_extra=_obj(
    '{"model": DTMI, "attributes": {...}, "reported": {...}, "desired": {...}} '
    "(optional: source, quality, time)"), summary="Create a twin or replace its state")
async def put_twin(request: Request, twin_id: str) -> JSONResponse:
    body = await read_json(request)
    svc = request.app.state.platform.twins
    create_only = request.headers.get("if-none-match", "").strip() == "*"
    twin, created = await run_in_threadpool(svc.put, twin_id, body, actor=_actor(request),
                                            if_match=if_match(request), create_only=create_only)
    return twin_response(twin, 201 if created else 200)


@router.get("/{twin_id}", summary="A twin; with revision= or at= as it was then (time travel)")
async def get_twin(request: Request, twin_id: str, revision: int | None = Query(None, ge=1),
                   at: str | None = None) -> JSONResponse:
    svc = request.app.state.platform.twins
    if revision is not None or at is not None:
        when = parse_time(at, field="at") if at is not None else None
        twin = await run_in_threadpool(svc.get_at, twin_id, revision=revision, at=when)
    else:
        twin = await run_in_threadpool(svc.get, twin_id)
    return twin_response(twin)


@router.patch("/{twin_id}", openapi_extra=_obj(
    'JSON merge patch (RFC 7396): {"attributes"|"reported"|"desired": {...}}; honours If-Match'),
    summary="Merge-patch a twin's attributes, reported and desired values")
async def patch_twin(request: Request, twin_id: str) -> JSONResponse:
    body = await read_json(request)
    svc = request.app.state.platform.twins
    twin = await run_in_threadpool(svc.patch, twin_id, body, actor=_actor(request),
                                   if_match=if_match(request))
    return twin_response(twin)


@router.delete("/{twin_id}", status_code=204, summary="Delete a twin (it must have no incoming relationships)")
async def delete_twin(request: Request, twin_id: str) -> Response:
    svc = request.app.state.platform.twins
    await run_in_threadpool(svc.delete, twin_id, actor=_actor(request), if_match=if_match(request))
    return Response(status_code=204)


@router.post("/{twin_id}/migrate", openapi_extra=_obj('{"model": new DTMI, "dry_run": false}'),
             summary="Migrate a twin to another model version, with a validation report")
async def migrate_twin(request: Request, twin_id: str) -> dict[str, Any]:
    body = await read_json(request)
    model = body.get("model") if isinstance(body, dict) else None
    dry_run = bool(body.get("dry_run", False)) if isinstance(body, dict) else False
    if not isinstance(model, str):
        from tvilling.core.errors import Malformed

        raise Malformed("the body must be {\"model\": DTMI, \"dry_run\": bool}", field="model")
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
    return _json({"items": [e.to_json() for e in events], "next": nxt})


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def _actor(request: Request) -> str:
    actor = request.headers.get("x-tvilling-actor", "api")
    return actor[:128]
