"""A property the caller may not read cannot be learnt through a query's ``where``: such a query is a 403
that names neither the property, nor a twin, nor a value (see ``enforce.check_query`` for why it is
refused rather than filtered). Queries on what the caller may read still work, and callers without
the policy are unaffected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from test_policies_http import BEARING, NO_TEMPERATURE, _as, put_policy, seed

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.tokens import issue

#: a revoke of one property, on line 2's twins only
LINE_2_TEMPERATURE = {"subjects": ["token:ops"], "entries": [
    {"effect": "revoke", "actions": ["read"], "resources": ["twin:line-2*"], "paths": ["reported.temperature"]}]}


@pytest.fixture
def served() -> Iterator[tuple[TestClient, str, str]]:
    """Auth required, two lines (bearing temperature 71.25 on both), an admin and a viewer token ``ops``."""
    app = create_app(Settings(store="memory", auth="required"))
    tokens = app.state.platform.backend.tokens
    _, admin = issue(tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    _, viewer = issue(tokens, "ops", "viewer", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        seed(client, admin)
        yield client, admin, viewer


def _query(client: TestClient, secret: str, where: list[list[object]], **extra: object) -> tuple[int, str]:
    r = client.post("/api/query", json={"model": BEARING, "where": where, **extra}, headers=_as(secret))
    return r.status_code, r.text


@pytest.mark.parametrize("where", [
    [["reported.temperature", ">", 71]],  # the oracle: a twin comes back iff the hidden value is above 71
    [["reported.temperature", "=", 71.25]],
    [["reported.temperature", "exists", False]],  # would tell which twins hold it
    [["reported.temperature.celsius", "exists", True]],  # under the hidden path
    [["reported.vibration", ">", 0], ["reported.temperature", "<", 100]],  # one hidden predicate among others
])
def test_a_where_on_a_revoked_path_is_403_naming_nothing(served: tuple[TestClient, str, str],
                                                         where: list[list[object]]) -> None:
    client, admin, viewer = served
    assert _query(client, viewer, where)[0] == 200  # before the policy: the viewer may read it
    put_policy(client, admin, "no-temperature", NO_TEMPERATURE)
    status, text = _query(client, viewer, where)
    assert status == 403, text
    problem = json.loads(text)
    assert problem["rule"] == "policy" and "may not read" in problem["detail"]
    for secret in ("temperature", "71", "line-", "b1"):
        assert secret not in text, (secret, text)
    assert _query(client, admin, where)[0] == 200  # a caller the policy does not name is unaffected


def test_a_traversal_filtering_a_hidden_path_in_an_earlier_step_is_refused(
        served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    put_policy(client, admin, "no-temperature", NO_TEMPERATURE)
    r = client.post("/api/query", headers=_as(viewer), json={"match": [
        {"model": BEARING, "where": [["reported.temperature", ">", 71]]},
        {"via": "hasBearing", "direction": "in"}]})
    assert r.status_code == 403 and "line-" not in r.text


def test_queries_on_readable_paths_still_answer_and_drop_the_hidden_values(
        served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    put_policy(client, admin, "no-temperature", NO_TEMPERATURE)
    status, text = _query(client, viewer, [["reported.vibration", "=", 0.5]])
    assert status == 200
    items = json.loads(text)["items"]
    assert sorted(t["id"] for t in items) == ["line-1-m01-b1", "line-2-m01-b1"]
    assert "71.25" not in text
    # a property beside the hidden one whose name starts the same is not refused
    assert _query(client, viewer, [["reported.temperatureSetpoint", "exists", False]])[0] == 200


def test_a_revoke_on_some_twins_refuses_the_path_for_every_twin(served: tuple[TestClient, str, str]) -> None:
    """Decided from the policies, not from which twins match: otherwise the refusal itself would tell."""
    client, admin, viewer = served
    put_policy(client, admin, "line-2-temperature", LINE_2_TEMPERATURE)
    assert _query(client, viewer, [["id", "=", "line-1-m01-b1"], ["reported.temperature", ">", 0]])[0] == 403
    assert _query(client, viewer, [["id", "=", "line-2-m01-b1"], ["reported.temperature", ">", 0]])[0] == 403
    doc = client.get("/api/twins/line-1-m01-b1", headers=_as(viewer)).json()
    assert doc["reported"]["temperature"] == 71.25  # still readable on line 1 by the twin's own route


def test_malformed_queries_are_still_400_before_any_policy(served: tuple[TestClient, str, str]) -> None:
    client, admin, viewer = served
    put_policy(client, admin, "no-temperature", NO_TEMPERATURE)
    r = client.post("/api/query", json={"where": [["reported.temperature", "~", 1]]}, headers=_as(viewer))
    assert r.status_code == 400


def test_with_auth_off_nothing_changes() -> None:
    app = create_app(Settings(store="memory"))
    with TestClient(app) as client:
        r = client.post("/api/query", json={"where": [["reported.temperature", ">", 1]]})
        assert r.status_code == 200 and r.json()["items"] == []
