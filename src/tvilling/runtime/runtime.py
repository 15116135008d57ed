"""The runtime: every background service of one Tvilling process, as ``async with`` units on one loop.

Built once, from a platform (or from settings, then it owns the platform it builds), and
not changed afterwards; ``async with runtime:`` starts the units in order and stops them
in reverse:

1. the change hub over every registered source (twin events, command lifecycle, alarms);
2. the analytics' consumer of the readings feed (catch-up after a restart), when analytics are configured
   and this process is the one writer (memory or embedded store);
   upkeep (stale series, history rollups, analytics refresh, retention), when ingesting or analysing;
3. OPC UA ingest (``settings.opcua``);
4. the data directory's MQTT identity and MQTT ingest (``settings.broker``);
5. the command links, the command service's timeout sweeper and the desired-state reconciler,
   when a broker or an OPC UA server can reach the devices;
6. the alarm evaluation, when alarm rules (or drift warnings) are configured.

The HTTP app (``tvilling.api.app.create_app``) runs a runtime in its lifespan and mounts its
routers on it; a headless worker runs the same runtime without HTTP::

    async with Runtime.from_settings(settings) as runtime:
        await runtime.wait()   # until cancelled
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

from tvilling.backend.stores import POSTGRES
from tvilling.runtime.commands import CommandUnit
from tvilling.runtime.sources import hub_for
from tvilling.runtime.transports import IdentityClaim, MqttIngestUnit, OpcUaIngestUnit, opcua_config
from tvilling.runtime.units import BackgroundTask, StackUnit
from tvilling.runtime.upkeep import maintain
from tvilling.streams.hub import ChangeHub
from tvilling.streams.offsets import CursorStore

if TYPE_CHECKING:
    from tvilling.app import Platform
    from tvilling.config import Settings
    from tvilling.decisions.alarms.driver import AlarmDriver
    from tvilling.decisions.commands import CommandService


class Runtime(StackUnit):
    """The background services of a platform. ``commands`` is ``None`` when nothing reaches the devices.

    ``commands`` given explicitly (tests, an embedding application) is used instead of one built
    from the settings, and no command links are started for it. ``hub_options`` tune the change
    hub (see :class:`~tvilling.streams.hub.ChangeHub`).
    """

    def __init__(self, platform: Platform, *, commands: CommandService | None = None,
                 hub_options: Mapping[str, Any] | None = None, owns_platform: bool = False) -> None:
        s = platform.settings
        self.platform = platform
        self.settings = s
        self.owns_platform = owns_platform
        self.hub: ChangeHub = hub_for(platform, **dict(hub_options or {}))
        self.cursors: CursorStore = platform.backend.cursors  # the backend's, closed with it
        units: list[tuple[str, AbstractAsyncContextManager[Any]]] = [("hub", self.hub)]
        # before any transport: batches stored after a crash are analysed first, in order. Only where this
        # process is the one writer (memory, embedded): on PostgreSQL several workers share one feed and one
        # cursor, and each analyses the batches it stores itself (one consumer per cluster comes later)
        if s.analytics and platform.backend.kind != POSTGRES:
            from tvilling.runtime.analytics import AnalyticsUnit

            units.append(("analytics", AnalyticsUnit(platform, wake=self.hub.advanced)))
        if s.broker or s.opcua or s.analytics:
            units.append(("upkeep", BackgroundTask("upkeep", lambda: maintain(platform))))
        opcua = opcua_config(s) if s.opcua else None
        if opcua is not None:
            units.append(("opcua-ingest", OpcUaIngestUnit(platform, opcua)))
        identity: IdentityClaim | None = None
        self.mqtt_ingest: MqttIngestUnit | None = None
        if s.broker:  # one stable identity per data directory: restarts resume their sessions
            identity = IdentityClaim(s)
            self.mqtt_ingest = MqttIngestUnit(platform, identity)
            units += [("mqtt-identity", identity), ("mqtt-ingest", self.mqtt_ingest)]
        self.command_unit: CommandUnit | None = None
        if commands is None and (s.broker or opcua is not None):
            self.command_unit = CommandUnit(platform, cursors=self.cursors, wake=self.hub.advanced, opcua=opcua,
                                            identity=identity)
            units.append(("commands", self.command_unit))
            commands = self.command_unit.service
        self.commands: CommandService | None = commands
        self.alarm_driver: AlarmDriver | None = None
        if platform.alarm_rule_docs():
            from tvilling.decisions.alarms import build_driver

            self.alarm_driver = build_driver(platform, notify=self.hub.notify, wake=self.hub.advanced)
            driver = self.alarm_driver
            units.append(("alarms", BackgroundTask("alarms", lambda: driver.run(0.25))))
        self._units = tuple(units)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Runtime:
        """A runtime over a platform built from ``settings``; it closes the platform when it stops."""
        from tvilling.app import build_platform

        platform = build_platform(settings)
        try:
            return cls(platform, owns_platform=True, **options)
        except BaseException:
            platform.close()
            raise

    @property
    def units(self) -> list[str]:
        """The names of the units this runtime starts, in order."""
        return [name for name, _ in self._units]

    @property
    def running(self) -> bool:
        """True while entered."""
        return self._stack is not None

    async def _open(self, stack: AsyncExitStack) -> None:
        if self._stack is not None:
            raise RuntimeError("the runtime is running already")
        if self.owns_platform:
            stack.callback(self.platform.close)
        for name, unit in self._units:
            await stack.enter_async_context(unit)
            if name == "hub":  # stream new readings at once, not at the next poll
                stack.callback(self.platform.on_stored(self._stored))

    async def wait(self) -> None:
        """Run until cancelled (a headless worker: ``async with runtime: await runtime.wait()``)."""
        await asyncio.Event().wait()

    def _stored(self, *_: Any) -> None:
        self.hub.notify()


