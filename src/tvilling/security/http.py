"""Authentication and role permissions on the HTTP API, enforced at one place: an ASGI middleware.

:func:`install` adds :class:`AuthMiddleware` to the app. With the setting ``auth = "required"`` it
finds the route a request (HTTP or WebSocket) is for, looks up what the route needs in
:data:`tvilling.security.permissions.ROUTES`, and

* lets a public route through;
* takes the caller from the ``Authorization: Bearer`` header or, without one, from the dashboard's session
  cookie (:mod:`tvilling.security.sessions`), for which a POST, PUT, PATCH or DELETE must also send the
  session's ``X-CSRF-Token`` (403 otherwise);
* answers 401 (with ``WWW-Authenticate: Bearer``) when the credential is missing, malformed, expired,
  revoked or unknown, naming the reason;
* answers 403 when the caller's roles do not grant the route's need, when the route addresses a twin
  outside the caller's twins pattern (the body never names the twin), or when the route has no
  declaration at all (fail closed);
* otherwise stores the principal on ``request.state.principal`` (and the :class:`~tvilling.security.authn.Caller`
  on ``request.state.caller``), where :func:`tvilling.api.principal.principal` finds it.

A path no route matches goes on to the app (FastAPI's 404 or 405). WebSocket refusals are HTTP
responses where the server supports the denial-response extension, else a close with code 1008.
It also audits (when ``tokens`` is a backend) each refusal — the route, the reason and the client's
address, never the body or the credential; a request without any credential once a minute per address —
and the first sign-in of each identity in an hour, and applies the rate limits of
:mod:`tvilling.security.ratelimit` (429 with ``Retry-After``). Requests run under
:func:`tvilling.security.audit_events.bind`, so the services' own audit entries name the caller.
With ``auth = "off"`` the middleware is not added and everything behaves as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from tvilling.core.errors import Forbidden, TvillingError, Unauthorized
from tvilling.core.principal import Principal
from tvilling.security import audit_events
from tvilling.security.audit_hook import Appender
from tvilling.security.authn import Authenticator, Caller
from tvilling.security.enforce import check_route
from tvilling.security.permissions import Need, allows, declared
from tvilling.security.ratelimit import RateLimited, RateLimits
from tvilling.security.sessions import CSRF_HEADER, UNSAFE, check_csrf, cookie_secret

if TYPE_CHECKING:
    from tvilling.backend.tokens import TokenStore
    from tvilling.config import Settings

PROBLEM = "application/problem+json"
WEBSOCKET = "WEBSOCKET"
ANONYMOUS = Principal(id="anonymous", kind="user")
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized (when the server runs with auth required): no credential, or one that "
                         "is malformed, expired, revoked or unknown",
          "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    403: {"description": "Forbidden (when the server runs with auth required): the caller's role, or its "
                         "twins scope, does not allow this",
          "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every route of the app as (method, path template), WebSocket routes under the method ``WEBSOCKET``."""
    return [(method, path) for method, path, _ in _routes(app)]


def _routes(app: FastAPI) -> Iterator[tuple[str, str, bool]]:
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, WebSocketRoute):
            yield WEBSOCKET, str(context.path), True
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD" or "GET" not in (context.methods or ()):
                yield method, str(context.path), False


@dataclass(frozen=True, slots=True)
class Target:
    """The route a request is for: its method and path template, its need (None: undeclared), its twin id."""

    method: str
    path: str
    need: Need | None
    twin: str | None


