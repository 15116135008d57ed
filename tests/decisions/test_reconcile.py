"""Desired-state reconciliation: sent, retried with backoff, reconciled, timed out — all in the feed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tvilling.app import Platform
from tvilling.core.errors import Unavailable
from tvilling.decisions.reconcile import DesiredReconciler
from tvilling.decisions.store import MemoryCommandStore

from .conftest import MACHINE, T0, FakeTransport


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Harness:
    """A reconciler fed with the platform's real twin events."""

    def __init__(self, platform: Platform, transport: FakeTransport, **kwargs: Any) -> None:
        self.platform = platform
        self.transport = transport
        self.store = MemoryCommandStore()
        options = {"retry_s": 5, "timeout_s": 60, "max_attempts": 4, **kwargs}
        self.rec = DesiredReconciler(platform.twins, self.store, transport, **options)
        self.position = platform.twins.feed(limit=1000)[-1].position or 0

    def feed_events(self) -> None:
        for event in self.platform.twins.feed(after=self.position, limit=1000):
            self.rec.notify(event)
            self.position = event.position or self.position

    def step(self, seconds: float) -> list[tuple[str, str, int]]:
        self.feed_events()
        items = run(self.rec.run_once(T0 + timedelta(seconds=seconds)))
        return [(i["twin"], i["status"], i["attempt"]) for i in items]


@pytest.fixture
def h(platform: Platform, transport: FakeTransport) -> Harness:
    return Harness(platform, transport)


def test_desired_is_published_then_reconciled_when_reported(h: Harness) -> None:
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
    assert h.step(0) == [("M1", "sent", 1)]
    assert h.transport.desired == [("M1", {"speedSetpoint": 900.0})]
    assert h.step(1) == []  # not due yet, nothing changed
    h.platform.twins.patch("M1", {"reported": {"speedSetpoint": 900.0}})
    assert h.step(2) == [("M1", "reconciled", 1)]
    assert h.rec.tracked == 0 and h.step(30) == []
    feed = [item for _, item in h.store.changes(0, 100)]
    assert [(i["kind"], i["status"], i["properties"]) for i in feed] == [
        ("desired", "sent", {"speedSetpoint": 900.0}), ("desired", "reconciled", {"speedSetpoint": 900.0})]
    assert feed[0]["time"] == "2024-05-01T08:00:00Z" and feed[1]["time"] == "2024-05-01T08:00:02Z"


def test_unanswered_desired_is_republished_with_backoff_then_times_out(h: Harness) -> None:
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
    assert h.step(0) == [("M1", "sent", 1)]
    assert h.step(4.9) == []
    assert h.step(5) == [("M1", "retried", 2)]  # after retry_s
    assert h.step(14) == []
    assert h.step(15) == [("M1", "retried", 3)]  # after 2 × retry_s
    assert h.step(35) == [("M1", "retried", 4)]  # after 4 × retry_s
    assert h.step(59) == []  # max_attempts reached: no more publications
    assert h.step(60) == [("M1", "timed_out", 4)]
    assert len(h.transport.desired) == 4
    assert h.platform.twins.get("M1").delta == {"speedSetpoint": 900.0}  # still visible
    h.platform.twins.patch("M1", {"reported": {"state": "idle"}})
    assert h.step(100) == []  # gave up on this desired state; an unrelated report does not restart it
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 700.0}})
    assert h.step(101) == [("M1", "sent", 1)]  # a new desired state starts again
    assert h.transport.desired[-1] == ("M1", {"speedSetpoint": 700.0})


def test_a_desired_change_while_waiting_restarts_with_the_new_values(h: Harness) -> None:
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
    h.step(0)
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 950.0}})
    assert h.step(1) == [("M1", "sent", 1)]
    assert h.transport.desired[-1] == ("M1", {"speedSetpoint": 950.0})
    h.platform.twins.patch("M1", {"reported": {"speedSetpoint": 900.0}})
    assert h.step(2) == []  # the old value does not reconcile the new one
    h.platform.twins.patch("M1", {"reported": {"speedSetpoint": 950.0}})
    assert h.step(3) == [("M1", "reconciled", 1)]


