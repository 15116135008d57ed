"""A traversal (a query of several steps) cannot tell of a twin the caller may not read: it runs as if
the hidden twins did not exist, neither as a step's match nor as a hop on the way. Callers who see
every twin get the store's answer unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_policies_http import _as, put_policy, seed

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.tokens import issue

HIDE_LINE_2_MACHINE_AND_BEARING = {"subjects": ["token:ops"], "entries": [
    {"effect": "revoke", "actions": ["read"], "resources": ["twin:line-2-m01", "twin:line-2-m01-b1"]}]}


@pytest.fixture(params=["memory", "embedded"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    """Auth required on the memory store and on the embedded one (whose queries run in SQL)."""
    store = {"store": "memory"} if request.param == "memory" else {"data_dir": tmp_path / "data"}
    app = create_app(Settings(auth="required", **store))
    tokens = app.state.platform.backend.tokens
    _, admin = issue(tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    _, viewer = issue(tokens, "ops", "viewer", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        seed(client, admin)
        put_policy(client, admin, "hide", HIDE_LINE_2_MACHINE_AND_BEARING)
        yield client, admin, viewer


def ids(client: TestClient, secret: str, match: list[dict[str, Any]], **extra: Any) -> list[str]:
    r = client.post("/api/query", json={"match": match, **extra}, headers=_as(secret))
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


#: each asks about a hidden twin and would answer with a readable one
PROBES = [
    # does line-2-m01-b1 exist, and is it someone's bearing?  (a hidden twin matched by the first step)
    [{"where": [["id", "=", "line-2-m01-b1"]]}, {"via": "hasBearing", "direction": "in"},
     {"via": "hasMachine", "direction": "in"}],
    # is the hidden bearing's vibration above 0.4?  (a hidden twin's value read through a where)
    [{"where": [["reported.vibration", ">", 0.4]]}, {"via": "hasBearing", "direction": "in"},
     {"via": "hasMachine", "direction": "in"}],
    # has line-2 a machine?  (a hidden twin as a hop, there and back)
    [{"where": [["id", "=", "line-2"]]}, {"via": "hasMachine"}, {"via": "hasMachine", "direction": "in"}],
]


@pytest.mark.parametrize("match", PROBES)
def test_a_traversal_does_not_pass_through_or_match_hidden_twins(served: tuple[TestClient, str, str],
                                                                 match: list[dict[str, Any]]) -> None:
    client, admin, viewer = served
    assert ids(client, admin, match)  # the store's answer: the probe would work
    assert "line-2" not in ids(client, viewer, match)


def test_traversals_through_readable_twins_are_answered_as_before(served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    lines: dict[str, Any] = {"where": [["id", "in", ["line-1", "line-2"]]]}
    down: list[dict[str, Any]] = [lines, {"via": "hasMachine"}, {"via": "hasBearing"}]
    assert ids(client, viewer, down) == ["line-1-m01-b1"]
    assert ids(client, admin, down) == ["line-1-m01-b1", "line-2-m01-b1"]
    up: list[dict[str, Any]] = [{"where": [["reported.vibration", ">", 0.4]]}, {"via": "hasBearing", "direction": "in"},
          {"via": "hasMachine", "direction": "in"}]
    assert ids(client, viewer, up) == ["line-1"]
    # pages: one twin at a time, the cursor continues after it
    both: list[dict[str, Any]] = [lines, {"via": "hasMachine", "direction": "out"}]
    assert ids(client, admin, both) == ["line-1-m01", "line-2-m01"]
    first = client.post("/api/query", json={"match": down[:2], "limit": 1}, headers=_as(admin)).json()
    assert [t["id"] for t in first["items"]] == ["line-1-m01"] and first["next"]
    put_policy(client, admin, "hide", {"subjects": ["token:ops"], "entries": [
        {"effect": "revoke", "actions": ["read"], "resources": ["twin:nothing-here"]}]})
    first = client.post("/api/query", json={"match": both, "limit": 1}, headers=_as(viewer)).json()
    rest = client.post("/api/query", json={"match": both, "limit": 1, "cursor": first["next"]},
                       headers=_as(viewer)).json()
    assert [t["id"] for t in first["items"] + rest["items"]] == ["line-1-m01", "line-2-m01"]
    assert rest["next"] is None
