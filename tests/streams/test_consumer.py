"""The consumer: batches in feed order, a saved position that survives a restart, woken by the hub."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tvilling.app import build_platform
from tvilling.backend.cursors import SqliteCursors
from tvilling.config import Settings
from tvilling.core.errors import Conflict, Invalid
from tvilling.models.builtin import builtin_documents
from tvilling.runtime import hub_for, source_registry
from tvilling.streams import Consumer, MemoryCursors, SourceRegistry
from tvilling.twins.feed import TwinEvents

BEARING = "dtmi:tvilling:example:Bearing;1"


class Numbers:
    """A feed of positions 1..n whose items are the positions times ten; counts its reads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def read(self, after: int, limit: int) -> list[tuple[int, int]]:
        self.reads += 1
        return [(p, p * 10) for p in range(after + 1, min(after + limit, self.n) + 1)]


def run(coro: Any, timeout: float = 20.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


async def take(consumer: Consumer[Any], until: int) -> list[Any]:
    """Items until a batch reaches position ``until`` (that batch is handed out, not acknowledged)."""
    out: list[Any] = []
    async with consumer:
        async for batch in consumer:
            out.extend(batch.items)
            if batch.position >= until:
                return out
    return out


def test_batches_come_in_order_and_the_position_is_saved_when_the_next_is_asked(tmp_path: Path) -> None:
    cursors = SqliteCursors(tmp_path / "c.db")
    feed = Numbers(7)
    got = run(take(Consumer("n", feed, cursors, page=3), until=7))
    assert got == [10, 20, 30, 40, 50, 60, 70]
    assert SqliteCursors(tmp_path / "c.db").cursor("n") == 6  # the last batch was not acknowledged
    # a restart resumes after the acknowledged position: the unfinished batch again, nothing before it
    again = run(take(Consumer("n", feed, SqliteCursors(tmp_path / "c.db"), page=3), until=7))
    assert again == [70]


def test_a_failure_in_the_loop_replays_the_batch_it_was_working_on() -> None:
    cursors = MemoryCursors()
    feed = Numbers(4)
    seen: list[int] = []

    async def failing() -> None:
        async with Consumer("f", feed, cursors, page=2) as c:
            async for batch in c:
                seen.extend(batch.items)
                if batch.position == 4:
                    raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run(failing())
    assert cursors.cursor("f") == 2
    assert run(take(Consumer("f", feed, cursors, page=2), until=4)) == [30, 40]  # at least once, never skipped


def test_save_every_s_batches_the_writes_and_exit_saves_the_rest() -> None:
    class Counting(MemoryCursors):
        writes = 0

        def set_cursor(self, name: str, position: int) -> None:
            Counting.writes += 1
            super().set_cursor(name, position)

    cursors = Counting()

    async def main() -> None:
        async with Consumer("s", Numbers(50), cursors, page=1, save_every_s=3600) as c:
            async for batch in c:
                if batch.position == 50:
                    break
        # the consumer stopped cleanly after 49 acknowledged batches: their position was written on exit

    run(main())
    assert cursors.cursor("s") == 49 and Counting.writes == 1  # once, on exit


def test_start_at_head_skips_what_was_there_and_caught_up_consumers_sleep() -> None:
    feed = Numbers(5)
    consumer: Consumer[int] = Consumer("h", feed, MemoryCursors(), start="head", interval=0.05)

    async def main() -> list[int]:
        async with consumer:
            task = asyncio.ensure_future(consumer.__anext__())
            await asyncio.sleep(0.3)
            assert not task.done()  # nothing new: it waits
            reads = feed.reads
            assert reads < 20  # and it polls every interval, not in a busy loop
            feed.n = 6
            return (await task).items

    assert run(main()) == [60]
    assert consumer.position == 5  # the head it started at; 6 was handed out, not acknowledged


def test_bad_arguments_are_refused_by_name() -> None:
    for kwargs, field in [({"page": 0}, "page"), ({"start": "end"}, "start"), ({"interval": 0}, "interval")]:
        with pytest.raises(Invalid) as err:
            Consumer("x", Numbers(1), MemoryCursors(), **kwargs)  # type: ignore[arg-type]
        assert err.value.fields["field"] == field
    with pytest.raises(Invalid):
        Consumer("has space", Numbers(1), MemoryCursors())

    async def without_enter() -> None:
        await Consumer("x", Numbers(1), MemoryCursors()).__anext__()

    with pytest.raises(RuntimeError, match="async with"):
        run(without_enter())


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_consumer_of_twin_events_is_woken_by_the_hub(store: str, tmp_path: Path) -> None:
    settings = Settings(store="memory") if store == "memory" else Settings(data_dir=tmp_path / "data")
    platform = build_platform(settings)
    platform.models.add(builtin_documents("plant"))
    platform.twins.put("B1", {"model": BEARING}, actor="test")
    cursors = MemoryCursors()

    async def main() -> tuple[list[str], float]:
        async with hub_for(platform, busy_interval=0.01, idle_interval=0.05) as hub:
            consumer = Consumer("events", TwinEvents(platform.twin_store), cursors, start="head",
                                wake=hub.advanced, interval=30.0)  # only the hub can wake it in time
            async with consumer:
                task = asyncio.ensure_future(consumer.__anext__())
                await asyncio.sleep(0.1)
                started = time.monotonic()
                await asyncio.to_thread(platform.twins.patch, "B1", {"reported": {"temperature": 70.0}})
                hub.notify()
                batch = await task
                return [e.type for e in batch.items], time.monotonic() - started

    types, took = run(main())
    assert types == ["TwinPatched"] and took < 5.0
    platform.close()


def test_the_registry_keeps_order_and_refuses_duplicates_and_mismatches() -> None:
    assert source_registry().names == ["events", "commands", "alarms", "scenarios", "workorders"]
    registry: SourceRegistry[Any] = SourceRegistry()
    registry.register("events", lambda ctx: ctx)
    with pytest.raises(Conflict):
        registry.register("events", lambda ctx: ctx)
    with pytest.raises(Invalid):
        registry.register("Bad Name", lambda ctx: ctx)

    class Named:
        name = "other"

        def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
            return []

    with pytest.raises(Invalid, match="built a source named 'other'"):
        registry.build(Named())
