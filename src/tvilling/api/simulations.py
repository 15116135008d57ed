"""Simulation routes: calibration from stored history and the parameter versions it makes.

* ``POST /api/simulations/{name}/calibrations`` — ``{"twin", "from", "to", "validate_to"?, "parameters"?,
  "start_states"?, "start_values"?, "outputs"?, "step"?, "promote"?, "max_evaluations"?}`` → ``201`` with
  the new version's number and status, each estimate with its standard error, nRMSE and R² per output
  on the fit and the validation window, and the measured and simulated series (thinned) to draw.
  A calibration takes seconds (3–10 s on the demo machine): it runs in a worker thread and answers
  when done, without a job to poll — the result is the registered version.
* ``GET /api/simulations/{name}/versions?twin=`` — the versions (of one twin, or ``*``: the fleet);
* ``POST /api/simulations/{name}/versions/{version}/promote?twin=`` — make one the version that runs
  (shadow mode in this process applies it at once).

Unknown simulation or twin: 404; anything else wrong in the request: 422 naming the field.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.simulation.calibrate_service import CalibrationService, parse_request, service_for

router = APIRouter(prefix="/api/simulations", tags=["simulations"])
_LOCK = threading.Lock()
_TIME = {"type": ["string", "number"],
         "description": "ISO 8601 with a zone, epoch milliseconds, 'now', or relative to now such as '-2h'"}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}
CALIBRATION_BODY: dict[str, Any] = {
    "type": "object", "required": ["twin", "from", "to"],
    "properties": {
        "twin": {"type": "string", "minLength": 1, "description": "the twin whose history is fitted"},
        "from": _TIME, "to": _TIME,
        "validate_to": {**_TIME, "description": "end of the validation window (default: as long as the fit "
                                                "window, right after it)"},
        "parameters": {**_NAMES, "description": "the parameters to fit (default: the model's calibratable ones, "
                                                "else every parameter with bounds)"},
        "start_states": {**_NAMES, "description": "states whose start value is fitted too (e.g. de:wear)"},
        "start_values": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "start values of states (default: steady state, measured first values)"},
        "outputs": {**_NAMES, "description": "the bound outputs compared (default: all)"},
        "step": {"type": "number", "exclusiveMinimum": 0, "description": "seconds between samples (default: the "
                                                                          "readings' median spacing)"},
        "promote": {"type": "boolean", "default": False, "description": "make the new version the one that runs"},
        "max_evaluations": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200},
    }}


def calibration_service(request: Request) -> CalibrationService:
    """The app's calibration service, made on first use from its platform."""
    state = request.app.state
    with _LOCK:
        svc = getattr(state, "calibrations", None)
        if svc is None:
            svc = service_for(state.platform)
            state.calibrations = svc
        return svc


@router.post("/{name}/calibrations", status_code=201, openapi_extra=json_body(CALIBRATION_BODY),
             responses=problems(400, 404, 413, 422, 503),
             summary="Calibrate a simulation's parameters on a twin's stored history; a new version (201)")
async def start_calibration(request: Request, name: str = Path(..., description="the simulation")) -> JSONResponse:
    svc = calibration_service(request)
    svc.spec(name)  # an unknown simulation is a 404 before the body is read
    body = await read_json(request)
    calibration = parse_request(body)
    doc = await run_in_threadpool(lambda: svc.calibrate(name, calibration, series=True))
    location = f"/api/simulations/{quote(name)}/versions?twin={quote(calibration.twin)}"
    return JSONResponse(doc, status_code=201, headers={"Location": location})


@router.get("/{name}/versions", responses=problems(400, 404),
            summary="A simulation's parameter versions (of one twin, or * for the fleet)")
async def list_versions(request: Request, name: str = Path(..., description="the simulation"),
                        twin: str | None = Query(None, description="a twin id, or * (default: every scope)"),
                        ) -> dict[str, Any]:
    svc = calibration_service(request)
    return await run_in_threadpool(svc.versions, name, twin)


@router.post("/{name}/versions/{version}/promote", responses=problems(400, 404, 409, 422),
             summary="Make a simulation version the one that runs for its twin (the previous one retires)")
async def promote_version(request: Request, name: str = Path(..., description="the simulation"),
                          version: int = Path(..., ge=1, le=2**31 - 1),
                          twin: str = Query(..., min_length=1, description="the version's scope: a twin id, or *"),
                          ) -> dict[str, Any]:
    svc = calibration_service(request)
    return await run_in_threadpool(svc.promote, name, version, twin)
