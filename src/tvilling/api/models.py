"""Model routes: register DTDL interfaces, list and read them, decommission versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.models.service import describe_records
from tvilling.security.audit_events import record as audit

router = APIRouter(prefix="/api/models", tags=["models"])

_DTDL_BODY = json_body({
    "description": "A DTDL v3 Interface, or a list of them",
    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
})


@router.post("", status_code=201, openapi_extra=_DTDL_BODY,
             responses={200: {"description": "validate_only=true: the documents are valid; nothing is registered"},
                        **problems(400, 409, 413, 422)},
             summary="Register DTDL interfaces (or only validate them)")
async def add_models(request: Request, validate_only: bool = False) -> JSONResponse:
    doc = await read_json(request)
    registry = request.app.state.platform.models
    ids = await run_in_threadpool(registry.add, doc, validate_only=validate_only)
    status = 200 if validate_only else 201
    if not validate_only:
        platform = request.app.state.platform
        await run_in_threadpool(audit, platform, principal(request), "model.upload",
                                f"models:{ids[0] if len(ids) == 1 else len(ids)}", {"models": ids[:50]},
                                request=doc)
    return JSONResponse({"models": ids, "validate_only": validate_only, "valid": True}, status_code=status)


@router.get("", summary="List registered model versions")
async def list_models(request: Request) -> dict[str, Any]:
    records = await run_in_threadpool(request.app.state.platform.models.list)
    return {"items": describe_records(records)}


@router.get("/{dtmi}", responses=problems(404), summary="A model version with its DTDL definition")
async def get_model(request: Request, dtmi: str) -> dict[str, Any]:
    out: dict[str, Any] = await run_in_threadpool(request.app.state.platform.models.describe, dtmi)
    return out


@router.post("/{dtmi}/decommission", responses=problems(400, 404),
             summary="Decommission a model version: no new twins of it")
async def decommission(request: Request, dtmi: str, undo: bool = False) -> dict[str, Any]:
    platform = request.app.state.platform
    rec = await run_in_threadpool(platform.models.decommission, dtmi, not undo)
    await run_in_threadpool(audit, platform, principal(request), "model.recommission" if undo else "model.decommission",
                            f"model:{dtmi}")
    return describe_records([rec])[0]
