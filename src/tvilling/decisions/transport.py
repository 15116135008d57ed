"""The port through which decisions reach assets, and how device answers are read.

:class:`CommandTransport` is what :class:`~tvilling.decisions.commands.CommandService`
and :class:`~tvilling.decisions.reconcile.DesiredReconciler` need.
``tvilling.connect.mqtt.MqttCommands`` fits it as it is (responses come back later,
through its ``on_response`` callback). A transport with a request/response call (OPC UA
methods) also offers :class:`SupportsCall`; the service then takes the answer directly.
:class:`OpcUaTransport` adapts ``tvilling.connect.opcua.OpcUaCommands`` (``call`` and
``write``) without importing it.

>>> device_status("accepted"), device_status(200), device_status("error"), device_status("later")
('acknowledged', 'succeeded', 'failed', None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tvilling.core.errors import Unavailable
from tvilling.decisions.lifecycle import ACKNOWLEDGED, FAILED, SUCCEEDED


class CommandTransport(Protocol):
    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        """Hand a command to the transport; returns once it has been accepted (raises otherwise)."""

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        """Publish the twin's desired state so that the device (also one connecting later) gets it."""


@runtime_checkable
class SupportsCall(Protocol):
    async def call(self, twin: str, name: str, request_id: str, payload: Any) -> Any:
        """Run the command on the device and return its response payload (raises on failure)."""


_ACK = frozenset({"accepted", "ack", "acknowledged", "received", "queued"})
_OK = frozenset({"ok", "succeeded", "success", "done", "completed"})
_FAILED = frozenset({"error", "failed", "failure", "rejected", "refused"})


def device_status(status: Any) -> str | None:
    """The lifecycle status a device's answer means, or ``None`` when it is not understood.

    Words (case-insensitive): accepted/ack → acknowledged; ok/succeeded → succeeded;
    error/failed → failed. HTTP-like numbers: 202 → acknowledged, other 2xx →
    succeeded, 4xx/5xx → failed.
    """
    if isinstance(status, bool):
        return None
    if isinstance(status, int):
        if status == 202:
            return ACKNOWLEDGED
        if 200 <= status < 300:
            return SUCCEEDED
        if 400 <= status < 600:
            return FAILED
        return None
    if isinstance(status, str):
        word = status.strip().lower()
        if word in _ACK:
            return ACKNOWLEDGED
        if word in _OK:
            return SUCCEEDED
        if word in _FAILED:
            return FAILED
        if word.isdigit():
            return device_status(int(word))
    return None


def error_text(status: Any, payload: Any) -> str:
    """A readable reason from a failed answer's payload."""
    if isinstance(payload, Mapping):
        for key in ("message", "error", "reason", "detail"):
            if isinstance(payload.get(key), str):
                return f"device answered {status!r}: {payload[key]}"
    if payload is None:
        return f"device answered {status!r}"
    return f"device answered {status!r}: {payload!r}"[:500]


class _OpcUa(Protocol):
    async def call(self, twin: str, command: str,
                   args: Sequence[Any] | Mapping[str, Any] | None = None) -> list[Any]: ...

    async def write(self, twin: str, property: str, value: Any) -> None: ...


class OpcUaTransport:
    """Commands as OPC UA method calls, desired state as writes (``OpcUaCommands`` underneath).

    A request object becomes named input arguments, a list positional ones, a scalar the
    only argument. The method's outputs become the response: none → ``None``, one → that
    value, several → the list.
    """

    def __init__(self, commands: _OpcUa) -> None:
        self.commands = commands

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        await self.call(twin, name, request_id, payload)

    async def call(self, twin: str, name: str, request_id: str, payload: Any) -> Any:
        args: Sequence[Any] | Mapping[str, Any] | None
        if payload is None or isinstance(payload, Mapping | list):
            args = payload
        else:
            args = [payload]
        outputs = await self.commands.call(twin, name, args)
        if not outputs:
            return None
        return outputs[0] if len(outputs) == 1 else list(outputs)

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        for prop, value in desired.items():
            await self.commands.write(twin, prop, value)


class RoutedTransport:
    """Several transports, each serving some twins: OPC UA for the twins its config binds,
    MQTT (the default) for the rest."""

    def __init__(self, routes: Mapping[str, CommandTransport], default: CommandTransport | None = None) -> None:
        self.routes = dict(routes)
        self.default = default

    def route(self, twin: str) -> CommandTransport:
        transport = self.routes.get(twin, self.default)
        if transport is None:
            raise Unavailable(f"no transport reaches twin {twin!r}: bind it in the OPC UA config or run with --broker",
                              twin=twin, rule="no_transport")
        return transport

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        await self.route(twin).send(twin, name, request_id, payload)

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        await self.route(twin).publish_desired(twin, desired)


def route(transport: CommandTransport, twin: str) -> CommandTransport:
    """The transport that serves ``twin`` (itself, unless it is a :class:`RoutedTransport`)."""
    return transport.route(twin) if isinstance(transport, RoutedTransport) else transport
