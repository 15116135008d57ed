"""``tvilling audit …`` and ``GET /api/audit``, ``GET /api/audit/verify`` over an embedded store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from tvilling.api import audit as audit_api
from tvilling.api.app import create_app
from tvilling.app import build_platform
from tvilling.backend import open_backend
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.security.audit import Record


def fill(data: Path, n: int = 12) -> None:
    with open_backend(data) as backend:
        backend.audit.append_many([Record(actor="alice" if i % 2 else "bob", action="twin.patch",
                                          target=f"twin:m{i % 3}") for i in range(1, n + 1)])
        backend.audit.seal()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), prog_name="tvilling")
    return result.exit_code, result.output


def test_verify_list_seal_and_key_on_an_intact_then_tampered_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data)
    code, out = cli("audit", "verify", "--data-dir", str(data))
    assert code == 0, out
    assert "intact: 12 entries" in out
    code, out = cli("audit", "list", "--data-dir", str(data), "--actor", "alice", "--limit", "2")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["#1", "#3"]
    code, out = cli("audit", "list", "--data-dir", str(data), "--target", "twin:m0", "--json")
    assert [e["seq"] for e in json.loads(out)] == [3, 6, 9, 12]
    code, out = cli("audit", "seal", "--data-dir", str(data))
    assert code == 0 and "nothing to seal" in out
    code, out = cli("audit", "key", "--data-dir", str(data))
    assert code == 0 and "BEGIN PUBLIC KEY" in out
    pub = tmp_path / "audit.pub"
    pub.write_text(out[out.index("-----BEGIN"):])
    assert cli("audit", "verify", "--data-dir", str(data), "--public-key", str(pub))[0] == 0

    with sqlite3.connect(data / "tvilling.db") as conn:
        conn.execute("UPDATE audit_log SET target = 'twin:elsewhere' WHERE seq = 5")
    code, out = cli("audit", "verify", "--data-dir", str(data))
    assert code == 1
    assert "BROKEN at entry 5: edited" in out


def test_verify_against_another_pinned_key_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data)
    other = tmp_path / "other.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, out = cli("audit", "verify", "--data-dir", str(data), "--public-key", str(other), "--json")
    assert code == 1
    assert json.loads(out)["problem"]["kind"] == "seal_unknown_key"


def test_a_missing_store_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    code, out = cli("audit", "verify", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "no embedded store" in out
    assert not (tmp_path / "none").exists()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "data"
    fill(data)
    with build_platform(Settings(data_dir=data)) as platform:
        app = create_app(platform=platform)
        app.include_router(audit_api.router)
        with TestClient(app) as c:
            yield c


def test_the_api_lists_filters_and_pages(client: TestClient) -> None:
    page = client.get("/api/audit", params={"actor": "alice", "limit": 2})
    assert page.status_code == 200
    body = page.json()
    assert [e["seq"] for e in body["items"]] == [1, 3] and body["next"] == 3
    rest = client.get("/api/audit", params={"actor": "alice", "after": body["next"]}).json()
    assert [e["seq"] for e in rest["items"]] == [5, 7, 9, 11] and rest["next"] is None
    assert client.get("/api/audit", params={"from": "2999-01-01T00:00:00Z"}).json()["items"] == []
    assert len(client.get("/api/audit", params={"to": "2999-01-01T00:00:00Z"}).json()["items"]) == 12
    bad = client.get("/api/audit", params={"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["field"] == "from"
    order = client.get("/api/audit", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert order.status_code == 422
    assert client.get("/api/audit", params={"limit": 0}).status_code == 400


def test_the_api_verifies(client: TestClient, tmp_path: Path) -> None:
    report = client.get("/api/audit/verify").json()
    assert (report["ok"], report["entries"], report["sealed_upto"], report["problem"]) == (True, 12, 12, None)
    with sqlite3.connect(tmp_path / "data" / "tvilling.db") as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 4")
    broken = client.get("/api/audit/verify")
    assert broken.status_code == 200
    assert broken.json()["problem"]["seq"] == 4 and broken.json()["problem"]["kind"] == "deleted"
