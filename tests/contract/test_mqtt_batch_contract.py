"""The batch MQTT transport port's contract, over the in-memory broker and gmqtt against a real Mosquitto.

What the ingest relies on (``connect/mqtt/ingest.py``): the receiver gets every message in
publish order with a token (0 for QoS 0); ``ack`` counts only what its connection can still
acknowledge; what was not acknowledged comes again, in order and first, after a reconnect
and in a new connection with the same client id, and what was acknowledged never does; at
most ``receive_maximum`` messages are unacknowledged; ``throttle`` stops delivery until it
is lifted; wildcard subscriptions and QoS downgrades behave as MQTT says. The last test runs
the real ingest on the in-memory transport into an in-memory platform.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_sink import eventually, run
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.connect.mqtt import MqttIngest
from tvilling.connect.mqtt.memory import MemoryBroker
from tvilling.connect.mqtt.port import SessionOptions, parse_url

from .conftest import BatchClients


class Received:
    """A receiver that records ``(topic, payload, token)``; it raises on the first ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.items: list[tuple[str, bytes, int]] = []
        self.fail = fail

    def __call__(self, topic: str, payload: bytes, token: int) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("receiver failed (test)")
        self.items.append((topic, payload, token))

    def payloads(self, start: int = 0) -> list[bytes]:
        return [p for _, p, _ in self.items[start:]]

    def tokens(self, start: int = 0) -> list[int]:
        return [t for _, _, t in self.items[start:]]

    def __len__(self) -> int:
        return len(self.items)


async def settle(seconds: float = 0.4) -> None:
    """Time for a message that should not come to come anyway."""
    await asyncio.sleep(seconds)


async def publish(clients: BatchClients, messages: list[tuple[str, bytes, int]]) -> None:
    async with clients.publisher("pub") as pub:
        for topic, payload, qos in messages:
            await pub.publish(topic, payload, qos=qos)


def numbered(n: int, topic: str = "seq/{}", start: int = 0) -> list[tuple[str, bytes, int]]:
    return [(topic.format(i % 3), str(i).encode(), 1) for i in range(start, start + n)]


def test_messages_reach_the_receiver_in_order_with_a_token_each(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got) as sub:
            await publish(mqtt_batch, numbered(200))
            await eventually(lambda: len(got) == 200, 10, "200 messages")
            tokens = got.tokens()
            assert all(tokens) and len(set(tokens)) == 200
            assert sub.ack(tokens) == 200
        assert got.payloads() == [str(i).encode() for i in range(200)]
        assert [t for t, _, _ in got.items[:3]] == ["seq/0", "seq/1", "seq/2"]

    run(main(), 40)


def test_ack_counts_only_tokens_its_connection_can_still_acknowledge(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got) as sub:
            await publish(mqtt_batch, numbered(6))
            await eventually(lambda: len(got) == 6, 10, "6 messages")
            first = got.tokens()
            assert sub.ack([]) == 0
            assert sub.ack([0]) == 0  # the token of no QoS 1 message
            assert sub.ack(first[3:5]) == 2  # out of order is fine
            sub.reconnect("test")
            assert sub.ack(first[:3]) == 0  # that connection is gone
            await sub.wait_connected()
            await eventually(lambda: len(got) == 10, 10, "4 unacknowledged again")
            assert sub.ack(first) == 0  # tokens of the old connection never count on the new one
            assert sub.ack(got.tokens(6)) == 4

    run(main(), 40)


def test_an_acknowledged_token_counts_once(mqtt_batch: BatchClients) -> None:
    """A second PUBACK for a packet id the broker may since have given another message would acknowledge
    that one unseen: a token counts (and is acknowledged) once."""

    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got) as sub:
            await publish(mqtt_batch, numbered(3))
            await eventually(lambda: len(got) == 3, 10, "3 messages")
            assert sub.ack(got.tokens()[:2]) == 2
            assert sub.ack(got.tokens()) == 1

    run(main(), 30)


def test_unacknowledged_messages_come_again_first_and_in_order_after_a_reconnect(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got) as sub:
            await publish(mqtt_batch, numbered(10))
            await eventually(lambda: len(got) == 10, 10, "10 messages")
            assert sub.ack(got.tokens()[1::2]) == 5  # the odd ones are stored
            sub.reconnect("store failed")
            await sub.wait_connected()
            await eventually(lambda: len(got) == 15, 10, "the 5 unacknowledged again")
            assert got.payloads(10) == [b"0", b"2", b"4", b"6", b"8"]
            await publish(mqtt_batch, numbered(2, start=10))
            await eventually(lambda: len(got) == 17, 10, "2 new messages")
            assert got.payloads(15) == [b"10", b"11"]
            assert sub.ack(got.tokens(10)) == 7
            sub.reconnect("again")
            await sub.wait_connected()
            await settle()
        assert len(got) == 17, got.payloads(17)  # everything was acknowledged: nothing comes a third time

    run(main(), 40)


