"""Commands and desired state to devices: the links, the command service with its timeout
sweeper, and the desired-state reconciler following the twin events.

Over OPC UA for the twins its config binds, over MQTT for the rest. Everything is built
when the runtime is constructed; the links connect and the loops start when it is entered.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

from tvilling.core.events import Event
from tvilling.decisions.commands import CommandService
from tvilling.decisions.reconcile import DesiredReconciler
from tvilling.decisions.transport import CommandTransport, OpcUaTransport, RoutedTransport
from tvilling.runtime.transports import IdentityClaim, MqttCommandLink
from tvilling.runtime.units import BackgroundTask, StackUnit, follow
from tvilling.streams.consumer import Batch, Consumer, Wake
from tvilling.streams.offsets import CursorStore
from tvilling.twins.feed import TwinEvents

if TYPE_CHECKING:
    from tvilling.app import Platform
    from tvilling.connect.opcua import OpcUaConfig

RECONCILER = "reconciler"


class CommandUnit(StackUnit):
    """The command side of a runtime (``service`` is what the API's command routes use)."""

    def __init__(self, platform: Platform, *, cursors: CursorStore, wake: Wake | None,
                 opcua: OpcUaConfig | None, identity: IdentityClaim | None) -> None:
        self._links: list[AbstractAsyncContextManager[Any]] = []
        mqtt: MqttCommandLink | None = None
        if platform.settings.broker:
            mqtt = MqttCommandLink(platform.settings, self._on_response, identity)
            self._links.append(mqtt)
        transport: CommandTransport
        if opcua is not None:
            from tvilling.connect.opcua import OpcUaCommands

            client = OpcUaCommands(opcua)
            self._links.append(client)
            opc = OpcUaTransport(client)
            twins = {b.twin for b in opcua.bindings} | {m.twin for m in opcua.methods}
            transport = RoutedTransport(dict.fromkeys(twins, opc), default=mqtt)
        elif mqtt is not None:
            transport = mqtt
        else:
            raise ValueError("commands need a broker or an OPC UA config")
        self.transport = transport
        self.service = CommandService(platform.twins, platform.command_store, transport, timeout_s=30, retries=2)
        self.reconciler = DesiredReconciler(platform.twins, platform.command_store, transport, retry_s=5,
                                            timeout_s=120)
        # where the reconciler stopped following the events is saved: a restart hands it what came since
        self.follower: Consumer[Event] = Consumer(RECONCILER, TwinEvents(platform.twin_store), cursors,
                                                  start="head", wake=wake, save_every_s=1.0)
        self._tasks = [BackgroundTask("command-sweeper", lambda: self.service.run_sweeper(1.0)),
                       BackgroundTask("reconciler", lambda: self.reconciler.run(1.0)),
                       BackgroundTask("reconciler-events", lambda: follow(self.follower, self._notify))]

    async def _on_response(self, twin: str, name: str, request_id: str, status: str, payload: Any) -> None:
        await self.service.on_response(twin, name, request_id, status, payload)

    def _notify(self, batch: Batch[Event]) -> None:
        for event in batch.items:
            self.reconciler.notify(event)

    async def _open(self, stack: AsyncExitStack) -> None:
        for unit in [*self._links, *self._tasks]:
            await stack.enter_async_context(unit)
