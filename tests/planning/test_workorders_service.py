"""The work order service on a real platform: proposals checked against the twins, concurrent moves (one
wins), and completion closing the loop — the maintenance command goes through the command service and the
loopback transport to the simulated plant, whose machine's wear resets, and the twin's maintenance record
follows (work orders done, parts replaced, operating hours the twin reports after the reset)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.ingest import forms
from tvilling.models.builtin import builtin_documents
from tvilling.planning.workorders import APPROVED, DONE, IN_PROGRESS, SCHEDULED
from tvilling.planning.workorders_feed import WorkOrderFeedSource
from tvilling.planning.workorders_service import MaintenanceCommands, WorkOrderService
from tvilling.plant.plant import MODEL_SET, Plant
from tvilling.runtime.sources import hub_for, source_registry
from tvilling.twins.importer import import_twins

T = TypeVar("T")
MACHINE = "line-1-m01"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


class PlantDevice:
    """The simulated plant's machine behind the loopback transport: commands run on the real plant."""

    def __init__(self, plant: Plant, twin: str) -> None:
        self.plant, self.twin = plant, twin

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        result = self.plant.handle(self.twin, name, payload)
        return result.status, result.payload

    async def desired(self, state: dict[str, Any]) -> None:
        return None


def report_hours(platform: Platform, plant: Plant) -> float:
    """Ingest the machine's operating hours as its sensors would report them now; returns the value."""
    hours = round(plant.state_of(MACHINE)["operatingHours"], 6)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    parsed = forms.parse_body({"twin": MACHINE, "ts": [now_ms], "values": {"operatingHours": [hours]}})
    for readings, source in parsed.columns:
        platform.pipeline.ingest_readings(readings, source=source, transport="test")
    return hours


@pytest.fixture
def plant() -> Plant:
    plant = Plant(machines=1, seed=7, speed=3600.0, scenario=None)  # one wall second: one plant hour
    for i in range(40):
        plant.step(1.0, now_ms=1_767_225_600_000 + i * 1000)
    return plant


@pytest.fixture
def platform(plant: Plant) -> Iterator[Platform]:
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents(MODEL_SET))
    import_twins(p.twins, plant.twins())
    yield p
    p.close()


def proposal(**over: Any) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    body = {"task": "replace-bearings", "asset": MACHINE, "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(hours=3)).isoformat(), "crew": ["tech-1"],
            "parts": {"6205-2RS": 2, "grease-50g": 1}, "expected_cost": 900.0, "failure_probability": 0.3,
            "rationale": {"chosen": "saturday", "options": ["run", "saturday"]}}
    body.update(over)
    return body


def walk_to_in_progress(svc: WorkOrderService, order_id: str) -> None:
    for action in ("approve", "schedule", "start"):
        svc.move(order_id, action, "alice")


