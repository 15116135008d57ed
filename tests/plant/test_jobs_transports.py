"""runJob over the plant's transports: MQTT (the embedded broker and Mosquitto) and OPC UA methods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tvilling.connect.mqtt import MqttCommands, MqttIngest
from tvilling.plant import EmbeddedBroker, Plant, PlantRunner
from tvilling.plant.broker import mqtt311_transport

from .conftest import RecordingSink, eventually, run


async def _job_over_mqtt(url: str, line: str, protocol_version: int) -> None:
    factory = mqtt311_transport if protocol_version == 4 else None
    plant = Plant(machines=1, seed=2, speed=60.0, line=line, scenario=None)
    sink = RecordingSink()
    answers: dict[str, tuple[Any, Any]] = {}

    def on_response(twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
        answers[request_id] = (status, payload)

    machine = f"{line}-m01"
    async with MqttIngest(sink, url, transport_factory=factory) as ingest, \
            MqttCommands(url, on_response=on_response, transport_factory=factory) as commands, \
            PlantRunner(plant, url, interval=0.1, protocol_version=protocol_version):
        await commands.send(machine, "runJob", "j-1", {"order": "PO-5", "op": 1, "quantity": 6})
        await commands.send(machine, "runJob", "j-2", {"order": "PO-5", "op": -1, "quantity": 6})
        await eventually(lambda: {"j-1", "j-2"} <= set(answers), what="both answers")
        status, payload = answers["j-1"]
        assert status == 200 and (payload["job"], payload["position"]) == ("PO-5/1", 0)
        assert answers["j-2"][0] == 400 and answers["j-2"][1]["reason"] == "invalid"
        # the twin's telemetry shows the job made, part by part, then completed
        await sink.wait_for(lambda: any(e.twin == machine and e.values.get("lastJob") == "PO-5/1"
                                        for e in sink.envelopes), timeout=20)
        seen = [e.values for e in sink.envelopes if e.twin == machine and "partsDone" in e.values]
        assert any(v["job"] == "PO-5/1" and 0 < v["partsDone"] < 6 for v in seen)
        assert seen[-1]["jobsCompleted"] == 1
        assert any(e.twin == f"{machine}-de" and e.values.get("partNumber", "").startswith("6205-2RS")
                   for e in sink.envelopes)
        assert not ingest.stats.rejected


def test_run_job_over_the_embedded_broker(line: str) -> None:
    async def main() -> None:
        async with EmbeddedBroker() as broker:
            await _job_over_mqtt(broker.url, line, broker.protocol_version)

    run(main())


def test_run_job_through_mosquitto(mosquitto: str, line: str) -> None:
    run(_job_over_mqtt(mosquitto, line, 5))


def test_run_job_is_a_method_and_the_job_a_set_of_variables_over_opcua(line: str) -> None:
    asyncua = pytest.importorskip("asyncua", reason="the plant's OPC UA server needs the 'opcua' extra (asyncua)")
    ua = asyncua.ua
    from tvilling.plant.opcua import PlantOpcUaServer

    async def main() -> None:
        plant = Plant(machines=1, seed=3, speed=60.0, line=line, scenario=None)
        m1 = f"{line}-m01"
        async with PlantOpcUaServer(plant, interval=0.1) as server, asyncua.Client(server.url) as client:
            machine = client.get_node(f"ns={server.ns};s={m1}")
            children = {(await c.read_browse_name()).Name for c in await machine.get_children()}
            assert {"runJob", "job", "jobProgress", "jobsCompleted", "lastJob"} <= children
            accepted, state = await machine.call_method(
                f"{server.ns}:runJob", ua.Variant("PO-8", ua.VariantType.String),
                ua.Variant(0, ua.VariantType.Int32), ua.Variant(4, ua.VariantType.Int32))
            assert accepted is True and state == "running"
            last = client.get_node(server.node_id(m1, "lastJob"))
            for _ in range(200):  # 4 parts at 2 a frame, a frame every 0.1 s
                if await last.read_value() == "PO-8/0":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the job was not completed over OPC UA")
            assert await client.get_node(server.node_id(m1, "jobsCompleted")).read_value() == 1.0
            installed = await client.get_node(server.node_id(f"{m1}-de", "installDate")).read_value()
            assert installed.year >= 2000
            with pytest.raises(ua.UaStatusCodeError):  # a bad quantity is refused
                await machine.call_method(f"{server.ns}:runJob", ua.Variant("PO-8", ua.VariantType.String),
                                          ua.Variant(1, ua.VariantType.Int32), ua.Variant(0, ua.VariantType.Int32))

    run(main(), timeout=60)