def test_a_new_connection_with_the_same_client_id_gets_what_was_not_acknowledged(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        first = Received()
        async with mqtt_batch.subscriber("worker", (("seq/#", 1),), first) as sub:
            await publish(mqtt_batch, numbered(6))
            await eventually(lambda: len(first) == 6, 10, "6 messages")
            assert sub.ack(first.tokens()[:2]) == 2
        await publish(mqtt_batch, [*numbered(2, start=6), ("seq/9", b"qos0", 0)])  # while it is away
        second = Received()
        async with mqtt_batch.subscriber("worker", (("seq/#", 1),), second) as sub:
            await eventually(lambda: len(second) == 6, 10, "4 unacknowledged and 2 queued")
            assert sub.ack(second.tokens()) == 6
            await settle()
        # persistent session: the unacknowledged in order, then what was queued; QoS 0 is not kept for the absent
        assert second.payloads() == [b"2", b"3", b"4", b"5", b"6", b"7"]
        third = Received()
        async with mqtt_batch.subscriber("worker", (("seq/#", 1),), third):
            await settle()
        assert len(third) == 0  # all acknowledged

    run(main(), 40)


def test_a_clean_start_forgets_the_session(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        first = Received()
        async with mqtt_batch.subscriber("worker", (("seq/#", 1),), first):
            await publish(mqtt_batch, numbered(3))
            await eventually(lambda: len(first) == 3, 10, "3 messages")
        fresh = Received()
        async with mqtt_batch.subscriber("worker", (("seq/#", 1),), fresh, clean_start=True):
            await settle()
            await publish(mqtt_batch, numbered(1, start=3))
            await eventually(lambda: len(fresh) == 1, 10, "the new message")
        assert fresh.payloads() == [b"3"]

    run(main(), 40)


def test_at_most_receive_maximum_messages_are_unacknowledged(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got, receive_maximum=5) as sub:
            await publish(mqtt_batch, numbered(12))
            await eventually(lambda: len(got) == 5, 10, "5 messages")
            await settle()
            assert len(got) == 5  # the broker holds the rest
            assert sub.ack(got.tokens()[:2]) == 2
            # acknowledging makes room; Mosquitto 2.0.11 then sends past the Receive Maximum (all 7 here), so the
            # contract is "at least as many more", not "exactly": the ingest throttles for such brokers itself
            await eventually(lambda: len(got) >= 7, 10, "2 more")
            acked = 2
            while len(got) < 12:
                seen = len(got)
                acked += sub.ack(got.tokens()[acked:])
                await eventually(lambda seen=seen: len(got) > seen, 10, "more after an ack")
            assert sub.ack(got.tokens()[acked:]) == 12 - acked
        assert got.payloads() == [str(i).encode() for i in range(12)]

    run(main(), 40)


@pytest.mark.parametrize("reconnect", [False, True], ids=["connected", "across-a-reconnect"])
def test_throttle_stops_delivery_until_it_is_lifted(mqtt_batch: BatchClients, reconnect: bool) -> None:
    total, body = 300, b"x" * 1024  # 300 KiB: more than one socket read can carry

    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("bulk/#", 1),), got) as sub:
            sub.throttle(True)
            if reconnect:  # the pause holds for the next connection too
                sub.reconnect("test")
                await sub.wait_connected()
            await publish(mqtt_batch, [("bulk/1", b"%d:" % i + body, 1) for i in range(total)])
            await settle(0.5)
            paused = len(got)
            await settle(0.5)
            # at most what was read from the network before the pause took hold; then nothing
            assert len(got) == paused and paused < total // 2, paused
            sub.throttle(False)
            await eventually(lambda: len(got) == total, 15, f"{total} messages")
            assert sub.ack(got.tokens()) == total
        assert [p.split(b":")[0] for p in got.payloads()] == [b"%d" % i for i in range(total)]

    run(main(), 40)


def test_wildcard_subscriptions_select_the_topics(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("plant/+/speed", 1), ("site/#", 1)), got):
            await publish(mqtt_batch, [(t, t.encode(), 1) for t in (
                "plant/M1/speed", "plant/M1/temperature", "plant/M1/speed/raw", "site", "site/a/b", "other/x",
                "plant/M2/speed")])
            await eventually(lambda: len(got) == 4, 10, "4 matching messages")
            await settle()
        assert [t for t, _, _ in got.items] == ["plant/M1/speed", "site", "site/a/b", "plant/M2/speed"]

    run(main(), 30)


