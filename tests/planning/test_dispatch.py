"""The production dispatcher on a real platform and the simulated plant: the plan in force is sent to the
machines as runJob commands through the command service, in plan order, and the twins show it carried out.

The plant runs at 60× (a step is one plant minute, stamped one second after the previous one): a machine at
its nominal speed makes 2 parts a step. Plans are in the twins' time (the readings' timestamps), and the
dispatcher's clock is the last stamp ingested (a fake clock the test moves)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tvilling.app import Platform, build_platform
from tvilling.backend.production import MemoryProduction
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.models.builtin import builtin_documents
from tvilling.planning.production import PlannedOperation, ProductionPlan
from tvilling.planning.production_dispatch import ACTOR, DispatchUnit, ProductionDispatcher, dispatch_status
from tvilling.plant import MODEL_SET, Plant
from tvilling.plant.device import attach_plant
from tvilling.twins.importer import import_twins

T0_MS = 1_767_225_600_000
T0 = datetime.fromtimestamp(T0_MS / 1000, UTC)
M1, M2, M3 = "line-1-m01", "line-1-m02", "line-1-m03"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def op(order: str, index: int, machine: str, start: float, end: float, quantity: int) -> PlannedOperation:
    return PlannedOperation(order, index, machine, at(start), at(end), quantity, 1500.0)


def plan(plan_id: str, *ops: PlannedOperation, previous: str | None = None, reason: str = "initial") -> ProductionPlan:
    return ProductionPlan(plan_id, T0, "line-1", tuple(ops), (), {}, previous=previous, reason=reason)


#: two orders over two machines: 2 parts a step, so 10 parts take 5 steps
PLAN = plan("p1", op("O1", 0, M1, 0, 5, 10), op("O1", 1, M2, 6, 9, 6), op("O2", 0, M1, 5, 7, 4),
            op("O2", 1, M2, 9, 11, 4))


class Rig:
    """A memory platform with the plant's twins, the plant behind the loopback transport, the command service,
    a production plan store and the dispatcher on a fake clock (the last frame's stamp)."""

    def __init__(self, platform: Platform, machines: int = 3, **options: Any) -> None:
        self.platform = platform
        self.plant = Plant(machines=machines, seed=11, speed=60.0, scenario=None)
        platform.models.add(builtin_documents(MODEL_SET))
        import_twins(platform.twins, self.plant.twins(), actor="test")
        self.plans = MemoryProduction()
        self.k = 0
        self.transport = LoopbackTransport(on_response=self._answered)
        self.commands = CommandService(platform.twins, platform.command_store, self.transport, retries=0)
        self.dispatcher = ProductionDispatcher(platform.twins, self.commands, self.plans, "line-1",
                                               clock=self.clock, **options)

    def clock(self) -> datetime:
        return at(self.k - 1)

    async def _answered(self, *args: Any) -> None:
        await self.commands.on_response(*args)

    async def start(self) -> None:
        await attach_plant(self.transport, self.plant)

    def save(self, new: ProductionPlan) -> None:
        current = self.plans.current("line-1")
        self.plans.save_plan(new, expected_current=None if current is None else current.id)

    async def step(self, n: int = 1) -> None:
        """``n`` plant steps, each ingested, then one dispatcher tick and the plant's answers."""
        for _ in range(n):
            frame = self.plant.step(1.0, now_ms=T0_MS + self.k * 1000)
            self.k += 1
            rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records()
                    for prop, v in values.items()]
            result = self.platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
            assert not result.rejected, result.letters
            await self.dispatcher.tick()
            await self.transport.drain()

    def op(self, order: str, index: int) -> dict[str, Any]:
        return next(o for o in self.dispatcher.status()["operations"] if (o["order"], o["op"]) == (order, index))

    def jobs(self) -> list[tuple[str, str]]:
        """``(machine, order/op)`` of every runJob command stored, in the order they were created."""
        records = [r for m in self.plant.machine_ids for r in self.platform.command_store.list(twin=m)
                   if r.name == "runJob"]
        return [(r.twin, f"{r.request['order']}/{r.request['op']}") for r in sorted(records, key=lambda r: r.created)]


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = build_platform(Settings(store="memory"))
    yield p
    p.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_the_plan_is_dispatched_in_order_through_the_command_service_and_carried_out(platform: Platform) -> None:
    rig = Rig(platform)

    async def scenario() -> None:
        await rig.start()
        rig.save(PLAN)
        await rig.step(13)

    run(scenario())
    assert rig.jobs() == [(M1, "O1/0"), (M1, "O2/0"), (M2, "O1/1"), (M2, "O2/1")]
    records = [r for m in (M1, M2) for r in platform.command_store.list(twin=m)]
    assert {(r.actor, r.status, r.model) for r in records} == {(ACTOR, "succeeded", "dtmi:tvilling:example:Machine;4")}
    # the twins show the production: two jobs done on each machine, the last ones named
    for machine, last in ((M1, "O2/0"), (M2, "O2/1")):
        reported = platform.twins.get(machine).reported
        assert (reported["jobsCompleted"], reported["lastJob"], reported["job"]) == (2, last, "")
    assert platform.twins.get(M3).reported["jobsCompleted"] == 0
    status = dispatch_status(rig.dispatcher)
    assert status["plan"] == "p1" and status["counts"]["done"] == 4
    for item in status["operations"]:  # on time: each done when the plan said, to the step
        assert item["status"] == "done" and item["progress"] == 1.0, item
        assert abs(item["lateness_s"]) <= 1.0 and item["start_delay_s"] <= 1.0, item
    o11 = rig.op("O1", 1)
    assert (o11["planned_start"], o11["started"], o11["finished"]) == (
        "2026-01-01T00:00:06Z", "2026-01-01T00:00:07Z", "2026-01-01T00:00:09Z")
    moves = [(c.order, c.op, c.status) for c in rig.dispatcher.changes]
    assert moves.index(("O1", 0, "done")) < moves.index(("O1", 1, "dispatched"))


