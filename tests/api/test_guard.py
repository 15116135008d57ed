"""The browser attack paths of issue 14 item 6, tried as an attacker would, against the app as the lead wires
it (``create_app`` then :func:`tvilling.api.guard.install`): each must be refused before any route runs, and
what the dashboard and scripts send must still work."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from tvilling.api import guard
from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.decisions.commands import CommandService
from tvilling.models.builtin import builtin_documents
from tvilling.runtime import Runtime

MACHINE = "dtmi:tvilling:example:Machine;1"
SEND = "/api/twins/M1/commands/setSpeed"
FORMS = [("text/plain", b'{"request": 3000}'), ("application/x-www-form-urlencoded", b"request=3000"),
         ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="request"\r\n\r\n3000\r\n'
          b"--x--\r\n")]


class Device:
    """Our command port, recording what reaches the device."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        self.sent.append((twin, name, payload))

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        return None


def guarded_app(settings: Settings, device: Device | None = None) -> FastAPI:
    """The app as ``create_app`` will build it with the guard wired in."""
    platform = build_platform(settings)
    platform.models.add(builtin_documents("plant"))
    platform.twins.put("M1", {"model": MACHINE, "reported": {"state": "running"}})
    commands = CommandService(platform.twins, platform.command_store, device or Device(), timeout_s=60, retries=0)
    app = create_app(runtime=Runtime(platform, commands=commands))
    guard.install(app, platform.settings)
    return app


@pytest.fixture
def device() -> Device:
    return Device()


@pytest.fixture
def client(device: Device) -> Iterator[TestClient]:
    app = guarded_app(Settings(store="memory"), device)
    with TestClient(app) as c:
        yield c
    app.state.platform.close()


