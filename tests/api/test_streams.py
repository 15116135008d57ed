"""Live change streams: the hub and its filters (unit), and SSE/WebSocket against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
import pytest
import websockets
from streams_helpers import ASSET, BEARING, LINE, MACHINE, LiveServer, count, items, sse, wait_for

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, Malformed, Unavailable
from tvilling.core.events import TWIN_PATCHED, Event
from tvilling.models.builtin import builtin_documents
from tvilling.streams import (
    ChangeHub,
    Filter,
    SlowConsumer,
    decode_cursor,
    encode_cursor,
    find_head,
    parse_filter,
)
from tvilling.twins.feed import EventFeedSource


def run(coro: Any, timeout: float = 20.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


# -- cursors and filters (pure) ------------------------------------------------------------
def test_cursor_round_trip_and_bad_cursors():
    names = ["events", "commands"]
    assert decode_cursor(encode_cursor({"events": 5, "commands": 0}), names) == {"events": 5, "commands": 0}
    assert decode_cursor("42", names) == {"events": 42}
    assert decode_cursor("commands:3", names) == {"commands": 3}
    for bad in ["events:", "events:x", "nope:1", "events:1,events:2", "events=1", "x" * 600, "-1"]:
        with pytest.raises(Malformed):
            decode_cursor(bad, names)


def test_parse_filter_reads_lists_and_refuses_bad_input():
    expand = {ASSET: frozenset({ASSET, BEARING, MACHINE})}.__getitem__
    f = parse_filter(twins="B1, M1", model=ASSET, properties="temperature,motor.current", types="TwinPatched",
                     expand=expand, known_types=frozenset({"TwinPatched", "event"}))
    assert f.twins == {"B1", "M1"} and f.models == {ASSET, BEARING, MACHINE}
    assert f.properties == (("motor", "current"), ("temperature",)) and f.types == {"TwinPatched"}
    assert parse_filter(twins=["B1"], types=None) == Filter(twins=frozenset({"B1"}))
    assert parse_filter(twins=" , ") == Filter()
    for kwargs in [{"twins": "bad id!"}, {"properties": "motor..current"}, {"properties": "9lives"},
                   {"types": "Nope"}, {"twins": [1, 2]}, {"twins": ",".join(f"t{i}" for i in range(1001))}]:
        with pytest.raises(Malformed):
            parse_filter(**kwargs, known_types=frozenset({"TwinPatched"}))


def _event_item(twin: str = "B1", model: str = BEARING, type_: str = TWIN_PATCHED, **payload: Any) -> dict:
    return {"kind": "event", "twin": twin, "model": model, "type": type_, "payload": payload}


def test_filter_matches_twins_models_properties_and_types():
    patch = _event_item(reported={"temperature": 71.0}, metadata={"reported": {"temperature": {}}})
    motor = _event_item("M1", MACHINE, reported={"motor": {"current": 3.2}})
    dropped = _event_item("M1", MACHINE, desired={"motor": None})
    assert Filter().matches(patch)
    assert Filter(twins=frozenset({"B1"})).matches(patch) and not Filter(twins=frozenset({"B2"})).matches(patch)
    assert Filter(models=frozenset({BEARING})).matches(patch) and not Filter(models=frozenset({MACHINE})).matches(patch)
    temp = Filter(properties=(("temperature",),))
    assert temp.matches(patch) and not temp.matches(motor)
    current = Filter(properties=(("motor", "current"),))
    assert current.matches(motor) and current.matches(dropped)  # clearing the component clears its current
    assert Filter(properties=(("motor",),)).matches(motor)  # a component as a whole
    assert not Filter(properties=(("motor", "temperature"),)).matches(motor)
    assert not Filter(properties=(("metadata",),)).matches(patch)  # only reported/desired count
    assert not temp.matches({"kind": "command", "twin": "B1"})
    assert Filter(types=frozenset({"TwinPatched"})).matches(patch)
    assert Filter(types=frozenset({"event"})).matches(patch)
    assert not Filter(types=frozenset({"command", "TwinCreated"})).matches(patch)
    both = Filter(twins=frozenset({"M1"}), properties=(("motor", "current"),))
    assert both.matches(motor) and not both.matches(patch)


@pytest.mark.parametrize("positions", [[], [1], [1, 2, 3], list(range(1, 1001)), [2, 5, 6, 40, 41, 1000, 1025]])
def test_find_head_finds_the_last_position_even_with_gaps(positions):
    reads = []

    def read(after: int, limit: int) -> list[int]:
        reads.append(after)
        return [p for p in positions if p > after][:limit]

    assert find_head(read) == (positions[-1] if positions else 0)
    assert len(reads) < 40


def test_event_source_items_carry_kind_and_the_twins_model():
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents("plant"))
    p.twins.put("B1", {"model": BEARING})
    p.twins.put("L1", {"model": LINE})
    p.twins.patch("B1", {"reported": {"temperature": 60.0}})
    p.twins.delete("L1")
    source = EventFeedSource(p.twin_store, cache_size=1)
    got = source.read(0, 100)
    assert [pos for pos, _ in got] == [1, 2, 3, 4]
    assert [(i["kind"], i["type"], i["twin"], i["model"]) for _, i in got] == [
        ("event", "TwinCreated", "B1", BEARING), ("event", "TwinCreated", "L1", LINE),
        ("event", "TwinPatched", "B1", BEARING), ("event", "TwinDeleted", "L1", LINE)]
    fresh = EventFeedSource(p.twin_store)  # nothing cached: from the store, and from history when deleted
    assert [i["model"] for _, i in fresh.read(2, 100)] == [BEARING, LINE]
    assert fresh.head() == 4 and fresh.read(4, 10) == []


# -- the hub, with in-test sources ---------------------------------------------------------------
class ListSource:
    """A thread-safe in-memory feed; ``step`` > 1 leaves gaps between positions."""

    def __init__(self, name: str, kind: str, step: int = 1) -> None:
        self.name, self.kind, self.step = name, kind, step
        self.types = frozenset({f"{kind}.x"})
        self.items: list[tuple[int, dict]] = []
        self.lock = threading.Lock()
        self.reads = 0

    def add(self, n: int = 1, twin: str = "t1") -> None:
        with self.lock:
            for _ in range(n):
                pos = (self.items[-1][0] if self.items else 0) + self.step
                self.items.append((pos, {"kind": self.kind, "type": f"{self.kind}.x", "twin": twin, "n": pos}))

    def read(self, after: int, limit: int) -> list[tuple[int, dict]]:
        with self.lock:
            self.reads += 1
            return [it for it in self.items if it[0] > after][:limit]


async def take(sub: Any, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
    out = []
    async with asyncio.timeout(timeout):
        async for cursor, item in sub:
            out.append((cursor, item))
            if len(out) == n:
                return out
    return out


def test_hub_fans_out_two_sources_live_with_cursors_naming_both():
    async def main() -> None:
        events, commands = ListSource("events", "event"), ListSource("commands", "command", step=3)
        events.add(5)
        async with ChangeHub([events, commands], busy_interval=0.01, idle_interval=0.05) as hub:
            assert hub.positions == {"events": 5, "commands": 0}
            assert hub.known_types() == {"event", "event.x", "command", "command.x"}
            async with hub.subscribe() as everything, hub.subscribe(Filter(types=frozenset({"command"}))) as cmds:
                events.add(2)
                commands.add(2)
                hub.notify()
                got = await take(everything, 4)
                assert sorted((i["kind"], i["n"]) for _, i in got) == [
                    ("command", 3), ("command", 6), ("event", 6), ("event", 7)]
                assert got[-1][0] == "events:7,commands:6"
                assert [i["n"] for _, i in await take(cmds, 2)] == [3, 6]

    run(main())


def test_catch_up_joins_the_live_feed_without_gap_or_duplicate_while_writes_go_on():
    async def main() -> None:
        src = ListSource("events", "event")
        src.add(1500)
        total = 4000
        async with ChangeHub([src], busy_interval=0.001, idle_interval=0.01, page=64, catchup_page=50) as hub:

            async def writer() -> None:
                while len(src.items) < total:
                    src.add(7)
                    await asyncio.sleep(0.001)

            async def reader(start: int) -> list[int]:
                async with hub.subscribe(after={"events": start}, buffer=total) as sub:
                    got = await take(sub, total - start, timeout=15)
                    assert sub.live
                return [i["n"] for _, i in got]

            w = asyncio.create_task(writer())
            results = await asyncio.gather(*(reader(s) for s in (0, 10, 1499, 1500)))
            await w
            for start, got in zip((0, 10, 1499, 1500), results, strict=True):
                assert got == list(range(start + 1, total + 1))

    run(main())


def test_a_slow_subscriber_is_closed_with_the_reason_and_the_others_go_on():
    async def main() -> None:
        src = ListSource("events", "event")
        hub = ChangeHub([src], busy_interval=0.005, idle_interval=0.01, page=10)
        async with hub, hub.subscribe(buffer=10) as slow, hub.subscribe(buffer=10) as fast:
            got: list[int] = []
            for _ in range(20):
                src.add(5)
                hub.notify()
                got += [i["n"] for _, i in await take(fast, 5)]
                assert hub.stats()["max_backlog"] <= 10
            assert got == list(range(1, 101))
            assert hub.stats()["subscribers"] == 1 and hub.dropped == 1
            with pytest.raises(SlowConsumer) as caught:
                await slow.get()
            assert str(caught.value) == "slow consumer: 11 items behind, buffer 10; resume after events:0"
            assert caught.value.fields["resume"] == "events:0" and slow.backlog == 0

    run(main())


def test_notify_wakes_an_idle_hub_at_once_from_any_thread():
    async def main() -> None:
        src = ListSource("events", "event")
        async with ChangeHub([src], busy_interval=5, idle_interval=5) as hub:
            await asyncio.sleep(0.05)  # the poller is now waiting out its 5 s
            async with hub.subscribe() as sub:
                t0 = time.monotonic()
                await asyncio.to_thread(lambda: (src.add(1), hub.notify()))
                assert [i["n"] for _, i in await take(sub, 1, timeout=2)] == [1]
                assert time.monotonic() - t0 < 1

    run(main())


def test_the_hub_polls_fast_when_busy_and_backs_off_when_idle():
    async def main() -> None:
        src = ListSource("events", "event")
        async with ChangeHub([src], busy_interval=0.01, idle_interval=0.2):
            await asyncio.sleep(0.5)
            idle_reads = src.reads
            assert idle_reads < 12
            for _ in range(25):
                src.add(1)
                await asyncio.sleep(0.02)
            assert src.reads - idle_reads > 15

    run(main())


def test_stopping_the_hub_ends_subscriptions_and_refuses_new_ones():
    async def main() -> None:
        src = ListSource("events", "event")
        hub = ChangeHub([src])
        with pytest.raises(Unavailable):
            async with hub.subscribe():
                pass
        async with hub:
            sub = hub.subscribe()
            await sub.__aenter__()
            task = asyncio.create_task(take(sub, 1))
            await asyncio.sleep(0.05)
        assert await task == [] and hub.stats()["subscribers"] == 0
        with pytest.raises(Malformed):
            hub.subscribe(buffer=0)

    run(main())


def test_a_cursor_ahead_of_the_hub_skips_what_it_has_seen():
    async def main() -> None:
        src = ListSource("events", "event")
        src.add(3)
        hub = ChangeHub([src], busy_interval=0.01, idle_interval=0.02)
        async with hub, hub.subscribe(after="events:5") as sub:
            src.add(4)
            assert [i["n"] for _, i in await take(sub, 2)] == [6, 7]

    run(main())


# -- the HTTP streams, against a real server ----------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    with LiveServer(tmp_path / "data", heartbeat=0.3) as s:
        yield s


async def _open(client: httpx.AsyncClient, url: str, until: Any, **kw: Any) -> asyncio.Task:
    opened = asyncio.Event()
    task = asyncio.create_task(sse(client, url, until=until, opened=opened, **kw))
    await asyncio.wait_for(opened.wait(), 5)
    return task


def test_sse_streams_changes_live_filtered_by_twin_model_and_property(server):
    async def main() -> None:
        url = server.base + "/api/stream"
        async with httpx.AsyncClient(timeout=10) as c:
            b1 = await _open(c, url + "?twins=B1", count(3))
            assets = await _open(c, url + f"?model={ASSET}", count(5))  # Bearing and Machine extend Asset
            bearings = await _open(c, url + f"?model={BEARING}&types=TwinPatched", count(2))
            motor = await _open(c, url + "?properties=motor.temperature", count(2))
            await asyncio.to_thread(server.put, "B1", BEARING, reported={"temperature": 50.0})
            await asyncio.to_thread(server.put, "M1", MACHINE, reported={"motor": {"temperature": 40.0}})
            await asyncio.to_thread(server.patch, "B1", {"reported": {"temperature": 51.5}})
            await asyncio.to_thread(server.patch, "M1", {"reported": {"motor": {"temperature": 42.0}}})
            await asyncio.to_thread(server.patch, "B1", {"desired": {"lubricationInterval": 30.0}})
            await asyncio.to_thread(server.patch, "M1", {"desired": {"speedSetpoint": 900.0}})
            got = {name: items(await t) for name, t in
                   [("b1", b1), ("assets", assets), ("bearings", bearings), ("motor", motor)]}
        seen = {k: [(m["event"], m["data"]["twin"], m["data"]["revision"]) for m in v] for k, v in got.items()}
        assert seen["b1"] == [("TwinCreated", "B1", 1), ("TwinPatched", "B1", 2), ("TwinPatched", "B1", 3)]
        assert seen["assets"] == [("TwinCreated", "B1", 1), ("TwinCreated", "M1", 1), ("TwinPatched", "B1", 2),
                                  ("TwinPatched", "M1", 2), ("TwinPatched", "B1", 3)]
        assert seen["bearings"] == [("TwinPatched", "B1", 2), ("TwinPatched", "B1", 3)]
        assert seen["motor"] == [("TwinCreated", "M1", 1), ("TwinPatched", "M1", 2)]
        first = got["b1"][1]
        # every feed of the platform
        assert first["id"] == f"events:{first['data']['position']},commands:0,alarms:0,scenarios:0,workorders:0"
        assert first["data"]["kind"] == "event" and first["data"]["model"] == BEARING
        assert first["data"]["payload"]["reported"] == {"temperature": 51.5}
        assert "temperature" in first["data"]["payload"]["metadata"]["reported"]

    run(main())


def test_sse_resumes_with_last_event_id_exactly_after_what_it_saw(server):
    async def main() -> None:
        url = server.base + "/api/stream?twins=B1,B2"
        async with httpx.AsyncClient(timeout=10) as c:
            first = await _open(c, url, count(3))
            await asyncio.to_thread(server.put, "B1", BEARING)
            await asyncio.to_thread(server.put, "B2", BEARING)
            for i in range(3):
                await asyncio.to_thread(server.patch, "B1", {"reported": {"temperature": float(i)}})
            seen = items(await first)  # disconnected after three
            assert [m["data"]["position"] for m in seen] == [1, 2, 3]
            for i in range(4):  # missed while away, among changes to other twins
                await asyncio.to_thread(server.put, f"X{i}", LINE)
                await asyncio.to_thread(server.patch, "B2", {"reported": {"temperature": float(i)}})
            missed = [4, 5, 7, 9, 11, 13]
            again = await sse(c, url, until=count(len(missed)), headers={"Last-Event-ID": seen[-1]["id"]})
            assert [m["data"]["position"] for m in items(again)] == missed
            # The header wins over ?after= (a browser reconnects with its original URL).
            header = await sse(c, url + "&after=events:0", until=count(1), headers={"Last-Event-ID": "events:11"})
            assert [m["data"]["position"] for m in items(header)] == [13]
            # A quiet filtered stream's keep-alive comments carry the cursor forward.
            quiet = await sse(c, server.base + "/api/stream?twins=nobody&after=events:2",
                              until=lambda ms: any("comment" in m and m.get("id") for m in ms))
            beat = next(m for m in quiet if "comment" in m)
            assert beat["id"] == "events:13,commands:0,alarms:0,scenarios:0,workorders:0" and not items(quiet)

    run(main())


def test_websocket_streams_with_query_filters_or_a_subscribe_message(server):
    async def main() -> None:
        ws_url = server.base.replace("http", "ws") + "/api/ws"
        async with websockets.connect(ws_url + f"?model={ASSET}&properties=temperature") as live:
            await wait_for(lambda: server.hub.stats()["subscribers"] == 1)
            await asyncio.to_thread(server.put, "B1", BEARING, reported={"temperature": 20.0})
            await asyncio.to_thread(server.put, "L1", LINE)
            await asyncio.to_thread(server.patch, "B1", {"reported": {"temperature": 21.0}})
            msgs = [json.loads(await asyncio.wait_for(live.recv(), 5)) for _ in range(2)]
            assert [(m["id"], m["item"]["type"], m["item"]["twin"]) for m in msgs] == [
                ("events:1,commands:0,alarms:0,scenarios:0,workorders:0", "TwinCreated", "B1"),
                ("events:3,commands:0,alarms:0,scenarios:0,workorders:0", "TwinPatched", "B1")]
        async with websockets.connect(ws_url) as resumed:
            await resumed.send(json.dumps({"subscribe": {"twins": ["B1", "L1"], "after": "events:1"}}))
            msgs = [json.loads(await asyncio.wait_for(resumed.recv(), 5)) for _ in range(2)]
            assert [m["item"]["position"] for m in msgs] == [2, 3]
            await asyncio.to_thread(server.patch, "B1", {"reported": {"temperature": 22.0}})
            resumed_id = json.loads(await asyncio.wait_for(resumed.recv(), 5))["id"]
            assert resumed_id == "events:4,commands:0,alarms:0,scenarios:0,workorders:0"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url + "?types=Nope"):
                pass
        assert refused.value.response.status_code == 400
        assert json.loads(refused.value.response.body)["field"] == "types"
        async with websockets.connect(ws_url) as bad:
            await bad.send(json.dumps({"subscribe": {"model": "dtmi:nothing:Here;1"}}))
            error = json.loads(await bad.recv())["error"]
            assert error["status"] == 422 and error["rule"] == "unknown_model"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await bad.recv()
            assert closed.value.rcvd.code == 1008 and "not registered" in closed.value.rcvd.reason

    run(main())


def test_bad_filters_are_problems_before_the_stream_starts(server):
    with httpx.Client(base_url=server.base, timeout=5) as c:
        for query, status, field in [("types=Nope", 400, "types"), ("properties=bad-name", 400, "properties"),
                                     ("twins=bad%20id", 400, "twins"), ("after=garbage", 400, "after"),
                                     ("buffer=0", 400, "buffer"), ("buffer=x", 400, "query.buffer"),
                                     ("model=dtmi:nothing:Here;1", 422, "model")]:
            r = c.get(f"/api/stream?{query}")
            assert r.status_code == status, (query, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["field"] == field
        r = c.get("/api/stream", headers={"Last-Event-ID": "nope:1"})
        assert r.status_code == 400


def test_streams_answer_503_when_the_hub_is_not_running():
    from fastapi.testclient import TestClient

    from tvilling.api.app import create_app
    from tvilling.runtime import hub_for

    p = build_platform(Settings(store="memory"))
    app = create_app(platform=p)
    with TestClient(app) as c:
        app.state.hub = None  # as if the server had none
        r = c.get("/api/stream")
        assert r.status_code == 503 and r.json()["rule"] == "no_hub"
        app.state.hub = hub_for(p)  # wired, but never started
        r = c.get("/api/stream")
        assert r.status_code == 503 and r.json()["rule"] == "hub_stopped"


def _raw_sse(port: int, query: str) -> socket.socket:
    """An SSE client that reads nothing, with a tiny receive window, so the server's sends back up."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /api/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    return s


