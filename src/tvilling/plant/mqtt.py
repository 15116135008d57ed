"""The plant as MQTT devices: telemetry out, commands and desired state in (the project's topics).

    plant = Plant(machines=4, seed=1, speed=60)
    async with PlantRunner(plant, "mqtt://127.0.0.1:1883") as runner:
        await asyncio.sleep(60)           # steps once a second until the block exits

Every ``interval`` wall seconds the runner steps the plant and publishes one message per
twin on ``tvilling/{twin}/telemetry``: ``{"ts": epoch ms, "values": {...}}`` (machine with
its ``motor.*`` values and ``state``, its two bearings, its spindle, and the line).

Telemetry goes out at QoS 0 by default: a reading is superseded a second later, and QoS 1
would cost a PUBACK round trip and an in-flight slot per message (the transport keeps at
most 1,000 outstanding), capping how many machines one process can simulate; on loopback
nothing is lost in practice. ``qos=1`` is there for a lossless run. Command responses are
always QoS 1.

Commands arrive on ``tvilling/{twin}/commands/{name}`` as ``{"id", "request"}`` (see
:mod:`tvilling.connect.mqtt.commands`); the answer ``{"id", "status", "payload"}`` goes to
the MQTT 5 response topic with the correlation data, or — from an MQTT 3.1.1 broker such
as amqtt (``protocol_version=4``), which carries no properties — to
``tvilling/{twin}/commands/{name}/response`` with the request's ``id``. The commands are the
plant's (:data:`~tvilling.plant.plant.COMMANDS`: ``setSpeed``, ``stop``, ``start``,
``maintenanceDone``, and ``runJob`` with ``{"order", "op", "quantity"}``). A retained
``tvilling/{twin}/desired`` with ``speedSetpoint`` is obeyed like ``setSpeed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import msgspec

from tvilling.connect.mapping import TopicPattern
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import Inbound, MqttTransport, SessionOptions, TlsFiles, TransportFactory, parse_url
from tvilling.core.errors import Invalid
from tvilling.plant.plant import CommandResult, Frame, Plant

log = logging.getLogger("tvilling.plant.mqtt")

COMMANDS = TopicPattern.parse("tvilling/{twin}/commands/{name}")
DESIRED = TopicPattern.parse("tvilling/{twin}/desired")

#: called with every frame after it was published (e.g. an OPC UA server's ``update``)
FrameHook = Callable[[Frame], Awaitable[None] | None]


@dataclass
class RunnerStats:
    steps: int = 0
    messages: int = 0
    overruns: int = 0  # steps that started late by more than one interval (the plant was too big)
    commands: int = 0
    desired: int = 0
    last_step_s: float = 0.0  # wall time of the last step: simulate + encode + publish


class PlantRunner:
    """Steps ``plant`` every ``interval`` s and exchanges its telemetry and commands with a broker."""

    def __init__(self, plant: Plant, url: str = "mqtt://127.0.0.1:1883", *, interval: float = 1.0, qos: int = 0,
                 protocol_version: int = 5, client_id: str | None = None, on_frame: FrameHook | None = None,
                 step: bool = True, transport_factory: TransportFactory | None = None,
                 tls_files: TlsFiles | None = None) -> None:
        if qos not in (0, 1):
            raise Invalid("qos must be 0 or 1", field="qos", rule="enum")
        if protocol_version not in (4, 5):
            raise Invalid("protocol_version must be 5 (MQTT 5) or 4 (MQTT 3.1.1)", field="protocol_version",
                          rule="enum")
        if not interval > 0:
            raise Invalid("interval must be > 0 seconds", field="interval", rule="range")
        self.plant = plant
        self.interval = float(interval)
        self.qos = qos
        self.on_frame = on_frame
        self.stepping = step
        self.stats = RunnerStats()
        self.options = SessionOptions(client_id=client_id or f"tvilling-plant-{uuid.uuid4().hex[:12]}",
                                      clean_start=True, session_expiry_s=0, receive_maximum=100,
                                      protocol_version=protocol_version)
        subscriptions = [(COMMANDS.subscription, 1), (DESIRED.subscription, 1)]
        factory = transport_factory or GmqttTransport
        self.transport: MqttTransport = factory(parse_url(url, tls_files), self.options, subscriptions,
                                                self._on_message)
        self._loop_task: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> PlantRunner:
        await self.transport.__aenter__()
        if self.stepping:
            self._loop_task = asyncio.create_task(self._run_steps(), name=f"plant-{self.plant.line}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._answers:
            await asyncio.wait(set(self._answers), timeout=5)
        await self.transport.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Run until cancelled."""
        async with self:
            await asyncio.Event().wait()

    # -------------------------------------------------------------- telemetry

    async def publish(self, frame: Frame) -> int:
        """Publish one frame's telemetry; returns the number of messages."""
        count = 0
        for twin, body in frame.payloads():
            await self.transport.publish(f"tvilling/{twin}/telemetry", body, qos=self.qos)
            count += 1
        self.stats.messages += count
        return count

    async def step_once(self, dt: float | None = None) -> Frame:
        """Step the plant by ``dt`` wall seconds (default: the interval), publish, call the hook."""
        started = time.perf_counter()
        frame = self.plant.step(self.interval if dt is None else dt)
        await self.publish(frame)
        self.stats.steps += 1
        if self.on_frame is not None:
            result = self.on_frame(frame)
            if result is not None:
                await result
        self.stats.last_step_s = time.perf_counter() - started
        return frame

    async def _run_steps(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.step_once()
            except Exception:
                log.exception("plant %s: step failed; trying again next interval", self.plant.line)
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < -self.interval:  # more than a step behind: do not try to catch up in a burst
                self.stats.overruns += 1
                next_at = loop.time()
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))

    # -------------------------------------------------------------- commands in

    async def _on_message(self, msg: Inbound) -> bool:
        variables = COMMANDS.match(msg.topic)
        if variables is not None:
            if self.plant.owns(variables["twin"]):
                self._answer_later(msg, variables["twin"], variables["name"])
            return True
        variables = DESIRED.match(msg.topic)
        if variables is not None and self.plant.owns(variables["twin"]) and msg.payload:
            try:
                desired = msgspec.json.decode(msg.payload)
            except msgspec.DecodeError:
                log.warning("desired state on %r is not JSON; ignored", msg.topic)
                return True
            if isinstance(desired, dict):
                result = self.plant.apply_desired(variables["twin"], desired)
                if result is not None:
                    self.stats.desired += 1
                    if not result.ok:
                        log.warning("desired state of %s not applied: %s", variables["twin"], result.payload)
        return True

    def _answer_later(self, msg: Inbound, twin: str, name: str) -> None:
        # the command runs at once (in order); only the QoS 1 answer is awaited in the background,
        # so that gmqtt's message callback never waits on our own PUBACK
        doc: Any
        try:
            doc = msgspec.json.decode(msg.payload) if msg.payload else {}
        except msgspec.DecodeError:
            doc = None
        request_id: Any = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(doc, dict):
            result = CommandResult(400, {"accepted": False, "message": "the command payload is not a JSON object"})
        else:
            result = self.plant.handle(twin, name, doc.get("request"))
            self.stats.commands += 1
        topic = msg.response_topic or f"{msg.topic}/response"
        answer: dict[str, Any] = {"status": result.status, "payload": result.payload}
        if request_id is not None:
            answer["id"] = request_id
        task = asyncio.create_task(self._send(topic, msgspec.json.encode(answer), msg.correlation_data))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _send(self, topic: str, body: bytes, correlation: bytes | None) -> None:
        try:
            await self.transport.publish(topic, body, qos=1, correlation_data=correlation)
        except Exception as exc:
            log.warning("plant: answer on %r not delivered: %s", topic, exc)
