"""The browser's attack paths, closed in one place before any route runs.

A page on another site can make the user's browser call this server: post a form, open
a WebSocket or an ``EventSource``, or (DNS rebinding) reach it under a name of its own.
:func:`install` puts one ASGI layer around the whole app that refuses those requests:

- **Host** (400 ``host not allowed``): the ``Host`` header's name (port ignored) must be
  listed in the setting ``allowed_hosts`` (``name``, ``*.domain`` or ``*``), or name the very
  address the connection arrived at (an IP literal cannot be rebound). Unset, the list is
  ``localhost``, ``127.0.0.1``, ``::1`` and the ``host`` setting; a server bound to a wildcard
  address (``0.0.0.0``, ``::``) with no list answers any name, and says so in its log once.
- **Origin** (403): a request that carries ``Origin`` — every browser write, WebSocket and
  ``EventSource`` does — must come from the server's own origin (the Origin's host and port
  are the request's ``Host``) or one listed in ``allowed_origins``. Requests without one
  (curl, scripts, the CLI) are not browser requests and pass.
- **Content type** (415): a POST, PUT, PATCH or DELETE that has a body, or names a
  ``Content-Type``, must name one its route declares (its OpenAPI ``requestBody``; routes that
  declare none take ``application/json``; a PATCH that takes JSON also takes
  ``application/merge-patch+json``). A form post (``text/plain``, urlencoded, multipart) never
  reaches a route; a body-less request without a ``Content-Type`` still does.
- **Headers** on every answer, error pages included: ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY`` (where a route set its own, it
  is kept).

Refusals are problem documents; a refused WebSocket is closed before it is accepted (HTTP 403
from the server, or the problem itself where the server can send a denial response).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from tvilling.api.errors import problem
from tvilling.api.openapi import PROBLEM, PROBLEM_REF, problems
from tvilling.config import Settings
from tvilling.core.errors import Forbidden, Invalid, Malformed, TvillingError

log = logging.getLogger("tvilling.api")

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "", "*"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
#: Sent with every answer unless the route set the header itself.
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("X-Frame-Options", "DENY"))
#: What the OpenAPI document says about the refusals of this module.
REFUSALS: dict[str, dict[str, Any]] = {
    "403": {"description": "Forbidden: a page of another origin (Origin header) may not call this server",
            "content": {PROBLEM: {"schema": PROBLEM_REF}}},
    "415": {"description": "Unsupported media type: the body's Content-Type is not one this operation takes "
            "(the Accept header of the answer lists those it does)", "content": {PROBLEM: {"schema": PROBLEM_REF}}},
}


class UnsupportedMediaType(TvillingError):
    """A request body in a media type the route does not take (a form post where JSON is expected)."""

    status = 415
    title = "Unsupported media type"


def name_of(host: str) -> str | None:
    """The host name of a ``Host`` header or of a listed name, lower case, without brackets, port or final dot;
    None when it is not one.

    >>> name_of("[::1]:8000"), name_of("0:0::1"), name_of("Plant.Example.:443"), name_of("a b")
    ('::1', '::1', 'plant.example', None)
    """
    with contextlib.suppress(ValueError):  # a bare address (an IPv6 one has colons but no port)
        return str(ipaddress.ip_address(host.strip().strip("[]")))
    try:
        parts = urlsplit("//" + host.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return None
    name = (parts.hostname or "").rstrip(".")
    with contextlib.suppress(ValueError):
        name = str(ipaddress.ip_address(name))
    if not name or parts.path or parts.query or parts.fragment or parts.username is not None or " " in name:
        return None
    return name


def origin_of(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an ``Origin`` (``http://a.example:8080``), the scheme's port when it names
    none; None for ``null`` or anything that is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    name = name_of(parts.netloc)
    return None if name is None else (parts.scheme, name, port or DEFAULT_PORTS[parts.scheme])


@dataclass(frozen=True)
class Policy:
    """Which ``Host`` names and which other origins the server answers."""

    hosts: tuple[str, ...] | None  # None: any
    origins: frozenset[tuple[str, str, int]]

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        """The policy the settings describe (``Invalid`` for a listed origin or host that is not one)."""
        origins = set()
        for value in settings.allowed_origins:
            origin = origin_of(value)
            if origin is None:
                raise Invalid(f"allowed_origins: {value!r} is not an origin such as https://plant.example:8443",
                              field="allowed_origins")
            origins.add(origin)
        if settings.allowed_hosts is not None:
            hosts = tuple(_pattern(h) for h in settings.allowed_hosts)
            return cls(None if "*" in hosts else hosts, frozenset(origins))
        bind = settings.host.strip().strip("[]")
        if bind in WILDCARD_BINDS:
            return cls(None, frozenset(origins))
        return cls(tuple(dict.fromkeys((*LOOPBACK, name_of(bind) or bind.lower()))), frozenset(origins))

    def host_allowed(self, host: str, server: Any) -> bool:
        """Whether a request whose ``Host`` header is ``host``, received on ``server`` (the ASGI scope's
        ``(address, port)``), is answered."""
        if self.hosts is None:
            return True
        name = name_of(host)
        if name is None:
            return False
        if isinstance(server, list | tuple) and server and isinstance(server[0], str) and name == name_of(server[0]):
            return True
        return any(name == h or (h.startswith("*.") and name.endswith(h[1:])) for h in self.hosts)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Whether a browser page of ``origin`` may call a server it reached as ``host``: its own origin, or
        one listed."""
        parsed = origin_of(origin)
        if parsed is None:
            return False
        if parsed in self.origins:
            return True
        if host is None:
            return False
        scheme, name, port = parsed
        try:
            asked_port = urlsplit("//" + host.strip()).port
        except ValueError:
            return False
        # a Host without a port was reached on its scheme's port: the Origin's (a TLS proxy in front changes
        # the scheme, not the name)
        return name == name_of(host) and port == (asked_port or DEFAULT_PORTS[scheme])


