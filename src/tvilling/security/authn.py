"""Authentication: who a request's ``Authorization: Bearer …`` credential (or dashboard session) names.

An API token (``tvl_…``) is looked up by its hash; an expired, revoked or unknown one is
:class:`~tvilling.core.errors.Unauthorized` with the reason. Its caller is a ``service`` principal
``token:<name>`` with the token's role, limited to the twins its pattern covers. Any other bearer
credential is an OpenID Connect JWT, verified by :class:`tvilling.security.oidc.OidcVerifier` when an
issuer is configured (else ``Unauthorized``: no issuer configured). A dashboard session cookie
(:mod:`tvilling.security.sessions`) names the person who signed in: :meth:`Authenticator.session`.

>>> from datetime import UTC, datetime
>>> from tvilling.backend.tokens import MemoryTokens
>>> from tvilling.security.tokens import hash_secret, mint
>>> store = MemoryTokens()
>>> token, secret = mint("ci", "operator", twins="line-1-*", by="alice", now=datetime.now(UTC))
>>> store.add(token, hash_secret(secret))
>>> caller = Authenticator(store).authenticate(f"Bearer {secret}")
>>> caller.principal.id, caller.principal.roles, caller.covers("line-2-m01")
('token:ci', ('operator',), False)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Invalid, TvillingError, Unauthorized
from tvilling.core.principal import Principal
from tvilling.security import sessions as dashboard_sessions
from tvilling.security.tokens import is_token, usable

if TYPE_CHECKING:
    from tvilling.backend.sessions import SessionStore
    from tvilling.backend.tokens import TokenStore
    from tvilling.config import Settings

MAX_CREDENTIAL = 16_384
TOUCH_EVERY = timedelta(seconds=60)
SCHEME = "bearer"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: its principal, and the twins it may address (a glob; ``*`` for all)."""

    principal: Principal
    twins: str = "*"

    def covers(self, twin_id: str) -> bool:
        """Whether the caller may address the twin ``twin_id``."""
        return self.twins == "*" or fnmatchcase(twin_id, self.twins)


def bearer(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer …`` header; ``Unauthorized`` when absent or malformed."""
    if authorization is None or not authorization.strip():
        raise Unauthorized("a credential is required: send 'Authorization: Bearer <API token or OpenID Connect "
                           "access token>'", rule="missing_credential")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != SCHEME or not credential or " " in credential:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", rule="malformed_credential")
    if len(credential) > MAX_CREDENTIAL:
        raise Unauthorized(f"the bearer credential is longer than {MAX_CREDENTIAL} characters",
                           rule="malformed_credential")
    return credential


class Authenticator:
    """Turns bearer credentials into callers: API tokens from ``tokens``, JWTs from an OpenID Connect issuer.

    ``tokens`` is the token store, or a function returning it (so that the store opens on first use).
    """

    def __init__(self, tokens: TokenStore | Callable[[], TokenStore], *, issuer: str | None = None,
                 audience: str | None = None, jwks_url: str | None = None, roles_claim: str = "roles",
                 sessions: SessionStore | Callable[[], SessionStore] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if issuer and not audience:
            raise Invalid("an OpenID Connect issuer needs an audience: set oidc_audience (TVILLING_OIDC_AUDIENCE)",
                          field="oidc_audience", rule="required")
        self._tokens = tokens
        self._sessions = sessions
        self._issuer, self._audience, self._jwks_url, self._roles_claim = issuer, audience, jwks_url, roles_claim
        self._clock = clock
        self._verifier: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, tokens: TokenStore | Callable[[], TokenStore],
                      sessions: SessionStore | Callable[[], SessionStore] | None = None) -> Authenticator:
        """The authenticator the settings describe (``oidc_issuer``, ``oidc_audience``…)."""
        return cls(tokens, issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                   jwks_url=settings.oidc_jwks_url, roles_claim=settings.oidc_roles_claim, sessions=sessions)

    def _store(self) -> TokenStore:
        return self._tokens() if callable(self._tokens) else self._tokens

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller the ``Authorization`` header value names; ``Unauthorized`` with the reason otherwise."""
        credential = bearer(authorization)
        if is_token(credential):
            return self._token(credential)
        return Caller(self._oidc(credential))

    def session(self, secret: str) -> tuple[Caller, dashboard_sessions.Session]:
        """The caller a dashboard session cookie's ``secret`` names, and its session; ``Unauthorized`` when the
        session is unknown, ended or expired."""
        if self._sessions is None:
            raise Unauthorized("this server keeps no dashboard sessions: send 'Authorization: Bearer <token>'",
                               rule="session_unknown")
        store = self._sessions() if callable(self._sessions) else self._sessions
        session = dashboard_sessions.usable(store.find(secret), self._clock())
        return Caller(session.principal()), session

    def _token(self, secret: str) -> Caller:
        store = self._store()
        now = self._clock()
        token = usable(store.find(secret), now)
        if token.last_used is None or now - token.last_used >= TOUCH_EVERY:
            store.touch(token.id, at=now)
        principal = Principal(id=f"token:{token.name}", kind="service", roles=(token.role,), authenticated=True)
        return Caller(principal, token.twins)

    def _oidc(self, jwt: str) -> Principal:
        if not self._issuer or not self._audience:
            raise Unauthorized("this bearer credential is not an API token (tvl_...), and no OpenID Connect issuer "
                               "is configured to verify it as a JWT", rule="no_issuer")
        with self._lock:
            if self._verifier is None:
                from tvilling.security.oidc import OidcVerifier

                self._verifier = OidcVerifier(self._issuer, self._audience, jwks_url=self._jwks_url,
                                              roles_claim=self._roles_claim)
            verifier = self._verifier
        try:
            principal: Principal = verifier.principal(jwt)
        except TvillingError:
            raise
        except ValueError as exc:  # a library error the verifier did not translate: still the caller's fault
            raise Unauthorized(f"the bearer JWT cannot be read: {exc}", rule="malformed_credential") from exc
        return principal


__all__ = ["Authenticator", "Caller", "bearer"]
