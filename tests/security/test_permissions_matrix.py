"""Every route as every role, with auth required: allowed or denied exactly as the permission table says.

An in-process app on the memory store; one API token per role (twins ``*``). For each route of the app a
representative request (path parameters filled in, ``{}`` as the body of a write) is sent with each
role's token and without a credential: a denied request must be 403 for a valid identity and 401 without
one; an allowed one must be neither (it may well be 400, 404 or 422: the route ran).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.http import WEBSOCKET, app_routes
from tvilling.security.permissions import ROLES, ROUTES, allows
from tvilling.security.tokens import issue

VALUES = {"twin_id": "line-1-m01", "rel": "app.js", "dtmi": "dtmi:tvilling:example:Machine;1", "version": "1",
          "name": "setSpeed"}
QUERIES = {"/api/stream": "?buffer=not-a-number", "/api/ws": "?buffer=not-a-number"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(Settings(store="memory", auth="required"))
    now = datetime.now(UTC)
    secrets = {role: issue(app.state.platform.backend.tokens, f"matrix-{role}", role, by="test", now=now)[1]
               for role in ROLES}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, secrets


def _url(path: str) -> str:
    filled = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: VALUES.get(m.group(1), "x"), path)
    return filled + QUERIES.get(path, "")


def _status(client: TestClient, method: str, path: str, secret: str | None) -> int:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    if method == WEBSOCKET:
        try:
            with client.websocket_connect(_url(path), headers=headers):
                return 101
        except WebSocketDenialResponse as denied:
            return int(denied.status_code)
        except WebSocketDisconnect:
            return 101  # accepted, then closed by the route (the bad filter): it ran
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, _url(path), json=body, headers=headers).status_code


def test_every_route_as_every_role(served: tuple[TestClient, dict[str, str]]) -> None:
    client, secrets = served
    wrong: list[str] = []
    routes = app_routes(client.app)  # type: ignore[arg-type]
    for method, path in routes:
        need = ROUTES[(method, path)]
        anonymous = _status(client, method, path, None)
        if need.public:
            if anonymous in (401, 403):
                wrong.append(f"{method} {path} is public but anonymous got {anonymous}")
        elif anonymous != 401:
            wrong.append(f"{method} {path} without a credential: {anonymous}, not 401")
        for role in ROLES:
            status = _status(client, method, path, secrets[role])
            if allows((role,), need) and status in (401, 403):
                wrong.append(f"{method} {path} as {role}: {status}, but the table allows it")
            if not allows((role,), need) and status != 403:
                wrong.append(f"{method} {path} as {role}: {status}, but the table denies it (403)")
    assert wrong == [], "\n".join(wrong)
    assert len(routes) > 80


def test_the_document_declares_401_and_403_on_every_protected_operation(
        served: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = served
    doc = client.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            need = ROUTES[(method.upper(), path)]
            declared = set(operation["responses"])
            assert need.public or {"401", "403"} <= declared, f"{method} {path}"