class RouteTable:
    """Finds the route a request is for, in the app's own order (the first match wins, as in the router)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._entries: list[tuple[str, str, re.Pattern[str], dict[str, Any]]] | None = None
        self.find = lru_cache(maxsize=4096)(self._find)

    def _compiled(self) -> list[tuple[str, str, re.Pattern[str], dict[str, Any]]]:
        if self._entries is None:
            entries = []
            for method, path, _ in _routes(self._app):
                regex, _, convertors = compile_path(path)
                entries.append((method, path, regex, convertors))
            self._entries = entries
        return self._entries

    def _find(self, method: str, path: str) -> Target | None:
        wanted = "GET" if method == "HEAD" else method
        for route_method, template, regex, convertors in self._compiled():
            if route_method != wanted:
                continue
            found = regex.match(path)
            if found is None:
                continue
            need = declared(route_method, template)
            twin = None
            if need is not None and need.twin is not None and need.twin in found.groupdict():
                twin = str(convertors[need.twin].convert(found.group(need.twin)))
            return Target(route_method, template, need, twin)
        return None


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _refusal(err: TvillingError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(err, Unauthorized):
        # a quoted-string of printable ASCII (RFC 6750 error_description), without quotes or backslashes
        reason = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in err.message)[:200]
        headers["WWW-Authenticate"] = (f'Bearer realm="tvilling", error="invalid_token", error_description="{reason}"'
                                       if err.fields.get("rule") != "missing_credential" else 'Bearer realm="tvilling"')
    if isinstance(err, RateLimited):
        headers["Retry-After"] = str(err.retry_after)
    return JSONResponse(err.to_problem(), status_code=err.status, media_type=PROBLEM, headers=headers)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def decide(target: Target, caller: Caller) -> None:
    """``Forbidden`` unless ``caller`` may call ``target`` (its roles, then its twins scope)."""
    need = target.need
    if need is None:
        raise Forbidden(f"{target.method} {target.path} has no declared permission; refused until it has one",
                        rule="undeclared_route")
    roles = caller.principal.roles
    if not allows(roles, need):
        what = need.resource.replace("_", " ")
        raise Forbidden(f"the role {', '.join(roles) or '(none)'} may not {need.action} {what}", rule="role",
                        needs=f"{need.action}:{need.resource}")
    if target.twin is not None and not caller.covers(target.twin):
        raise Forbidden("this credential's twins scope does not include the addressed twin", rule="twin_scope")


class AuthMiddleware:
    """Authenticates every request and checks its route's declared permission (see the module docs)."""

    def __init__(self, app: ASGIApp, *, routes: RouteTable, authenticator: Authenticator,
                 limits: RateLimits | None = None, audit: Appender | None = None) -> None:
        self.app = app
        self.routes = routes
        self.authenticator = authenticator
        self.limits = limits
        self.audit = audit
        self.sign_ins = audit_events.SignIns()
        self.anonymous = audit_events.SignIns(every_s=60.0)  # requests without a credential: audited once a minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = WEBSOCKET if scope["type"] == "websocket" else scope["method"]
        target = self.routes.find(method, _route_path(scope))
        state = scope.setdefault("state", {})
        if target is None:  # no route: the app answers 404 or 405
            await self.app(scope, receive, send)
            return
        if target.need is not None and target.need.public:
            state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        address = _client(scope)
        caller: Caller | None = None
        try:
            if self.limits is not None:
                self.limits.check_address(address)  # used up its failed sign-ins: not even looked at
            caller = self._identify(scope, method, state)
            decide(target, caller)
            if target.need is not None:  # the policies, on the addressed twin (or dead letters)
                check_route(scope["app"], caller, target.need.action, target.need.resource, target.twin)
            if self.limits is not None:
                self.limits.check_write(method, caller.principal.id)
        except TvillingError as err:
            if isinstance(err, Unauthorized) and self.limits is not None \
                    and err.fields.get("rule") != "missing_credential":
                self.limits.failed(address)  # a credential presented and refused: a guess, counted
            await self._refuse(err, scope, receive, send, target=target, caller=caller)
            return
        state["principal"] = caller.principal
        state["caller"] = caller
        if self.audit is not None and self.sign_ins.first(caller.principal.id):
            await run_in_threadpool(
                audit_events.record, self.audit, caller.principal, "auth.sign_in", f"principal:{caller.principal.id}",
                {"roles": list(caller.principal.roles), "twins": caller.twins, "address": address})
        with audit_events.bind(self.audit, caller.principal):
            await self.app(scope, receive, send)

    def _identify(self, scope: Scope, method: str, state: dict[str, Any]) -> Caller:
        """The caller of a request: its bearer credential or, without one, its dashboard session cookie (then a
        change needs the session's ``X-CSRF-Token``; the session goes on ``request.state.session``)."""
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        secret = cookie_secret(headers.get("cookie")) if authorization is None else None
        if secret is None:
            return self.authenticator.authenticate(authorization)
        caller, session = self.authenticator.session(secret)
        if method in UNSAFE:
            check_csrf(session, headers.get(CSRF_HEADER))
        state["session"] = session
        return caller

    async def _refuse(self, err: TvillingError, scope: Scope, receive: Receive, send: Send, *,
                      target: Target | None = None, caller: Caller | None = None) -> None:
        quiet = err.fields.get("rule") == "missing_credential" and not self.anonymous.first(_client(scope))
        if self.audit is not None and target is not None and not isinstance(err, RateLimited) and not quiet:
            # the route and the reason, never the body or the credential (429s are not audited one by one)
            detail = {"status": err.status, "rule": err.fields.get("rule"), "reason": err.message[:300],
                      "path": _route_path(scope)[:256], "address": _client(scope)}
            await run_in_threadpool(
                audit_events.record, self.audit, ANONYMOUS if caller is None else caller.principal,
                "auth.sign_in" if isinstance(err, Unauthorized) else "http.forbidden",
                f"route:{target.method} {target.path}", detail, "refused",
                request={"method": target.method, "path": _route_path(scope)})
        response = _refusal(err)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        socket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await socket.send_denial_response(response)
        else:
            await socket.close(code=1008, reason=err.message[:120])


