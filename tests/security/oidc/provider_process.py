"""The real OpenID Connect provider (``provider.mjs``: npm ``oidc-provider``) run on loopback for tests.

Usable from any test (``tests/`` is on ``sys.path``)::

    from security.oidc.provider_process import RESOURCE, OidcProvider, require_provider

    require_provider()
    with OidcProvider(tmp_path) as provider:
        token = provider.token("ops")          # roles operator, viewer (and an unknown one)

Clients (``client_credentials`` grant): ``ops`` (roles ``["operator", "viewer", "superuser"]``), ``alice``
(roles ``"engineer admin"`` as one string, ``preferred_username`` alice) and ``nobody`` (no roles). Their
roles are in the ``roles`` claim and in ``realm_access.roles``.

With ``redirect_uris``, people sign in by the authorisation code flow with PKCE (clients ``dashboard``, public,
and ``dashboard-confidential``, secret ``dashboard-confidential-secret``) through the provider's development
login form (any password) and consent page: ``eva`` is an operator, ``ann`` a viewer, ``erik`` an engineer,
``ada`` an admin, anyone else has no role.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

HERE = Path(__file__).parent
RESOURCE = "http://127.0.0.1/tvilling"
NODE = shutil.which("node")


def missing() -> str | None:
    """Why the provider cannot run here (no node, or ``npm ci`` not run), or None."""
    if NODE is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return f"oidc-provider is not installed: run npm ci --prefix {HERE}"
    return None


def require_provider() -> None:
    """Skip the calling test when the provider cannot run, unless under CI (``CI`` set), where it fails."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() not in {"", "0", "false"}:
        pytest.fail(f"the OpenID Connect provider for the tests is missing under CI: {reason}")
    pytest.skip(f"the OpenID Connect provider for the tests is missing: {reason}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its key id: what the provider signs with, or what a forger has."""

    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        """The private JWK (for the provider's JWKS file)."""
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private))
        return {**data, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any], *, algorithm: str = "RS256", kid: str | None = None) -> str:
        """``claims`` signed with this key (header ``kid`` is this key's unless given)."""
        return jwt.encode(claims, self.private, algorithm=algorithm, headers={"kid": kid or self.kid})


class OidcProvider:
    """``oidc-provider`` on 127.0.0.1 with one signing key; ``start``/``stop``/``restart`` or ``with``."""

    def __init__(self, folder: Path, *, key: SigningKey | None = None, access_ttl_s: int = 300,
                 redirect_uris: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.key = key or SigningKey()
        self.access_ttl_s = access_ttl_s
        self.redirect_uris = redirect_uris
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def start(self) -> OidcProvider:
        """Start it with :attr:`key` and wait until its discovery document answers."""
        assert NODE is not None, missing()
        self.folder.mkdir(parents=True, exist_ok=True)
        jwks = self.folder / "jwks.json"
        jwks.write_text(json.dumps({"keys": [self.key.jwk()]}))
        log = self.folder / "provider.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                [NODE, str(HERE / "provider.mjs"), str(self.port), str(jwks), "--access-ttl", str(self.access_ttl_s),
                 *(arg for uri in self.redirect_uris for arg in ("--redirect-uri", uri))],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the OIDC provider did not answer within 20 s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop it (the port stays this provider's, for :meth:`restart`)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def restart(self, key: SigningKey | None = None) -> None:
        """Stop, then start again on the same port, signing with ``key`` (a rotation) when given."""
        self.stop()
        if key is not None:
            self.key = key
        self.start()

    def token(self, client: str = "ops", resource: str = RESOURCE) -> str:
        """An access token (a JWT for ``resource``) for ``client`` by the client_credentials grant."""
        response = httpx.post(f"{self.issuer}/token", timeout=5, data={
            "grant_type": "client_credentials", "client_id": client, "client_secret": f"{client}-secret",
            "resource": resource, "scope": "api"})
        response.raise_for_status()
        return str(response.json()["access_token"])

    def jwks_fetches(self) -> int:
        """How often the JWKS has been fetched since this process started."""
        return int(httpx.get(f"{self.issuer}/_stats", timeout=5).json()["jwks_fetches"])

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
