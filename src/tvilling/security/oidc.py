"""People sign in with OpenID Connect: bearer JWTs checked against the provider's published keys.

:class:`OidcVerifier` turns an access token issued by an OpenID Connect provider (Keycloak, Entra ID,
Auth0, ``oidc-provider``…) into a :class:`~tvilling.core.principal.Principal`. It checks, with PyJWT:

- the signature, with a key from the provider's JWKS (found through discovery unless ``jwks_url`` is
  given) and only with an asymmetric algorithm that key allows (never ``none``, never ``HS*``);
- ``iss`` (exactly the configured issuer), ``aud`` (the configured audience), ``exp``, ``nbf`` and ``iat``
  with ``leeway_s`` of clock skew.

The JWKS is cached for ``lifespan_s``. A token naming a key that is not in the cache (the provider rotated
its keys) fetches the JWKS again, at most once every ``refetch_cooldown_s``, so that garbage tokens cannot
make Tvilling hammer the provider.

Every refusal is :class:`~tvilling.core.errors.Unauthorized` with a reason a person can act on and a
``rule`` field (``expired``, ``not_yet_valid``, ``wrong_audience``, ``wrong_issuer``, ``unknown_key``,
``bad_signature``, ``algorithm``, ``missing_claim``, ``malformed``); a provider that cannot be reached is
:class:`~tvilling.core.errors.Unavailable`. :meth:`OidcVerifier.principal` may block on the network when
it (re)fetches keys: call it from a worker thread in async code.

>>> verifier = OidcVerifier("https://login.example.com/realms/plant", "tvilling")
>>> roles_in({"realm_access": {"roles": ["operator", "offline_access"]}}, "realm_access.roles")
('operator',)
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient

from tvilling.core.errors import Invalid, Unauthorized, Unavailable
from tvilling.core.principal import MAX_ID, Principal

log = logging.getLogger("tvilling.security.oidc")

ROLES = ("viewer", "operator", "engineer", "admin")
"""The roles Tvilling knows, least to most; any other role in a token is ignored."""

_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ASYMMETRIC = _RSA | frozenset(_EC_CURVES.values()) | {"EdDSA"}
"""The only signing algorithms a token may use."""

MAX_TOKEN = 16 * 1024
MAX_DOCUMENT = 1024 * 1024
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")


def _check_url(url: str, what: str) -> str:
    """``url`` if it is https, or http on a loopback address (tests, a provider on the same host)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise Invalid(f"the OpenID Connect {what} must be an https URL (http only on loopback): {url!r}",
                  field=what, rule="https")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: the provider's documents are read only where the issuer says."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    """GET ``url`` and return its JSON object; :class:`Unavailable` when that fails."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.build_opener(_NoRedirect()).open(request, timeout=timeout_s) as response:
            body = response.read(MAX_DOCUMENT + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise Unavailable(f"the OpenID Connect provider cannot be reached at {url}: {exc}",
                          rule="provider_unreachable") from None
    try:
        document = json.loads(body) if len(body) <= MAX_DOCUMENT else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise Unavailable(f"the OpenID Connect provider answered {url} with something other than a JSON object",
                          rule="provider_invalid")
    return document


def discover(issuer: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """The provider's metadata from ``{issuer}/.well-known/openid-configuration``.

    It names, among others, ``jwks_uri``, ``authorization_endpoint`` and ``token_endpoint`` (what the
    dashboard's sign-in with PKCE needs). The document must state exactly ``issuer`` as its issuer (as
    OpenID Connect Discovery requires); anything else is :class:`Unavailable`, as is a provider that
    cannot be reached.
    """
    _check_url(issuer, "issuer")
    document = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout_s)
    if document.get("issuer") != issuer:
        raise Unavailable(f"the OpenID Connect provider at {issuer} says its issuer is {document.get('issuer')!r}: "
                          "set the configured issuer to exactly that", rule="provider_invalid")
    if not isinstance(document.get("jwks_uri"), str):
        raise Unavailable(f"the OpenID Connect provider at {issuer} publishes no jwks_uri", rule="provider_invalid")
    return document


def roles_in(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """The known roles named by ``claim`` in ``claims``, least to most.

    ``claim`` is a top-level claim (``roles``, or a namespaced one such as ``https://example.com/roles``)
    or a dotted path into nested objects (``realm_access.roles``). Its value is a list of names or a
    space-separated string; unknown names are ignored.

    >>> roles_in({"roles": "admin viewer superuser"}, "roles")
    ('viewer', 'admin')
    """
    value: Any = claims.get(claim)
    if value is None and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        names = set(value.split())
    elif isinstance(value, list):
        names = {name for name in value if isinstance(name, str)}
    else:
        names = set()
    return tuple(role for role in ROLES if role in names)


def _refuse(rule: str, message: str) -> Unauthorized:
    return Unauthorized(message, rule=rule)


def _principal(claims: dict[str, Any], roles_claim: str) -> Principal:
    """The person ``claims`` describe, named by ``sub``: the one name an issuer keeps unique and stable
    (``preferred_username`` and ``email`` can be changed, reused or claimed by someone else)."""
    value = claims.get("sub")
    if not isinstance(value, str) or not value.strip():
        raise _refuse("missing_claim", "the token names nobody (no sub)")
    if len(value) > MAX_ID:
        raise _refuse("malformed", f"the token's sub is longer than {MAX_ID} characters")
    return Principal(id=value, kind="user", roles=roles_in(claims, roles_claim), authenticated=True)


def _unverified(token: str) -> dict[str, Any]:
    """The claims of ``token`` without any check (to explain a refusal), or {} when they cannot be read."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _seconds(value: Any) -> float:
    """A time claim as seconds since the epoch (0 when it is not a number: only used to explain)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class _Key:
    """One of the provider's public signing keys and the algorithms it may be used with."""

    kid: str | None
    jwk: PyJWK
    algorithms: frozenset[str]


def _key(data: Any) -> _Key | None:
    """``data`` (one JWKS entry) as a signing key, or None when it is not an asymmetric signing key."""
    if not isinstance(data, dict) or data.get("use", "sig") != "sig":
        return None
    kty, declared = data.get("kty"), data.get("alg")
    if kty == "RSA":
        family = _RSA
    elif kty == "EC" and data.get("crv") in _EC_CURVES:
        family = frozenset({_EC_CURVES[data["crv"]]})
    elif kty == "OKP" and data.get("crv") == "Ed25519":
        family = frozenset({"EdDSA"})
    else:
        return None
    algorithms = family & {declared} if declared is not None else family
    if not algorithms:
        return None
    try:
        jwk = PyJWK.from_dict(data, algorithm=min(algorithms))
    except jwt.PyJWTError:
        return None
    kid = data.get("kid")
    return _Key(kid if isinstance(kid, str) else None, jwk, algorithms)


class OidcVerifier:
    """Checks bearer JWTs from one OpenID Connect provider for one audience (see the module docstring)."""

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None, roles_claim: str = "roles",
                 leeway_s: float = 60.0, lifespan_s: float = 300.0, refetch_cooldown_s: float = 10.0,
                 timeout_s: float = 5.0) -> None:
        if not audience:
            raise Invalid("the OpenID Connect audience must not be empty", field="audience", rule="required")
        self.issuer = _check_url(issuer, "issuer")
        self.audience = audience
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s
        self._jwks_url = _check_url(jwks_url, "jwks_url") if jwks_url else None
        self._lifespan_s = lifespan_s
        self._cooldown_s = refetch_cooldown_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._keys: list[_Key] | None = None
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")

    def principal(self, token: str) -> Principal:
        """The person ``token`` signs in; :class:`Unauthorized` (with the reason) when it is not valid."""
        return _principal(self.claims(token), self.roles_claim)

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature, issuer, audience and times have been checked."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise _refuse("malformed", f"the bearer token is empty or longer than {MAX_TOKEN} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("malformed", "the bearer token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASYMMETRIC:
            raise _refuse("algorithm", f"the token's signing algorithm {alg!r} is not accepted "
                          "(only the provider's asymmetric ones)")
        if kid is not None and not isinstance(kid, str):
            raise _refuse("malformed", "the token's key id (kid) is not a string")
        key = self._signing_key(kid)
        if alg not in key.algorithms:
            raise _refuse("algorithm", f"the provider's key {kid!r} is not used with {alg}")
        try:
            return jwt.decode(token, key.jwk.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                              leeway=self.leeway_s, options={"require": list(REQUIRED_CLAIMS)})
        except jwt.PyJWTError as exc:
            raise self._refusal(exc, token) from None

    def _refusal(self, exc: jwt.PyJWTError, token: str) -> Unauthorized:
        """The :class:`Unauthorized` that explains why PyJWT refused ``token`` (its signature was checked)."""
        if isinstance(exc, jwt.InvalidSignatureError):
            return _refuse("bad_signature", "the token's signature does not match the provider's key")
        claims = _unverified(token)
        now = time.time()
        if isinstance(exc, jwt.ExpiredSignatureError):
            return _refuse("expired", f"token expired {now - _seconds(claims.get('exp')):.0f} s ago: sign in again")
        if isinstance(exc, jwt.ImmatureSignatureError):
            start = max(_seconds(claims.get(name)) for name in ("nbf", "iat"))
            return _refuse("not_yet_valid", f"token not valid for another {start - now:.0f} s "
                           "(check the clocks of this server and of the provider)")
        if isinstance(exc, jwt.InvalidAudienceError):
            return _refuse("wrong_audience", f"wrong audience: the token is for {claims.get('aud')!r}, "
                           f"not {self.audience!r}")
        if isinstance(exc, jwt.InvalidIssuerError):
            return _refuse("wrong_issuer", f"wrong issuer: the token is from {claims.get('iss')!r}, "
                           f"not {self.issuer!r}")
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return _refuse("missing_claim", f"the token has no {exc.claim!r} claim")
        return _refuse("malformed", f"the token is malformed: {exc}")

    def _signing_key(self, kid: str | None) -> _Key:
        """The provider's key ``kid``, fetching the JWKS when stale or when ``kid`` is new (rate-limited)."""
        with self._lock:
            now = time.monotonic()
            if self._keys is None or now - self._fetched_at >= self._lifespan_s:
                if self._throttled(now):
                    raise Unavailable("the OpenID Connect provider could not be reached a moment ago; retrying "
                                      f"in {self._cooldown_s - (now - self._tried_at):.0f} s",
                                      rule="provider_unreachable")
                self._refresh(now)
            key = self._match(kid)
            if key is None and now - self._fetched_at >= self._cooldown_s and not self._throttled(now):
                self._refresh(now)
                key = self._match(kid)
        if key is None:
            raise _refuse("unknown_key", f"unknown signing key {kid!r}: the provider does not publish it "
                          "(a token from another provider, or a key it has retired)")
        return key

    def _throttled(self, now: float) -> bool:
        """Whether the last try to fetch the keys failed less than a cooldown ago."""
        return self._tried_at > self._fetched_at and now - self._tried_at < self._cooldown_s

    def _match(self, kid: str | None) -> _Key | None:
        keys = self._keys or []
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((key for key in keys if key.kid == kid), None)

    def _refresh(self, now: float) -> None:
        """Fetch the JWKS (and its URL by discovery the first time); :class:`Unavailable` when that fails."""
        self._tried_at = now
        if self._jwks_url is None:
            self._jwks_url = _check_url(discover(self.issuer, timeout_s=self._timeout_s)["jwks_uri"], "jwks_url")
        try:
            data = PyJWKClient(self._jwks_url, cache_jwk_set=False, timeout=self._timeout_s).fetch_data()
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable(f"the OpenID Connect provider's keys cannot be fetched from {self._jwks_url}: {exc}",
                              rule="provider_unreachable") from None
        except jwt.PyJWTError as exc:
            raise Unavailable(f"the OpenID Connect provider's JWKS at {self._jwks_url} is not usable: {exc}",
                              rule="provider_invalid") from None
        entries = data.get("keys") if isinstance(data, dict) else None
        keys = [key for key in map(_key, entries if isinstance(entries, list) else []) if key is not None]
        if not keys:
            raise Unavailable(f"the OpenID Connect provider's JWKS at {self._jwks_url} has no signing key "
                              "Tvilling accepts", rule="provider_invalid")
        log.info("fetched %d signing key(s) from %s", len(keys), self._jwks_url)
        self._keys, self._fetched_at = keys, now
