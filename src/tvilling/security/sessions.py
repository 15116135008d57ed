"""Dashboard sessions: what a person signed in through OpenID Connect holds instead of a token.

The dashboard follows the backend-for-frontend pattern: the browser never sees a token from the
provider. After the sign-in (:mod:`tvilling.api.auth`) the server keeps a :class:`Session` — the
principal, when it was made and when it expires, and a CSRF token — and the browser gets only the
session's random secret in an HttpOnly cookie. The store keeps the secret's SHA-256 hash, never the
secret (as for API tokens, the secret is high-entropy, so a fast hash is right).

A request that authenticates with the cookie and changes something (POST, PUT, PATCH, DELETE) must
also send the session's CSRF token in the ``X-CSRF-Token`` header (:func:`check_csrf`).

>>> from datetime import UTC, datetime
>>> from tvilling.core.principal import Principal
>>> now = datetime(2026, 3, 2, tzinfo=UTC)
>>> session, secret = open_session(Principal(id="eva", roles=("operator",), authenticated=True), now=now, hours=8)
>>> session.principal().roles, session.expires.hour, len(secret) > 40
(('operator',), 8, True)
>>> check_csrf(session, session.csrf)
>>> check_csrf(session, None)
Traceback (most recent call last):
tvilling.core.errors.Forbidden: a change sent with the session cookie needs the session's X-CSRF-Token header
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import msgspec

from tvilling.core.errors import Forbidden, Invalid, Unauthorized
from tvilling.core.principal import Principal

COOKIE = "tvilling_session"
CSRF_HEADER = "x-csrf-token"
SECRET_BYTES = 32
MAX_SECRET = 256
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in person's session as stored: everything but its secret (of which only the hash is kept)."""

    id: str
    principal_id: str
    kind: str = "user"
    roles: tuple[str, ...] = ()
    created: datetime
    expires: datetime
    csrf: str

    def principal(self) -> Principal:
        """The person the session acts as."""
        return Principal(id=self.principal_id, kind=self.kind, roles=self.roles, authenticated=True)

    def public(self) -> dict[str, object]:
        """What the dashboard may know of its own session (``GET /auth/session``)."""
        return {"principal": {"id": self.principal_id, "kind": self.kind, "roles": list(self.roles)},
                "created": self.created.isoformat(), "expires": self.expires.isoformat(), "csrf_token": self.csrf}


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of a session's secret: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def open_session(principal: Principal, *, now: datetime, hours: float) -> tuple[Session, str]:
    """A new session for ``principal``, valid ``hours`` from ``now``, and its secret (the cookie's value)."""
    if hours <= 0:
        raise Invalid("a session must last more than 0 hours", field="session_hours", rule="positive")
    session = Session(id=secrets.token_hex(8), principal_id=principal.id, kind=principal.kind,
                      roles=tuple(principal.roles), created=now, expires=now + timedelta(hours=hours),
                      csrf=secrets.token_urlsafe(SECRET_BYTES))
    return session, secrets.token_urlsafe(SECRET_BYTES)


def usable(session: Session | None, now: datetime) -> Session:
    """``session`` when it can be used at ``now``; ``Unauthorized`` (sign in again) otherwise."""
    if session is None:
        raise Unauthorized("this session is unknown or has ended: sign in again", rule="session_unknown")
    if session.expires <= now:
        raise Unauthorized(f"this session expired at {session.expires.isoformat()}: sign in again",
                           rule="session_expired")
    return session


def check_csrf(session: Session, header: str | None) -> None:
    """``Forbidden`` unless ``header`` (the request's ``X-CSRF-Token``) is the session's CSRF token."""
    if header is None or not hmac.compare_digest(header.encode("utf-8", "replace"), session.csrf.encode()):
        raise Forbidden("a change sent with the session cookie needs the session's X-CSRF-Token header",
                        rule="csrf")


def cookie_secret(cookie_header: str | None) -> str | None:
    """The session secret in a ``Cookie`` header, or None (none there, or not one this server makes)."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            value = value.strip().strip('"')
            return value if 0 < len(value) <= MAX_SECRET else None
    return None


__all__ = ["COOKIE", "CSRF_HEADER", "UNSAFE", "Session", "check_csrf", "cookie_secret", "hash_secret",
           "open_session", "usable"]
