"""API token routes: create (the secret is in that answer only), list and revoke tokens.

``POST /api/tokens`` takes ``{"name", "role", "twins"?, "expires"?}`` (``expires`` a duration such as
``30d``) and answers ``201`` with the token and its ``secret``; the secret is stored only as a hash and
is never shown again. ``GET /api/tokens`` lists the tokens (never their secrets);
``DELETE /api/tokens/{token_id}`` revokes one (it stays listed, with its revocation time). With auth
required these routes need the ``admin`` role (see :mod:`tvilling.security.permissions`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.backend.tokens import TokenStore
from tvilling.core.errors import Invalid
from tvilling.security.audit_events import record as audit
from tvilling.security.audit_events import token_detail
from tvilling.security.tokens import ROLES, issue

router = APIRouter(tags=["security"])

_CREATE = {
    "type": "object", "required": ["name", "role"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "what the token is for, unique among tokens not revoked",
                 "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        "role": {"type": "string", "enum": list(ROLES)},
        "twins": {"type": "string", "description": "the twins it may address, a glob (default *), e.g. line-1-*"},
        "expires": {"type": "string", "description": "lifetime, e.g. 30d, 12h, 2w (default: no expiry)"},
    },
}
_FIELDS = frozenset(("name", "role", "twins", "expires"))


def _store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.platform.backend.tokens
    return store


@router.post("/api/tokens", status_code=201, openapi_extra=json_body(_CREATE), responses=problems(400, 409, 413, 422),
             summary="Create an API token; the answer holds its secret, which is never shown again")
async def create_token(request: Request) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid('the body must be an object {"name", "role", "twins"?, "expires"?}', field="body", rule="type")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}; a token takes name, role, twins and expires",
                      field=unknown[0], rule="unknown")
    for key in ("name", "role", "twins", "expires"):
        if key in body and not isinstance(body[key], str):
            raise Invalid(f"{key} must be a string", field=key, rule="type")
    caller = principal(request)
    token, secret = await run_in_threadpool(
        issue, _store(request), body.get("name", ""), body.get("role", ""), twins=body.get("twins", "*"),
        expires_in=body.get("expires"), by=caller.actor, now=datetime.now(UTC))
    await run_in_threadpool(audit, request.app.state.platform, caller, "token.create", f"token:{token.id}",
                            token_detail(token))  # never the secret
    return JSONResponse({**token.to_json(), "secret": secret}, status_code=201,
                        headers={"Location": f"/api/tokens/{token.id}", "Cache-Control": "no-store"})


@router.get("/api/tokens", summary="The API tokens (never their secrets), oldest first")
async def list_tokens(request: Request) -> dict[str, Any]:
    tokens = await run_in_threadpool(_store(request).list)
    return {"items": [t.to_json() for t in tokens]}


@router.delete("/api/tokens/{token_id}", responses=problems(404), summary="Revoke an API token")
async def revoke_token(request: Request, token_id: str) -> dict[str, Any]:
    token = await run_in_threadpool(lambda: _store(request).revoke(token_id, at=datetime.now(UTC)))
    await run_in_threadpool(audit, request.app.state.platform, principal(request), "token.revoke",
                            f"token:{token.id}", token_detail(token))
    return token.to_json()