def is_problem(r: Any, status: int, rule: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert (body["status"], body["rule"]) == (status, rule), body
    return body


# -- 1. cross-site form posts --------------------------------------------------------------------------------
@pytest.mark.parametrize(("ctype", "body"), FORMS, ids=["text", "urlencoded", "multipart"])
def test_a_cross_site_form_post_to_a_command_never_reaches_the_device(client: TestClient, device: Device,
                                                                      ctype: str, body: bytes) -> None:
    r = client.post(SEND, content=body, headers={"content-type": ctype})
    problem = is_problem(r, 415, "content_type")
    assert problem["accepted"] == ["application/json"] and r.headers["accept"] == "application/json"
    assert ctype.split(";")[0] in problem["detail"]
    assert device.sent == []
    assert client.get("/api/commands").json()["items"] == []


def test_a_body_without_a_content_type_is_refused_too(client: TestClient, device: Device) -> None:
    # fetch(url, {method: "POST", mode: "no-cors", body: new Blob([...])}) sends no Content-Type at all
    is_problem(client.post(SEND, content=b"3000"), 415, "content_type")
    assert device.sent == []


def test_json_commands_and_body_less_commands_still_work(client: TestClient, device: Device) -> None:
    assert client.post(SEND, json=900).status_code == 202
    r = client.post(SEND, content=b"950", headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 202, r.text
    assert client.post("/api/twins/M1/commands/stop").status_code == 202  # no body, no Content-Type
    assert [(name, payload) for _, name, payload in device.sent] == [("setSpeed", 900), ("setSpeed", 950),
                                                                      ("stop", None)]


def test_a_body_less_form_post_is_refused(client: TestClient, device: Device) -> None:
    # <form method=post action=".../commands/stop"> with no fields: an empty urlencoded body
    r = client.post("/api/twins/M1/commands/stop", headers={"content-type": "application/x-www-form-urlencoded"})
    is_problem(r, 415, "content_type")
    assert device.sent == []


def test_every_write_operation_refuses_a_form(client: TestClient) -> None:
    assert isinstance(client.app, FastAPI)
    paths = client.app.openapi()["paths"]
    writes = [(m.upper(), p) for p, item in paths.items() for m in item if m.upper() in guard.WRITES]
    assert len(writes) > 30
    for method, path in writes:
        url = re.sub(r"\{[^}]+\}", "x", path)
        r = client.request(method, url, content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415, (method, path, r.status_code, r.text)


def test_a_merge_patch_is_json_for_a_patch(client: TestClient) -> None:
    r = client.patch("/api/twins/M1", content=b'{"attributes": {"site": "north"}}',
                     headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"site": "north"}
    # a JSON Patch (RFC 6902) is not what the route implements
    r = client.patch("/api/twins/M1", content=b'[{"op": "remove", "path": "/attributes"}]',
                     headers={"content-type": "application/json-patch+json"})
    assert is_problem(r, 415, "content_type")["accepted"] == ["application/json", "application/merge-patch+json"]


def test_writes_the_document_does_not_list_take_json_only(client: TestClient) -> None:
    is_problem(client.post("/api/nothing", content=b"x", headers={"content-type": "text/plain"}), 415, "content_type")
    assert client.post("/api/nothing", json={}).status_code == 404
    assert client.post("/health").status_code == 405


# -- 2. Origin on the streams and on writes -------------------------------------------------------------------
def test_a_websocket_from_another_origin_is_refused_before_it_is_accepted(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, \
            client.websocket_connect("/api/ws?twins=M1", headers={"origin": "http://evil.example"}):
        pass
    assert denied.value.status_code == 403
    assert denied.value.json()["rule"] == "origin"
    assert denied.value.headers["x-content-type-options"] == "nosniff"


def test_a_websocket_of_the_own_origin_or_without_one_streams(client: TestClient) -> None:
    for headers in ({"origin": "http://testserver"}, {}):
        with client.websocket_connect("/api/ws?twins=M1", headers=headers) as ws:
            client.patch("/api/twins/M1", json={"reported": {"state": "idle"}})
            assert ws.receive_json()["item"]["twin"] == "M1"


def test_sse_from_another_origin_is_refused(client: TestClient) -> None:
    r = client.get("/api/stream?twins=M1", headers={"origin": "http://evil.example"})
    assert "evil.example" in is_problem(r, 403, "origin")["detail"]
    r = client.get("/api/stream?twins=M1", headers={"origin": "null"})  # a sandboxed page
    is_problem(r, 403, "origin")


def test_a_cross_site_json_write_is_refused_by_its_origin(client: TestClient, device: Device) -> None:
    # a body-less POST (fetch with mode no-cors and no body) carries no Content-Type, but it carries Origin
    r = client.post("/api/twins/M1/commands/stop", headers={"origin": "https://evil.example"})
    is_problem(r, 403, "origin")
    r = client.post("/api/twins/M1/commands/stop", headers={"origin": "http://testserver:8080"})  # another port
    is_problem(r, 403, "origin")
    assert device.sent == []
    assert client.post("/api/twins/M1/commands/stop", headers={"origin": "http://testserver"}).status_code == 202


def test_listed_origins_are_allowed() -> None:
    app = guarded_app(Settings(store="memory", allowed_origins=["https://hmi.plant.example"]))
    with TestClient(app) as c:
        assert c.get("/api/twins/M1", headers={"origin": "https://hmi.plant.example:443"}).status_code == 200
        is_problem(c.get("/api/twins/M1", headers={"origin": "http://hmi.plant.example"}), 403, "origin")
    app.state.platform.close()


# -- 3. DNS rebinding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "[::2]", "a b"])
def test_a_foreign_host_name_is_refused(client: TestClient, device: Device, host: str) -> None:
    r = client.get("/api/twins/M1", headers={"host": host})
    assert is_problem(r, 400, "allowed_hosts")["detail"].startswith("host not allowed")
    is_problem(client.post(SEND, json=1, headers={"host": host}), 400, "allowed_hosts")
    assert device.sent == []


@pytest.mark.parametrize("host", ["localhost:8000", "LOCALHOST", "127.0.0.1:9", "[::1]:8000", "localhost."])
def test_loopback_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/api/twins/M1", headers={"host": host}).status_code == 200


def test_a_websocket_under_a_foreign_name_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, \
            client.websocket_connect("/api/ws?twins=M1", headers={"host": "evil.example"}):
        pass
    assert denied.value.status_code == 400


def test_the_host_list_is_configurable() -> None:
    app = guarded_app(Settings(store="memory", allowed_hosts=["plant.example", "*.twins.example"]))
    with TestClient(app, base_url="http://plant.example") as c:
        assert c.get("/api/twins/M1").status_code == 200
        assert c.get("/api/twins/M1", headers={"host": "a.twins.example:8443"}).status_code == 200
        is_problem(c.get("/api/twins/M1", headers={"host": "twins.example"}), 400, "allowed_hosts")
        is_problem(c.get("/api/twins/M1", headers={"host": "localhost"}), 400, "allowed_hosts")  # not listed
    app.state.platform.close()


def test_a_wildcard_bind_without_a_list_answers_any_name_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tvilling.api"):
        app = guarded_app(Settings(store="memory", host="0.0.0.0"))
    assert [r.message for r in caplog.records if "allowed_hosts" in r.message]
    with TestClient(app) as c:
        assert c.get("/api/twins/M1", headers={"host": "plant-7.factory.lan"}).status_code == 200
    app.state.platform.close()
    policy = guard.Policy.of(Settings(host="0.0.0.0", allowed_hosts=["plant.example"]))
    assert not policy.host_allowed("evil.example", None) and policy.host_allowed("plant.example:80", None)


def test_a_specific_bind_address_is_allowed_by_default() -> None:
    policy = guard.Policy.of(Settings(host="10.1.2.3"))
    assert policy.host_allowed("10.1.2.3:8000", None) and policy.host_allowed("localhost", None)
    assert not policy.host_allowed("evil.example", None)
    # the address a connection arrived on names the server itself (an IP literal cannot be rebound)
    assert policy.host_allowed("192.168.7.7:8000", ("192.168.7.7", 8000))
    assert not policy.host_allowed("evil.example", ("192.168.7.7", 8000))
    ipv6 = guard.Policy.of(Settings(host="fd00::7", allowed_origins=["http://[fd00::7]:8000"]))
    assert ipv6.host_allowed("[fd00:0::7]:8000", None) and ipv6.host_allowed("[::1]", None)
    assert ipv6.origin_allowed("http://[fd00::7]:8000", "evil.example")
    assert ipv6.origin_allowed("http://[::1]:8000", "[::1]:8000")
    assert not ipv6.origin_allowed("http://[::1]:8001", "[::1]:8000")


def test_bad_lists_are_refused_when_the_app_is_built() -> None:
    with pytest.raises(Invalid, match="allowed_origins"):
        guard.Policy.of(Settings(allowed_origins=["plant.example"]))
    with pytest.raises(Invalid, match="allowed_hosts"):
        guard.Policy.of(Settings(allowed_hosts=["http://plant.example/x"]))


# -- 4. headers -----------------------------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    answers = [client.get("/api/twins/M1"), client.get("/api/twins/nope"), client.get("/"),
               client.post(SEND, content=b"x", headers={"content-type": "text/plain"}),
               client.get("/health", headers={"host": "evil.example"})]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    assert "script-src 'self';" in answers[2].headers["content-security-policy"]  # no code from strings


def test_even_the_server_error_page_carries_them() -> None:
    app = guarded_app(Settings(store="memory"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500 and r.headers["x-content-type-options"] == "nosniff"
    app.state.platform.close()


def test_the_refusals_are_documented(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    send = doc["paths"]["/api/twins/{twin_id}/commands/{name}"]["post"]["responses"]
    assert {"400", "403", "415"} <= set(send)
    assert send["415"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "415" not in doc["paths"]["/api/twins/{twin_id}"]["get"]["responses"]
    assert {"400", "403"} <= set(doc["paths"]["/api/stream"]["get"]["responses"])
