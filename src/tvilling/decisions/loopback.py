"""The in-memory :class:`~tvilling.decisions.transport.CommandTransport`: commands to devices in this process.

Devices attach per twin. A command is accepted at once (as a broker accepts a publish) and
the twin's device answers it a moment later, through ``on_response`` — the same callback
``MqttCommands`` calls, so a :class:`~tvilling.decisions.commands.CommandService` cannot
tell the two apart. Desired state is retained per twin, like MQTT's retained message: a
device attaching later gets it at once.

>>> import asyncio
>>> class Echo:
...     async def command(self, name, request_id, payload):
...         return 200, payload
...     async def desired(self, state):
...         pass
>>> async def demo():
...     answers = []
...     async with LoopbackTransport(on_response=lambda *a: answers.append(a)) as transport:
...         await transport.attach("M1", Echo())
...         await transport.send("M1", "setSpeed", "req-1", {"speed": 800})
...         await transport.drain()
...     return answers
>>> asyncio.run(demo())
[('M1', 'setSpeed', 'req-1', 200, {'speed': 800})]
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from tvilling.core.errors import Invalid

log = logging.getLogger("tvilling.decisions.loopback")

#: ``(twin, name, request_id, status, payload)``: a device's answer, as ``MqttCommands`` reports it
ResponseCallback = Callable[[str, str, str, Any, Any], Awaitable[None] | None]


class LoopbackDevice(Protocol):
    """A device behind the loopback transport (a simulated asset in a test or a demo)."""

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        """Run a command; returns the answer as ``(status, payload)`` (see ``device_status``)."""
        ...

    async def desired(self, state: dict[str, Any]) -> None:
        """Take the twin's desired state (the whole of it; ``{}`` once it is cleared)."""
        ...


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command the transport accepted, as the device got it."""

    twin: str
    name: str
    request_id: str
    payload: Any


class LoopbackTransport:
    """Commands and desired state to :class:`LoopbackDevice` objects in this process.

    ``async with`` it (or call :meth:`aclose`) so that no answer is left running. A command
    for a twin without a device is accepted and never answered, as over a broker.
    """

    def __init__(self, *, on_response: ResponseCallback | None = None) -> None:
        self.on_response = on_response
        self.sent: list[SentCommand] = []  # every command accepted, in order
        self._devices: dict[str, LoopbackDevice] = {}
        self._desired: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LoopbackTransport:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def attach(self, twin: str, device: LoopbackDevice) -> None:
        """Let ``device`` serve ``twin`` (replacing any other); it gets the retained desired state, if any."""
        _check(twin, "twin")
        self._devices[twin] = device
        state = self._desired.get(twin)
        if state:
            await device.desired(copy.deepcopy(state))

    def detach(self, twin: str) -> None:
        """The twin's device goes away; later commands to it are not answered."""
        self._devices.pop(twin, None)

    def desired(self, twin: str) -> dict[str, Any]:
        """The desired state retained for ``twin`` (``{}`` when none)."""
        return copy.deepcopy(self._desired.get(twin, {}))

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        """Accept a command; the twin's device answers it through ``on_response`` shortly after."""
        _check(twin, "twin")
        _check(name, "name")
        _check(request_id, "request_id")
        command = SentCommand(twin, name, request_id, copy.deepcopy(payload))
        self.sent.append(command)
        device = self._devices.get(twin)
        if device is not None:
            self._spawn(self._answer(device, command))

    async def publish_desired(self, twin: str, desired: dict[str, Any] | None) -> None:
        """Retain the desired state (``None`` or ``{}`` clears it) and hand it to the twin's device."""
        _check(twin, "twin")
        state = copy.deepcopy(dict(desired or {}))
        if state:
            self._desired[twin] = state
        else:
            self._desired.pop(twin, None)
        device = self._devices.get(twin)
        if device is not None:
            await device.desired(copy.deepcopy(state))

    async def drain(self) -> None:
        """Wait until every answer under way has been delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the answers still under way."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _answer(self, device: LoopbackDevice, command: SentCommand) -> None:
        await asyncio.sleep(0)  # the answer comes after send has returned, as it does over a network
        try:
            status, payload = await device.command(command.name, command.request_id, command.payload)
        except Exception as exc:  # a device that breaks answers with an error, as a real one would
            log.warning("device for %s failed on command %s: %s", command.twin, command.request_id, exc)
            status, payload = "error", {"message": f"{type(exc).__name__}: {exc}"}
        if self.on_response is None:
            return
        try:
            result = self.on_response(command.twin, command.name, command.request_id, status, payload)
            if result is not None:
                await result
        except Exception:  # the receiver's trouble, not the device's: logged, as a transport callback's is
            log.exception("the response callback failed on the answer to command %s", command.request_id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _check(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value or value != value.strip() or "\x00" in value:
        raise Invalid(f"{field} {value!r} must be a non-empty string without surrounding spaces", field=field,
                      rule="required")
