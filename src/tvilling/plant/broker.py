"""An embedded MQTT broker (amqtt) bound to loopback, for the demo and tests without a broker.

amqtt is MQTT 3.1.1 only and handles a few thousand messages a second: enough for a demo
plant, never for production (use Mosquitto with ``deploy/mosquitto/tvilling.conf``).

    async with EmbeddedBroker() as broker:   # a free port on 127.0.0.1
        url = broker.url                     # "mqtt://127.0.0.1:<port>"
        ingest = MqttIngest(sink, url, transport_factory=mqtt311_transport)
        runner = PlantRunner(plant, url, protocol_version=broker.protocol_version)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType
from typing import Any

from tvilling.connect.mqtt.gmqtt_transport import mqtt311_transport  # noqa: F401  (re-exported for plant users)
from tvilling.core.errors import Invalid, Unavailable

log = logging.getLogger("tvilling.plant.broker")

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """An in-process amqtt broker on ``host:port`` (loopback only; ``port=0`` picks a free one).

    Anonymous clients are allowed, which is why it refuses to bind anything but loopback.
    """

    def __init__(self, port: int = 0, *, host: str = LOOPBACK, max_connections: int = 200) -> None:
        if host not in (LOOPBACK, "localhost", "::1"):
            raise Invalid(f"the embedded broker allows anonymous clients, so it binds loopback only, not {host!r}",
                          field="host", rule="loopback")
        if not 0 <= port <= 65535:
            raise Invalid(f"port {port} out of range", field="port", rule="range")
        self.host = LOOPBACK if host == "localhost" else host
        self.port = port
        self.max_connections = max_connections
        self._broker: Any = None
        self.protocol_version = 4  # amqtt speaks MQTT 3.1.1 only

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        if self._broker is not None:
            return
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # pragma: no cover - amqtt is a dependency
            raise Unavailable("the embedded MQTT broker needs the 'amqtt' package", package="amqtt") from exc
        if self.port == 0:
            self.port = free_port(self.host)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}",
                                      "max_connections": self.max_connections}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:
            raise Unavailable(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {exc}",
                              broker=f"{self.host}:{self.port}") from None
        self._broker = broker
        log.info("embedded MQTT broker (amqtt) listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 10)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
