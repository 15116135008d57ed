"""Policy routes: list, read, create or replace, and delete authorisation policies.

``PUT /api/policies/{policy_id}`` takes a policy (see :mod:`tvilling.security.policies`) and answers 201
when it was created, 200 when it replaced one; ``DELETE`` removes it. A change applies at once to
every request and every open stream of this process (and within a quarter second in the others).
Each change is appended to the audit chain (``policy.put``, ``policy.delete``, with the policy) when audit is on.
With auth required these routes need the ``admin`` role.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.backend.policies import PolicyStore
from tvilling.security.audit_events import record as audit
from tvilling.security.enforce import guard_of
from tvilling.security.permissions import ACTIONS
from tvilling.security.policies import Policy

router = APIRouter(tags=["security"])

_ENTRY = {
    "type": "object", "required": ["effect", "actions", "resources"], "additionalProperties": False,
    "properties": {
        "effect": {"type": "string", "enum": ["grant", "revoke"]},
        "actions": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(ACTIONS)}},
        "resources": {"type": "array", "minItems": 1, "items": {
            "type": "string", "description": "twin:<glob>, model:<dtmi glob>, subgraph:<twin id>, or history, "
            "alarms, workorders, analytics, dead-letters (optionally :<twin selector>)"}},
        "paths": {"type": "array", "items": {"type": "string", "description": "reported.temperature, desired.*, "
                                                                               "commands.setSpeed"}},
    },
}
_POLICY = {
    "type": "object", "required": ["subjects", "entries"], "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": "if given, the id in the path"},
        "subjects": {"type": "array", "minItems": 1, "items": {
            "type": "string", "description": "role:<role>, *, or a principal id glob (token:ci-*, alice@example.com)"}},
        "entries": {"type": "array", "minItems": 1, "items": _ENTRY},
        "description": {"type": "string"},
    },
}


def _store(request: Request) -> PolicyStore:
    store: PolicyStore = request.app.state.platform.backend.policies
    return store


@router.get("/api/policies", summary="The authorisation policies, by id")
async def list_policies(request: Request) -> dict[str, Any]:
    policies = await run_in_threadpool(_store(request).list)
    return {"items": [p.to_json() for p in policies]}


@router.get("/api/policies/{policy_id}", responses=problems(404), summary="One authorisation policy")
async def get_policy(request: Request, policy_id: str) -> dict[str, Any]:
    policy = await run_in_threadpool(_store(request).get, policy_id)
    return policy.to_json()


@router.put("/api/policies/{policy_id}", openapi_extra=json_body(_POLICY), responses=problems(400, 413, 422),
            summary="Create or replace an authorisation policy; it applies at once, open streams included")
async def put_policy(request: Request, policy_id: str) -> JSONResponse:
    body = await read_json(request)
    policy = Policy.from_json(body, policy_id=policy_id)
    created = await run_in_threadpool(_store(request).put, policy)
    guard_of(request.app).changed()
    await run_in_threadpool(audit, request.app.state.platform, principal(request), "policy.put",
                            f"policy:{policy.id}", {"policy": policy.to_json(), "created": created},
                            request=policy.to_json())
    return JSONResponse(policy.to_json(), status_code=201 if created else 200)


@router.delete("/api/policies/{policy_id}", responses=problems(404), summary="Delete an authorisation policy")
async def delete_policy(request: Request, policy_id: str) -> dict[str, Any]:
    policy = await run_in_threadpool(_store(request).delete, policy_id)
    guard_of(request.app).changed()
    await run_in_threadpool(audit, request.app.state.platform, principal(request), "policy.delete",
                            f"policy:{policy.id}", {"policy": policy.to_json()})
    return policy.to_json()
