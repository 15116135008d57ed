"""Fixtures for commands and reconciliation: the plant models, a fake transport, a test clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import TvillingError
from tvilling.decisions.commands import CommandService
from tvilling.decisions.store import MemoryCommandStore
from tvilling.models.builtin import builtin_documents

MACHINE = "dtmi:tvilling:example:Machine;1"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class FakeTransport:
    """A fake of OUR command port: records what it is asked to send and can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, Any]] = []
        self.desired: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[BaseException] = []  # raised, one per call, before anything succeeds
        self.desired_failures: list[BaseException] = []
        self.on_send: Any = None  # an async hook run inside send (e.g. a device answering at once)

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((twin, name, request_id, payload))
        if self.on_send is not None:
            await self.on_send(twin, name, request_id, payload)

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        if self.desired_failures:
            raise self.desired_failures.pop(0)
        self.desired.append((twin, dict(desired)))


class CallingTransport(FakeTransport):
    """A transport with a synchronous request/response call (like OPC UA methods)."""

    def __init__(self, answer: Any = None, error: TvillingError | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.error = error
        self.calls: list[tuple[str, str, str, Any]] = []

    async def call(self, twin: str, name: str, request_id: str, payload: Any) -> Any:
        self.calls.append((twin, name, request_id, payload))
        if self.error is not None:
            raise self.error
        return self.answer


def plant_platform(settings: Settings | None = None) -> Platform:
    platform = build_platform(settings or Settings(store="memory"))
    platform.models.add(builtin_documents("plant"))
    for twin in ("M1", "M2"):
        platform.twins.put(twin, {"model": MACHINE, "reported": {"state": "running"}})
    return platform


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = plant_platform()
    yield p
    p.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def service(platform: Platform, transport: FakeTransport, clock: Clock) -> CommandService:
    return CommandService(platform.twins, MemoryCommandStore(), transport, timeout_s=30, retries=2,
                          retry_backoff_s=0.001, clock=clock)
