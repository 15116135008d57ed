"""Command routes: invoke a command on a twin's asset, follow it to its final status.

``POST /api/twins/{id}/commands/{name}`` takes the command's request value as the
body (``{"rpm": 900}``… or ``900`` for a scalar request; no body for a command
without one), or ``{"request": <value>, "timeout_s": <seconds>}``. A request that is
itself an object whose only keys are ``request``/``timeout_s`` must be given in that
wrapped form. The answer is the command record, ``202 Accepted``, with a ``Location``.

``GET /api/twins/{id}/commands`` lists what the twin's model declares, with the marking of
Tvilling's commands extension: ``disruptive`` commands are to be confirmed by a person
before a client sends them (the dashboard asks), and ``affects`` names the properties to
watch afterwards. The server itself does not ask: an API client that sends one has decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import problems
from tvilling.api.principal import principal
from tvilling.core.errors import Forbidden, Invalid, Unavailable
from tvilling.decisions.commands import CommandService, describe_commands
from tvilling.decisions.lifecycle import STATUSES
from tvilling.security.enforce import require, visible

#: Without a command transport (no broker, no OPC UA) every command route answers 503.
router = APIRouter(tags=["commands"], responses=problems(503))
WRAPPER_KEYS = frozenset({"request", "timeout_s"})
_BODY_DOC = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "description": "the command's request value, or {\"request\": value, \"timeout_s\": seconds}"}}}}}


def command_service(request: Request) -> CommandService | None:
    """The runtime's command service (``None``: nothing reaches the devices)."""
    runtime = getattr(request.app.state, "runtime", None)
    return None if runtime is None else runtime.commands


def service(request: Request) -> CommandService:
    """The command service, or ``Unavailable`` (503) saying how to start a server that has one."""
    svc = command_service(request)
    if svc is None:
        raise Unavailable("commands need a way to reach the devices, and this server has none: start it with "
                          "--broker mqtt://HOST:PORT (or --opcua FILE)", rule="not_configured")
    return svc


def split_body(body: Any) -> tuple[Any, Any]:
    """``(request, timeout_s)`` from a POST body (see the module docstring)."""
    if isinstance(body, Mapping) and body and set(body) <= WRAPPER_KEYS:
        timeout = body.get("timeout_s")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
            raise Invalid(f"timeout_s must be a number of seconds; got {timeout!r}", field="timeout_s",
                          rule="type")
        return body.get("request"), timeout
    return body, None


@router.post("/api/twins/{twin_id}/commands/{name}", status_code=202, openapi_extra=_BODY_DOC,
             responses=problems(400, 404, 409, 413, 422),
             summary="Send a command declared by the twin's model to its asset")
async def invoke(request: Request, twin_id: str, name: str) -> JSONResponse:
    require(request, "execute", twin_id, path=f"commands.{name}")  # policies on the command (auth required)
    svc = service(request)
    body = await read_json(request) if await _has_body(request) else None
    command, timeout_s = split_body(body)
    actor = principal(request).actor
    record = await svc.invoke(twin_id, name, command, actor=actor, timeout_s=timeout_s)
    return JSONResponse(record.to_json(), status_code=202, headers={"Location": f"/api/commands/{record.id}"})


@router.get("/api/twins/{twin_id}/commands", responses=problems(400, 404, 422),
            summary="The commands a twin's model declares: request, whether disruptive, what they affect")
async def declared_commands(request: Request, twin_id: str) -> dict[str, Any]:
    """Model information only: answers without a command transport too (sending needs one)."""
    twins = request.app.state.platform.twins
    out: dict[str, Any] = await run_in_threadpool(describe_commands, twins, twin_id)
    out["available"] = command_service(request) is not None
    return out


@router.get("/api/commands/{command_id}", responses=problems(404), summary="One command and where it stands")
async def get_command(request: Request, command_id: str) -> dict[str, Any]:
    svc = service(request)
    record = await run_in_threadpool(svc.get, command_id)
    doc: dict[str, Any] = record.to_json()
    if not visible(request, [doc]):
        raise Forbidden("the caller's role or policies do not allow this", rule="policy")
    return doc


@router.get("/api/commands", responses=problems(400, 422),
            summary="Commands, oldest first, filtered by twin and status")
async def list_commands(request: Request, twin: str | None = None,
                        status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
                        after: str | None = Query(None, description="the `next` of the previous page"),
                        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    svc = service(request)
    items = await run_in_threadpool(svc.list, twin=twin, status=status, after=after, limit=limit)
    return {"items": visible(request, [r.to_json() for r in items]),  # the twins the caller may read
            "next": items[-1].id if len(items) == limit else None}


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "chunked" in request.headers.get("transfer-encoding", "").lower()