def _document(app: FastAPI) -> None:
    """Declare 401 and 403 on every operation of the OpenAPI document that is not public."""
    generate = app.openapi

    def document() -> dict[str, Any]:
        doc = generate()
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                need = declared(method.upper(), path) if isinstance(operation, dict) else None
                if need is None or not need.public:
                    responses = operation.setdefault("responses", {})
                    for status, response in AUTH_RESPONSES.items():
                        responses.setdefault(str(status), response)
        return doc

    app.openapi = document  # type: ignore[method-assign]


def install(app: FastAPI, settings: Settings, tokens: Any) -> None:
    """With ``settings.auth == "required"``, authenticate and authorise every request of ``app``.

    ``tokens`` is the token store, or a backend (whose ``tokens`` store opens on first use; its ``audit``
    chain records sign-ins and refusals). The rate limits (:mod:`tvilling.security.ratelimit`) are on
    ``app.state.rate_limits``. With auth off nothing is installed but, with the setting ``audit``, a
    middleware that lets the services find the audit chain.
    """
    sink: Appender | None = getattr(tokens, "audit", None) if audit_events.enabled(settings) else None
    if settings.auth != "required":
        if sink is not None:  # audit on without auth: the services' entries find the chain through the request
            app.add_middleware(audit_events.ScopeMiddleware, sink=sink)
        return
    store: Callable[[], TokenStore] = (lambda: tokens.tokens) if hasattr(tokens, "tokens") else (lambda: tokens)
    sessions = (lambda: tokens.sessions) if hasattr(tokens, "sessions") else None
    authenticator = Authenticator.from_settings(settings, store, sessions)
    limits = RateLimits.from_settings(settings)
    app.add_middleware(AuthMiddleware, routes=RouteTable(app), authenticator=authenticator, limits=limits,
                       audit=sink)
    app.state.rate_limits = limits
    _document(app)
    app.state.auth_required = True


__all__ = ["AUTH_RESPONSES", "AuthMiddleware", "RouteTable", "Target", "app_routes", "decide", "install"]
