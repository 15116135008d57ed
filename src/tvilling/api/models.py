"""Model routes: register DTDL interfaces, list and read them, decommission versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.models.service import describe_records

router = APIRouter(prefix="/api/models", tags=["models"])

_DTDL_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "description": "A DTDL v3 Interface, or a list of them",
            "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
        }}},
    }
}


@router.post("", status_code=201, openapi_extra=_DTDL_BODY,
             summary="Register DTDL interfaces (or only validate them)")
async def add_models(request: Request, validate_only: bool = False) -> JSONResponse:
    doc = await read_json(request)
    registry = request.app.state.platform.models
    ids = await run_in_threadpool(registry.add, doc, validate_only=validate_only)
    status = 200 if validate_only else 201
    return JSONResponse({"models": ids, "validate_only": validate_only, "valid": True}, status_code=status)


@router.get("", summary="List registered model versions")
async def list_models(request: Request) -> dict[str, Any]:
    records = await run_in_threadpool(request.app.state.platform.models.list)
    return {"items": describe_records(records)}


@router.get("/{dtmi}", summary="A model version with its DTDL definition")
async def get_model(request: Request, dtmi: str) -> dict[str, Any]:
    out: dict[str, Any] = await run_in_threadpool(request.app.state.platform.models.describe, dtmi)
    return out


@router.post("/{dtmi}/decommission", summary="Decommission a model version: no new twins of it")
async def decommission(request: Request, dtmi: str, undo: bool = False) -> dict[str, Any]:
    rec = await run_in_threadpool(request.app.state.platform.models.decommission, dtmi, not undo)
    return describe_records([rec])[0]
