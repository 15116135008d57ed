"""Helpers for the change-stream tests: a real uvicorn server in a thread, and SSE/WS clients."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tvilling.api.app import create_app
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.models.builtin import builtin_documents
from tvilling.runtime import Runtime
from tvilling.streams import ChangeHub

ASSET = "dtmi:tvilling:example:Asset;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
LINE = "dtmi:tvilling:example:ProductionLine;1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving the API plus the stream router, on a free loopback port, in a thread."""

    def __init__(self, data_dir: Path, *, heartbeat: float = 15.0, settings: dict[str, Any] | None = None,
                 **hub_options: Any) -> None:
        self.data_dir = data_dir
        self.platform: Platform = build_platform(Settings(data_dir=data_dir, **(settings or {})))
        self.platform.models.add(builtin_documents("plant"))
        options = {"busy_interval": 0.02, "idle_interval": 0.2, **hub_options}
        self.runtime = Runtime(self.platform, hub_options=options)
        self.hub: ChangeHub = self.runtime.hub
        app = create_app(runtime=self.runtime)
        app.state.stream_heartbeat_s = heartbeat
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.platform.close()

    # -- writes, in this (another) thread, straight to the store ----------------------------
    def put(self, twin: str, model: str, **sections: Any) -> None:
        self.platform.twins.put(twin, {"model": model, **sections}, actor="test")

    def patch(self, twin: str, body: dict[str, Any]) -> None:
        self.platform.twins.patch(twin, body, actor="test")


async def sse(client: httpx.AsyncClient, url: str, *, until: Callable[[list[dict[str, Any]]], bool],
              headers: dict[str, str] | None = None, timeout: float = 10.0,
              opened: asyncio.Event | None = None) -> list[dict[str, Any]]:
    """Read SSE messages (dicts with id/event/data/comment) until ``until(messages)`` or the stream ends."""
    out: list[dict[str, Any]] = []
    with_deadline = asyncio.timeout(timeout)
    async with with_deadline, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        msg: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if opened is not None and not opened.is_set():
                opened.set()
            if line == "":
                if msg:
                    if "data" in msg:
                        msg["data"] = json.loads(msg["data"])
                    out.append(msg)
                    msg = {}
                    if until(out):
                        return out
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                msg["comment"] = value
            else:
                msg[field] = value
    return out


def items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "data" in m and m.get("event") != "error"]


def count(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda ms: len(items(ms)) >= n


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
