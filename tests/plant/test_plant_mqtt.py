"""The plant as MQTT devices against the real Mosquitto (own twin ids per test) and the embedded broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tvilling.connect.mqtt import MqttCommands, MqttIngest
from tvilling.plant import EmbeddedBroker, Plant, PlantRunner
from tvilling.plant.broker import mqtt311_transport

from .conftest import RecordingSink, eventually, run

Answer = tuple[str, str, str, Any, Any]


async def _telemetry_and_commands(url: str, line: str, *, protocol_version: int) -> None:
    factory = mqtt311_transport if protocol_version == 4 else None
    plant = Plant(machines=2, seed=4, speed=60.0, line=line)
    sink = RecordingSink()
    answers: list[Answer] = []

    def on_response(twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
        answers.append((twin, name, request_id, status, payload))

    async with MqttIngest(sink, url, transport_factory=factory) as ingest, \
            MqttCommands(url, on_response=on_response, transport_factory=factory) as commands, \
            PlantRunner(plant, url, interval=0.2, protocol_version=protocol_version) as runner:
        m1 = f"{line}-m01"
        twins = {t["id"] for t in plant.twins()}
        await sink.wait_for(lambda: twins <= {e.twin for e in sink.envelopes}, timeout=20)
        # telemetry per the contracts: the wall clock, the machine with motor values and state
        latest = [e for e in sink.envelopes if e.twin == m1][-1]
        assert abs(latest.ts.timestamp() - time.time()) < 5
        assert {"speed", "speedSetpoint", "state", "motor.current", "motor.temperature"} <= set(latest.values)
        assert latest.values["state"] == "running"
        assert {"vibration", "vibrationBandBpfo", "temperature"} <= set(
            [e for e in sink.envelopes if e.twin == f"{line}-m01-de"][-1].values)
        assert not ingest.stats.rejected
        # a command through the project's own sender, answered per the protocol
        await commands.send(m1, "setSpeed", "req-1", 1100.0)
        await eventually(lambda: len(answers) >= 1, what="the setSpeed answer")
        assert answers[0][:4] == (m1, "setSpeed", "req-1", 200)
        assert answers[0][4]["speedSetpoint"] == 1100.0
        await commands.send(m1, "start", "req-2", None)
        await commands.send(f"{line}-m02", "fly", "req-3", None)
        await eventually(lambda: len(answers) >= 3, what="two more answers")
        by_id = {a[2]: a for a in answers}
        assert by_id["req-2"][3] == 200 and by_id["req-3"][3] == 404
        # the effect is observed in the telemetry
        n = len(sink.envelopes)
        await sink.wait_for(lambda: any(e.twin == m1 and e.values.get("speedSetpoint") == 1100.0
                                        and abs(e.values["speed"] - 1100.0) < 10 for e in sink.envelopes[n:]))
        # the retained desired state is obeyed too
        await commands.publish_desired(f"{line}-m02", {"speedSetpoint": 900.0})
        try:
            await eventually(lambda: plant.m.setpoint[1] == 900.0, what="the desired speed setpoint")
        finally:
            await commands.publish_desired(f"{line}-m02", None)  # leave no retained message behind
        assert runner.stats.commands == 3 and runner.stats.desired == 1
        assert runner.stats.steps >= 3 and runner.stats.messages == runner.stats.steps * 9


def test_plant_talks_to_the_twin_through_mosquitto(mosquitto: str, line: str) -> None:
    run(_telemetry_and_commands(mosquitto, line, protocol_version=5))


def test_plant_and_the_project_clients_work_through_the_embedded_broker(line: str) -> None:
    async def main() -> None:
        async with EmbeddedBroker() as broker:
            assert broker.url.startswith("mqtt://127.0.0.1:")
            await _telemetry_and_commands(broker.url, line, protocol_version=broker.protocol_version)
        assert not broker.running

    run(main())


def test_a_machine_stopped_over_mqtt_reports_it(mosquitto: str, line: str) -> None:
    async def main() -> None:
        plant = Plant(machines=1, seed=1, speed=1.0, line=line, scenario=None)
        sink = RecordingSink()
        answers: list[Answer] = []
        async with MqttIngest(sink, mosquitto) as _, \
                MqttCommands(mosquitto, on_response=lambda *a: answers.append(a)) as commands, \
                PlantRunner(plant, mosquitto, interval=0.2, qos=1):
            await sink.wait_for(lambda: len(sink.envelopes) > 0)
            await commands.send(f"{line}-m01", "stop", "s-1", None)
            await eventually(lambda: bool(answers), what="the stop answer")
            assert answers[0][3] == 200 and answers[0][4]["state"] == "stopped"
            n = len(sink.envelopes)
            await sink.wait_for(lambda: any(e.twin == f"{line}-m01" and e.values.get("state") == "stopped"
                                            for e in sink.envelopes[n:]))

    run(main())


def test_the_embedded_broker_binds_loopback_only() -> None:
    import pytest

    from tvilling.core.errors import Invalid

    with pytest.raises(Invalid):
        EmbeddedBroker(host="0.0.0.0")

    async def twice() -> None:
        async with EmbeddedBroker() as a:
            taken = EmbeddedBroker(a.port)
            from tvilling.core.errors import Unavailable

            with pytest.raises(Unavailable):
                await taken.start()

    asyncio.run(twice())
