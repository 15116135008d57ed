"""The twin observes maintenance (issue 13, item 2), on the demo's plant, analytics and alarm rules over an embedded
data directory: a bearing defect grows until the detector flags it and the remaining life drops; a work order is
completed through the work order service, its ``maintenanceDone`` goes through the command service to the plant,
which resets the wear; then the machine's and its bearings' analytics learn afresh (learning, then a normal
score), the remaining life recovers and the anomaly alarm clears by its rule. A restart right after the reset
keeps it; a maintenance command that fails resets nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tvilling.analytics.binding.maintenance import maintenance_reset
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.decisions.alarms import build_driver
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.demo import DemoOptions, demo_alarm_rules, demo_analytics, make_plant, seed_twins
from tvilling.planning.workorders import DONE, WorkOrder
from tvilling.planning.workorders_service import WorkOrderService
from tvilling.plant.plant import Plant

T = TypeVar("T")
MACHINE = "line-1-m01"
BEARING = f"{MACHINE}-de"  # the demo's defect grows on the drive-end bearing
OPTIONS = DemoOptions(machines=1, fault_at_s=70.0)  # 60 rows learned, the defect from the 70th reading
T0_MS = 1_767_225_600_000
LEARN = int(OPTIONS.learn_s)
BATCH = 10  # frames per ingested batch


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def settings(data: Path) -> Settings:
    return Settings(data_dir=data, analytics=demo_analytics(OPTIONS.speed, LEARN), alarm_rules=demo_alarm_rules())


class Line:
    """The plant stepped one reading a second on a fixed clock, each frame ingested, the alarm rules evaluated."""

    def __init__(self, platform: Platform, plant: Plant) -> None:
        self.platform, self.plant, self.step_no = platform, plant, 0
        self.driver = build_driver(platform)

    def steps(self, n: int, batch: int = BATCH) -> None:
        """``n`` readings, ingested ``batch`` frames at a time (as a transport batches its messages)."""
        for first in range(0, n, batch):
            rows: list[tuple[str, str, int, Any]] = []
            for _ in range(min(batch, n - first)):
                frame = self.plant.step(1.0, now_ms=T0_MS + self.step_no * 1000)
                self.step_no += 1
                rows.extend((twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records()
                            for prop, v in values.items())
            self.platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
            self.driver.catch_up()

    def alarm(self, rule: str) -> str | None:
        """The state of the bearing's newest alarm of ``rule``."""
        states = [a.state for a in self.platform.alarm_store.list(twin=BEARING) if a.rule == rule]
        return states[0] if states else None


class PlantDevice:
    """The plant's machine behind the loopback transport: commands run on the real plant."""

    def __init__(self, plant: Plant, twin: str, *, refuse: bool = False) -> None:
        self.plant, self.twin, self.refuse = plant, twin, refuse

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        if self.refuse:
            return 409, {"accepted": False, "message": "the machine is locked out"}
        result = self.plant.handle(self.twin, name, payload)
        return result.status, result.payload

    async def desired(self, state: dict[str, Any]) -> None:
        return None


def complete(platform: Platform, plant: Plant, *, refuse: bool = False) -> WorkOrder:
    """Propose, approve, schedule, start and complete a bearing replacement on the machine."""

    async def scenario() -> WorkOrder:
        commands: CommandService | None = None

        async def answered(*args: Any) -> None:
            assert commands is not None
            await commands.on_response(*args)

        async with LoopbackTransport(on_response=answered) as transport:
            await transport.attach(MACHINE, PlantDevice(plant, MACHINE, refuse=refuse))
            commands = CommandService(platform.twins, platform.command_store, transport, retries=0)
            reset = maintenance_reset(platform, alarms=AlarmService(platform.alarm_store))
            svc = WorkOrderService(platform.backend.workorders, platform.twins, commands=commands,
                                   analytics_reset=reset, settle_s=5.0)
            start = datetime.now(UTC) + timedelta(days=1)
            order = svc.propose({"task": "replace-bearings", "asset": MACHINE, "planned_start": start.isoformat(),
                                 "planned_end": (start + timedelta(hours=2)).isoformat(),
                                 "parts": {"6205-2RS": 2}}, "planner")
            for action in ("approve", "schedule", "start"):
                svc.move(order.id, action, "alice")
            return await svc.complete(order.id, "bob", body={"parts": {"6205-2RS": 2}})

    return run(scenario())


def promoted(platform: Platform, analytic: str, twin: str) -> int | None:
    v = platform.analytics_registry.promoted(analytic, twin)
    return None if v is None else v.version


@pytest.fixture
def degraded(tmp_path: Path) -> tuple[Path, Platform, Line, dict[str, Any]]:
    """The line run until the defect is flagged and the remaining life is short; the readings before maintenance."""
    plant = make_plant(OPTIONS)
    platform = build_platform(settings(tmp_path / "data"))
    seed_twins(platform, plant)
    line = Line(platform, plant)
    line.steps(130)
    before = dict(platform.twins.get(BEARING).reported)
    assert before["anomaly"] is True and before["anomaly_score"] > 10  # the detector flags the defect
    assert before["rul"] < 12 and before["health"] < 0.1  # a few plant hours left
    assert line.alarm("bearing-anomaly") == "active" and line.alarm("bearing-rul") == "active"
    assert promoted(platform, "bearing-anomaly", BEARING) == 1
    return tmp_path / "data", platform, line, before


