"""The guard over a real transport (uvicorn on a loopback port, real HTTP and WebSocket clients): what a
browser on another site sends is refused on the wire, what the server's own pages and scripts send is not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from fastapi import FastAPI
from streams_helpers import MACHINE, LiveServer, count, items, sse

from tvilling.api import guard

EVIL = "http://evil.example"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "data")
    app = live.server.config.app
    assert isinstance(app, FastAPI)
    guard.install(app, live.platform.settings)  # as create_app will
    live.put("M1", MACHINE, reported={"state": "running"})
    with live:
        yield live


def test_a_websocket_from_another_site_is_refused_on_the_wire(server: LiveServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/api/ws?twins=M1"

    async def run() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin=websockets.Origin(EVIL)):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, origin=websockets.Origin(f"http://127.0.0.1:{server.port}")) as ws:
            await asyncio.sleep(0.3)  # subscribed
            server.patch("M1", {"reported": {"state": "idle"}})
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["item"]["twin"] == "M1"

    asyncio.run(run())


def test_sse_from_another_site_is_refused_and_from_its_own_page_streams(server: LiveServer) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as c:
            r = await c.get("/api/stream?twins=M1&after=events:0", headers={"origin": EVIL})
            assert (r.status_code, r.json()["rule"]) == (403, "origin")
            got = await sse(c, "/api/stream?twins=M1&after=events:0", until=count(1),
                            headers={"origin": server.base})
            assert items(got)[0]["data"]["twin"] == "M1"

    asyncio.run(run())


def test_a_rebound_name_and_a_form_post_are_refused_on_the_wire(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base, timeout=10) as c:
        r = c.get("/api/twins/M1", headers={"host": f"evil.example:{server.port}"})
        assert (r.status_code, r.json()["rule"]) == (400, "allowed_hosts")
        assert c.get("/api/twins/M1", headers={"host": f"localhost:{server.port}"}).status_code == 200

        def chunks() -> Iterator[bytes]:  # a body of unknown length: Transfer-Encoding: chunked
            yield b'{"reported": '
            yield b'{"state": "stopped"}}'

        r = c.patch("/api/twins/M1", content=chunks(), headers={"content-type": "text/plain"})
        assert (r.status_code, r.json()["rule"]) == (415, "content_type")
        assert r.headers["x-content-type-options"] == "nosniff"
        r = c.patch("/api/twins/M1", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["reported"]["state"] == "stopped"
