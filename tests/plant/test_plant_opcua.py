"""The plant's OPC UA server, read, written and called by an asyncua client on loopback."""

from __future__ import annotations

import asyncio

import pytest

from tvilling.plant import Plant

from .conftest import eventually, run

asyncua = pytest.importorskip("asyncua", reason="the plant's OPC UA server needs the 'opcua' extra (asyncua)")
ua = asyncua.ua


def test_machines_are_served_with_variables_methods_and_a_writable_setpoint(line: str) -> None:
    from tvilling.plant.opcua import PlantOpcUaServer

    async def main() -> None:
        plant = Plant(machines=2, seed=3, speed=60.0, line=line, scenario=None)
        async with PlantOpcUaServer(plant, interval=0.1) as server, asyncua.Client(server.url) as client:
            m1 = f"{line}-m01"
            current = client.get_node(server.node_id(m1, "motor.current"))
            vibration = client.get_node(server.node_id(f"{line}-m02-de", "vibration"))
            await eventually(lambda: server.frames >= 2, what="two frames")
            assert 5.0 < await current.read_value() < 30.0
            assert 0.05 < await vibration.read_value() < 1.0
            assert await client.get_node(server.node_id(m1, "state")).read_value() == "running"
            # browse: the line object holds the machines, a machine its bearings and spindle
            line_node = client.get_node(f"ns={server.ns};s={line}")
            names = {(await c.read_browse_name()).Name for c in await line_node.get_children()}
            assert {m1, f"{line}-m02", "throughput"} <= names
            machine = client.get_node(f"ns={server.ns};s={m1}")
            children = {(await c.read_browse_name()).Name for c in await machine.get_children()}
            assert {f"{m1}-de", f"{m1}-nde", f"{m1}-spindle", "setSpeed", "stop", "maintenanceDone"} <= children
            # a method call is a command
            accepted, state = await machine.call_method(f"{server.ns}:setSpeed", ua.Variant(900.0,
                                                                                         ua.VariantType.Double))
            assert accepted is True and state == "running"
            assert plant.m.setpoint[0] == 900.0
            with pytest.raises(ua.UaStatusCodeError):
                await machine.call_method(f"{server.ns}:setSpeed", ua.Variant(-1.0, ua.VariantType.Double))
            speed = client.get_node(server.node_id(m1, "speed"))
            await eventually(lambda: abs(plant.m.speed[0] - 900.0) < 5, what="the machine at 900 rpm")
            frames = server.frames
            await eventually(lambda: server.frames >= frames + 2, what="newer frames")
            assert abs(await speed.read_value() - 900.0) < 10
            # a client's write of the setpoint is obeyed like setSpeed
            setpoint = client.get_node(server.node_id(f"{line}-m02", "speedSetpoint"))
            await setpoint.write_value(ua.Variant(1200.0, ua.VariantType.Double))
            await eventually(lambda: plant.m.setpoint[1] == 1200.0, what="the written setpoint")
            # stop, then start is refused while in fault
            await machine.call_method(f"{server.ns}:stop")
            assert plant.state_of(1)["state"] == "stopped"
            plant.m.wear[0, 0] = 1.0
            await asyncio.sleep(0.3)
            with pytest.raises(ua.UaStatusCodeError):
                await machine.call_method(f"{server.ns}:start")
            await machine.call_method(f"{server.ns}:maintenanceDone")
            accepted, state = await machine.call_method(f"{server.ns}:start")
            assert state == "running"

    run(main(), timeout=60)


def test_running_plant_serves_mqtt_on_an_embedded_broker_and_opcua_at_once(line: str) -> None:
    from tvilling.connect.mqtt import MqttIngest
    from tvilling.plant import PlantOptions, running_plant
    from tvilling.plant.broker import mqtt311_transport

    from .conftest import RecordingSink

    async def main() -> None:
        options = PlantOptions(machines=1, line=line, broker=None, opcua_port=0, interval=0.2)
        async with running_plant(options) as rig, asyncua.Client(rig.opcua_url) as client:
            assert rig.embedded is not None and rig.protocol_version == 4
            sink = RecordingSink()
            async with MqttIngest(sink, rig.broker_url, transport_factory=mqtt311_transport):
                await sink.wait_for(lambda: any(e.twin == f"{line}-m01-de" for e in sink.envelopes))
            node = client.get_node(f"ns=2;s={line}-m01-de.vibration")
            await eventually(lambda: rig.runner.stats.steps >= 3, what="three steps")
            assert 0.05 < await node.read_value() < 1.0  # the same frames reach OPC UA

    run(main(), timeout=60)
