"""Policy changes (API and CLI) and alarm steps made from the CLI reach the audit chain when audit is on;
the chain still verifies; with audit off the CLI writes nothing to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from decisions.test_alarm_engine import RULES, make_plant, report
from tvilling.api.app import create_app
from tvilling.backend.stores import open_store
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.decisions.alarms import build_driver
from tvilling.security.audit import Entry, request_hash
from tvilling.security.tokens import issue

POLICY: dict[str, Any] = {"id": "no-temperature", "subjects": ["role:viewer"], "entries": [
    {"effect": "revoke", "actions": ["read"], "resources": ["twin:*"], "paths": ["reported.temperature"]}]}
STORED = {**POLICY, "description": ""}  # the policy as the store keeps it


def chain(data: Path) -> list[Entry]:
    """Every entry of the embedded audit chain in ``data`` (which must verify)."""
    store = open_store("audit", None, data_dir=data)
    try:
        assert store.verify().ok
        return list(store.list(limit=1000))
    finally:
        store.close()


@pytest.fixture
def api() -> Iterator[tuple[TestClient, Any]]:
    """Auth required on the memory store, an admin token ``root`` signed in."""
    app = create_app(Settings(store="memory", auth="required"))
    _, admin = issue(app.state.platform.backend.tokens, "root", "admin", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client, app.state.platform.backend.audit


def test_policy_put_and_delete_through_the_api_are_audited_as_the_caller(api: tuple[TestClient, Any]) -> None:
    client, audit = api
    body = {k: v for k, v in POLICY.items() if k != "id"}
    assert client.put("/api/policies/no-temperature", json=body).status_code == 201
    assert client.put("/api/policies/no-temperature", json=body).status_code == 200
    assert client.delete("/api/policies/no-temperature").status_code == 200
    puts = audit.list(action="policy.put", target="policy:no-temperature")
    [deleted] = audit.list(action="policy.delete", target="policy:no-temperature")
    assert [e.detail["created"] for e in puts] == [True, False]
    for e in (*puts, deleted):
        assert (e.actor, e.actor_kind, e.outcome) == ("token:root", "service", "ok")
        assert e.detail["policy"] == STORED  # what was granted or revoked, readable from the chain
    assert puts[0].request_hash == request_hash(STORED)  # the hash covers the whole policy put
    assert audit.verify().ok
    refused = client.put("/api/policies/bad", json={"subjects": ["*"], "entries": []})
    assert refused.status_code == 422 and audit.list(action="policy.put", target="policy:bad") == []


def _cli(*args: str) -> Any:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_policy_put_and_delete_from_the_cli_are_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("TVILLING_AUDIT", "true")
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(POLICY), encoding="utf-8")
    assert _cli("policies", "put", str(file), "--data-dir", str(data)) == [{"id": POLICY["id"], "created": True}]
    assert _cli("policies", "delete", POLICY["id"], "--data-dir", str(data))["id"] == POLICY["id"]
    found = [(e.action, e.target, e.actor, e.detail["policy"]) for e in chain(data) if e.action.startswith("policy.")]
    target = "policy:no-temperature"
    assert [f[:2] for f in found] == [("policy.put", target), ("policy.delete", target)]
    assert all(f[2].startswith("cli") and f[3] == STORED for f in found)


def test_policy_changes_from_the_cli_with_audit_off_write_no_chain(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.delenv("TVILLING_AUDIT", raising=False)
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(POLICY), encoding="utf-8")
    _cli("policies", "put", str(file), "--data-dir", str(data))
    assert [e for e in chain(data) if e.action.startswith("policy.")] == []


def test_alarm_steps_from_the_cli_are_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    p = make_plant(Settings(data_dir=data, alarm_rules=RULES))
    report(p, "B1", 0, temperature=96.0)
    build_driver(p).catch_up()
    p.close()
    monkeypatch.setenv("TVILLING_AUDIT", "true")
    [alarm] = _cli("alarms", "list", "--data-dir", str(data), "--twin", "B1", "--json")
    _cli("alarms", "ack", alarm["id"], "--data-dir", str(data), "--actor", "eva", "--note", "on my way")
    _cli("alarms", "clear", alarm["id"], "--data-dir", str(data), "--actor", "eva")
    shelf = _cli("alarms", "shelve", "M1", "--data-dir", str(data), "--for", "30m", "--reason", "planned stop",
                 "--actor", "eva")
    _cli("alarms", "unshelve", shelf["id"], "--data-dir", str(data), "--actor", "eva")
    steps = {e.action: e for e in chain(data) if e.action.startswith("alarm.")}
    assert set(steps) == {"alarm.ack", "alarm.clear", "alarm.shelve", "alarm.unshelve"}
    assert steps["alarm.ack"].target == f"alarm:{alarm['id']}" and steps["alarm.ack"].detail["note"] == "on my way"
    assert steps["alarm.shelve"].target == "twin:M1"
    assert all(e.actor == "eva" and e.detail["authenticated"] is False for e in steps.values())  # a name, not proven