def test_done_sends_the_maintenance_command_to_the_plant_and_the_record_follows(platform: Platform,
                                                                                 plant: Plant) -> None:
    hours_before = report_hours(platform, plant)
    wear_before = plant.state_of(MACHINE)["wear"]
    assert hours_before > 30 and min(wear_before.values()) > 0

    async def scenario() -> tuple[Any, Any]:
        commands: CommandService | None = None

        async def answered(*args: Any) -> None:
            assert commands is not None
            await commands.on_response(*args)

        async with LoopbackTransport(on_response=answered) as transport:
            await transport.attach(MACHINE, PlantDevice(plant, MACHINE))
            commands = CommandService(platform.twins, platform.command_store, transport, retries=0)
            svc = WorkOrderService(platform.backend.workorders, platform.twins, commands=commands)
            order = svc.propose(proposal(), "planner")
            walk_to_in_progress(svc, order.id)
            done = await svc.complete(order.id, "bob", body={"parts": {"6205-2RS": 2}, "note": "both bearings"})
            await transport.drain()
            return done, transport.sent

    done, sent = run(scenario())
    assert done.state == DONE and done.actual_end is not None and done.parts == {"6205-2RS": 2}
    assert [(c.twin, c.name) for c in sent] == [(MACHINE, "maintenanceDone")]
    command = done.completion["command"]
    assert command["sent"] is True and command["name"] == "maintenanceDone" and command["id"] == sent[0].request_id
    assert platform.command_store.get(command["id"]).status == "succeeded"  # the plant answered it
    assert done.completion["operating_hours"] == pytest.approx(hours_before)
    state = plant.state_of(MACHINE)
    assert state["wear"] == {"de": 0.0, "nde": 0.0} and state["operatingHours"] == 0.0  # the plant reset the wear

    svc = WorkOrderService(platform.backend.workorders, platform.twins)
    record = svc.record(MACHINE)
    assert record["workorders_done"] == 1 and record["last_maintenance"]["id"] == done.id
    assert record["parts_replaced"] == [{"part": "6205-2RS", "quantity": 2,
                                         "last_replaced": record["last_maintenance"]["done"]}]
    assert record["history"][0]["operating_hours_at_done"] == pytest.approx(hours_before)
    # no reading since the work: the hours are counted from the order's end, not the stale reading
    assert record["operating_hours_source"] == "time_since_last_done"
    assert record["operating_hours_since_maintenance"] < 0.01
    for i in range(3):  # the machine runs again; the twin observes its hours counting from zero
        plant.step(1.0, now_ms=1_767_225_700_000 + i * 1000)
    hours_after = report_hours(platform, plant)
    record = svc.record(MACHINE)
    assert record["operating_hours_source"] == "reported:operatingHours"
    assert record["operating_hours_since_maintenance"] == pytest.approx(hours_after) and 0 < hours_after < 5


def test_without_a_command_transport_done_still_completes_and_says_why_nothing_was_sent(
        platform: Platform) -> None:
    svc = WorkOrderService(platform.backend.workorders, platform.twins, commands=None)
    order = svc.propose(proposal(), "planner")
    walk_to_in_progress(svc, order.id)
    done = run(svc.complete(order.id, "bob"))
    command = done.completion["command"]
    assert done.state == DONE and command["sent"] is False and "--broker" in command["reason"]
    assert svc.record(MACHINE)["workorders_done"] == 1
    assert platform.command_store.list() == []


def test_a_twin_without_the_command_or_operating_hours(platform: Platform) -> None:
    times = [datetime(2026, 3, 2, 8, tzinfo=UTC)]
    svc = WorkOrderService(platform.backend.workorders, platform.twins, clock=lambda: times[0])
    spindle = f"{MACHINE}-spindle"
    order = svc.propose(proposal(asset=spindle, parts={}, planned_start="2026-03-02T09:00:00Z",
                                 planned_end="2026-03-02T10:00:00Z"), "planner")
    assert svc.record(spindle)["operating_hours_since_maintenance"] is None  # nothing known yet
    walk_to_in_progress(svc, order.id)
    done = run(svc.complete(order.id, "bob"))
    assert done.completion["command"]["sent"] is False
    assert "declares no maintenance command 'maintenanceDone'" in done.completion["command"]["reason"]
    times[0] += timedelta(hours=30)
    record = svc.record(spindle)
    assert record["operating_hours_source"] == "time_since_last_done"
    assert record["operating_hours_since_maintenance"] == pytest.approx(30.0)