def _read_all(s: socket.socket) -> bytes:
    s.settimeout(5)
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_slow_client_is_dropped_with_the_reason_while_a_fast_one_keeps_up(server):
    note = "x" * 20_000  # ~20 kB per event: the socket buffers (a few MB) fill within a few hundred
    server.put("B1", BEARING)

    async def main() -> None:
        slow = _raw_sse(server.port, "twins=B1&buffer=100")
        ws_url = server.base.replace("http", "ws") + "/api/ws?twins=B1&buffer=100"
        ws_sock = socket.socket()  # a WebSocket client that stops reading, with a tiny window, uncompressed
        ws_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws_sock.connect(("127.0.0.1", server.port))
        async with httpx.AsyncClient(timeout=20) as c, websockets.connect(
                ws_url, sock=ws_sock, max_queue=4, compression=None) as slow_ws:
            fast = await _open(c, server.base + "/api/stream?twins=B1", lambda ms: any(
                m.get("data", {}).get("payload", {}).get("attributes", {}).get("last") for m in ms), timeout=20)
            await wait_for(lambda: server.hub.stats()["subscribers"] == 3)
            rss0 = psutil.Process().memory_info().rss
            peak = 0

            def write() -> int:
                nonlocal peak
                for i in range(1500):  # until both slow clients are dropped
                    server.patch("B1", {"attributes": {"note": note, "i": i}})
                    peak = max(peak, server.hub.stats()["queued"])
                    if server.hub.dropped == 2:
                        break
                    if i % 20 == 0:
                        time.sleep(0.002)  # bursts well below the buffer: only not reading makes a client slow
                for i in range(10):  # the survivor still gets everything after
                    server.patch("B1", {"attributes": {"note": None, "i": i, "last": i == 9}})
                return server.platform.twins.get("B1").revision

            last_revision = await asyncio.to_thread(write)
            got = items(await fast)
            assert [m["data"]["revision"] for m in got] == list(range(2, last_revision + 1))  # all, in order
            assert server.hub.dropped == 2
            await wait_for(lambda: server.hub.stats()["subscribers"] == 0)  # the fast one has left too
            assert peak <= 100 + 100 + 1000 and psutil.Process().memory_info().rss - rss0 < 200e6
            last = None
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    last = await asyncio.wait_for(slow_ws.recv(), 5)
            assert closed.value.rcvd.code == 1013
            reason = closed.value.rcvd.reason
            assert reason.startswith("slow consumer: 101 items behind, buffer 100; resume after events:")
            assert json.loads(last)["error"]["rule"] == "slow_consumer"
        raw = await asyncio.to_thread(_read_all, slow)
        slow.close()
        assert raw.startswith(b"HTTP/1.1 200") and b"event: TwinPatched" in raw
        tail = raw.rsplit(b"event: error\ndata: ", 1)[1]
        problem = json.loads(tail.split(b"\n\n", 1)[0])
        assert problem["rule"] == "slow_consumer" and problem["detail"].startswith("slow consumer: 101 items behind")
        last_id = raw.rsplit(b"\nid: ", 1)[1].split(b"\n", 1)[0].decode()
        assert problem["resume"] == last_id  # reconnect from there and nothing is lost

    run(main(), timeout=40)


