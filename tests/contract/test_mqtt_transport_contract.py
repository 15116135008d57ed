"""The MQTT transport port's contract over the in-memory broker and gmqtt against a real Mosquitto.

What the ingest and command code rely on: QoS 1 messages reach every matching subscription
with their MQTT 5 properties; retained messages reach a later subscriber (an empty one
clears); a message the handler does not take comes again; a persistent session gets what
was published while it was away; publishing without a connection raises ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import doctest

import pytest

import tvilling.connect.mqtt.memory as memory_module
from ingest_sink import eventually, run
from tvilling.connect.mqtt.port import Inbound
from tvilling.core.errors import Invalid, Unavailable

from .conftest import MqttFactory


class Inbox:
    """A handler that records messages; it refuses the first ``refuse`` deliveries."""

    def __init__(self, refuse: int = 0) -> None:
        self.messages: list[Inbound] = []
        self.refused: list[Inbound] = []
        self.refuse = refuse

    async def __call__(self, msg: Inbound) -> bool:
        if len(self.refused) < self.refuse:
            self.refused.append(msg)
            return False
        self.messages.append(msg)
        return True

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]


def test_a_message_reaches_every_matching_subscription_with_its_properties(mqtt_client: MqttFactory) -> None:
    async def main() -> None:
        plus, hash_, other = Inbox(), Inbox(), Inbox()
        async with mqtt_client("c-plus", (("plant/+/speed", 1),), plus), \
                mqtt_client("c-hash", (("plant/#", 1),), hash_), \
                mqtt_client("c-other", (("elsewhere/#", 1),), other), \
                mqtt_client("c-pub") as pub:
            await pub.publish("plant/M1/speed", b"800", qos=1, response_topic="plant/M1/speed/response",
                              correlation_data=b"req-1")
            await pub.publish("plant/M1/temperature", b"70", qos=1)
            await eventually(lambda: len(hash_.messages) == 2 and len(plus.messages) == 1, 10, "deliveries")
            await asyncio.sleep(0.2)
        [got] = plus.messages
        assert (got.topic, got.payload, got.qos, got.retain) == ("plant/M1/speed", b"800", 1, False)
        assert (got.response_topic, got.correlation_data) == ("plant/M1/speed/response", b"req-1")
        assert hash_.topics() == ["plant/M1/speed", "plant/M1/temperature"] and other.messages == []

    run(main(), 30)


def test_qos1_messages_arrive_in_the_order_they_were_published(mqtt_client: MqttFactory) -> None:
    async def main() -> None:
        inbox = Inbox()
        async with mqtt_client("c-sub", (("seq/#", 1),), inbox), mqtt_client("c-pub") as pub:
            for i in range(50):
                await pub.publish(f"seq/{i % 3}", str(i).encode(), qos=1)
            await eventually(lambda: len(inbox.messages) == 50, 10, "50 messages")
        assert [int(m.payload) for m in inbox.messages] == list(range(50))

    run(main(), 30)


def test_a_retained_message_reaches_a_later_subscriber_and_an_empty_one_clears_it(mqtt_client: MqttFactory) -> None:
    async def main() -> None:
        async with mqtt_client("c-pub") as pub:
            await pub.publish("tvilling/M1/desired", b'{"speed": 900}', qos=1, retain=True)
            await pub.publish("tvilling/M2/desired", b'{"speed": 100}', qos=1, retain=True)
            await pub.publish("tvilling/M2/desired", b"", qos=1, retain=True)
        late = Inbox()
        async with mqtt_client("c-late", (("tvilling/+/desired", 1),), late, clean_start=True):
            await eventually(lambda: bool(late.messages), 10, "the retained message")
            await asyncio.sleep(0.3)  # time for a (wrong) second one
        assert [(m.topic, m.payload, m.retain) for m in late.messages] == [
            ("tvilling/M1/desired", b'{"speed": 900}', True)]

    run(main(), 30)


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_message_the_handler_does_not_take_comes_again(mqtt_client: MqttFactory, refusals: int) -> None:
    async def main() -> None:
        inbox = Inbox(refuse=refusals)
        async with mqtt_client("c-sub", (("again/#", 1),), inbox) as sub, mqtt_client("c-pub") as pub:
            await pub.publish("again/1", b"x", qos=1)
            await eventually(lambda: len(inbox.messages) == 1, 8, "the message to be taken")
            await sub.wait_connected()
            await asyncio.sleep(0.3)
        assert [m.payload for m in inbox.refused] == [b"x"] * refusals and inbox.topics() == ["again/1"]

    run(main(), 40)


def test_a_persistent_session_gets_what_was_published_while_it_was_away(mqtt_client: MqttFactory) -> None:
    async def main() -> None:
        first = Inbox()
        async with mqtt_client("c-away", (("away/#", 1),), first):
            pass  # subscribes, then leaves (its session stays)
        async with mqtt_client("c-pub") as pub:
            await pub.publish("away/1", b"a", qos=1)
            await pub.publish("away/2", b"b", qos=1)
        back = Inbox()
        async with mqtt_client("c-away", (("away/#", 1),), back):
            await eventually(lambda: len(back.messages) == 2, 10, "the queued messages")
        assert [m.payload for m in back.messages] == [b"a", b"b"] and first.messages == []

    run(main(), 30)


def test_publishing_without_a_connection_is_unavailable(mqtt_client: MqttFactory) -> None:
    async def main() -> None:
        client = mqtt_client("c-closed")
        with pytest.raises(Unavailable):
            await client.publish("x/y", b"1", qos=1)
        async with client:
            assert client.connected
        assert not client.connected
        with pytest.raises(Unavailable):
            await client.publish("x/y", b"1", qos=1)

    run(main(), 30)


# -- the in-memory broker's own rules ------------------------------------------------------------------------


def test_memory_broker_docstring_examples() -> None:
    result = doctest.testmod(memory_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("pattern", "topic", "match"), [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/#", "a/b/c", True), ("a/#", "a", True), ("#", "a/b", True), ("+/+", "a/b", True), ("+", "a/b", False),
    ("#", "$SYS/x", False), ("$SYS/#", "$SYS/x", True), ("a/+/c", "a//c", True)])
def test_memory_topic_filters(pattern: str, topic: str, match: bool) -> None:
    assert memory_module.topic_matches(pattern, topic) is match


@pytest.mark.parametrize("pattern", ["", "a/#/b", "a/b#", "a+/b"])
def test_memory_a_bad_filter_is_refused_naming_it(pattern: str) -> None:
    from tvilling.connect.mqtt.port import SessionOptions, parse_url

    broker = memory_module.MemoryBroker()
    with pytest.raises(Invalid, match="filter"):
        broker.transport(parse_url("mqtt://127.0.0.1"), SessionOptions("c"), [(pattern, 1)])


def test_memory_a_wildcard_topic_cannot_be_published_to() -> None:
    from tvilling.connect.mqtt.port import SessionOptions, parse_url

    async def main() -> None:
        broker = memory_module.MemoryBroker()
        async with broker.transport(parse_url("mqtt://127.0.0.1"), SessionOptions("c")) as client:
            for topic in ("a/+", "a/#", ""):
                with pytest.raises(Invalid):
                    await client.publish(topic, b"1")

    run(main(), 10)