def test_a_failed_publication_is_recorded_and_retried(h: Harness) -> None:
    h.transport.desired_failures = [Unavailable("broker unreachable")]
    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
    assert h.step(0) == [("M1", "sent", 1)]
    assert h.store.changes(0, 10)[0][1]["error"] == "broker unreachable"
    assert h.step(5) == [("M1", "retried", 2)]
    assert h.transport.desired == [("M1", {"speedSetpoint": 900.0})]


def test_a_startup_scan_finds_twins_with_a_delta(platform: Platform, transport: FakeTransport) -> None:
    platform.twins.patch("M2", {"desired": {"speedSetpoint": 500.0}})
    platform.twins.put("M3", {"model": MACHINE, "desired": {"speedSetpoint": 1.0},
                              "reported": {"speedSetpoint": 1.0}})  # nothing to do
    h = Harness(platform, transport)
    h.rec.request_scan()
    items = run(h.rec.run_once(T0))
    assert [(i["twin"], i["status"]) for i in items] == [("M2", "sent")]
    assert transport.desired == [("M2", {"speedSetpoint": 500.0})]


def test_a_deleted_twin_is_forgotten(h: Harness) -> None:
    h.platform.twins.patch("M2", {"desired": {"speedSetpoint": 500.0}})
    h.step(0)
    assert h.rec.tracked == 1
    h.platform.twins.delete("M2")
    assert h.step(1) == [] and h.rec.tracked == 0
    assert h.step(10) == []


def test_state_stays_bounded_and_every_twin_is_handled_eventually(platform: Platform,
                                                                  transport: FakeTransport) -> None:
    for i in range(5):
        platform.twins.put(f"X{i}", {"model": MACHINE, "desired": {"speedSetpoint": float(i)}})
    h = Harness(platform, transport, max_twins=2, timeout_s=10, max_attempts=1)
    for i in range(5):
        platform.twins.patch(f"X{i}", {"desired": {"speedSetpoint": float(i + 10)}})
    seen: set[str] = set()
    for step in range(12):
        items = h.step(step * 11)  # each pass: the tracked twins time out, making room for others
        assert h.rec.tracked <= 2 and len(h.rec._dirty) <= 2 and len(h.rec._gave_up) <= 2
        seen |= {twin for twin, status, _ in items if status == "sent"}
    assert seen == {f"X{i}" for i in range(5)}


def test_notify_ignores_events_that_do_not_touch_state(h: Harness) -> None:
    class E:
        def __init__(self, type_: str, payload: dict[str, Any]) -> None:
            self.twin, self.type, self.payload = "M1", type_, payload

    h.rec.notify(E("RelationshipSet", {"id": "r"}))
    h.rec.notify(E("TwinPatched", {"attributes": {"x": 1}}))
    assert h.rec._dirty == set()
    h.rec.notify({"kind": "event", "twin": "M2", "type": "TwinPatched", "payload": {"attributes": {}}})
    assert h.rec._dirty == set()
    h.rec.notify(E("TwinPatched", {"reported": {"speed": 1.0}}))
    h.rec.notify({"kind": "event", "twin": "M2", "type": "TwinPatched", "payload": {"desired": {}}})
    assert h.rec._dirty == {"M1", "M2"}


def test_run_reacts_to_notify_without_waiting_for_the_interval(h: Harness) -> None:
    async def main() -> None:
        task = asyncio.create_task(h.rec.run(interval_s=30, scan_first=False))
        await asyncio.sleep(0.05)
        h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
        h.feed_events()
        for _ in range(100):
            if h.transport.desired:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert h.transport.desired == [("M1", {"speedSetpoint": 900.0})]


def test_items_carry_the_model_and_reach_the_hub_source(h: Harness) -> None:
    from tvilling.decisions.feed import CommandFeedSource
    from tvilling.streams import Filter, Source

    h.platform.twins.patch("M1", {"desired": {"speedSetpoint": 900.0}})
    h.step(0)
    source = CommandFeedSource(h.store)
    assert isinstance(source, Source) and source.name == "commands"
    [(position, item)] = source.read(0, 10)
    assert position == 1 and item["model"] == MACHINE
    assert Filter(twins=frozenset({"M1"}), models=frozenset({MACHINE}), types=frozenset({"desired"})).matches(item)
    assert not Filter(twins=frozenset({"M2"})).matches(item)
