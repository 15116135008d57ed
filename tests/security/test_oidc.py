"""OidcVerifier against a real OpenID Connect provider (npm oidc-provider) on loopback."""

from __future__ import annotations

import base64
import doctest
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from security.oidc.provider_process import RESOURCE, OidcProvider, SigningKey, free_port, require_provider
from tvilling.core.errors import Invalid, Unauthorized, Unavailable
from tvilling.core.principal import Principal
from tvilling.security import oidc
from tvilling.security.oidc import OidcVerifier, discover


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_provider()
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture
def verifier(provider: OidcProvider) -> OidcVerifier:
    return OidcVerifier(provider.issuer, RESOURCE)


def claims_for(provider: OidcProvider, **changes: Any) -> dict[str, Any]:
    """Claims as the provider would issue them, changed by ``changes`` (a None value drops the claim)."""
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": RESOURCE, "sub": "ops", "iat": now, "exp": now + 300,
              "roles": ["operator"], **changes}
    return {name: value for name, value in claims.items() if value is not None}


def refusal(verifier: OidcVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        verifier.principal(token)
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_token_gives_the_person_and_their_known_roles(provider: OidcProvider, verifier: OidcVerifier) -> None:
    assert verifier.principal(provider.token("ops")) == Principal(
        id="ops", kind="user", roles=("viewer", "operator"), authenticated=True)
    alice = verifier.principal(provider.token("alice"))  # roles as one string; named by sub, not its username
    assert (alice.id, alice.roles) == ("alice", ("engineer", "admin"))
    assert verifier.principal(provider.token("nobody")).roles == ()


def test_roles_from_a_nested_claim(provider: OidcProvider) -> None:
    nested = OidcVerifier(provider.issuer, RESOURCE, roles_claim="realm_access.roles")
    assert nested.principal(provider.token("alice")).roles == ("engineer", "admin")
    assert OidcVerifier(provider.issuer, RESOURCE, roles_claim="groups").principal(provider.token("ops")).roles == ()


def test_a_token_for_another_audience_is_refused(provider: OidcProvider, verifier: OidcVerifier) -> None:
    error = refusal(verifier, provider.token("ops", resource="http://127.0.0.1/other"))
    assert error.fields["rule"] == "wrong_audience"
    assert "wrong audience" in error.message and "http://127.0.0.1/other" in error.message


def test_a_token_from_another_issuer_is_refused(provider: OidcProvider) -> None:
    elsewhere = OidcVerifier(f"{provider.issuer}/elsewhere", RESOURCE, jwks_url=provider.jwks_url)
    error = refusal(elsewhere, provider.token("ops"))
    assert error.fields["rule"] == "wrong_issuer"
    assert provider.issuer in error.message


def test_an_expired_token_is_refused_and_says_since_when(tmp_path: Path) -> None:
    require_provider()
    with OidcProvider(tmp_path, access_ttl_s=1) as short:
        token = short.token("ops")
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        time.sleep(max(0.0, exp - time.time()) + 0.2)
        error = refusal(OidcVerifier(short.issuer, RESOURCE, leeway_s=0), token)
        assert error.fields["rule"] == "expired"
        assert error.message.startswith("token expired ") and " s ago" in error.message
        # within the clock-skew leeway it is still accepted
        assert OidcVerifier(short.issuer, RESOURCE, leeway_s=60).principal(token).id == "ops"


def test_a_token_not_yet_valid_is_refused_beyond_the_leeway(provider: OidcProvider, verifier: OidcVerifier) -> None:
    now = int(time.time())
    error = refusal(verifier, provider.key.sign(claims_for(provider, nbf=now + 180)))
    assert error.fields["rule"] == "not_yet_valid"
    match = re.search(r"not valid for another (\d+) s", error.message)
    assert match is not None and 175 <= int(match.group(1)) <= 180
    assert refusal(verifier, provider.key.sign(claims_for(provider, iat=now + 180))).fields["rule"] == "not_yet_valid"
    assert verifier.principal(provider.key.sign(claims_for(provider, nbf=now + 30))).id == "ops"  # within leeway


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(
        provider: OidcProvider, verifier: OidcVerifier) -> None:
    forged = SigningKey(kid=provider.key.kid).sign(claims_for(provider, roles=["admin"]))
    assert refusal(verifier, forged).fields["rule"] == "bad_signature"


def test_unsigned_symmetric_and_undeclared_algorithms_are_refused(
        provider: OidcProvider, verifier: OidcVerifier) -> None:
    claims = claims_for(provider, roles=["admin"])
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": provider.key.kid})
    assert refusal(verifier, unsigned).fields["rule"] == "algorithm"
    # HS256 with the provider's public key as the HMAC secret (the classic key-confusion forgery)
    public_pem = provider.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.key.kid}).encode()) + "."
                     + b64(json.dumps(claims).encode()))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    error = refusal(verifier, f"{signing_input}.{b64(mac)}")
    assert error.fields["rule"] == "algorithm" and "HS256" in error.message
    # the provider's own key, but with an algorithm its JWKS does not declare for it (RS256 only)
    assert refusal(verifier, provider.key.sign(claims, algorithm="PS256")).fields["rule"] == "algorithm"