def test_an_operation_waits_for_the_one_before_it_in_its_order(platform: Platform) -> None:
    rig = Rig(platform)
    eager = plan("p1", op("O1", 0, M1, 0, 5, 10), op("O1", 1, M2, 2, 5, 6))  # op 1 planned before op 0 can end

    async def scenario() -> None:
        await rig.start()
        rig.save(eager)
        await rig.step(4)
        assert rig.op("O1", 1)["status"] == "pending" and rig.jobs() == [(M1, "O1/0")]
        assert rig.op("O1", 1)["start_delay_s"] == 1.0  # due at 2, now 3: late to start, waiting
        await rig.step(6)

    run(scenario())
    first, second = rig.op("O1", 0), rig.op("O1", 1)
    assert first["finished"] == "2026-01-01T00:00:05Z" and second["dispatched"] == "2026-01-01T00:00:05Z"
    assert second["status"] == "done" and second["start_delay_s"] == 4.0  # started at 6 instead of 2
    assert second["lateness_s"] == pytest.approx(4.0, abs=1.0)


def test_a_stopped_machine_delays_its_job_and_the_twin_sees_the_lateness(platform: Platform) -> None:
    rig = Rig(platform)

    async def scenario() -> None:
        await rig.start()
        rig.save(PLAN)
        await rig.step(2)
        assert rig.op("O1", 0)["status"] == "running"
        stop = await rig.commands.invoke(M1, "stop", actor="operator")  # an operator stops the machine
        await rig.transport.drain()
        assert platform.command_store.get(stop.id).status == "succeeded"
        await rig.step(4)
        running = rig.op("O1", 0)
        assert running["status"] == "running" and running["progress"] == 0.2  # held where it stood
        assert running["lateness_s"] > 0  # expected to end after its planned end
        assert rig.op("O1", 1)["status"] == "pending"  # its successor waits for it
        assert rig.op("O2", 0)["status"] == "dispatched"  # queued on the machine behind O1/0
        await rig.commands.invoke(M1, "start", actor="operator")
        await rig.transport.drain()
        await rig.step(14)

    run(scenario())
    first = rig.op("O1", 0)
    assert first["status"] == "done" and first["lateness_s"] >= 4.0  # four plant minutes stopped, and a spin-up
    assert rig.op("O2", 0)["status"] == "done" and rig.op("O2", 0)["lateness_s"] >= 4.0
    assert rig.op("O1", 1)["dispatched"] >= first["finished"]
    assert [s["status"] for s in rig.dispatcher.status()["operations"]] == ["done"] * 4
    assert rig.jobs() == [(M1, "O1/0"), (M1, "O2/0"), (M2, "O1/1"), (M2, "O2/1")]


def test_a_new_plan_governs_what_was_not_sent_yet(platform: Platform) -> None:
    rig = Rig(platform)
    moved = plan("p2", op("O1", 0, M1, 0, 5, 10), op("O2", 0, M3, 3, 5, 4), op("O1", 1, M2, 6, 9, 6),
                 previous="p1", reason="machine slowed")  # O2/0 moves to m03 and earlier; O2/1 leaves the plan

    async def scenario() -> None:
        await rig.start()
        rig.save(PLAN)
        await rig.step(2)
        rig.save(moved)
        await rig.step(12)

    run(scenario())
    status = rig.dispatcher.status()
    assert (status["plan"], status["reason"]) == ("p2", "machine slowed")
    assert rig.jobs() == [(M1, "O1/0"), (M3, "O2/0"), (M2, "O1/1")]
    assert {(o["order"], o["op"]): o["plan"] for o in status["operations"]} == {
        ("O1", 0): "p1", ("O2", 0): "p2", ("O1", 1): "p2"}  # the one sent keeps its plan's times
    assert rig.op("O2", 0)["dispatched"] == "2026-01-01T00:00:03Z"
    assert platform.twins.get(M3).reported["lastJob"] == "O2/0"
    assert any(c.status == "dropped" and (c.order, c.op) == ("O2", 1) for c in rig.dispatcher.changes)


