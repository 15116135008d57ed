"""Helpers for the plant's transport tests: a recording ingest sink, unique namespaces, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import pytest

from tvilling.core.envelope import Envelope
from tvilling.ingest.ports import IngestResult, RawMessage

T = TypeVar("T")
MOSQUITTO = os.environ.get("TVILLING_TEST_MQTT", "mqtt://127.0.0.1:1883")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run ``coro`` in a fresh loop; fail if it takes ``timeout`` s, even where a library swallowed the cancel."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    started = time.monotonic()
    result = asyncio.run(main())
    if time.monotonic() - started >= timeout:
        raise AssertionError(f"took over {timeout:g} s (something swallowed the cancellation at the deadline)")
    return result


@pytest.fixture
def mosquitto() -> str:
    """The real Mosquitto on loopback (tests use their own twin ids on it)."""
    parts = urlsplit(MOSQUITTO)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=1).close()
    except OSError:
        pytest.skip(f"no MQTT broker at {MOSQUITTO} (set TVILLING_TEST_MQTT)")
    return MOSQUITTO


@pytest.fixture
def line() -> str:
    """A line id no other test uses, so its twins' topics are this test's own."""
    return f"t{uuid.uuid4().hex[:10]}"


class RecordingSink:
    """A fake of OUR ingest port: records the envelopes it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rejected: list[tuple[RawMessage, str]] = []
        self.changed = asyncio.Event()

    async def ingest(self, envelopes: Sequence[Envelope], *, raw: RawMessage | None = None) -> IngestResult:
        self.envelopes.extend(envelopes)
        self.changed.set()
        return IngestResult(accepted=sum(len(e.values) for e in envelopes))

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        self.rejected.append((raw, reason))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out: {len(self.envelopes)} envelopes, {len(self.rejected)} rejected")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
