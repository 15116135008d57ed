"""The audit hook on the one write path: a TwinService over a memory backend, its batches in the chain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tvilling.app import Platform, build_platform
from tvilling.backend import open_backend
from tvilling.config import Settings
from tvilling.core.commands import PatchTwin, RecordReported, SetDesired
from tvilling.core.principal import Principal
from tvilling.core.readings import Readings
from tvilling.security.audit import request_hash
from tvilling.security.audit_hook import AuditHook
from tvilling.twins.hooks import HookChain, OpenHooks

PUMP = "dtmi:test:audit:Pump;1"
MODEL = {"@context": "dtmi:dtdl:context;3", "@id": PUMP, "@type": "Interface", "contents": [
    {"@type": "Property", "name": "speed", "schema": "double", "writable": True},
    {"@type": "Telemetry", "name": "vibration", "schema": "double"},
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Relationship", "name": "feeds"},
]}


@pytest.fixture
def plat() -> Iterator[Platform]:
    backend = open_backend("memory")
    hook = AuditHook(backend.audit)
    p = build_platform(Settings(store="memory"), backend, hooks=HookChain([OpenHooks(), hook]))
    p.models.add([MODEL])
    yield p
    p.close()


def entries(p: Platform, **kw: Any) -> list[Any]:
    return p.backend.audit.list(limit=1000, **kw)


def test_each_batch_is_one_entry_per_action_and_target(plat: Platform) -> None:
    alice = Principal(id="alice", kind="user", roles=("operator",), authenticated=True)
    plat.twins.put("p1", {"model": PUMP}, actor=alice)
    plat.twins.put("p2", {"model": PUMP}, actor=alice)
    batch = [PatchTwin(twin="p1", desired={"speed": 2.0}), SetDesired(twin="p1", desired={"speed": 3.0}),
             SetDesired(twin="p2", desired={"speed": 1.0}), SetDesired(twin="p1", desired={"speed": 4.0})]
    done = plat.twins.execute(batch, alice)
    got = [(e.actor, e.actor_kind, e.action, e.target) for e in entries(plat)]
    assert got == [("alice", "user", "twin.put", "twin:p1"), ("alice", "user", "twin.put", "twin:p2"),
                   ("alice", "user", "twin.patch", "twin:p1"), ("alice", "user", "twin.desired", "twin:p1"),
                   ("alice", "user", "twin.desired", "twin:p2")]
    desired_p1 = entries(plat, action="twin.desired", target="twin:p1")[0]
    assert desired_p1.request_hash == request_hash([batch[1], batch[3]])
    assert desired_p1.detail["commands"] == 2
    positions = [e.position for e in done.events]
    assert desired_p1.detail["positions"] == [min(positions), max(positions)]  # type: ignore[type-var]
    assert "authenticated" not in desired_p1.detail
    assert plat.backend.audit.verify().ok


def test_a_name_given_but_not_proven_is_marked(plat: Platform) -> None:
    plat.twins.put("p1", {"model": PUMP}, actor="mallory")
    plat.twins.set_relationship("p1", "r1", {"name": "feeds", "target": "p1"}, actor="mallory")
    first, relate = entries(plat)
    assert (first.actor, first.detail["authenticated"]) == ("mallory", False)
    assert (relate.action, relate.target, relate.detail["relationships"]) == ("relationship.set", "twin:p1", ["r1"])


def test_telemetry_is_one_entry_per_batch_by_source(plat: Platform) -> None:
    for i in range(3):
        plat.twins.put(f"p{i}", {"model": PUMP}, actor="setup")
    before = plat.backend.audit.head()[0]
    now = datetime.now(UTC).isoformat()
    batch = [RecordReported(twin=f"p{i % 3}", reported={"vibration": 0.1 * k, "temperature": 20.0 + k},
                            metadata={"vibration": {"time": now}, "temperature": {"time": now}})
             for i, k in enumerate(range(30))]
    plat.twins.execute(batch, Principal.system("ingest:mqtt"))
    new = plat.backend.audit.list(after=before)
    assert len(new) == 1
    e = new[0]
    assert (e.actor, e.actor_kind, e.action, e.target) == ("ingest:mqtt", "system", "telemetry.batch",
                                                           "source:ingest:mqtt")
    assert (e.detail["readings"], e.detail["commands"], e.detail["twins"]) == (60, 30, 3)
    assert e.detail["twins_sample"] == ["p0", "p1", "p2"]
    assert e.request_hash == request_hash(batch)


def test_readings_through_the_ingest_pipeline_are_one_entry(plat: Platform) -> None:
    plat.twins.put("p1", {"model": PUMP}, actor="setup")
    before = plat.backend.audit.head()[0]
    t0 = int(datetime.now(UTC).timestamp() * 1_000_000) - 10_000_000
    rows = [("p1", "vibration", t0 + k * 1000, 0.5 + k / 100) for k in range(50)]
    plat.pipeline.ingest_readings(Readings.from_rows(rows), transport="replay")
    new = plat.backend.audit.list(after=before)
    assert [(e.action, e.target) for e in new] == [("telemetry.batch", "source:ingest:replay")]


def test_a_refusal_is_recorded_with_its_reason(plat: Platform) -> None:
    hook = next(h for h in plat.twins.hooks.hooks if isinstance(h, AuditHook))  # type: ignore[attr-defined]
    e = hook.refused(Principal(id="bob", kind="user"), "twin.delete", "twin:p9", "role viewer may not write",
                     request={"method": "DELETE", "path": "/api/twins/p9"})
    assert (e.outcome, e.detail["reason"]) == ("refused", "role viewer may not write")
    assert e.request_hash == request_hash({"method": "DELETE", "path": "/api/twins/p9"})
