"""End to end through a real Mosquitto: a command answered by a simulated device, and desired
state published (retained), applied by the device and reported back through MQTT ingest."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from serve_util import MOSQUITTO, mosquitto
from tvilling.app import Platform
from tvilling.decisions.commands import CommandService
from tvilling.decisions.lifecycle import SUCCEEDED
from tvilling.decisions.reconcile import DesiredReconciler
from tvilling.decisions.store import MemoryCommandStore

mqtt = pytest.importorskip("tvilling.connect.mqtt")
paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    with mosquitto(tmp_path, "max_queued_messages 0\nmax_inflight_messages 1000\n") as url:
        yield url


class Device:
    """A machine on MQTT 5 (paho, its own thread): answers commands, applies and reports desired state."""

    def __init__(self, url: str, twin: str) -> None:
        self.twin = twin
        self.commands: list[dict[str, Any]] = []
        self.desired: list[dict[str, Any]] = []
        self.ready = threading.Event()
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"device-{twin}",
                                  protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f"tvilling/{twin}/commands/+", 1), (f"tvilling/{twin}/desired", 1)])
        self.client.loop_start()
        assert self.ready.wait(10), "device could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("/desired"):
            if not msg.payload:
                return
            desired = json.loads(msg.payload)
            self.desired.append(desired)
            report = {"ts": datetime.now(UTC).isoformat(), "values": desired}
            client.publish(f"tvilling/{self.twin}/telemetry", json.dumps(report), qos=1)
            return
        body = json.loads(msg.payload)
        self.commands.append(body)
        props = msg.properties
        out = Properties(PacketTypes.PUBLISH)
        out.CorrelationData = props.CorrelationData
        client.publish(props.ResponseTopic, json.dumps({"status": "accepted"}), qos=1, properties=out)
        out2 = Properties(PacketTypes.PUBLISH)
        out2.CorrelationData = props.CorrelationData
        client.publish(props.ResponseTopic, json.dumps({"status": "ok", "payload": {"accepted": True}}), qos=1,
                       properties=out2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def test_command_and_desired_state_round_trip_through_mosquitto(broker_url: str, platform: Platform) -> None:
    device = Device(broker_url, "M1")
    store = MemoryCommandStore()
    holder: dict[str, CommandService] = {}

    async def main() -> None:
        async def on_response(twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
            await holder["svc"].on_response(twin, name, request_id, status, payload)

        async with mqtt.MqttCommands(broker_url, on_response=on_response) as commands, \
                mqtt.MqttIngest(platform.ingest, broker_url, batch_ms=5):
            svc = holder["svc"] = CommandService(platform.twins, store, commands, timeout_s=20)
            rec = await svc.invoke("M1", "setSpeed", 900.0, actor="e2e")
            await _until(lambda: store.get(rec.id).status == SUCCEEDED)
            done = store.get(rec.id)
            assert done.response == {"accepted": True}
            assert [i["status"] for _, i in store.changes(0, 100)] == [
                "pending", "sent", "acknowledged", "succeeded"]
            assert device.commands == [{"id": rec.id, "request": 900.0}]

            reconciler = DesiredReconciler(platform.twins, store, commands, retry_s=2, timeout_s=20)
            position = platform.twins.feed(limit=1000)[-1].position or 0
            platform.twins.patch("M1", {"desired": {"speedSetpoint": 1200.0}}, actor="e2e")
            items: list[dict[str, Any]] = []
            deadline = asyncio.get_running_loop().time() + 20
            while not any(i["status"] == "reconciled" for i in items):
                assert asyncio.get_running_loop().time() < deadline, items
                for event in platform.twins.feed(after=position, limit=1000):
                    reconciler.notify(event)
                    position = event.position or position
                items.extend(await reconciler.run_once())
                await asyncio.sleep(0.05)
            assert items[0]["status"] == "sent" and items[-1]["status"] == "reconciled"
            assert items[-1]["properties"] == {"speedSetpoint": 1200.0}

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        device.close()
    twin = platform.twins.get("M1")
    assert twin.reported["speedSetpoint"] == 1200.0 and twin.delta == {}
    assert device.desired[0] == {"speedSetpoint": 1200.0}
    late = Device(broker_url, "M1")  # a device that connects afterwards still gets the desired state
    try:
        deadline = time.monotonic() + 10
        while not late.desired and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late.desired == [{"speedSetpoint": 1200.0}]
    finally:
        late.close()
