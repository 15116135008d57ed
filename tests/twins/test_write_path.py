"""The one write path: every change to a twin — API, ingest (envelopes and columns), derived values,
staleness marks, the importer — is one call of TwinService.execute, with a principal, through the
hooks (authorise, guard, audit), and that call is the only one that commits to the store."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.envelope import Envelope
from tvilling.core.errors import Unauthorized
from tvilling.core.principal import Principal
from tvilling.core.readings import Readings
from tvilling.twins.importer import import_twins

PUMP1, PUMP2 = "dtmi:test:wp:Pump;1", "dtmi:test:wp:Pump;2"


def pump(dtmi: str) -> dict[str, Any]:
    return {"@context": "dtmi:dtdl:context;3", "@id": dtmi, "@type": "Interface", "contents": [
        {"@type": "Property", "name": "speed", "schema": "double", "writable": True},
        {"@type": "Telemetry", "name": "vibration", "schema": "double"},
        {"@type": "Relationship", "name": "feeds"},
    ]}


class Recorder:
    """Hooks that record each call, and can refuse at one stage."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str], int]] = []
        self.refuse: str | None = None

    def _note(self, stage: str, principal: Principal, commands: Any, n: int) -> None:
        self.calls.append((stage, principal.actor, [type(c).__name__ for c in commands], n))
        if self.refuse == stage:
            raise Unauthorized(f"{stage} refused for the test")

    def authorize(self, principal: Principal, commands: Any, states: Any) -> None:
        self._note("authorize", principal, commands, len(states))

    def guard(self, principal: Principal, commands: Any, events: Any) -> None:
        self._note("guard", principal, commands, len(events))

    def audit(self, principal: Principal, commands: Any, events: Any) -> None:
        assert all(e.position is not None for e in events), "audit sees the stored events"
        self._note("audit", principal, commands, len(events))


