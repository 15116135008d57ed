"""Shared by the transport tests (connect/, plant/): a recording fake of the ingest port, and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tvilling.core.envelope import Envelope
from tvilling.core.errors import Unavailable
from tvilling.ingest.ports import IngestResult, RawMessage

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run ``coro`` in a fresh loop; fail if it takes ``timeout`` s, even where a library swallowed the cancel."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    started = time.monotonic()
    result = asyncio.run(main())
    if time.monotonic() - started >= timeout:
        raise AssertionError(f"took over {timeout:g} s (something swallowed the cancellation at the deadline)")
    return result


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class RecordingSink:
    """A fake of OUR ingest port: records what it is given and can be told to fail."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rejected: list[tuple[RawMessage, str, str]] = []
        self.calls = 0
        self.failures_left = 0
        self.changed = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set to an unset Event, ingest blocks

    async def ingest(self, envelopes: Sequence[Envelope], *, raw: RawMessage | None = None,
                     origins: Sequence[RawMessage | None] | None = None) -> IngestResult:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("history store is down (test)")
        self.envelopes.extend(envelopes)
        self.changed.set()
        return IngestResult(accepted=sum(len(e.values) for e in envelopes))

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        self.rejected.append((raw, reason, rule))
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
