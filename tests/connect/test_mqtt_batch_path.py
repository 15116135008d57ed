"""The batch inbound path of the gmqtt transport (own packet splitter and PUBLISH parser) against Mosquitto."""

from __future__ import annotations

import asyncio
import json

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tvilling.connect.mqtt import MqttIngest
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport

from .conftest import Broker, RecordingSink, paho_client, publish_many, run


def _publish_with_properties(url: str, topic: str, payloads: list[bytes]) -> None:
    client = paho_client(url, client_id="props-publisher")
    client.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("site", "north"), ("line", "1")]
        props.ContentType = "application/json"
        props.MessageExpiryInterval = 3600
        infos = [client.publish(topic, p, qos=1, properties=props) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_publish_properties_are_skipped_and_the_payload_is_intact(broker: Broker) -> None:
    sink = RecordingSink()
    payloads = [json.dumps({"ts": 1767225600000 + i, "values": {"v": i + 0.5}, "id": str(i)}).encode()
                for i in range(50)]

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-props"):
            await asyncio.to_thread(_publish_with_properties, broker.url, "tvilling/P1/telemetry", payloads)
            await sink.wait_for(lambda: len(sink.envelopes) == 50)

    run(main())
    assert sorted(e.values["v"] for e in sink.envelopes) == [i + 0.5 for i in range(50)]
    assert {e.twin for e in sink.envelopes} == {"P1"} and not sink.rejected


def test_large_messages_spanning_many_socket_reads_arrive_whole(broker: Broker) -> None:
    """A 300 kB list payload is split over several reads; small messages around it must stay intact too."""
    sink = RecordingSink()
    records = [{"ts": 1767225600000 + i, "values": {"vibration": i * 0.25, "temperature": 60.0}} for i in range(4000)]
    big = json.dumps(records).encode()
    assert len(big) > 4 * 65536

    def small(i: int) -> tuple[str, bytes, int, bool]:
        return "tvilling/S1/telemetry", json.dumps({"ts": i, "values": {"v": i}, "id": f"s{i}"}).encode(), 1, False

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-big") as ingest:
            await asyncio.to_thread(publish_many, broker.url,
                                    [small(0), ("tvilling/L1/telemetry", big, 1, False), small(1), small(2)])
            await sink.wait_for(lambda: len(sink.envelopes) == 4003)
            assert ingest.stats.acknowledged == 4

    run(main())
    big_in = sorted((e for e in sink.envelopes if e.twin == "L1"), key=lambda e: e.ts)
    assert [e.values["vibration"] for e in big_in] == [i * 0.25 for i in range(4000)]
    assert sorted(e.id or "" for e in sink.envelopes if e.twin == "S1") == ["s0", "s1", "s2"]


def test_qos0_ingest_takes_messages_without_acknowledging(broker: Broker) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-qos0", qos=0) as ingest:
            await asyncio.to_thread(publish_many, broker.url, [
                ("tvilling/Q1/telemetry", json.dumps({"ts": i, "values": {"v": i}}).encode(), 0, False)
                for i in range(100)])
            await sink.wait_for(lambda: len(sink.envelopes) == 100)
            assert ingest.stats.acknowledged == 100  # counted as handled; QoS 0 has no PUBACK to send

    run(main())
    assert sorted(e.values["v"] for e in sink.envelopes) == list(range(100))


def test_acks_for_a_lost_connection_are_dropped_and_the_messages_come_again(broker: Broker) -> None:
    """Tokens carry their connection: after a reconnect, acking the old tokens sends nothing."""
    got: list[tuple[str, bytes, int]] = []

    def receive(topic: str, payload: bytes, token: int) -> None:
        got.append((topic, payload, token))

    async def main() -> None:
        from tvilling.connect.mqtt.port import SessionOptions, parse_url

        options = SessionOptions(client_id="batch-transport", receive_maximum=100, backoff_initial_s=0.05)
        transport = GmqttTransport(parse_url(broker.url), options, [("tvilling/+/telemetry", 1)], receiver=receive)
        async with transport:
            await asyncio.to_thread(publish_many, broker.url, [
                (f"tvilling/T{i}/telemetry", b"{}", 1, False) for i in range(5)])
            for _ in range(200):
                if len(got) == 5:
                    break
                await asyncio.sleep(0.02)
            first = [t for _, _, t in got]
            assert len(first) == 5 and all(first)
            transport.reconnect("test")
            assert transport.ack(first) == 0  # the connection they came on is gone
            for _ in range(300):  # the broker delivers the unacknowledged messages again
                if len(got) == 10:
                    break
                await asyncio.sleep(0.02)
            again = [t for _, _, t in got[5:]]
            assert len(again) == 5 and {t >> 16 for t in again} != {t >> 16 for t in first}
            assert transport.ack(again) == 5
        got.clear()
        async with GmqttTransport(parse_url(broker.url), options, [("tvilling/+/telemetry", 1)], receiver=receive):
            await asyncio.sleep(0.5)
        assert got == []  # all acknowledged the second time

    run(main())
