"""Changes outside the twin write path are audited (auth required, through the API with a token): tokens,
models, work orders, production orders and plans, alarm steps and shelves, commands and their answers,
sign-ins (once per identity) and refusals (without their body); the chain still verifies. Audit off: nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from test_auth_http import BEARING, plant_documents

from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.core.principal import Principal
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.models.builtin import builtin_documents
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.security.tokens import issue
from tvilling.twins.importer import import_twins

MACHINE = "line-1-m01"
THING = {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:audit:Thing;1", "@type": "Interface",
         "contents": [{"@type": "Property", "name": "label", "schema": "string"}]}


def _platform(data: Path, **settings: Any) -> Platform:
    platform = build_platform(Settings(data_dir=data, **settings))
    platform.models.add(builtin_documents(MODEL_SET))
    import_twins(platform.twins, Plant(2, seed=1, scenario=None).twins())
    return platform


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The example plant on the embedded store, auth required, with an admin token signed in."""
    data = tmp_path / "data"
    platform = _platform(data, auth="required")
    _, admin = issue(platform.backend.tokens, "ops", "admin", by="test", now=datetime.now(UTC))
    app = create_app(platform=platform)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client, data
    platform.close()


def entries(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    r = client.get("/api/audit", params={"limit": 1000, **filters})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def one(client: TestClient, action: str, target: str) -> dict[str, Any]:
    found = [e for e in entries(client, action=action) if e["target"] == target]
    assert len(found) == 1, (action, target, entries(client))
    return found[0]


def test_tokens_models_work_orders_and_production_are_audited_as_the_caller(
        api: tuple[TestClient, Path]) -> None:
    client, data = api
    made = client.post("/api/tokens", json={"name": "ci", "role": "operator", "twins": "line-1-*"})
    assert made.status_code == 201, made.text
    created = one(client, "token.create", f"token:{made.json()['id']}")
    assert (created["actor"], created["actor_kind"], created["outcome"]) == ("token:ops", "service", "ok")
    assert created["detail"]["role"] == "operator" and made.json()["secret"] not in json.dumps(created)
    assert len(created["request_hash"]) == 64
    assert client.delete(f"/api/tokens/{made.json()['id']}").status_code == 200
    assert one(client, "token.revoke", f"token:{made.json()['id']}")["actor"] == "token:ops"

    assert client.post("/api/models", json=THING).status_code == 201
    upload = one(client, "model.upload", f"models:{THING['@id']}")
    assert upload["actor"] == "token:ops" and upload["detail"]["models"] == [THING["@id"]]
    assert client.post(f"/api/models/{THING['@id']}/decommission").status_code == 200
    assert one(client, "model.decommission", f"model:{THING['@id']}")["actor"] == "token:ops"

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    wo = client.post("/api/workorders", json={"task": "replace-bearings", "asset": MACHINE,
                                              "planned_start": start.isoformat(),
                                              "planned_end": (start + timedelta(hours=3)).isoformat()})
    assert wo.status_code == 201, wo.text
    wid = wo.json()["id"]
    assert client.post(f"/api/workorders/{wid}/approve", json={"note": "go"}).status_code == 200
    proposed = one(client, "workorder.propose", f"workorder:{wid}")
    approved = one(client, "workorder.approved", f"workorder:{wid}")
    assert proposed["actor"] == approved["actor"] == "token:ops"
    assert (approved["detail"]["from"], approved["detail"]["to"], approved["detail"]["note"]) == \
        ("proposed", "approved", "go")

    t0 = datetime.now(UTC).replace(microsecond=0)
    order = {"id": "a", "line": "line-1", "product": "shaft", "quantity": 10, "routing": [[MACHINE]],
             "due": (t0 + timedelta(hours=2)).isoformat(), "release": t0.isoformat()}
    assert client.post("/api/production/orders", json=order).status_code == 201
    plan = client.post("/api/production/plans", json={"line": "line-1", "time_limit": 2})
    assert plan.status_code == 201, plan.text
    assert client.post("/api/production/orders/a/cancel").status_code == 200
    assert one(client, "production.order.create", "order:a")["actor"] == "token:ops"
    planned = one(client, "production.plan", "line:line-1")
    assert planned["actor"] == "token:ops" and planned["detail"]["plan"] == plan.json()["plan"]["id"]
    assert one(client, "production.order.cancel", "order:a")["actor"] == "token:ops"

    sign_ins = [e for e in entries(client, action="auth.sign_in") if e["actor"] == "token:ops"]
    assert len(sign_ins) == 1 and sign_ins[0]["outcome"] == "ok"  # once, not once per request
    assert client.get("/api/audit/verify").json()["ok"] is True
    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(data)], prog_name="tvilling")
    assert result.exit_code == 0 and "intact" in result.output, result.output