def test_a_done_work_order_resets_the_plant_and_the_twin_relearns(degraded: Any) -> None:
    data, platform, line, before = degraded
    plant = line.plant
    assert max(plant.state_of(MACHINE)["wear"].values()) > 0

    done = complete(platform, plant)
    assert done.state == DONE and done.completion["command"]["status"] == "succeeded"
    assert plant.state_of(MACHINE)["wear"] == {"de": 0.0, "nde": 0.0}  # the plant replaced the bearings
    reset = done.completion["analytics_reset"]
    assert reset["done"] is True and set(reset["twins"]) == {MACHINE, BEARING, f"{MACHINE}-nde", f"{MACHINE}-spindle"}
    assert {(r["analytic"], r["twin"], r["retired_version"]) for r in reset["analytics"]} == {
        (a, f"{MACHINE}-{b}", 1) for a in ("bearing-anomaly", "bearing-rul") for b in ("de", "nde")}
    assert done.id in reset["reason"]
    # the alarms that stood on the withdrawn scores clear with the maintenance; a new part's trend may report no
    # remaining life at all for a while, which no rule would clear
    assert line.alarm("bearing-rul") == "cleared" and line.alarm("bearing-anomaly") == "cleared"
    assert len(reset["alarms_cleared"]) >= 2

    # right after the reset: the old scores are gone, the analytics say they learn, nothing is promoted
    rep = platform.twins.get(BEARING).reported
    assert not {"anomaly_score", "anomaly", "rul", "rul_p10", "rul_p90", "health"} & set(rep)
    for name in ("bearing-anomaly", "bearing-rul"):
        marker = rep["analytics"][name]
        assert marker["status"] == "learning" and "version" not in marker
        assert marker["reset"]["by"] == "bob" and marker["reset"]["retired_version"] == 1
        assert promoted(platform, name, BEARING) is None
    # the reset is an event on the twin's change feed
    last = platform.twins.history(BEARING)[-1]
    assert last.payload["reported"]["anomaly_score"] is None
    assert last.payload["reported"]["analytics"]["bearing-anomaly"]["status"] == "learning"

    # a server restart now keeps the reset: the old version is not loaded back
    platform.close()
    platform = build_platform(settings(data))
    line = Line(platform, plant)
    line.step_no = 130
    try:
        rep = platform.twins.get(BEARING).reported
        assert rep["analytics"]["bearing-anomaly"]["status"] == "learning" and "anomaly_score" not in rep
        line.steps(LEARN - 1)  # one row short of a new baseline: still learning, still no score
        rep = platform.twins.get(BEARING).reported
        assert "anomaly_score" not in rep and rep["analytics"]["bearing-anomaly"]["status"] == "learning"
        assert promoted(platform, "bearing-anomaly", BEARING) is None

        line.steps(60)  # learned on the repaired bearing, then scored
        rep = platform.twins.get(BEARING).reported
        assert promoted(platform, "bearing-anomaly", BEARING) == 2 and promoted(platform, "bearing-rul", BEARING) == 2
        assert rep["analytics"]["bearing-anomaly"]["status"] == "running"
        assert rep["analytics"]["bearing-anomaly"]["version"] == 2
        assert rep["anomaly"] is False and rep["anomaly_score"] < 0.8  # a normal score on the new bearing
        scores = [p.value for p in platform.history.range(BEARING, "anomaly_score", (T0_MS + 190_000) * 1000, 2**62,
                                                          limit=1000)]
        assert len(scores) >= 50 and max(scores) < 1.0  # no row of the repaired bearing is flagged
        # the new baseline is the new bearing's: far below the worn one the first version learned
        v2 = platform.analytics_registry.get("bearing-rul", BEARING, 2)
        assert v2.metrics["baseline"] < 0.05 < before["vibrationBandBpfo"]
        # remaining life recovers: no degradation trend (no failure predicted), health back near 1
        assert rep["health"] > 0.9 > 10 * before["health"]
        assert rep.get("rul") is None or rep["rul"] > 10 * before["rul"]
        # and nothing raises them again on the repaired bearing
        assert line.alarm("bearing-anomaly") == "cleared" and line.alarm("bearing-rul") == "cleared"
    finally:
        platform.close()


def test_a_failed_maintenance_command_resets_nothing(degraded: Any) -> None:
    _, platform, line, before = degraded
    try:
        done = complete(platform, line.plant, refuse=True)
        assert done.state == DONE and done.completion["command"]["status"] == "failed"
        reset = done.completion["analytics_reset"]
        assert reset["done"] is False and "failed" in reset["reason"] and "POST /api/analytics/reset" in reset["reason"]
        assert max(line.plant.state_of(MACHINE)["wear"].values()) > 0  # the plant did nothing
        rep = platform.twins.get(BEARING).reported
        assert rep["anomaly_score"] == before["anomaly_score"] and rep["analytics"]["bearing-anomaly"]["status"] == \
            "running"
        assert promoted(platform, "bearing-anomaly", BEARING) == 1  # the learned version stays
        line.steps(5)
        assert platform.twins.get(BEARING).reported["anomaly"] is True and line.alarm("bearing-anomaly") == "active"
    finally:
        platform.close()
