"""Run the simulated plant as a service: MQTT (a given broker or the embedded one), optionally OPC UA.

The library function behind a ``tvilling plant`` command and the demo:

    async with running_plant(PlantOptions(machines=4, speed=DEMO_SPEED, broker=None)) as rig:
        print(rig.broker_url, rig.opcua_url)   # broker=None: an embedded amqtt broker on loopback
        await asyncio.Event().wait()

Same seed, same readings: the runner steps the plant by its fixed interval (never by the
measured time between steps), and a :class:`TickedPlant` stamps each frame on a tick clock
(the first step's wall time plus the steps taken × the interval) rather than the wall clock
at the moment the step ran late or early. Everything computed from the readings' timestamps
downstream — rates, trends, remaining life, alarm timers — is then a function of the seed
and the step count, not of the scheduling jitter of the process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tvilling.plant.broker import EmbeddedBroker
from tvilling.plant.mqtt import PlantRunner
from tvilling.plant.plant import Frame, Plant

log = logging.getLogger("tvilling.plant")

#: the demo's acceleration: one plant minute per wall second (the default fault fails in ~9 wall minutes)
DEMO_SPEED = 60.0


class TickedPlant(Plant):
    """A :class:`Plant` whose frames are stamped by a tick clock: step ``k`` (from 0) at
    ``start + k × dt``, ``start`` being the wall time of the first step.

    >>> plant = TickedPlant(machines=1, seed=3, scenario=None)
    >>> first, second = plant.step(1.0), plant.step(1.0)
    >>> second.ts_ms - first.ts_ms, plant.steps, plant.step_at(second.ts_ms)
    (1000, 2, 1)

    A runner never steps early, so the stamps never run ahead of the wall clock. Should it
    fall behind by more than ``max_lag_s`` (an overloaded machine), the clock is set to now,
    with a warning: the readings stay current, and exact repeatability is lost from there.
    A ``now_ms`` given to :meth:`step` is used as it is (and not counted on the clock).
    """

    def __init__(self, *args: Any, max_lag_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_lag_s = max_lag_s
        self.steps = 0  # steps taken on the tick clock
        self._start_ms: int | None = None
        self._elapsed_ms = 0  # the stepped wall time: the sum of the steps' dt
        self._dt_ms = 1000

    def step(self, dt: float = 1.0, *, now_ms: int | None = None) -> Frame:
        if now_ms is not None:
            return super().step(dt, now_ms=now_ms)
        wall = int(time.time() * 1000)
        if self._start_ms is None:
            self._start_ms = wall
        stamp = self._start_ms + self._elapsed_ms
        if wall - stamp > self.max_lag_s * 1000:
            log.warning("plant %s: %.1f s behind its clock after %d steps; its clock is set to now (a run with "
                        "the same seed may differ from here)", self.line, (wall - stamp) / 1000, self.steps)
            self._start_ms, stamp = wall - self._elapsed_ms, wall
        frame = super().step(dt, now_ms=stamp)  # validates dt before the clock moves
        self._dt_ms = round(dt * 1000)
        self._elapsed_ms += self._dt_ms
        self.steps += 1
        return frame

    def step_at(self, ts_ms: int) -> int:
        """The index (from 0) of the step stamped ``ts_ms`` (with a constant ``dt``), e.g. of the reading
        that raised an alarm; ``-1`` before the first step."""
        if self._start_ms is None:
            return -1
        return round((ts_ms - self._start_ms) / max(self._dt_ms, 1))


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
    plant = TickedPlant(machines=options.machines, seed=options.seed, speed=options.speed,
                        scenario=options.scenario, line=options.line)
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