class OnlyExecuteCommits:
    """A twin store that fails any commit not made from TwinService.execute."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.commits = 0

    def commit(self, events: Any) -> Any:
        caller = sys._getframe(1).f_code
        assert caller.co_name == "execute" and caller.co_filename.endswith("twins/service.py"), caller
        self.commits += 1
        return self._store.commit(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def plat() -> Platform:
    p = build_platform(Settings(store="memory"), hooks=Recorder())
    p.models.add([pump(PUMP1), pump(PUMP2)])
    p.twins.store = OnlyExecuteCommits(p.twins.store)  # type: ignore[assignment]
    return p


def stages(p: Platform) -> list[tuple[str, str, list[str], int]]:
    calls = list(p.twins.hooks.calls)  # type: ignore[attr-defined]
    p.twins.hooks.calls.clear()  # type: ignore[attr-defined]
    return calls


def test_the_api_writes_through_execute_with_the_callers_principal(plat: Platform) -> None:
    with TestClient(create_app(platform=plat)) as client:
        who = {"X-Tvilling-Actor": "alice"}
        assert client.put("/api/twins/p1", json={"model": PUMP1}, headers=who).status_code == 201
        assert client.put("/api/twins/p2", json={"model": PUMP1}, headers=who).status_code == 201
        assert client.patch("/api/twins/p1", json={"reported": {"speed": 3.5}}, headers=who).status_code == 200
        assert client.put("/api/twins/p1/relationships/r1", json={"name": "feeds", "target": "p2"},
                          headers=who).status_code in (200, 201)
        assert client.delete("/api/twins/p1/relationships/r1", headers=who).status_code == 204
        migrated = client.post("/api/twins/p1/migrate", json={"model": PUMP2}, headers=who)
        assert migrated.status_code == 200, migrated.text
        assert client.delete("/api/twins/p2", headers=who).status_code == 204
        calls = stages(plat)
        kinds = [c[2][0] for c in calls if c[0] == "audit"]
        assert kinds == ["PutTwin", "PutTwin", "PatchTwin", "SetRelationship", "DeleteRelationship",
                         "MigrateTwin", "DeleteTwin"]
        assert {c[1] for c in calls} == {"alice"}
        assert [c[0] for c in calls[:3]] == ["authorize", "guard", "audit"]
        assert [e["actor"] for e in client.get("/api/twins/p1/events").json()["items"]] == ["alice"] * 5
        assert client.patch("/api/twins/p1", json={"reported": {"speed": 1}}).status_code == 200
        assert stages(plat)[0][1] == "api"  # no header: the anonymous caller


def test_a_refusal_at_any_stage_stores_nothing(plat: Platform) -> None:
    plat.twins.put("p1", {"model": PUMP1}, actor="setup")
    before = plat.twins.get("p1").revision
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    for stage in ("authorize", "guard"):
        plat.twins.hooks.refuse = stage  # type: ignore[attr-defined]
        with pytest.raises(Unauthorized):
            plat.twins.patch("p1", {"reported": {"speed": 1.0}}, actor="mallory")
        with pytest.raises(Unauthorized):
            plat.pipeline.ingest_readings(Readings.from_rows([("p1", "vibration", now_us, 0.5)]))
        with pytest.raises(Unauthorized):
            import_twins(plat.twins, [{"id": "p9", "model": PUMP1}], actor="mallory")
    assert plat.twins.get("p1").revision == before
    assert plat.twins.store.count() == 1


def test_ingest_derived_values_staleness_and_import_all_pass_the_hooks(plat: Platform) -> None:
    import_twins(plat.twins, [{"id": "p1", "model": PUMP1}, {"id": "p2", "model": PUMP1,
                              "relationships": [{"id": "r", "name": "feeds", "target": "p1"}]}], actor="loader")
    assert [(c[0], c[1], c[2]) for c in stages(plat)] == [
        (s, "loader", ["CreateTwin", "CreateTwin", "SetRelationship"]) for s in ("authorize", "guard", "audit")]
    now = datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    result = plat.pipeline.ingest_envelopes([Envelope(twin="p1", ts=now, values={"vibration": 0.2})],
                                            transport="mqtt")
    assert result.accepted == 1
    plat.pipeline.ingest_readings(Readings.from_rows([("p2", "vibration", ms * 1000, 0.3)]), transport="replay")
    plat.pipeline.write_derived(Readings.from_rows([("p2", "speed", ms * 1000, 7.0)]), source="model:x",
                                actor="analytics")
    assert plat.pipeline.check_stale(now + timedelta(hours=2)) == 2
    audits = [(c[1], c[2], c[3]) for c in stages(plat) if c[0] == "audit"]
    assert audits == [("ingest:mqtt", ["RecordReported"], 1), ("ingest:replay", ["RecordReported"], 1),
                      ("analytics", ["RecordReported"], 1), ("ingest:stale", ["RecordReported"] * 2, 2)]
    assert plat.twins.get("p2").reported == {"vibration": 0.3, "speed": 7.0}
    assert plat.twins.store.commits == 5  # type: ignore[attr-defined]


def test_a_deleted_twin_can_be_imported_again_and_continues_its_revisions(plat: Platform) -> None:
    items = [{"id": f"t{i}", "model": PUMP1} for i in range(20)]
    import_twins(plat.twins, items, actor="loader")
    plat.twins.delete("t3", actor="op")
    import_twins(plat.twins, [{"id": "t3", "model": PUMP1, "reported": {"speed": 2}}] + [
        {"id": f"n{i}", "model": PUMP1} for i in range(20)], actor="loader")
    assert plat.twins.get("t3").revision == 3 and plat.twins.get("t3").reported == {"speed": 2}


def test_an_import_error_names_the_item(plat: Platform) -> None:
    plat.twins.put("p1", {"model": PUMP1})
    items = [{"id": "a", "model": PUMP1}, {"id": "p1", "model": PUMP1}]
    with pytest.raises(Exception, match="item 2: twin 'p1' exists already"):
        import_twins(plat.twins, items)
    bad = [{"id": "a", "model": PUMP1}, {"id": "b", "model": PUMP1, "reported": {"speed": "fast"}}]
    with pytest.raises(Exception, match="item 2"):
        import_twins(plat.twins, bad)
    assert plat.twins.store.count() == 1  # each failed batch stored nothing


def test_no_module_but_the_twin_service_commits_to_a_twin_store() -> None:
    """Read as code: a ``<…store>.commit(…)`` call anywhere else would be a second write path."""
    import ast
    from pathlib import Path

    import tvilling

    root = Path(tvilling.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit":
                receiver = ast.unparse(node.func.value)
                if receiver.endswith(("store", "twin_store", "twins")):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {receiver}.commit")
    # backend/fork.py copies an origin's stored event log into a fresh in-memory world: a replica, no new change
    assert [f.split(":")[0] for f in found if not f.startswith("backend/fork.py:")] == ["twins/service.py"], found
