"""What-if scenario routes: start a forked run with interventions, follow it, read and compare results.

``POST /api/scenarios`` checks the request at once (unknown twin: 404; anything else wrong: 422
naming the field, e.g. ``options[1].interventions[0].command``) and answers ``202`` with
``{"id", "status": "running", "progress": 0.0}`` and a ``Location``; the run goes on in a worker
thread on a fork of the backend, its progress on the change stream (source ``scenarios``).
``GET /api/scenarios/{id}`` gives status, KPIs per option and the p10/p50/p90 series;
``GET /api/scenarios`` lists them newest first; ``GET /api/scenarios/compare?ids=a,b`` puts the
KPIs of several side by side; ``GET /api/scenarios/vocabulary?twin=ID`` says what a twin's
scenarios may name (commands, maintenance, faults, parameters with bounds, outputs).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import problems
from tvilling.simulation.scenario_service import ScenarioService, service_for

router = APIRouter(prefix="/api/scenarios", tags=["scenarios"])
_LOCK = threading.Lock()
_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["twin", "horizon"],
    "description": "twin, simulation?, at? (ISO time), horizon ('24h'), step ('1m'), samples, seed, "
                   "options: [{name, interventions: [{at, command, value} | {at, maintenance, part, duration} | "
                   "{at, fault, size} | {at, parameters} | {profile, at: [...], values: [...]}]}]"}}}}}


def scenario_service(request: Request) -> ScenarioService:
    """The app's scenario service, made on first use from its platform (backend, simulations, registry)."""
    state = request.app.state
    with _LOCK:
        svc = getattr(state, "scenarios", None)
        if svc is None:
            svc = service_for(state.platform)
            state.scenarios = svc
        return svc


@router.post("", status_code=202, openapi_extra=_BODY_DOC, responses=problems(400, 404, 413, 422),
             summary="Start a what-if scenario on a fork of a twin: options with interventions, a horizon, samples")
async def start_scenario(request: Request) -> JSONResponse:
    body = await read_json(request)
    svc = scenario_service(request)
    record = await run_in_threadpool(svc.submit, body)
    return JSONResponse({"id": record["id"], "status": record["status"], "progress": record["progress"]},
                        status_code=202, headers={"Location": f"/api/scenarios/{record['id']}"})


@router.get("", responses=problems(400), summary="The scenarios, newest first")
async def list_scenarios(request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    svc = scenario_service(request)
    return {"items": await run_in_threadpool(svc.newest, limit)}


@router.get("/vocabulary", responses=problems(400, 404, 422),
            summary="What a twin's scenarios may name: commands, maintenance, faults, parameters, outputs")
async def vocabulary(request: Request, twin: str = Query(..., description="the machine twin's id"),
                     simulation: str | None = Query(None, description="the simulation (default: the bound one)"),
                     ) -> dict[str, Any]:
    svc = scenario_service(request)
    return await run_in_threadpool(svc.vocabulary, twin, simulation)


@router.get("/compare", responses=problems(400, 404, 422), summary="The KPIs of several scenarios side by side")
async def compare(request: Request, ids: str = Query(..., description="scenario ids separated by commas")
                  ) -> dict[str, Any]:
    svc = scenario_service(request)
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    return {"items": await run_in_threadpool(svc.compare, wanted)}


@router.get("/{scenario_id}/score", responses=problems(400, 404, 409, 422),
            summary="Once its horizon has passed: a scenario's bands against what the twin measured")
async def score_scenario(request: Request, scenario_id: str,
                         option: str | None = Query(None, description="the option to score (default: the baseline)")
                         ) -> dict[str, Any]:
    svc = scenario_service(request)
    platform = request.app.state.platform
    return await run_in_threadpool(svc.score, scenario_id, modelset=lambda: platform.models.modelset, option=option)


@router.get("/{scenario_id}", responses=problems(400, 404),
            summary="A scenario: status, progress, KPIs per option, p10/p50/p90 series")
async def get_scenario(request: Request, scenario_id: str) -> dict[str, Any]:
    svc = scenario_service(request)
    return await run_in_threadpool(svc.get, scenario_id)
