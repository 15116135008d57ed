"""The dashboard's sign-in: OpenID Connect authorisation code flow with PKCE, a server-side session.

The backend-for-frontend pattern: the browser never holds a token from the provider.

* ``GET /auth/login`` sends the browser (302) to the provider's authorization endpoint (from its
  discovery document) with ``response_type=code``, a PKCE ``code_challenge`` (S256), a ``state`` and a
  ``nonce``. Those, and the PKCE verifier, stay on the server (one use, :data:`LOGIN_TTL_S`); a short
  ``tvilling_login`` cookie binds the state to this browser, so that nobody can finish a sign-in they
  started in someone else's browser.
* ``GET /auth/callback`` checks the state, exchanges the code at the token endpoint (with the
  verifier; with HTTP Basic when ``oidc_client_secret`` is set), verifies the ID token with
  :class:`~tvilling.security.oidc.OidcVerifier` (issuer, audience = the client id, times, signature,
  and the nonce), takes the roles from it (and from the access token, when that is a JWT for the API's
  audience naming the same person), opens a :class:`~tvilling.security.sessions.Session`, sets the
  ``tvilling_session`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure over https) and sends the
  browser to ``/``. A person the provider gives no Tvilling role gets 403 and no session.
* ``GET /auth/session``: who is signed in, and the CSRF token the dashboard sends with every change
  (``X-CSRF-Token``); 401 without a session. With auth off: ``{"auth": "off"}``.
* ``POST /auth/logout`` ends the cookie's session and clears the cookie.

Sign-ins and sign-outs are audited (``auth.sign_in``, ``auth.sign_out``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tvilling.api.openapi import PROBLEM, PROBLEM_REF, problems
from tvilling.config import Settings
from tvilling.core.errors import Forbidden, Invalid, Malformed, NotFound, TvillingError, Unauthorized, Unavailable
from tvilling.core.principal import Principal
from tvilling.security import audit_events
from tvilling.security.oidc import OidcVerifier, _check_url, discover, roles_in
from tvilling.security.sessions import COOKIE, Session, cookie_secret, hash_secret, open_session

log = logging.getLogger("tvilling.api.auth")
router = APIRouter(tags=["security"])

LOGIN_COOKIE = "tvilling_login"
LOGIN_TTL_S = 600
MAX_PENDING = 10_000
METADATA_TTL_S = 3600.0
MAX_TOKEN_RESPONSE = 256 * 1024
TIMEOUT_S = 10.0


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": PROBLEM_REF}}}


_REDIRECT: dict[int | str, dict[str, Any]] = {302: {"description": "Found: the browser goes on to the Location"}}
ANONYMOUS = Principal(id="anonymous", kind="user")
_NOT_CONFIGURED = "Not found: sign-in is not configured (auth off, or no oidc_issuer / oidc_client_id)"


@dataclass(frozen=True, slots=True)
class Pending:
    """A sign-in under way: what the callback needs, kept on the server."""

    state: str
    nonce: str
    verifier: str
    redirect_url: str
    started: float


def _challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class SignIn:
    """The server's side of the sign-in for one app: the provider's metadata, sign-ins under way, verifiers."""

    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise NotFound("sign-in is not configured: set oidc_issuer and oidc_client_id", rule="not_configured")
        self.settings = settings
        self.issuer: str = settings.oidc_issuer
        self.client_id: str = settings.oidc_client_id
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self.id_tokens = OidcVerifier(self.issuer, self.client_id, jwks_url=settings.oidc_jwks_url,
                                      roles_claim=settings.oidc_roles_claim)
        self.access_tokens = (OidcVerifier(self.issuer, settings.oidc_audience, jwks_url=settings.oidc_jwks_url,
                                           roles_claim=settings.oidc_roles_claim) if settings.oidc_audience else None)

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for an hour); ``Unavailable`` when it lacks the endpoints."""
        now = time.monotonic()
        if self._metadata is None or now - self._metadata_at > METADATA_TTL_S:
            document = discover(self.issuer, timeout_s=TIMEOUT_S)
            for name in ("authorization_endpoint", "token_endpoint"):
                if not isinstance(document.get(name), str):
                    raise Unavailable(f"the OpenID Connect provider publishes no {name}", rule="provider_invalid")
                _check_url(document[name], name)
            methods = document.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise Unavailable("the OpenID Connect provider does not support PKCE with S256",
                                  rule="provider_invalid")
            self._metadata, self._metadata_at = document, now
        return self._metadata

    def begin(self, redirect_url: str) -> tuple[str, Pending]:
        """The provider's authorization URL for a new sign-in, and the sign-in (kept until the callback)."""
        endpoint = str(self.metadata()["authorization_endpoint"])
        pending = Pending(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                          verifier=secrets.token_urlsafe(64), redirect_url=redirect_url, started=time.monotonic())
        with self._lock:
            self._drop_stale(pending.started)
            if len(self._pending) >= MAX_PENDING:
                raise Unavailable("too many sign-ins under way; try again in a few minutes", rule="busy")
            self._pending[pending.state] = pending
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_url,
                           "scope": self.settings.oidc_scope, "state": pending.state, "nonce": pending.nonce,
                           "code_challenge": _challenge(pending.verifier), "code_challenge_method": "S256"})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending

    def _drop_stale(self, now: float) -> None:
        for state in [s for s, p in self._pending.items() if now - p.started > LOGIN_TTL_S]:
            del self._pending[state]

    def take(self, state: str) -> Pending:
        """The sign-in ``state`` names, removed (one use); ``Invalid`` when unknown, used or too old."""
        with self._lock:
            self._drop_stale(time.monotonic())
            pending = self._pending.pop(state, None)
        if pending is None:
            raise Invalid("this sign-in is unknown, was already used or took longer than 10 minutes: sign in again",
                          field="state", rule="state")
        return pending

    def exchange(self, pending: Pending, code: str) -> dict[str, Any]:
        """The provider's tokens for ``code`` (token endpoint, PKCE verifier); ``Unauthorized`` when refused."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_url,
                "code_verifier": pending.verifier}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        secret = self.settings.oidc_client_secret
        if secret:  # client_secret_basic: id and secret form-encoded, then Base64 (RFC 6749 section 2.3.1)
            pair = f"{quote(self.client_id, safe='')}:{quote(secret, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = self.client_id
        url = str(self.metadata()["token_endpoint"])
        request = urllib.request.Request(url, data=urlencode(form).encode(), headers=headers, method="POST")
        try:
            with urllib.request.build_opener(_NoRedirect()).open(request, timeout=TIMEOUT_S) as response:
                body = response.read(MAX_TOKEN_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            answer = _json(exc.read(MAX_TOKEN_RESPONSE))
            reason = ": ".join(str(answer[k])[:200] for k in ("error", "error_description") if k in answer)
            raise Unauthorized(f"the OpenID Connect provider refused the sign-in ({exc.code}{': ' if reason else ''}"
                               f"{reason})", rule="code_refused") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise Unavailable(f"the OpenID Connect provider cannot be reached at {url}: {exc}",
                              rule="provider_unreachable") from None
        tokens = _json(body) if len(body) <= MAX_TOKEN_RESPONSE else {}
        if not isinstance(tokens.get("id_token"), str):
            raise Unauthorized("the OpenID Connect provider sent no ID token (is 'openid' in oidc_scope?)",
                               rule="no_id_token")
        return tokens

    def principal(self, tokens: dict[str, Any], pending: Pending) -> Principal:
        """The person the (verified) ID token names, with its roles; ``Unauthorized`` when it does not verify."""
        claims = self.id_tokens.claims(str(tokens["id_token"]))
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise Unauthorized("the ID token's nonce is not this sign-in's", rule="nonce")
        roles = set(roles_in(claims, self.settings.oidc_roles_claim))
        access = tokens.get("access_token")
        if self.access_tokens is not None and isinstance(access, str) and access.count(".") == 2:
            try:
                more = self.access_tokens.claims(access)
            except Unauthorized as exc:  # an access token for another audience (userinfo): roles from the ID token
                log.debug("the sign-in's access token is not one for this API: %s", exc.message)
            else:
                if more.get("sub") == claims["sub"]:
                    roles |= set(roles_in(more, self.settings.oidc_roles_claim))
        try:
            return Principal(id=str(claims["sub"]), kind="user", authenticated=True,
                             roles=tuple(r for r in ("viewer", "operator", "engineer", "admin") if r in roles))
        except ValueError as exc:
            raise Unauthorized(f"the ID token's subject cannot name a person here: {exc}", rule="malformed") from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.platform.settings
    return settings


def _signin(request: Request) -> SignIn:
    """The app's :class:`SignIn`; ``NotFound`` when auth is off or sign-in is not configured."""
    settings = _settings(request)
    if settings.auth != "required":
        raise NotFound("sign-in is off: this server runs with auth off", rule="auth_off")
    found: SignIn | None = getattr(request.app.state, "signin", None)
    if found is None:
        found = SignIn(settings)
        request.app.state.signin = found
    return found


