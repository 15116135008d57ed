"""Every route of the app declares what it needs: a route without a declaration fails here, by name.

Also: the declarations are well-formed, public routes are only the few that must be (health, the
dashboard's static files, the API documentation), and each role includes the rights of the one before.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import pytest
from fastapi import FastAPI

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.http import WEBSOCKET, app_routes
from tvilling.security.permissions import ACTIONS, ROLES, ROUTES, allows, rights

PUBLIC_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/", "/ui/vendor/{name}",
                "/ui/{rel:path}", "/auth/login", "/auth/callback"}  # the sign-in flow starts signed out


@pytest.fixture(scope="module", params=["off", "required"])
def app(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    yield create_app(Settings(store="memory", auth=request.param))


def test_every_route_has_a_declared_permission(app: FastAPI) -> None:
    routes = app_routes(app)
    assert len(routes) > 80 and (WEBSOCKET, "/api/ws") in routes  # websocket routes are enumerated too
    undeclared = [f"{method} {path}" for method, path in routes if (method, path) not in ROUTES]
    assert undeclared == [], f"routes without a declaration in tvilling.security.permissions.ROUTES: {undeclared}"


def test_no_declaration_is_left_without_its_route(app: FastAPI) -> None:
    stale = sorted(set(ROUTES) - set(app_routes(app)))
    assert stale == [], f"declarations of routes the app does not have: {stale}"


def test_declarations_are_well_formed_and_public_only_where_they_must_be() -> None:
    for (method, path), need in ROUTES.items():
        assert method in {"GET", "POST", "PUT", "PATCH", "DELETE", WEBSOCKET}, (method, path)
        if need.public:
            assert path in PUBLIC_PATHS and method == "GET", f"{method} {path} must not be public"
            continue
        assert need.action in ACTIONS and need.resource, (method, path)
        if "{twin_id}" in path:
            assert need.twin == "twin_id", f"{method} {path} addresses a twin but does not check the twins scope"
        if method not in ("GET", WEBSOCKET) and (method, path) != ("POST", "/api/query"):  # a query only reads
            assert need.action != "read", f"{method} {path} changes something but needs only read"


def test_each_role_includes_the_rights_of_the_one_before() -> None:
    for lower, higher in pairwise(ROLES):
        granted = [need for need in ROUTES.values() if allows((lower,), need)]
        assert all(allows((higher,), need) for need in granted), (lower, higher)
        assert len(granted) < sum(allows((higher,), n) for n in ROUTES.values()), f"{higher} adds nothing"
    assert rights("admin") is None and rights("root") == frozenset()
    assert not any(allows(("root",), need) for need in ROUTES.values() if not need.public)
    assert not any(allows((), need) for need in ROUTES.values() if not need.public)