def test_a_refused_request_is_audited_without_its_body(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    secret_body = {"reported": {"state": "s3cret-value-9931"}}
    headers = {"Content-Type": "application/merge-patch+json"}
    r = client.patch(f"/api/twins/{MACHINE}", json=secret_body, headers={**headers, "Authorization": "Bearer tvl_x"})
    assert r.status_code == 401
    viewer = client.post("/api/tokens", json={"name": "eyes", "role": "viewer"}).json()["secret"]
    r = client.patch(f"/api/twins/{MACHINE}", json=secret_body,
                     headers={**headers, "Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    refused = [e for e in entries(client) if e["outcome"] == "refused"]
    unknown = next(e for e in refused if e["action"] == "auth.sign_in")
    assert unknown["actor"] == "anonymous" and unknown["detail"]["rule"] == "unknown_token"
    assert unknown["target"] == "route:PATCH /api/twins/{twin_id}" and unknown["detail"]["status"] == 401
    forbidden = next(e for e in refused if e["action"] == "http.forbidden")
    assert forbidden["actor"] == "token:eyes" and forbidden["detail"]["rule"] == "role"
    dumped = json.dumps(refused)
    assert "s3cret-value-9931" not in dumped and "tvl_x" not in dumped and viewer not in dumped
    assert client.get("/api/audit/verify").json()["ok"] is True


def test_alarm_steps_and_shelves_are_audited_as_the_caller(tmp_path: Path) -> None:
    rules = [{"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
              "severity": "major", "above": 90, "clear": 85, "message": "{twin} hot"}]
    app = create_app(Settings(data_dir=tmp_path / "data", auth="required", alarm_rules=rules))
    _, admin = issue(app.state.platform.backend.tokens, "shift-lead", "admin", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        assert client.post("/api/models", json=plant_documents()).status_code == 201
        assert client.put("/api/twins/B1", json={"model": BEARING}).status_code == 201
        ts = int(datetime.now(UTC).timestamp() * 1000)
        assert client.post("/api/ingest", json={"twin": "B1", "ts": ts, "values": {"temperature": 95.0}}
                           ).status_code == 200
        deadline = time.monotonic() + 10
        while not (found := client.get("/api/alarms?twin=B1&state=active").json()["items"]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        [alarm] = found
        assert client.post(f"/api/alarms/{alarm['id']}/ack", json={"actor": "Eva", "note": "on it"}
                           ).status_code == 200
        assert client.post(f"/api/alarms/{alarm['id']}/clear").status_code == 200
        shelf = client.post("/api/alarms/shelves", json={"twin": "B1", "for": "30m", "reason": "planned stop"})
        assert shelf.status_code == 201, shelf.text
        assert client.post(f"/api/alarms/shelves/{shelf.json()['id']}/end").status_code == 200
        ack = one(client, "alarm.ack", f"alarm:{alarm['id']}")
        assert (ack["actor"], ack["actor_kind"], ack["detail"]["note"]) == ("token:shift-lead", "service", "on it")
        assert one(client, "alarm.clear", f"alarm:{alarm['id']}")["actor"] == "token:shift-lead"
        shelved = one(client, "alarm.shelve", "twin:B1")
        assert shelved["actor"] == "token:shift-lead" and shelved["detail"]["shelf"] == shelf.json()["id"]
        assert one(client, "alarm.unshelve", "twin:B1")["actor"] == "token:shift-lead"
        assert client.get("/api/audit/verify").json()["ok"] is True


class Answering:
    """A device on the loopback transport: answers every command with ``ok``."""

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        return "ok", None

    async def desired(self, state: dict[str, Any]) -> None:
        return None


def test_commands_and_device_answers_are_audited(tmp_path: Path) -> None:
    platform = _platform(tmp_path / "data", audit=True)
    who = Principal(id="token:ops", kind="service", roles=("operator",), authenticated=True)

    async def scenario() -> tuple[str, str]:
        commands: CommandService | None = None

        async def answered(*args: Any) -> None:
            assert commands is not None
            await commands.on_response(*args)

        async with LoopbackTransport(on_response=answered) as transport:
            await transport.attach(MACHINE, Answering())
            commands = CommandService(platform.twins, platform.command_store, transport, retries=0)
            sent = await commands.invoke(MACHINE, "setSpeed", 900.0, actor=who.actor)
            await transport.drain()
            forged = await commands.on_response("line-1-m02", "setSpeed", sent.id, "ok", None)
            assert forged is None
            return sent.id, platform.command_store.get(sent.id).status

    try:
        command_id, status = asyncio.run(scenario())
        assert status == "succeeded"
        audit = platform.backend.audit
        send = [e for e in audit.list(action="command.send") if e.detail["id"] == command_id]
        assert [(e.actor, e.target, e.detail["command"]) for e in send] == [("token:ops", f"twin:{MACHINE}",
                                                                              "setSpeed")]
        answers = audit.list(action="command.answer")
        ok = [e for e in answers if e.outcome == "ok"]
        assert [(e.actor, e.actor_kind, e.detail["status"]) for e in ok] == [(MACHINE, "device", "succeeded")]
        [refused] = [e for e in answers if e.outcome == "refused"]
        assert refused.actor == "line-1-m02" and refused.target == f"twin:{MACHINE}"
        assert audit.verify().ok
    finally:
        platform.close()


def test_with_audit_off_nothing_is_recorded(tmp_path: Path) -> None:
    platform = _platform(tmp_path / "data")
    try:
        with TestClient(create_app(platform=platform)) as client:
            made = client.post("/api/tokens", json={"name": "ci", "role": "viewer"})
            assert made.status_code == 201
            assert client.post("/api/models", json=THING).status_code == 201
            assert client.get("/api/audit").json()["items"] == []
    finally:
        platform.close()