def test_a_refused_job_is_sent_again_once_the_machine_can_take_it(platform: Platform) -> None:
    rig = Rig(platform, retry_s=3.0)
    rig.plant.m.wear[0, 0] = 1.0  # m01's bearing has failed: the machine faults in the first step

    async def scenario() -> None:
        await rig.start()
        rig.save(plan("p1", op("O1", 0, M1, 1, 3, 4)))
        await rig.step(4)  # sent at 1, refused; not again before 2 + 3
        waiting = rig.op("O1", 0)
        assert waiting["status"] == "pending" and "in fault" in waiting["error"] and waiting["attempts"] == 1
        for name in ("maintenanceDone", "start"):
            await rig.commands.invoke(M1, name, actor="technician")
            await rig.transport.drain()
        await rig.step(6)

    run(scenario())
    done = rig.op("O1", 0)
    assert done["status"] == "done" and done["error"] is None and done["attempts"] == 2
    assert done["dispatched"] == "2026-01-01T00:00:05Z"
    refused = [r for r in platform.command_store.list(twin=M1) if r.name == "runJob" and r.status == "failed"]
    assert len(refused) == 1 and refused[0].response["reason"] == "fault" and refused[0].actor == ACTOR
    assert platform.twins.get(M1).reported["lastJob"] == "O1/0"


def test_a_job_the_plant_cannot_make_fails_and_holds_its_successors(platform: Platform) -> None:
    rig = Rig(platform)

    async def scenario() -> None:
        await rig.start()
        rig.save(plan("p1", op("O1", 0, M1, 0, 1, 0), op("O1", 1, M2, 1, 2, 2)))
        await rig.step(4)

    run(scenario())
    bad, after = rig.op("O1", 0), rig.op("O1", 1)
    assert bad["status"] == "failed" and "quantity" in bad["error"]
    assert after["status"] == "pending" and rig.jobs() == [(M1, "O1/0")]


def test_the_unit_follows_plant_time_from_the_twins(platform: Platform) -> None:
    rig = Rig(platform)
    dispatcher = ProductionDispatcher(platform.twins, rig.commands, rig.plans, "line-1")  # no clock given

    async def scenario() -> None:
        await rig.start()
        rig.save(plan("p1", op("O1", 0, M1, 3, 5, 4)))
        async with DispatchUnit(dispatcher, interval_s=0.02):
            for _ in range(8):
                frame = rig.plant.step(1.0, now_ms=T0_MS + rig.k * 1000)
                rig.k += 1
                rows = [(t, p, frame.ts_ms * 1000, v) for t, vals in frame.records() for p, v in vals.items()]
                platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
                await asyncio.sleep(0.15)
                await rig.transport.drain()

    run(scenario())
    item = dispatcher.status()["operations"][0]
    assert dispatcher.now == at(7)  # the newest reading of the line's machines
    assert item["dispatched"] == "2026-01-01T00:00:03Z" and item["status"] == "done"


def test_the_jobs_sent_are_the_commands_the_api_lists_and_a_runtime_builds_the_dispatcher(platform: Platform) -> None:
    from fastapi.testclient import TestClient

    from tvilling.api.app import create_app
    from tvilling.core.errors import Unavailable
    from tvilling.planning.production_dispatch import dispatcher_for
    from tvilling.runtime import Runtime

    rig = Rig(platform)

    async def scenario() -> None:
        await rig.start()
        rig.save(PLAN)
        await rig.step(7)

    run(scenario())
    with pytest.raises(Unavailable, match="reach the machines"):
        dispatcher_for(Runtime(platform), "line-1")  # no broker, no command service: nothing to send with
    runtime = Runtime(platform, commands=rig.commands)
    built = dispatcher_for(runtime, "line-1", plans=rig.plans)
    assert built.commands is rig.commands and built.line == "line-1"
    with TestClient(create_app(runtime=runtime)) as client:
        listed = client.get("/api/commands", params={"twin": M1}).json()["items"]
        assert [(c["name"], c["request"], c["actor"], c["status"]) for c in listed] == [
            ("runJob", {"order": "O1", "op": 0, "quantity": 10}, ACTOR, "succeeded"),
            ("runJob", {"order": "O2", "op": 0, "quantity": 4}, ACTOR, "succeeded")]
        assert listed[0]["response"]["job"] == "O1/0" and listed[1]["response"]["position"] == 0
        twin = client.get(f"/api/twins/{M1}").json()
        assert twin["model"] == "dtmi:tvilling:example:Machine;4" and twin["reported"]["lastJob"] == "O1/0"