def _https(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or (settings.oidc_redirect_url or "").startswith("https:")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/auth/login", status_code=302, response_class=RedirectResponse, summary="Sign in (OpenID Connect)",
            responses={**_REDIRECT, 404: _problem(_NOT_CONFIGURED), **problems(422, 503)})
async def login(request: Request) -> Response:
    signin = _signin(request)
    settings = _settings(request)
    redirect_url = settings.oidc_redirect_url or str(request.url_for("auth_callback"))
    url, pending = await run_in_threadpool(signin.begin, redirect_url)
    response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    response.set_cookie(LOGIN_COOKIE, pending.state, max_age=LOGIN_TTL_S, path="/auth/callback", httponly=True,
                        samesite="lax", secure=_https(request, settings))  # lax: the provider sends the browser back
    return response


@router.get("/auth/callback", name="auth_callback", status_code=302, response_class=RedirectResponse,
            summary="Where the provider sends the browser back after the sign-in",
            responses={**_REDIRECT, 400: problems(400)[400], 401: _problem(
                "Unauthorized: the provider refused the sign-in, or its ID token does not verify"),
                403: _problem("Forbidden: the provider gives this person no Tvilling role"),
                404: _problem(_NOT_CONFIGURED), **problems(422, 503)})
async def callback(request: Request, code: str | None = None, state: str | None = None, error: str | None = None,
                   error_description: str | None = None) -> Response:
    signin = _signin(request)
    if not state:
        raise Malformed("the callback has no state: start the sign-in at /auth/login", field="state", rule="required")
    pending = signin.take(state)
    bound = request.cookies.get(LOGIN_COOKIE) or ""
    if not hmac.compare_digest(bound.encode(), state.encode()):
        raise Invalid("this sign-in was not started in this browser: start it again at /auth/login",
                      field="state", rule="browser")
    if error:
        raise Unauthorized(f"the OpenID Connect provider did not sign you in: {error[:100]}"
                           f"{': ' + error_description[:300] if error_description else ''}", rule="provider_refused")
    if not code:
        raise Malformed("the callback has no code", field="code", rule="required")
    try:
        tokens = await run_in_threadpool(signin.exchange, pending, code)
        person = await run_in_threadpool(signin.principal, tokens, pending)
        if not person.roles:
            raise Forbidden(f"{person.id} is signed in at the provider but has no Tvilling role (viewer, operator, "
                            "engineer or admin): ask an administrator for one", rule="no_role")
    except TvillingError as err:
        await run_in_threadpool(audit_events.record, request.app.state.platform, ANONYMOUS,
                                "auth.sign_in", "session", {"method": "oidc", "rule": err.fields.get("rule"),
                                                            "reason": err.message[:300], "address": _address(request)},
                                "refused")
        raise
    settings = _settings(request)
    now = datetime.now(UTC)
    session, secret = open_session(person, now=now, hours=settings.session_hours)
    store = request.app.state.platform.backend.sessions

    def keep() -> None:
        store.purge(now)
        store.add(session, hash_secret(secret))

    await run_in_threadpool(keep)
    await run_in_threadpool(audit_events.record, request.app.state.platform, person, "auth.sign_in",
                            f"principal:{person.id}", {"method": "oidc", "session": session.id,
                                                       "roles": list(person.roles), "address": _address(request)})
    response = RedirectResponse("/", status_code=302, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, secret, max_age=int(settings.session_hours * 3600), path="/", httponly=True,
                        samesite="strict", secure=_https(request, settings))
    response.delete_cookie(LOGIN_COOKIE, path="/auth/callback")
    return response