def test_missing_subject_and_over_long_names_are_refused(provider: OidcProvider, verifier: OidcVerifier) -> None:
    assert refusal(verifier, provider.key.sign(claims_for(provider, sub=None))).fields["rule"] == "missing_claim"
    long_name = provider.key.sign(claims_for(provider, sub="x" * 200))
    assert refusal(verifier, long_name).fields["rule"] == "malformed"


@pytest.mark.parametrize("garbage", [
    "", "Bearer", "abc", "a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9", "x" * 20_000,
    b64(b"[1, 2]") + "." + b64(b"{}") + ".",
    b64(b'{"alg": "RS256", "kid": 7}') + "." + b64(b"{}") + "." + b64(b"sig"),
    "\u00e9\u00e9.\u00e9\u00e9.\u00e9\u00e9",
])
def test_garbage_is_refused_as_malformed(verifier: OidcVerifier, garbage: str) -> None:
    assert refusal(verifier, garbage).fields["rule"] in {"malformed", "algorithm"}


def test_a_payload_that_is_not_json_is_refused(provider: OidcProvider, verifier: OidcVerifier) -> None:
    signed = jwt.api_jws.encode(b"not json", provider.key.private, algorithm="RS256",
                                headers={"kid": provider.key.kid})
    assert refusal(verifier, signed).fields["rule"] == "malformed"


def test_key_rotation_refetches_the_jwks_and_retires_the_old_key(tmp_path: Path) -> None:
    require_provider()
    with OidcProvider(tmp_path) as rotating:
        verifier = OidcVerifier(rotating.issuer, RESOURCE, refetch_cooldown_s=0.5)
        old = rotating.token("ops")
        assert verifier.principal(old).id == "ops"
        rotating.restart(key=SigningKey())  # the provider now publishes only a new key
        new = rotating.token("alice")
        time.sleep(0.5)  # the cooldown since the first fetch
        assert verifier.principal(new).id == "alice"
        assert rotating.jwks_fetches() == 1  # the new process was asked once, for the unknown kid
        error = refusal(verifier, old)
        assert error.fields["rule"] == "unknown_key"
        # with the provider down, cached keys still verify; an unknown key cannot be fetched
        rotating.stop()
        assert verifier.principal(new).id == "alice"
        time.sleep(0.5)
        with pytest.raises(Unavailable):
            verifier.principal(SigningKey().sign(claims_for(rotating)))


def test_unknown_keys_refetch_at_most_once_per_cooldown(provider: OidcProvider) -> None:
    verifier = OidcVerifier(provider.issuer, RESOURCE, refetch_cooldown_s=1.0)
    before = provider.jwks_fetches()
    verifier.principal(provider.token("ops"))
    time.sleep(1.0)
    stranger = SigningKey()
    for n in range(20):
        forged = stranger.sign(claims_for(provider), kid=f"unknown-{n}")
        assert refusal(verifier, forged).fields["rule"] == "unknown_key"
    assert provider.jwks_fetches() - before == 2  # the first fetch and one refetch for 20 unknown kids


def test_a_provider_that_cannot_be_reached_is_unavailable(provider: OidcProvider) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    verifier = OidcVerifier(nobody, RESOURCE)
    token = provider.key.sign(claims_for(provider, iss=nobody))
    with pytest.raises(Unavailable) as caught:
        verifier.principal(token)
    assert caught.value.fields["rule"] == "provider_unreachable"
    started = time.monotonic()
    with pytest.raises(Unavailable, match="a moment ago"):  # not asked again at once
        verifier.principal(token)
    assert time.monotonic() - started < 0.5
    with pytest.raises(Unavailable):
        discover(nobody)


def test_discovery_names_the_endpoints_for_a_sign_in(provider: OidcProvider) -> None:
    document = discover(provider.issuer)
    assert document["token_endpoint"] == f"{provider.issuer}/token"
    assert document["authorization_endpoint"] == f"{provider.issuer}/auth"
    assert "S256" in document["code_challenge_methods_supported"]
    with pytest.raises(Unavailable, match="says its issuer is"):
        discover(provider.issuer.replace("127.0.0.1", "localhost"))


def test_configuration_is_checked() -> None:
    with pytest.raises(Invalid, match="https"):
        OidcVerifier("http://login.example.com", RESOURCE)
    with pytest.raises(Invalid, match="https"):
        OidcVerifier("https://login.example.com", RESOURCE, jwks_url="file:///etc/passwd")
    with pytest.raises(Invalid):
        OidcVerifier("https://login.example.com", "")


def test_doctests() -> None:
    result = doctest.testmod(oidc)
    assert result.attempted > 0 and result.failed == 0