def _pattern(host: str) -> str:
    value = host.strip().lower()
    if value == "*" or value.startswith("*."):
        return value.rstrip(".")
    name = name_of(value)
    if name is None:
        raise Invalid(f"allowed_hosts: {host!r} is not a host name (or *.domain, or *)", field="allowed_hosts")
    return name


class BodyTypes:
    """The media types each write operation's body may have, as the app's OpenAPI document declares them (its
    ``requestBody``); an operation that declares none, or is not in the document, takes JSON. A JSON PATCH is a
    merge patch (RFC 7396), so it takes ``application/merge-patch+json`` too.

    >>> types = BodyTypes({"paths": {"/api/twins/{twin_id}": {"patch": {"requestBody": {"content": {
    ...     "application/json": {}}}}}}})
    >>> sorted(types.of("PATCH", "/api/twins/B1")), sorted(types.of("POST", "/api/other"))
    (['application/json', 'application/merge-patch+json'], ['application/json'])
    """

    def __init__(self, doc: dict[str, Any]) -> None:
        self.operations: list[tuple[int, str, re.Pattern[str], frozenset[str]]] = []
        for path, item in doc.get("paths", {}).items():
            segments = path.split("/")
            params = sum(1 for seg in segments if seg.startswith("{") and seg.endswith("}"))
            pattern = re.compile("/".join("[^/]+" if seg.startswith("{") and seg.endswith("}") else re.escape(seg)
                                          for seg in segments) + "$")
            for method, op in item.items():
                if method.upper() in WRITES and isinstance(op, dict):
                    content = (op.get("requestBody") or {}).get("content") or {}
                    self.operations.append((params, method.upper(), pattern, frozenset(k.lower() for k in content)))
        self.operations.sort(key=lambda op: op[0])  # /api/alarms/shelves before /api/alarms/{alarm_id}

    def of(self, method: str, path: str) -> frozenset[str]:
        """What a ``method`` request to ``path`` may send."""
        declared = next((types for _, m, pattern, types in self.operations
                         if m == method and pattern.match(path)), frozenset())
        types = declared or frozenset({JSON})
        return types | {MERGE_PATCH} if method == "PATCH" and JSON in types else types