@router.get("/auth/session", summary="Who is signed in, and the CSRF token for changes sent with the session cookie")
async def current_session(request: Request) -> JSONResponse:
    if _settings(request).auth != "required":
        return JSONResponse({"auth": "off"})
    session: Session | None = getattr(request.state, "session", None)
    if session is not None:
        body: dict[str, Any] = {"auth": "required", **session.public()}
    else:  # a bearer credential (API token, JWT): no session, no CSRF token
        principal: Principal = request.state.principal
        body = {"auth": "required", "principal": {"id": principal.id, "kind": principal.kind,
                                                  "roles": list(principal.roles)}, "csrf_token": None}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/auth/logout", summary="Sign out: end the session of the cookie and clear the cookie")
async def logout(request: Request) -> JSONResponse:
    if _settings(request).auth != "required":
        return JSONResponse({"auth": "off", "signed_out": False})
    session: Session | None = getattr(request.state, "session", None)
    secret = cookie_secret(request.headers.get("cookie"))
    ended = False
    if session is not None and secret is not None:
        ended = await run_in_threadpool(request.app.state.platform.backend.sessions.delete, secret)
        await run_in_threadpool(audit_events.record, request.app.state.platform, session.principal(),
                                "auth.sign_out", f"principal:{session.principal_id}",
                                {"session": session.id, "address": _address(request)})
    response = JSONResponse({"auth": "required", "signed_out": ended}, headers={"Cache-Control": "no-store"})
    if session is not None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=_https(request, _settings(request)))
    return response


__all__ = ["LOGIN_COOKIE", "Pending", "SignIn", "router"]
