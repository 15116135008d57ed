"""Relationships never name a twin the caller may not read: left out of relationship lists (outgoing and
incoming), twin documents, query results and event feeds; a single one is a 403 naming nothing; and a
link to such a twin cannot be written (which would tell whether it exists)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from test_policies_http import BEARING, MACHINE, _as, put_policy, seed

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.tokens import issue

#: line-1-m01 stays readable; the line above it and its bearing below it do not
HIDE_AROUND_M01 = {"subjects": ["token:ops", "token:eng"], "entries": [
    {"effect": "revoke", "actions": ["read"], "resources": ["twin:line-1", "twin:line-1-m01-b*"]}]}
HIDDEN = ("line-1-m01-b1", '"line-1"')


@pytest.fixture
def served() -> Iterator[tuple[TestClient, str, str, str]]:
    """Auth required, two lines, an admin, a viewer ``ops`` and an engineer ``eng``; the policy above."""
    app = create_app(Settings(store="memory", auth="required"))
    tokens = app.state.platform.backend.tokens
    _, admin = issue(tokens, "admin", "admin", by="test", now=datetime.now(UTC))
    _, viewer = issue(tokens, "ops", "viewer", by="test", now=datetime.now(UTC))
    _, engineer = issue(tokens, "eng", "engineer", by="test", now=datetime.now(UTC))
    with TestClient(app, raise_server_exceptions=False) as client:
        seed(client, admin)
        put_policy(client, admin, "hide-around-m01", HIDE_AROUND_M01)
        yield client, admin, viewer, engineer


def _clean(text: str) -> None:
    for hidden in HIDDEN:
        assert hidden not in text, (hidden, text)


def test_relationship_lists_leave_out_links_to_and_from_hidden_twins(
        served: tuple[TestClient, str, str, str]) -> None:
    client, admin, viewer, _ = served
    for incoming in ("false", "true"):
        url = f"/api/twins/line-1-m01/relationships?incoming={incoming}"
        r = client.get(url, headers=_as(viewer))
        assert r.status_code == 200 and r.json()["items"] == [], r.text
        assert len(client.get(url, headers=_as(admin)).json()["items"]) == 1  # there is one each way
    # links between readable twins are kept
    kept = client.get("/api/twins/line-2-m01/relationships", headers=_as(viewer)).json()["items"]
    assert [i["target"] for i in kept] == ["line-2-m01-b1"]
    kept = client.get("/api/twins/line-2-m01/relationships?incoming=true", headers=_as(viewer)).json()["items"]
    assert [i["source"] for i in kept] == ["line-2"]


def test_a_single_link_to_a_hidden_twin_is_403_naming_nothing(served: tuple[TestClient, str, str, str]) -> None:
    client, admin, viewer, _ = served
    r = client.get("/api/twins/line-1-m01/relationships/r-line-1-m01-b1", headers=_as(viewer))
    assert r.status_code == 403 and r.json()["rule"] == "policy"
    _clean(r.text)
    assert client.get("/api/twins/line-1-m01/relationships/r-line-1-m01-b1", headers=_as(admin)).status_code == 200


def test_twin_documents_and_query_results_leave_out_links_to_hidden_twins(
        served: tuple[TestClient, str, str, str]) -> None:
    client, admin, viewer, _ = served
    doc = client.get("/api/twins/line-1-m01", headers=_as(viewer))
    assert doc.status_code == 200 and doc.json()["relationships"] == []
    _clean(doc.text)
    assert len(client.get("/api/twins/line-1-m01", headers=_as(admin)).json()["relationships"]) == 1
    r = client.post("/api/query", json={"model": MACHINE}, headers=_as(viewer))
    by_id = {t["id"]: t for t in r.json()["items"]}
    assert by_id["line-1-m01"]["relationships"] == []
    assert [x["target"] for x in by_id["line-2-m01"]["relationships"]] == ["line-2-m01-b1"]
    _clean(r.text)
    everything = client.post("/api/query", json={}, headers=_as(viewer))
    assert {t["id"] for t in everything.json()["items"]} == {"line-1-m01", "line-2", "line-2-m01", "line-2-m01-b1"}
    _clean(everything.text)


def test_event_feeds_leave_out_links_set_to_hidden_twins(served: tuple[TestClient, str, str, str]) -> None:
    client, admin, viewer, _ = served
    for url in ("/api/twins/line-1-m01/events", "/api/events"):
        mine = client.get(url, headers=_as(viewer))
        assert mine.status_code == 200
        _clean(mine.text)
        theirs = client.get(url, headers=_as(admin)).json()["items"]
        assert any(e["type"] == "RelationshipSet" and e["payload"]["target"] == "line-1-m01-b1" for e in theirs)
    kept = client.get("/api/twins/line-2-m01/events", headers=_as(viewer)).json()["items"]
    assert [e["payload"]["target"] for e in kept if e["type"] == "RelationshipSet"] == ["line-2-m01-b1"]


def test_a_link_to_a_hidden_twin_cannot_be_written_whether_or_not_it_exists(
        served: tuple[TestClient, str, str, str]) -> None:
    client, admin, _, engineer = served
    answers = []
    for target in ("line-1-m01-b1", "line-1-m01-b9"):  # one exists, one does not: the same answer
        r = client.put("/api/twins/line-2-m01/relationships/extra", headers=_as(engineer),
                       json={"name": "hasBearing", "target": target})
        answers.append((r.status_code, json.loads(r.text)["detail"]))
        _clean(r.text)
    assert answers[0] == answers[1] and answers[0][0] == 403
    r = client.put("/api/twins/line-2-m01/relationships/r-line-2-m01-b1", headers=_as(engineer),
                   json={"name": "hasBearing", "target": "line-2-m01-b1"})
    assert r.status_code == 200, r.text  # a readable target is fine
    assert client.get("/api/twins/line-2-m01-b1", headers=_as(admin)).json()["model"] == BEARING
