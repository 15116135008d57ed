"""Relationship and query routes."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import if_match, read_json
from tvilling.api.twins import _actor, _json, _obj
from tvilling.twins.query import __doc__ as QUERY_DOC
from tvilling.twins.query import encode_cursor

router = APIRouter(tags=["graph"])


@router.put("/api/twins/{twin_id}/relationships/{rel_id}", openapi_extra=_obj(
    '{"name": relationship name from the model, "target": twin id, "properties": {...}}'),
    summary="Create or replace a relationship")
async def put_relationship(request: Request, twin_id: str, rel_id: str) -> dict[str, Any]:
    body = await read_json(request)
    svc = request.app.state.platform.twins
    rel = await run_in_threadpool(svc.set_relationship, twin_id, rel_id, body, actor=_actor(request),
                                  if_match=if_match(request))
    out: dict[str, Any] = msgspec.to_builtins(rel)
    out["source"] = twin_id
    return out


@router.get("/api/twins/{twin_id}/relationships", summary="A twin's relationships (incoming=true: to it)")
async def list_relationships(request: Request, twin_id: str, incoming: bool = False) -> dict[str, Any]:
    svc = request.app.state.platform.twins
    if incoming:
        pairs = await run_in_threadpool(svc.incoming, twin_id)
        return {"items": [{**msgspec.to_builtins(r), "source": s} for s, r in pairs]}
    rels = await run_in_threadpool(svc.relationships, twin_id)
    return {"items": [{**msgspec.to_builtins(r), "source": twin_id} for r in rels]}


@router.get("/api/twins/{twin_id}/relationships/{rel_id}", summary="One relationship")
async def get_relationship(request: Request, twin_id: str, rel_id: str) -> dict[str, Any]:
    from tvilling.core.errors import NotFound

    twin = await run_in_threadpool(request.app.state.platform.twins.get, twin_id)
    rel = twin.relationships.get(rel_id)
    if rel is None:
        raise NotFound(f"twin {twin_id!r} has no relationship {rel_id!r}", twin=twin_id, relationship=rel_id)
    return {**msgspec.to_builtins(rel), "source": twin_id}


@router.delete("/api/twins/{twin_id}/relationships/{rel_id}", status_code=204,
               summary="Delete a relationship")
async def delete_relationship(request: Request, twin_id: str, rel_id: str) -> Response:
    svc = request.app.state.platform.twins
    await run_in_threadpool(svc.delete_relationship, twin_id, rel_id, actor=_actor(request),
                            if_match=if_match(request))
    return Response(status_code=204)


@router.post("/api/query", openapi_extra=_obj(QUERY_DOC or "query"),
             summary="Query twins by model, property predicates and relationship traversal")
async def query(request: Request) -> Response:
    doc = await read_json(request)
    page = await run_in_threadpool(request.app.state.platform.twins.query, doc)
    return _json({"items": [t.to_json() for t in page.items],
                  "next": encode_cursor(page.next) if page.next is not None else None})


@router.get("/api/events", summary="The global change feed after a position")
async def feed(request: Request, after: int = 0, limit: int | None = None) -> Response:
    from tvilling.core.errors import Malformed

    if after < 0:
        raise Malformed("after must be ≥ 0", field="after")
    events = await run_in_threadpool(request.app.state.platform.twins.feed, after=after, limit=limit)
    nxt = events[-1].position if events else after
    return _json({"items": [e.to_json() for e in events], "next": nxt})
