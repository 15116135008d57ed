"""One simulated machine behind every command transport: in memory, over a real Mosquitto, over a real OPC UA server.

The machine's behaviour is the same whatever carries the commands: ``setSpeed`` with
``{"speed": x}`` sets its speed and answers the previous one; a negative speed, or a
command it does not know, is refused. Its desired ``speedSetpoint`` is what the platform
last published. A :class:`Link` is what a contract test gets: the transport under test,
the answers that came back, and a view of the machines from the device side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from serve_util import free_port, mosquitto
from tvilling.connect.mqtt import MqttCommands
from tvilling.connect.opcua import OpcUaCommands
from tvilling.core.errors import TvillingError
from tvilling.decisions.lifecycle import FAILED, SUCCEEDED
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.decisions.transport import CommandTransport, OpcUaTransport, SupportsCall, device_status, error_text

TWINS = ("M1", "M2")
SPEED0 = 1500.0


class Machine:
    """The device's behaviour, shared by every rig (thread-safe: MQTT and OPC UA devices run in their own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.speed = SPEED0
        self.received: list[tuple[str, Any]] = []  # (command name, request) in the order the device got them

    def command(self, name: str, request: Any) -> tuple[Any, Any]:
        with self._lock:
            self.received.append((name, request))
            if name != "setSpeed":
                return "error", {"message": f"unknown command {name!r}"}
            speed = request.get("speed") if isinstance(request, dict) else request
            if isinstance(speed, bool) or not isinstance(speed, int | float) or speed < 0:
                return "error", {"message": f"speed must be a number ≥ 0, got {speed!r}"}
            previous, self.speed = self.speed, float(speed)
            return 200, previous


class DeviceSide(Protocol):
    machines: dict[str, Machine]

    async def desired(self, twin: str) -> dict[str, Any]:
        """The desired state as a device that reads it now sees it (``{}`` when none)."""
        ...