class Guard:
    """The ASGI layer around the whole app (see the module's docstring)."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]], policy: Policy) -> None:
        self.app = app
        self.document = document
        self.policy = policy
        self.body_types: BodyTypes | None = None  # read from the OpenAPI document at the first write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        try:
            self.check(scope)
        except TvillingError as err:
            await _refuse(scope, receive, send, err)
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        """Raise the refusal a request earns, if any."""
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and not self.policy.host_allowed(host, scope.get("server")):
            raise Malformed(f"host not allowed: this server does not answer to the name {host[:100]!r} (DNS "
                            "rebinding protection); list it in the setting allowed_hosts if it should",
                            field="Host", rule="allowed_hosts")
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            raise Forbidden(f"a page of origin {origin[:100]!r} may not call this server (it is not the server's "
                            "own origin); list it in the setting allowed_origins if it should", rule="origin")
        if scope["type"] == "http" and scope["method"] in WRITES:
            self.check_body(scope, headers)

    def check_body(self, scope: Scope, headers: Headers) -> None:
        """415 unless the request's ``Content-Type`` is one its route takes (or it has neither body nor type)."""
        given = headers.get("content-type")
        has_body = headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers
        if given is None and not has_body:
            return
        if self.body_types is None:
            self.body_types = BodyTypes(self.document())
        method = scope["method"]
        types = self.body_types.of(method, scope["path"])
        media = (given or "").split(";", 1)[0].strip().lower()
        if media not in types:
            what = f"Content-Type {given[:100]!r}" if given is not None else "no Content-Type"
            raise UnsupportedMediaType(f"{method} {scope['path'][:200]} takes a body of type "
                                       f"{' or '.join(sorted(types))}; this request has {what} (with curl: "
                                       "--json BODY, or -H 'Content-Type: application/json' -d BODY)",
                                       field="Content-Type", rule="content_type", accepted=sorted(types))


async def _refuse(scope: Scope, receive: Receive, send: Send, err: TvillingError) -> None:
    headers = {"Accept": ", ".join(err.fields["accepted"])} if isinstance(err, UnsupportedMediaType) else None
    if scope["type"] == "http":
        await problem(err, headers)(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(problem(err))
    else:  # closed before it was accepted: the server answers the handshake with 403
        await websocket.close(1008, err.message.encode()[:123].decode(errors="ignore"))


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.http.response.start"):
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS:
                headers.setdefault(name, value)
        await send(message)

    return sending


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the refusals above: 400 and 403 on every operation, 415 on writes."""
    for item in doc.get("paths", {}).values():
        for method, op in item.items():
            if method.upper() not in {"GET", "HEAD", "OPTIONS", "TRACE"} | WRITES:
                continue
            responses = op.setdefault("responses", {})
            responses.setdefault("400", problems(400)[400])
            responses.setdefault("403", REFUSALS["403"])
            if method.upper() in WRITES:
                responses.setdefault("415", REFUSALS["415"])
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    """Guard ``app`` as ``settings`` say (``allowed_hosts``, ``allowed_origins``, ``host``); call it once,
    before the app serves. The guard becomes the outermost layer, so that even the server-error page carries
    the headers and nothing runs for a refused request."""
    policy = Policy.of(settings)
    if policy.hosts is None and settings.allowed_hosts is None:
        log.warning("serving on the wildcard address %s with no allowed_hosts: any Host name is answered, so "
                    "pages on other sites can reach this server by DNS rebinding; set allowed_hosts to the names "
                    "it is reached by", settings.host)
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: Guard(build(), app.openapi, policy)  # type: ignore[method-assign]
    generate = app.openapi
    app.openapi = lambda: document(generate())  # type: ignore[method-assign]
