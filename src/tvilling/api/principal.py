"""Who is calling: the one place the HTTP layer turns a request into a principal.

Until sign-in exists (the security capability), a caller is known only by the name it
gives in the ``X-Tvilling-Actor`` header (``api`` when absent), as an unauthenticated
user. Every route that changes something asks here, so identity checks will plug in once.
"""

from __future__ import annotations

from starlette.requests import Request

from tvilling.core.principal import MAX_ID, Principal

ACTOR_HEADER = "x-tvilling-actor"


def principal(request: Request) -> Principal:
    """The principal a request acts as."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    name = request.headers.get(ACTOR_HEADER, "").strip()[:MAX_ID] or "api"
    found = Principal.of(name)
    request.state.principal = found
    return found
