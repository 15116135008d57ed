"""The shipped Mosquitto configuration loses nothing; Mosquitto's defaults do.

A persistent ingest session (clean start off, session expiry) is offline while a device
publishes 20,000 QoS 1 messages; with deploy/mosquitto/tvilling.conf every one of them
arrives afterwards, even across a broker restart. With Mosquitto's defaults the same
scenario loses messages (max_queued_messages 1000), which shows that this test can fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tvilling.connect.mqtt import MqttIngest

from .conftest import Broker, RecordingSink, publish_many, run

N = 20_000


def _offline_then_drain(broker: Broker, *, restart: bool) -> set[str]:
    sink = RecordingSink()

    async def main() -> set[str]:
        async with MqttIngest(sink, broker.url, client_id="durable-ingest"):
            pass  # the broker now holds a persistent session with the subscription
        messages = [(f"tvilling/M{i % 10}/telemetry",
                     json.dumps({"ts": 1767225600000 + i, "values": {"v": i}, "id": str(i)}).encode(), 1, False)
                    for i in range(N)]
        await asyncio.to_thread(publish_many, broker.url, messages)
        if restart:
            await asyncio.to_thread(broker.restart)
        async with MqttIngest(sink, broker.url, client_id="durable-ingest"):
            await sink.wait_for(lambda: len(sink.envelopes) > 0, timeout=30)
            seen = -1
            while len(sink.envelopes) != seen and len(sink.envelopes) < N:  # until all, or nothing more comes
                seen = len(sink.envelopes)
                await asyncio.sleep(3.0)
        return {e.id or "" for e in sink.envelopes}

    return run(main(), timeout=120)


@pytest.mark.slow
def test_shipped_config_keeps_every_qos1_message_for_an_offline_session_across_a_restart(
        broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(shipped=True)
    ids = _offline_then_drain(broker, restart=True)
    assert not broker.persistence_errors()
    assert len(ids) == N
    assert ids == {str(i) for i in range(N)}


@pytest.mark.slow
def test_mosquitto_defaults_lose_messages_in_the_same_scenario(broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(shipped=False)
    ids = _offline_then_drain(broker, restart=False)
    assert len(ids) < N  # the default queue (1,000 messages) overflowed and Mosquitto dropped the rest
    assert len(ids) <= 1_100