class Answers:
    """Device answers delivered through a transport's ``on_response`` callback, by request id."""

    def __init__(self) -> None:
        self.got: dict[str, tuple[str, str, Any, Any]] = {}
        self._arrived = asyncio.Event()

    def __call__(self, twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
        self.got[request_id] = (twin, name, status, payload)
        self._arrived.set()

    async def wait(self, request_id: str, timeout: float = 10.0) -> tuple[str, str, Any, Any]:
        async with asyncio.timeout(timeout):
            while request_id not in self.got:
                self._arrived.clear()
                await self._arrived.wait()
        return self.got[request_id]


@dataclass
class Link:
    """The transport under test, the answers it delivered, and the devices behind it."""

    kind: str
    transport: CommandTransport
    answers: Answers
    devices: DeviceSide
    calls: list[str] = field(default_factory=list)  # request ids answered through a request/response call

    async def exchange(self, twin: str, name: str, request_id: str, request: Any) -> tuple[str | None, Any]:
        """Send a command as the command service does; ``(lifecycle status, response or error text)``."""
        if isinstance(self.transport, SupportsCall):
            try:
                response = await self.transport.call(twin, name, request_id, request)
            except TvillingError as exc:
                return FAILED, exc.message
            self.calls.append(request_id)
            return SUCCEEDED, response
        await self.transport.send(twin, name, request_id, request)
        got_twin, got_name, status, payload = await self.answers.wait(request_id)
        assert (got_twin, got_name) == (twin, name), "the answer names another twin or command"
        outcome = device_status(status)
        return outcome, error_text(status, payload) if outcome == FAILED else payload


# -- in memory -------------------------------------------------------------------------------------------------


class _LoopbackMachine:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.state: dict[str, Any] = {}

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        return self.machine.command(name, payload)

    async def desired(self, state: dict[str, Any]) -> None:
        self.state = dict(state)


class _LoopbackSide:
    def __init__(self, transport: LoopbackTransport) -> None:
        self.transport = transport
        self.machines = {t: Machine() for t in TWINS}

    async def desired(self, twin: str) -> dict[str, Any]:
        late = _LoopbackMachine(Machine())  # a device that attaches now gets what is retained
        current = self.transport._devices.get(twin)
        await self.transport.attach(twin, late)
        if current is not None:
            await self.transport.attach(twin, current)
        return late.state


@contextlib.asynccontextmanager
async def loopback_link() -> AsyncIterator[Link]:
    answers = Answers()
    async with LoopbackTransport(on_response=answers) as transport:
        side = _LoopbackSide(transport)
        for twin, machine in side.machines.items():
            await transport.attach(twin, _LoopbackMachine(machine))
        yield Link("memory", transport, answers, side)


# -- MQTT: a real Mosquitto and a paho-mqtt device ---------------------------------------------------------------


class _MqttDevice:
    """The machines on one paho-mqtt connection (MQTT 5), answering on the response topic with correlation data."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as paho

        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.machines = {t: Machine() for t in TWINS}
        ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="contract-device",
                                  protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe([(f"tvilling/{t}/commands/+", 1) for t in TWINS])
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the MQTT device could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        twin, _, name = msg.topic.split("/")[1:4]
        body = json.loads(msg.payload)
        status, payload = self.machines[twin].command(name, body.get("request"))
        props = msg.properties
        out = Properties(PacketTypes.PUBLISH)
        out.CorrelationData = props.CorrelationData
        client.publish(props.ResponseTopic, json.dumps({"status": status, "payload": payload}), qos=1,
                       properties=out)

    async def desired(self, twin: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._read_retained, f"tvilling/{twin}/desired")

    def _read_retained(self, topic: str) -> dict[str, Any]:
        import paho.mqtt.client as paho

        got: list[bytes] = []
        arrived = threading.Event()
        reader = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            got.append(msg.payload)
            arrived.set()

        reader.on_message = on_message
        reader.connect("127.0.0.1", self.port)
        reader.subscribe(topic, 1)
        reader.loop_start()
        try:
            arrived.wait(1.5)  # a retained message comes right after the subscription; none means none is kept
        finally:
            reader.disconnect()
            reader.loop_stop()
        return json.loads(got[0]) if got and got[0] else {}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def mqtt_device(folder: Path) -> Iterator[_MqttDevice]:
    with mosquitto(folder) as url:
        device = _MqttDevice(url)
        try:
            yield device
        finally:
            device.close()


@contextlib.asynccontextmanager
async def mqtt_link(device: _MqttDevice) -> AsyncIterator[Link]:
    answers = Answers()
    async with MqttCommands(device.url, on_response=answers) as transport:
        yield Link("mqtt", transport, answers, device)


# -- OPC UA: a real asyncua server whose methods are the machines ------------------------------------------------


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


class OpcUaPlant:
    """Objects/Line/{M1,M2}/{Speed, Setpoint, SetSpeed(speed) -> previous} on 127.0.0.1, in its own thread."""

    def __init__(self) -> None:
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/contract/"
        self.machines = {t: Machine() for t in TWINS}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="opcua-contract-plant", daemon=True)
        self.thread.start()
        self.setpoints: dict[str, Any] = {}
        self.server: Server | None = None
        self._run(self._build())

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    async def _build(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace("urn:tvilling:test:contract")
        line = await server.nodes.objects.add_folder(idx, "Line")
        double = ua.NodeId(ua.Int32(ObjectIds.Double))
        for twin, machine in self.machines.items():
            node = await line.add_object(idx, twin)
            setpoint = await node.add_variable(idx, "Setpoint", 0.0, varianttype=ua.VariantType.Double)
            await setpoint.set_writable()
            self.setpoints[twin] = setpoint
            await node.add_method(idx, "SetSpeed", self._method(machine),
                                  [ua.Argument(Name="speed", DataType=double, ValueRank=-1)],
                                  [ua.Argument(Name="previous", DataType=double, ValueRank=-1)])
        self.server = server
        await server.start()

    @staticmethod
    def _method(machine: Machine) -> Any:
        async def set_speed(parent: ua.NodeId, speed: ua.Variant) -> list[ua.Variant] | ua.CallMethodResult:
            status, previous = machine.command("setSpeed", {"speed": speed.Value})
            if status != 200:
                return ua.CallMethodResult(StatusCode=_status(StatusCodes.BadInvalidArgument),
                                           InputArgumentResults=[_status(StatusCodes.BadOutOfRange)])
            return [ua.Variant(previous, ua.VariantType.Double)]

        return set_speed

    def reset(self) -> None:
        """Fresh machines and zero set points, for the next test."""
        for twin in TWINS:
            machine = self.machines[twin]
            machine.speed, machine.received[:] = SPEED0, []
            self._run(self.setpoints[twin].write_value(ua.Variant(0.0, ua.VariantType.Double)))

    async def desired(self, twin: str) -> dict[str, Any]:
        value = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.setpoints[twin].read_value(),
                                                                           self.loop))
        return {"speedSetpoint": value} if value else {}

    def config(self) -> dict[str, Any]:
        return {
            "endpoint": {"url": self.url, "timeout_s": 4.0},
            "bindings": [{"node": f"Objects/Line/{t}/Setpoint", "twin": t, "property": "speedSetpoint"}
                         for t in TWINS],
            "methods": [{"twin": t, "command": "setSpeed", "object": f"Objects/Line/{t}",
                         "method": f"Objects/Line/{t}/SetSpeed"} for t in TWINS],
        }

    def close(self) -> None:
        try:
            if self.server is not None:
                self._run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@contextlib.asynccontextmanager
async def opcua_link(plant: OpcUaPlant) -> AsyncIterator[Link]:
    async with OpcUaCommands(plant.config()) as commands:
        yield Link("opcua", OpcUaTransport(commands), Answers(), plant)
