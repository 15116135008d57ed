"""Relationship and query routes."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import if_match, read_json
from tvilling.api.openapi import IF_MATCH, json_body, problems
from tvilling.api.twins import WRITE, _actor, _json
from tvilling.security.enforce import check_query, linked, require, run_query, visible
from tvilling.twins.query import MAX_PREDICATES, MAX_STEPS, OPS, encode_cursor, parse_query
from tvilling.twins.query import __doc__ as QUERY_DOC

router = APIRouter(tags=["graph"])
#: The routes under a twin: its id (and a relationship id) must be ids, and must exist.
TWIN = problems(400, 404, 413, 422)

RELATIONSHIP_BODY = {
    "type": "object", "required": ["name", "target"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "description": "a relationship the twin's model declares"},
                   "target": {"type": "string", "description": "the target twin's id"},
                   "properties": {"type": "object", "description": "the relationship's own properties"},
                   "id": {"type": "string", "description": "the relationship id; if given, the one in the path"}},
}


_SCALAR = {"type": ["string", "number", "boolean", "null"]}
#: What each operator compares with (a value of another type is a 400).
_OPERANDS: list[tuple[list[str], dict[str, Any]]] = [
    (["=", "!="], {"anyOf": [_SCALAR, {"type": "array"}]}), (["<", "<=", ">", ">="], {"type": ["number", "string"]}),
    (["in"], {"type": "array"}), (["exists"], {"type": "boolean"}), (["startswith"], {"type": "string"}),
]
assert {op for ops, _ in _OPERANDS for op in ops} == OPS


def _predicates(path: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "maxItems": MAX_PREDICATES, "items": {
        "description": "[path, operator, value]", "anyOf": [
            {"type": "array", "minItems": 3, "maxItems": 3,
             "prefixItems": [path, {"type": "string", "enum": ops}, operand]} for ops, operand in _OPERANDS]}}


_PREDICATES = _predicates({
    "type": "string", "pattern": r"^(id|model|revision|(reported|desired|attributes)(\.[^.]+)+)$",
    "description": "id, model, revision, or reported.X, desired.X, attributes.X (dotted into components)"})
_SELECT = {"model": {"type": "string", "description": "a DTMI: twins of it or of a model extending it"},
           "exact": {"type": "boolean", "description": "true: twins of exactly that model"}, "where": _PREDICATES}
_FIRST_STEP = {"type": "object", "additionalProperties": False, "properties": _SELECT}
_STEP = {
    "type": "object", "additionalProperties": False, "required": ["via"],
    "properties": {**_SELECT, "via": {"type": "string", "description": "the relationship to follow"},
                   "direction": {"type": "string", "enum": ["out", "in"], "default": "out"},
                   "rel_where": _predicates({"type": "string", "pattern": r"^[^.]+(\.[^.]+)*$",
                                             "description": "a property of the relationship (dotted)"})},
}
_PAGE = {"limit": {"type": "integer", "minimum": 1, "description": "at most the server's max_page_size (413)"},
         "cursor": {"type": ["string", "null"], "description": "the next of the previous page"}}
QUERY_BODY = {"description": QUERY_DOC or "a twin query", "anyOf": [
    {"type": "object", "additionalProperties": False, "required": ["match"], "properties": {
        "match": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "prefixItems": [_FIRST_STEP],
                  "items": _STEP}, **_PAGE}},
    {"type": "object", "additionalProperties": False, "properties": {**_SELECT, **_PAGE}},
]}


@router.put("/api/twins/{twin_id}/relationships/{rel_id}", responses={**TWIN, **WRITE},
            openapi_extra={**json_body(RELATIONSHIP_BODY), "parameters": [IF_MATCH]},
            summary="Create or replace a relationship")
async def put_relationship(request: Request, twin_id: str, rel_id: str) -> dict[str, Any]:
    body = await read_json(request)
    if isinstance(body, dict) and isinstance(body.get("target"), str):  # else the service says what is wrong
        require(request, "read", body["target"])  # no link to a twin it may not read: no probe of its existence
    svc = request.app.state.platform.twins
    rel = await run_in_threadpool(svc.set_relationship, twin_id, rel_id, body, actor=_actor(request),
                                  if_match=if_match(request))
    out: dict[str, Any] = msgspec.to_builtins(rel)
    out["source"] = twin_id
    return out


@router.get("/api/twins/{twin_id}/relationships", responses=TWIN,
            summary="A twin's relationships (incoming=true: to it), those to or from twins the caller may read")
async def list_relationships(request: Request, twin_id: str, incoming: bool = False) -> dict[str, Any]:
    svc = request.app.state.platform.twins
    if incoming:
        pairs = await run_in_threadpool(svc.incoming, twin_id)
        return {"items": linked(request, [{**msgspec.to_builtins(r), "source": s} for s, r in pairs], key="source")}
    rels = await run_in_threadpool(svc.relationships, twin_id)
    return {"items": linked(request, [{**msgspec.to_builtins(r), "source": twin_id} for r in rels])}


@router.get("/api/twins/{twin_id}/relationships/{rel_id}", responses=TWIN, summary="One relationship")
async def get_relationship(request: Request, twin_id: str, rel_id: str) -> dict[str, Any]:
    from tvilling.core.errors import NotFound

    twin = await run_in_threadpool(request.app.state.platform.twins.get, twin_id)
    rel = twin.relationships.get(rel_id)
    if rel is None:
        raise NotFound(f"twin {twin_id!r} has no relationship {rel_id!r}", twin=twin_id, relationship=rel_id)
    require(request, "read", rel.target)  # a link to a twin the caller may not read: 403, naming neither
    return {**msgspec.to_builtins(rel), "source": twin_id}


@router.delete("/api/twins/{twin_id}/relationships/{rel_id}", status_code=204, responses={**TWIN, **WRITE},
               openapi_extra={"parameters": [IF_MATCH]}, summary="Delete a relationship")
async def delete_relationship(request: Request, twin_id: str, rel_id: str) -> Response:
    svc = request.app.state.platform.twins
    await run_in_threadpool(svc.delete_relationship, twin_id, rel_id, actor=_actor(request),
                            if_match=if_match(request))
    return Response(status_code=204)


@router.post("/api/query", openapi_extra=json_body(QUERY_BODY), responses=problems(400, 413, 422),
             summary="Query twins by model, property predicates and relationship traversal")
async def query(request: Request) -> Response:
    doc = await read_json(request)
    svc = request.app.state.platform.twins
    q = parse_query(doc, default_limit=svc.default_limit, max_limit=svc.max_limit)
    check_query(request, (".".join(p.path) for step in q.steps for p in step.where))  # see check_query: 403
    page = await run_in_threadpool(run_query, request, svc, q)  # a traversal: through readable twins only
    return _json({"items": visible(request, [t.to_json() for t in page.items], docs=True),  # forbidden: absent
                  "next": encode_cursor(page.next) if page.next is not None else None})


@router.get("/api/events", responses=problems(400, 413), summary="The global change feed after a position")
async def feed(request: Request, after: int = 0, limit: int | None = None) -> Response:
    from tvilling.core.errors import Malformed

    if after < 0:
        raise Malformed("after must be ≥ 0", field="after")
    events = await run_in_threadpool(request.app.state.platform.twins.feed, after=after, limit=limit)
    nxt = events[-1].position if events else after
    return _json({"items": visible(request, [e.to_json() for e in events]), "next": nxt})
