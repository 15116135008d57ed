"""The transports of a runtime: MQTT and OPC UA ingest, the MQTT identity, the command links.

Each is an ``async with`` unit built from the settings when the runtime is constructed
and connected when it is entered. The MQTT client ids come from the data directory's
identity (``tvilling.connect.mqtt.identity``), which is claimed on entry: the MQTT units
read it then, not before.
"""

from __future__ import annotations

import json
import logging
import tomllib
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Invalid, Unavailable
from tvilling.runtime.units import StackUnit

if TYPE_CHECKING:
    from pathlib import Path

    from tvilling.app import Platform
    from tvilling.config import Settings
    from tvilling.connect.mqtt.identity import MqttIdentity
    from tvilling.connect.mqtt.port import TlsFiles
    from tvilling.connect.opcua import OpcUaConfig
    from tvilling.decisions.transport import CommandTransport

log = logging.getLogger("tvilling.server")


def transport_factory(settings: Settings) -> Any:
    """``None`` (MQTT 5, the default) or the factory of MQTT 3.1.1 connections (``mqtt_protocol = 4``)."""
    if settings.mqtt_protocol == 5:
        return None
    from tvilling.connect.mqtt.gmqtt_transport import mqtt311_transport

    return mqtt311_transport


def mqtt_tls(settings: Settings) -> TlsFiles | None:
    """The ``TlsFiles`` of an ``mqtts://`` broker from the settings (``mqtt_ca``, ``mqtt_cert``/``mqtt_key``,
    ``mqtt_tls_insecure``); ``None`` when none is set."""
    from tvilling.connect.mqtt.port import TlsFiles

    def name(path: Path | None) -> str | None:
        return None if path is None else str(path)

    files = TlsFiles(ca=name(settings.mqtt_ca), cert=name(settings.mqtt_cert), key=name(settings.mqtt_key),
                     insecure=settings.mqtt_tls_insecure)
    return None if files == TlsFiles() else files


def opcua_config(settings: Settings) -> OpcUaConfig:
    """The OPC UA config file (``--opcua``), read and validated."""
    from tvilling.connect.opcua import load_opcua_config

    path = settings.opcua
    if path is None:
        raise Invalid("no OPC UA config file is set (--opcua)", field="opcua", rule="required")
    text = path.read_text(encoding="utf-8")
    return load_opcua_config(tomllib.loads(text) if path.suffix == ".toml" else json.loads(text))


class IdentityClaim:
    """Holds the data directory's MQTT identity while entered (a second process on it is refused)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._identity: MqttIdentity | None = None

    @property
    def identity(self) -> MqttIdentity:
        """The claimed identity; only while entered."""
        if self._identity is None:
            raise Unavailable("the MQTT identity is not claimed (the runtime is not running)", rule="not_running")
        return self._identity

    async def __aenter__(self) -> IdentityClaim:
        from tvilling.connect.mqtt.identity import claim_identity

        self._identity = claim_identity(self.settings.data_dir, self.settings.mqtt_client_id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        identity, self._identity = self._identity, None
        if identity is not None:
            identity.release()


class MqttIngestUnit(StackUnit):
    """The MQTT subscriber feeding the platform's ingest pipeline, under the identity's ingest client id."""

    def __init__(self, platform: Platform, identity: IdentityClaim) -> None:
        self.platform = platform
        self.identity = identity
        self.ingest: Any = None  # the connected MqttIngest while entered (its stats)

    async def _open(self, stack: AsyncExitStack) -> None:
        from tvilling.connect.mapping import load_mappings_file
        from tvilling.connect.mqtt import MqttIngest

        s = self.platform.settings
        mappings = load_mappings_file(s.mqtt_mappings) if s.mqtt_mappings else []
        log.info("ingesting from %s (%d payload mapping(s))", s.broker, len(mappings))
        ingest = MqttIngest(self.platform.ingest, s.broker or "", client_id=self.identity.identity.ingest_client_id,
                            mappings=mappings, shared_group=s.mqtt_shared_group,
                            transport_factory=transport_factory(s), tls_files=mqtt_tls(s))
        self.ingest = await stack.enter_async_context(ingest)
        stack.callback(setattr, self, "ingest", None)


class OpcUaIngestUnit(StackUnit):
    """The OPC UA subscription feeding the platform's ingest pipeline."""

    def __init__(self, platform: Platform, config: OpcUaConfig) -> None:
        self.platform = platform
        self.config = config

    async def _open(self, stack: AsyncExitStack) -> None:
        from tvilling.connect.opcua import OpcUaIngest

        log.info("ingesting from %s (%d binding(s))", self.config.endpoint.url, len(self.config.bindings))
        await stack.enter_async_context(OpcUaIngest(self.platform.ingest, self.config))


class MqttCommandLink:
    """Commands and desired state over MQTT: a :class:`~tvilling.decisions.transport.CommandTransport`
    that connects on entry, under the identity's commands client id (or a fresh one without an identity),
    and answers ``Unavailable`` while not connected."""

    def __init__(self, settings: Settings, on_response: Any, identity: IdentityClaim | None = None) -> None:
        self.settings = settings
        self.on_response = on_response
        self.identity = identity
        self._client: Any = None  # the connected MqttCommands

    def _connected(self) -> CommandTransport:
        client: CommandTransport | None = self._client
        if client is None:
            raise Unavailable("the MQTT command link is not connected (the runtime is not running)",
                              rule="not_running")
        return client

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        """Publish a command (QoS 1)."""
        await self._connected().send(twin, name, request_id, payload)

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        """Publish the desired state, retained."""
        await self._connected().publish_desired(twin, desired)

    async def __aenter__(self) -> MqttCommandLink:
        from tvilling.connect.mqtt import MqttCommands

        client_id = self.identity.identity.commands_client_id if self.identity is not None else None
        client = MqttCommands(self.settings.broker or "", on_response=self.on_response, client_id=client_id,
                              transport_factory=transport_factory(self.settings),
                              tls_files=mqtt_tls(self.settings))
        self._client = await client.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(exc_type, exc, tb)
