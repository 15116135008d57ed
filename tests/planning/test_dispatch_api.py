"""``GET /api/production/dispatch?line=``: the line's dispatcher as the dashboard's Gantt reads it — the plan it
follows, each operation's status, progress and times — or, when no dispatcher runs there, an explicit empty answer
with the line's plant time; an unknown line is 404 and an empty one 400, as problem documents.

The dispatcher is the real one of :mod:`planning.test_dispatch` (the simulated plant behind the loopback
transport, its readings ingested, a fake clock at the newest stamp)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planning.test_dispatch import PLAN, Rig, run
from tvilling.api.app import create_app
from tvilling.api.production import register_dispatcher
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.planning.production_dispatch import dispatch_status

PROBLEM = "application/problem+json"


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = build_platform(Settings(store="memory"))
    yield p
    p.close()


def get(client: TestClient, line: str) -> Any:
    return client.get("/api/production/dispatch", params={"line": line})


def test_the_route_shows_the_registered_dispatcher_and_says_when_none_runs(platform: Platform) -> None:
    rig = Rig(platform)
    app = create_app(platform=platform)
    with TestClient(app) as client:
        missing = get(client, "line-9")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
        assert "line-9" in missing.json()["detail"]
        empty = get(client, "")
        assert empty.status_code == 400 and empty.headers["content-type"].startswith(PROBLEM)

        # no dispatcher yet: an explicit empty answer, not a guess
        idle = get(client, "line-1")
        assert idle.status_code == 200, idle.text
        body = idle.json()
        assert body["dispatching"] is False and body["plan"] is None and body["operations"] == []
        assert set(body["counts"]) == {"pending", "dispatched", "running", "done", "failed"}
        assert sum(body["counts"].values()) == 0 and "no dispatcher" in body["detail"]
        assert body["now"] is None  # the machines have reported nothing yet: no plant time

        unregister = register_dispatcher(app, rig.dispatcher)

        async def first_steps() -> None:
            await rig.start()
            rig.save(PLAN)
            await rig.step(3)

        run(first_steps())
        body = get(client, "line-1").json()
        assert body["dispatching"] is True and body["plan"] == "p1" and body["line"] == "line-1"
        assert body == {**dispatch_status(rig.dispatcher), "dispatching": True}
        ops = {(o["order"], o["op"]): o for o in body["operations"]}
        assert set(ops) == {("O1", 0), ("O1", 1), ("O2", 0), ("O2", 1)}
        first = ops[("O1", 0)]  # 10 parts at 2 a step, planned over steps 0–5: under way
        assert first["status"] == "running" and 0.0 < first["progress"] < 1.0
        assert first["planned_start"] == "2026-01-01T00:00:00Z" and first["planned_end"] == "2026-01-01T00:00:05Z"
        assert ops[("O2", 1)]["status"] == "pending" and ops[("O2", 1)]["started"] is None
        assert body["now"] == "2026-01-01T00:00:02Z"

        run(rig.step(10))
        body = get(client, "line-1").json()
        assert body["counts"]["done"] == 4 and all(o["progress"] == 1.0 for o in body["operations"])

        unregister()
        after = get(client, "line-1").json()
        assert after["dispatching"] is False and after["operations"] == []
        assert after["now"] is not None  # the machines have reported now: the line's plant time
