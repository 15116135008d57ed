"""Authentication on the HTTP API (auth required): refusals with their reason, the actor only from the
credential, a token's twins scope, the token routes, and auth off behaving as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.models.builtin import builtin_dir
from tvilling.security.tokens import hash_secret, issue, mint

Client = tuple[TestClient, str]
LINE = "dtmi:tvilling:example:ProductionLine;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
BEARING = "dtmi:tvilling:example:Bearing;1"


def plant_documents() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(builtin_dir("plant").glob("*.json"))]


@pytest.fixture
def served() -> Iterator[Client]:
    """An app with auth required, the example plant's models, twins on two lines, and an admin token."""
    app = create_app(Settings(store="memory", auth="required"))
    _, admin = issue(app.state.platform.backend.tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        for line in ("line-1", "line-2"):
            assert client.put(f"/api/twins/{line}", json={"model": LINE}).status_code == 201
            assert client.put(f"/api/twins/{line}-m01", json={"model": MACHINE, "reported": {"state": "running"}}
                              ).status_code == 201
            assert client.put(f"/api/twins/{line}-m01-b1", json={"model": BEARING, "reported": {"temperature": 71.25}}
                              ).status_code == 201
        del client.headers["Authorization"]
        yield client, admin


def _token(client: TestClient, admin: str, **body: str) -> dict:
    r = client.post("/api/tokens", json=body, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.text
    return r.json()


def _as(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_without_a_credential_every_protected_route_is_401_with_the_bearer_challenge(served: Client) -> None:
    client, _ = served
    r = client.get("/api/twins/line-1-m01")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="tvilling"'
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["rule"] == "missing_credential" and "Authorization: Bearer" in r.json()["detail"]
    assert "line-1-m01" not in r.text
    assert client.get("/health").status_code == 200  # public
    assert client.get("/").status_code == 200  # the dashboard's page


@pytest.mark.parametrize(("header", "rule", "reason"), [
    ("Bearer tvl_garbage", "unknown_token", "unknown API token"),
    ("Bearer not-a-jwt-at-all", "no_issuer", "no OpenID Connect issuer"),
    ("Basic YWxpY2U6c2VjcmV0", "malformed_credential", "must be 'Bearer <token>'"),
    ("Bearer", "malformed_credential", "must be 'Bearer <token>'"),
])
def test_a_bad_credential_is_401_with_the_reason(served: Client, header: str, rule: str, reason: str) -> None:
    client, _ = served
    r = client.get("/api/twins/line-1-m01", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json()["rule"] == rule and reason in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith('Bearer realm="tvilling", error="invalid_token"')
    assert "line-1-m01" not in r.text and "71.25" not in r.text


def test_an_expired_token_is_401_saying_it_expired(served: Client) -> None:
    client, _ = served
    now = datetime.now(UTC)
    token, secret = mint("old", "admin", expires=now + timedelta(hours=1), by="test", now=now - timedelta(days=2))
    token = msgspec.structs.replace(token, expires=now - timedelta(seconds=1))  # expired a second ago
    client.app.state.platform.backend.tokens.add(token, hash_secret(secret))  # type: ignore[attr-defined]
    r = client.get("/api/twins/line-1-m01", headers=_as(secret))
    assert r.status_code == 401 and r.json()["rule"] == "expired_token" and "expired" in r.json()["detail"]


def test_a_revoked_token_is_401_saying_it_was_revoked(served: Client) -> None:
    client, admin = served
    made = _token(client, admin, name="ci", role="viewer")
    assert client.get("/api/twins/line-1-m01", headers=_as(made["secret"])).status_code == 200
    r = client.delete(f"/api/tokens/{made['id']}", headers=_as(admin))
    assert r.status_code == 200 and r.json()["revoked"] is not None
    r = client.get("/api/twins/line-1-m01", headers=_as(made["secret"]))
    assert r.status_code == 401 and r.json()["rule"] == "revoked_token" and "revoked" in r.json()["detail"]


def test_the_actor_header_cannot_change_the_actor(served: Client) -> None:
    client, admin = served
    made = _token(client, admin, name="writer", role="engineer")
    r = client.patch("/api/twins/line-1-m01", json={"reported": {"state": "idle"}},
                     headers={**_as(made["secret"]), "X-Tvilling-Actor": "mallory"})
    assert r.status_code == 200, r.text
    events = client.get("/api/twins/line-1-m01/events", headers=_as(admin)).json()
    actors = {e["actor"] for e in (events["items"] if isinstance(events, dict) else events)}
    assert "token:writer" in actors and "mallory" not in actors
    r = client.post("/api/tokens", json={"name": "x", "role": "viewer"},
                    headers={**_as(admin), "X-Tvilling-Actor": "mallory"})
    assert r.json()["created_by"] == "token:admin"


def test_a_token_scoped_to_some_twins_is_403_elsewhere_without_naming_them(served: Client) -> None:
    client, admin = served
    made = _token(client, admin, name="m01", role="operator", twins="line-1-m01*")
    secret = made["secret"]
    assert client.get("/api/twins/line-1-m01", headers=_as(secret)).status_code == 200
    assert client.get("/api/twins/line-1-m01-b1", headers=_as(secret)).json()["reported"]["temperature"] == 71.25
    for method, path in (("GET", "/api/twins/line-2-m01-b1"), ("GET", "/api/twins/line-2-m01-b1/history"),
                         ("POST", "/api/twins/line-2-m01/commands/setSpeed"), ("GET", "/api/twins/line-1")):
        r = client.request(method, path, headers=_as(secret), json={} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["rule"] == "twin_scope"
        assert "line-2" not in r.text and "line-1" not in r.text and "71.25" not in r.text and "m01" not in r.text


def test_a_role_too_low_is_403_naming_what_it_lacks(served: Client) -> None:
    client, admin = served
    viewer = _token(client, admin, name="ro", role="viewer")["secret"]
    r = client.delete("/api/twins/line-1-m01", headers=_as(viewer))
    assert r.status_code == 403 and r.json()["rule"] == "role" and r.json()["needs"] == "write:twins"
    assert client.get("/api/tokens", headers=_as(viewer)).status_code == 403
    assert client.get("/api/twins/line-1-m01", headers=_as(viewer)).status_code == 200


def test_the_token_routes_create_list_and_revoke(served: Client) -> None:
    client, admin = served
    made = _token(client, admin, name="svc", role="engineer", twins="line-1-*", expires="30d")
    assert made["secret"].startswith("tvl_") and made["role"] == "engineer" and made["twins"] == "line-1-*"
    listed = client.get("/api/tokens", headers=_as(admin)).json()["items"]
    assert {t["name"] for t in listed} == {"admin", "svc"}
    assert all("secret" not in t for t in listed) and made["secret"] not in json.dumps(listed)
    again = client.post("/api/tokens", json={"name": "svc", "role": "viewer"}, headers=_as(admin))
    assert again.status_code == 409
    for bad in ({"name": "x", "role": "root"}, {"name": "x", "role": "viewer", "expires": "soon"},
                {"name": "x", "role": "viewer", "extra": 1}, {"role": "viewer"}, ["x"]):
        assert client.post("/api/tokens", json=bad, headers=_as(admin)).status_code == 422, bad
    assert client.delete("/api/tokens/nope", headers=_as(admin)).status_code == 404


def test_the_websocket_stream_refuses_a_caller_without_a_credential(served: Client) -> None:
    client, admin = served
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/api/ws"):
        pass
    assert denied.value.status_code == 401
    viewer = _token(client, admin, name="watcher", role="viewer")["secret"]
    with client.websocket_connect("/api/ws?twins=line-1-m01", headers=_as(viewer)):
        pass


def test_with_auth_off_the_actor_header_names_the_caller_as_before() -> None:
    app = create_app(Settings(store="memory"))
    with TestClient(app) as client:
        r = client.post("/api/tokens", json={"name": "x", "role": "admin"}, headers={"X-Tvilling-Actor": "alice"})
        assert r.status_code == 201 and r.json()["created_by"] == "alice"
        assert client.get("/api/tokens").status_code == 200  # no credential needed
        assert client.get("/api/twins/nope", headers={"Authorization": "Bearer garbage"}).status_code == 404