def test_two_approvals_one_wins(platform: Platform) -> None:
    svc = WorkOrderService(platform.backend.workorders, platform.twins)
    order = svc.propose(proposal(), "planner")
    barrier = threading.Barrier(2)
    outcome: dict[str, Any] = {}

    def approve(who: str, if_match: int | None) -> None:
        barrier.wait()
        try:
            outcome[who] = svc.move(order.id, "approve", who, if_match=if_match).approved_by
        except Conflict as exc:  # PreconditionFailed is a Conflict too
            outcome[who] = exc

    threads = [threading.Thread(target=approve, args=(who, None)) for who in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [who for who, got in outcome.items() if got == who]
    assert len(winners) == 1
    loser = next(got for got in outcome.values() if isinstance(got, Conflict))
    assert "is approved; it cannot become approved" in loser.message  # decided again on the newer order
    stored = svc.get(order.id)
    assert stored.approved_by == winners[0] and stored.version == 2

    # with If-Match both name version 2: the first schedules it, the second is told its read is stale
    assert svc.move(order.id, "schedule", "alice", if_match=2).state == SCHEDULED
    with pytest.raises(PreconditionFailed) as caught:
        svc.move(order.id, "schedule", "bob", if_match=2)
    assert caught.value.fields["version"] == 3 and caught.value.status == 412


def test_proposals_are_checked_against_the_twin_and_its_model(platform: Platform) -> None:
    svc = WorkOrderService(platform.backend.workorders, platform.twins)
    with pytest.raises(NotFound) as caught:
        svc.propose(proposal(asset="no-such-machine"), "planner")
    assert caught.value.fields["field"] == "asset" and "'no-such-machine' is not a twin" in caught.value.message
    with pytest.raises(Invalid) as invalid:
        svc.propose(proposal(maintenance_command="polish"), "planner")
    assert invalid.value.fields["field"] == "maintenance_command" and "maintenanceDone" in invalid.value.message
    with pytest.raises(Invalid) as invalid:
        svc.propose(proposal(planned_end=proposal()["planned_start"]), "planner")
    assert invalid.value.fields["field"] == "planned_end"
    order = svc.propose(proposal(), "planner")
    assert order.model == "dtmi:tvilling:example:Machine;4"
    with pytest.raises(Invalid) as invalid:
        svc.move(order.id, "approve", "alice", body={"planned_start": "2026-01-01T00:00:00Z"})
    assert invalid.value.fields["field"] == "planned_start"  # approving does not move the window
    with pytest.raises(Invalid) as invalid:
        svc.move(order.id, "launch", "alice")
    assert invalid.value.fields["field"] == "action"
    svc.move(order.id, "approve", "alice")
    with pytest.raises(Invalid) as invalid:  # a new window that ends before it starts
        svc.move(order.id, "schedule", "alice", body={"planned_end": "2020-01-01T00:00:00Z"})
    assert invalid.value.fields["field"] == "planned_end"
    scheduled = svc.move(order.id, "schedule", "alice", body={"crew": ["tech-2", "tech-3"]})
    assert scheduled.firm and scheduled.crew == ("tech-2", "tech-3")  # a scheduled order is firm


def test_the_configured_command_per_task_and_per_model(platform: Platform, plant: Plant) -> None:
    config = MaintenanceCommands(by_task={"stop-for-inspection": "stop"},
                                 by_model={"dtmi:tvilling:example:Machine": "start"})

    async def scenario() -> list[str]:
        async with LoopbackTransport() as transport:
            commands = CommandService(platform.twins, platform.command_store, transport, retries=0)
            svc = WorkOrderService(platform.backend.workorders, platform.twins, commands=commands,
                                   maintenance=config)
            for task in ("stop-for-inspection", "lubricate"):
                order = svc.propose(proposal(task=task), "planner")
                walk_to_in_progress(svc, order.id)
                await svc.complete(order.id, "bob")
            own = svc.propose(proposal(task="lubricate", maintenance_command="maintenanceDone"), "planner")
            walk_to_in_progress(svc, own.id)
            await svc.complete(own.id, "bob")
            return [c.name for c in transport.sent]

    assert run(scenario()) == ["stop", "start", "maintenanceDone"]


def test_every_change_is_on_the_workorders_stream_source(platform: Platform) -> None:
    assert source_registry().names[-1] == "workorders"
    sources = {s.name: s for s in hub_for(platform).sources}  # the hub the runtime streams from
    svc = WorkOrderService(platform.backend.workorders, platform.twins)
    order = svc.propose(proposal(), "planner")
    svc.move(order.id, "approve", "alice")
    svc.move(order.id, "cancel", "bob", body={"note": "window taken by a rush order"})
    source = sources["workorders"]
    assert isinstance(source, WorkOrderFeedSource)
    items = source.read(0, 10)
    assert [(i["previous"], i["state"], i["by"]) for _, i in items] == [
        (None, "proposed", "planner"), ("proposed", APPROVED, "alice"), (APPROVED, "cancelled", "bob")]
    assert {i["twin"] for _, i in items} == {MACHINE} and source.read(items[1][0], 10) == items[2:]
    assert svc.get(order.id).notes[-1].text == "window taken by a rush order"
    assert IN_PROGRESS not in {i["state"] for _, i in items}