def test_fifty_sse_clients_all_get_a_burst_of_a_thousand_events_in_order(server):
    server.put("B1", BEARING)
    clients, burst = 50, 1000

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients + 5)
        async with httpx.AsyncClient(timeout=20, limits=limits) as c:
            tasks = await asyncio.gather(*(_open(c, server.base + "/api/stream?twins=B1", count(burst), timeout=25)
                                           for _ in range(clients)))
            store = server.platform.twin_store

            def write() -> None:
                now = datetime.now(UTC)
                for start in range(0, burst, 100):  # ingest-sized batches, one commit each
                    store.commit([Event(twin="B1", revision=2 + i, time=now, actor="burst", type=TWIN_PATCHED,
                                        payload={"reported": {"temperature": float(i)}})
                                  for i in range(start, start + 100)])
                    server.hub.notify()

            t0 = time.monotonic()
            await asyncio.to_thread(write)
            results = await asyncio.gather(*tasks)
            elapsed = time.monotonic() - t0
        for r in results:
            assert [m["data"]["revision"] for m in items(r)] == list(range(2, burst + 2))
        assert server.hub.dropped == 0
        print(json.dumps({"clients": clients, "events": burst, "seconds": round(elapsed, 2)}))

    run(main(), timeout=40)


def test_changes_written_by_another_process_reach_the_stream(server):
    server.put("B1", BEARING)
    cli = [sys.executable, "-m", "tvilling.cli", "twins", "patch", "--data-dir", str(server.data_dir), "B1",
           json.dumps({"reported": {"temperature": 77.5}})]

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            task = await _open(c, server.base + "/api/stream?properties=temperature", count(1), timeout=15)
            done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=30,
                                           env={**os.environ, "TVILLING_LOG_LEVEL": "warning"})
            assert done.returncode == 0, done.stderr
            (msg,) = items(await task)
        assert msg["event"] == "TwinPatched" and msg["data"]["actor"] == "cli"
        assert msg["data"]["payload"]["reported"] == {"temperature": 77.5} and msg["data"]["model"] == BEARING

    run(main(), timeout=40)


def test_invalid_is_what_an_unknown_model_raises():
    p = build_platform(Settings(store="memory"))
    with pytest.raises(Invalid):
        parse_filter(model="dtmi:nothing:Here;1", expand=p.models.expand)
