"""Run the simulated plant as a service: MQTT (a given broker or the embedded one), optionally OPC UA.

The library function behind a ``tvilling plant`` command and the demo:

    async with running_plant(PlantOptions(machines=4, speed=DEMO_SPEED, broker=None)) as rig:
        print(rig.broker_url, rig.opcua_url)   # broker=None: an embedded amqtt broker on loopback
        await asyncio.Event().wait()
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tvilling.plant.broker import EmbeddedBroker
from tvilling.plant.mqtt import PlantRunner
from tvilling.plant.plant import Plant

#: the demo's acceleration: one plant minute per wall second (the default fault fails in ~9 wall minutes)
DEMO_SPEED = 60.0


@dataclass(frozen=True)
class PlantOptions:
    machines: int = 4
    seed: int | None = 1
    speed: float = DEMO_SPEED
    scenario: str | None = "default"  # "default" or None (no faults)
    line: str = "line-1"
    broker: str | None = "mqtt://127.0.0.1:1883"  # None: start an embedded broker on loopback
    embedded_port: int = 0  # the embedded broker's port (0: a free one)
    interval: float = 1.0  # wall seconds between readings
    qos: int = 0
    opcua_port: int | None = None  # serve OPC UA too (0: a free port)


@dataclass
class RunningPlant:
    plant: Plant
    runner: PlantRunner
    broker_url: str
    protocol_version: int
    embedded: EmbeddedBroker | None = None
    opcua_url: str | None = None
    extras: dict[str, object] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def running_plant(options: PlantOptions) -> AsyncIterator[RunningPlant]:
    """Start the broker (if embedded), the OPC UA server (if asked) and the MQTT runner; stop them on exit."""
    plant = Plant(machines=options.machines, seed=options.seed, speed=options.speed, scenario=options.scenario,
                  line=options.line)
    async with contextlib.AsyncExitStack() as stack:
        embedded: EmbeddedBroker | None = None
        url, protocol = options.broker, 5
        if url is None:
            embedded = await stack.enter_async_context(EmbeddedBroker(options.embedded_port))
            url, protocol = embedded.url, embedded.protocol_version
        opcua_url = None
        hook = None
        if options.opcua_port is not None:
            from tvilling.plant.opcua import PlantOpcUaServer

            server = await stack.enter_async_context(PlantOpcUaServer(plant, port=options.opcua_port))
            opcua_url, hook = server.url, server.update
        runner = await stack.enter_async_context(PlantRunner(plant, url, interval=options.interval, qos=options.qos,
                                                             protocol_version=protocol, on_frame=hook))
        yield RunningPlant(plant, runner, url, protocol, embedded, opcua_url)
