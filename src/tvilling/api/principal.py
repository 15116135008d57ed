"""Who is calling: the one place the HTTP layer turns a request into a principal.

With ``auth = "required"`` the authentication middleware (:mod:`tvilling.security.http`) has put the
authenticated principal on ``request.state.principal``; that is the caller, and the
``X-Tvilling-Actor`` header is ignored. With ``auth = "off"`` (the embedded demo) a caller is known
only by the name it gives in the ``X-Tvilling-Actor`` header (``api`` when absent), as an
unauthenticated user. Every route that changes something asks here.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from tvilling.core.principal import MAX_ID, Principal

ACTOR_HEADER = "x-tvilling-actor"
ANONYMOUS = Principal(id="anonymous", kind="user")


def principal(request: HTTPConnection) -> Principal:
    """The principal a request (or WebSocket) acts as."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    if getattr(request.app.state, "auth_required", False):  # never the header's word under auth required
        return ANONYMOUS
    name = request.headers.get(ACTOR_HEADER, "").strip()[:MAX_ID] or "api"
    found = Principal.of(name)
    request.state.principal = found
    return found