def test_a_shared_subscription_splits_the_messages_between_its_group(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        a, b = Received(), Received()
        shared = (("$share/workers/seq/#", 1),)
        async with mqtt_batch.subscriber("worker-a", shared, a) as sub_a, \
                mqtt_batch.subscriber("worker-b", shared, b) as sub_b:
            await publish(mqtt_batch, numbered(20))
            await eventually(lambda: len(a) + len(b) == 20, 10, "20 messages between the two")
            await settle()
            assert sub_a.ack(a.tokens()) + sub_b.ack(b.tokens()) == 20
        assert len(a) + len(b) == 20 and a.items and b.items  # each message once, both had a share
        assert sorted(a.payloads() + b.payloads(), key=int) == [str(i).encode() for i in range(20)]
        assert a.payloads() == sorted(a.payloads(), key=int)  # each in publish order

    run(main(), 30)


def test_qos0_has_no_token_and_is_not_delivered_again(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received()
        async with mqtt_batch.subscriber("sub", (("q1/#", 1), ("q0/#", 0)), got) as sub:
            await publish(mqtt_batch, [("q1/a", b"1->1", 1), ("q1/b", b"0->1", 0), ("q0/a", b"1->0", 1)])
            await eventually(lambda: len(got) == 3, 10, "3 messages")
            by_payload = {p: t for _, p, t in got.items}
            assert by_payload[b"1->1"] != 0  # QoS 1 on a QoS 1 subscription
            assert by_payload[b"0->1"] == 0 and by_payload[b"1->0"] == 0  # the lower of the two QoS levels
            sub.reconnect("nothing acknowledged")
            await sub.wait_connected()
            await eventually(lambda: len(got) == 4, 10, "the QoS 1 message again")
            await settle()
        assert got.payloads() == [b"1->1", b"0->1", b"1->0", b"1->1"]

    run(main(), 30)


def test_a_receiver_that_raises_gets_the_message_again(mqtt_batch: BatchClients) -> None:
    async def main() -> None:
        got = Received(fail=1)
        async with mqtt_batch.subscriber("sub", (("seq/#", 1),), got) as sub:
            await publish(mqtt_batch, numbered(3))
            await eventually(lambda: len(got) == 3, 10, "3 messages after the failure")
            assert sub.ack(got.tokens()) == 3
            await settle()
        assert got.payloads() == [b"0", b"1", b"2"]

    run(main(), 30)


# -- the in-memory adapter is a drop-in for the real ingest ----------------------------------------------------

PUMP = "dtmi:test:mqttmem:Pump;1"


def _pump_model() -> dict[str, Any]:
    return {"@context": "dtmi:dtdl:context;3", "@id": PUMP, "@type": "Interface", "contents": [
        {"@type": "Telemetry", "name": "vibration", "schema": "double"}]}


def test_mqtt_ingest_runs_on_the_memory_transport_into_a_memory_platform() -> None:
    platform = build_platform(Settings(store="memory"))
    platform.models.add([_pump_model()])
    platform.twins.put("p1", {"model": PUMP})
    broker = MemoryBroker()
    address = parse_url("mqtt://127.0.0.1")
    start_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)

    def telemetry(i: int) -> bytes:
        return json.dumps({"ts": start_ms + i * 1000, "values": {"vibration": i / 4}, "id": f"p1-{i}"}).encode()

    async def publish_all(payloads: list[bytes]) -> None:
        async with broker.transport(address, SessionOptions("device")) as device:
            for payload in payloads:
                await device.publish("tvilling/p1/telemetry", payload, qos=1)

    async def main() -> None:
        async with MqttIngest(platform.ingest, "mqtt://127.0.0.1", client_id="ingest-mem", batch_size=16,
                              transport_factory=broker.batch_transport) as ingest:
            await publish_all([telemetry(i) for i in range(40)] + [b"not json"])
            await eventually(lambda: ingest.stats.acknowledged == 41, 20, "41 messages stored and acknowledged")
            assert ingest.stats.batches >= 3 and ingest.stats.rejected == 1
        assert broker.unacknowledged("ingest-mem") == 0
        await publish_all([telemetry(i) for i in range(40, 50)])  # while the ingest is down: its session keeps them
        async with MqttIngest(platform.ingest, "mqtt://127.0.0.1", client_id="ingest-mem",
                              transport_factory=broker.batch_transport) as again:
            await eventually(lambda: again.stats.acknowledged == 10, 20, "the 10 queued messages")

    run(main(), 60)
    points = platform.history.range("p1", "vibration", start_ms * 1000, (start_ms + 60_000) * 1000)
    assert [p.value for p in points] == [i / 4 for i in range(50)]
    assert platform.twins.get("p1").reported["vibration"] == 49 / 4
    assert platform.dead_letters.count() == 1


# -- the in-memory broker's own rules ------------------------------------------------------------------------


@pytest.mark.parametrize("subscription", ["$share//seq/#", "$share/g+/seq", "$share/g", "$share/g/a/#/b"])
def test_memory_a_bad_shared_subscription_is_refused_naming_it(subscription: str) -> None:
    from tvilling.core.errors import Invalid

    with pytest.raises(Invalid, match=r"\$share/"):
        MemoryBroker().batch_transport(parse_url("mqtt://127.0.0.1"), SessionOptions("c"), [(subscription, 1)],
                                       receiver=Received())


def test_memory_a_batch_client_takes_a_receiver_or_a_handler_not_both() -> None:
    async def handler(_msg: object) -> bool:
        return True

    with pytest.raises(ValueError, match="not both"):
        MemoryBroker().batch_transport(parse_url("mqtt://127.0.0.1"), SessionOptions("c"), [("a/#", 1)], handler,
                                       receiver=Received())
