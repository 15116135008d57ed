"""Commands out, responses back, and retained desired state, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tvilling.connect.mqtt import MqttCommands

from .conftest import Broker, paho_client, run


class Device:
    """A simulated device (paho-mqtt, its own thread) that answers commands on the response topic."""

    def __init__(self, broker: Broker, twin: str, *, v5: bool = True) -> None:
        self.twin, self.v5 = twin, v5
        self.commands: list[tuple[str, dict[str, Any], Any]] = []
        self.desired: list[bytes] = []
        self.ready = threading.Event()
        self.got_desired = threading.Event()
        self.client = paho_client(broker.url, v5=v5, client_id=f"device-{twin}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.subscribe([(f"tvilling/{twin}/commands/+", 1), (f"tvilling/{twin}/desired", 1)])
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("/desired"):
            self.desired.append(msg.payload)
            self.got_desired.set()
            return
        body = json.loads(msg.payload)
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        self.commands.append((msg.topic, body, correlation))
        answer: dict[str, Any] = {"status": 200, "payload": {"speed": body["request"]["speed"]}}
        if self.v5 and response_topic:
            out = Properties(PacketTypes.PUBLISH)
            out.CorrelationData = correlation
            client.publish(response_topic, json.dumps(answer), qos=1, properties=out)
        else:  # an MQTT 3.1.1 device: the id travels in the payload, the topic is the convention
            answer["id"] = body["id"]
            client.publish(msg.topic + "/response", json.dumps(answer), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _round_trip(broker: Broker, *, v5: bool) -> tuple[Device, list[tuple[str, str, str, Any, Any]]]:
    device = Device(broker, "M7", v5=v5)
    responses: list[tuple[str, str, str, Any, Any]] = []

    async def main() -> None:
        got = asyncio.Event()

        def on_response(twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
            responses.append((twin, name, request_id, status, payload))
            got.set()

        async with MqttCommands(broker.url, on_response=on_response) as commands:
            await commands.send("M7", "set-speed", "req-42", {"speed": 800})
            await asyncio.wait_for(got.wait(), 10)

    try:
        run(main())
    finally:
        device.close()
    return device, responses


def test_command_round_trip_with_mqtt5_response_topic_and_correlation_data(broker: Broker) -> None:
    device, responses = _round_trip(broker, v5=True)
    [(topic, body, correlation)] = device.commands
    assert topic == "tvilling/M7/commands/set-speed"
    assert body == {"id": "req-42", "request": {"speed": 800}}
    assert correlation == b"req-42"
    assert responses == [("M7", "set-speed", "req-42", 200, {"speed": 800})]


def test_command_round_trip_with_an_mqtt311_device_using_the_id_in_the_payload(broker: Broker) -> None:
    device, responses = _round_trip(broker, v5=False)
    assert device.commands[0][1]["id"] == "req-42"
    assert responses == [("M7", "set-speed", "req-42", 200, {"speed": 800})]


def test_desired_state_is_retained_for_a_late_device_and_can_be_cleared(broker: Broker) -> None:
    async def publish(desired: dict[str, Any] | None) -> None:
        async with MqttCommands(broker.url) as commands:
            await commands.publish_desired("M7", desired)

    run(publish({"speed": 600, "mode": "eco"}))
    late = Device(broker, "M7")  # connects after the publisher has gone
    try:
        assert late.got_desired.wait(10)
        assert json.loads(late.desired[0]) == {"speed": 600, "mode": "eco"}
    finally:
        late.close()

    run(publish(None))
    later = Device(broker, "M7-other")
    later.client.subscribe("tvilling/M7/desired", 1)
    try:
        assert not later.got_desired.wait(1.5)  # nothing retained any more
    finally:
        later.close()


def test_send_validates_twin_and_name_as_topic_levels(broker: Broker) -> None:
    async def main() -> None:
        async with MqttCommands(broker.url) as commands:
            for twin, name in (("a/b", "x"), ("M1", "+"), ("", "x")):
                try:
                    await commands.send(twin, name, "r1", {})
                except Exception as exc:
                    assert type(exc).__name__ == "Invalid"
                else:
                    raise AssertionError("accepted a bad topic level")

    run(main())
