"""MqttIngest against a real Mosquitto (started per test with the shipped configuration)."""

from __future__ import annotations

import asyncio
import json

from tvilling.connect.mapping import load_mappings
from tvilling.connect.mqtt import MqttIngest

from .conftest import Broker, RecordingSink, publish_many, run


def _telemetry(twin: str, i: int) -> tuple[str, bytes, int, bool]:
    body = {"ts": 1767225600000 + i, "values": {"vibration": i * 0.5}, "id": f"{twin}-{i}"}
    return f"tvilling/{twin}/telemetry", json.dumps(body).encode(), 1, False


def test_end_to_end_publish_reaches_sink_as_envelopes(broker: Broker) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-e2e") as ingest:
            await asyncio.to_thread(publish_many, broker.url, [
                _telemetry("M1", 1),
                ("tvilling/M2/telemetry", json.dumps([
                    {"ts": "2026-01-01T00:00:00Z", "values": {"temperature": 71.5}, "quality": "good"},
                    {"ts": "2026-01-01T00:00:01Z", "values": {"temperature": 71.7}, "source": "plc-3"},
                ]).encode(), 1, False),
            ])
            await sink.wait_for(lambda: len(sink.envelopes) == 3)
            assert ingest.stats.acknowledged == 2

    run(main())
    by_twin = sorted((e.twin, e.ts.isoformat(), e.values) for e in sink.envelopes)
    assert by_twin == [
        ("M1", "2026-01-01T00:00:00.001000+00:00", {"vibration": 0.5}),
        ("M2", "2026-01-01T00:00:00+00:00", {"temperature": 71.5}),
        ("M2", "2026-01-01T00:00:01+00:00", {"temperature": 71.7}),
    ]
    assert {e.id for e in sink.envelopes} == {"M1-1", None}
    assert {e.quality for e in sink.envelopes} == {None, "good"}
    assert not sink.rejected


def test_bad_payloads_are_rejected_with_reason_and_acknowledged(broker: Broker) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-bad"):
            await asyncio.to_thread(publish_many, broker.url, [
                ("tvilling/M1/telemetry", b"not json", 1, False),
                ("tvilling/M1/telemetry", b'{"values": {"a": 1}}', 1, False),
                ("tvilling/M1/telemetry", b'{"twin": "M9", "ts": 0, "values": {"a": 1}}', 1, False),
                _telemetry("M1", 7),
            ])
            await sink.wait_for(lambda: len(sink.rejected) == 3 and len(sink.envelopes) == 1)
        # nothing left unacknowledged: a second session with the same client id gets nothing
        again = RecordingSink()
        async with MqttIngest(again, broker.url, client_id="ingest-bad"):
            await asyncio.sleep(1.0)
        assert again.calls == 0 and not again.rejected, (again.envelopes, again.rejected)

    run(main())
    reasons = {reason for _, reason, _ in sink.rejected}
    assert any("not JSON" in r for r in reasons)
    assert any("'ts' is required" in r for r in reasons)
    assert any("differs from the topic's twin" in r for r in reasons)
    raw = sink.rejected[0][0]
    assert raw.transport == "mqtt" and raw.address == "tvilling/M1/telemetry"
    assert {r for _, _, r in sink.rejected} == {"json", "required", "twin"}


def test_message_is_redelivered_when_the_sink_fails(broker: Broker) -> None:
    sink = RecordingSink()
    sink.failures_left = 2  # the store is down for the first two attempts

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-redeliver", batch_ms=5) as ingest:
            await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", i) for i in range(5)])
            await sink.wait_for(lambda: len({e.id for e in sink.envelopes}) == 5)
            assert ingest.stats.sink_failures == 2
        # everything was acknowledged once stored: a new session with the same id gets nothing more
        later = RecordingSink()
        async with MqttIngest(later, broker.url, client_id="ingest-redeliver"):
            await asyncio.sleep(1.0)
        assert later.calls == 0

    run(main())
    assert sink.calls >= 3
    assert sorted({e.id for e in sink.envelopes}) == [f"M1-{i}" for i in range(5)]


def test_unacknowledged_messages_survive_the_worker_going_away(broker: Broker) -> None:
    """The sink never returns: nothing is acked; a new worker with the same id gets it all."""
    stuck = RecordingSink()
    stuck.gate = asyncio.Event()  # never set

    async def first() -> None:
        ingest = MqttIngest(stuck, broker.url, client_id="ingest-crash", batch_ms=5)
        await ingest.__aenter__()
        await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", i) for i in range(20)])
        await stuck.wait_for(lambda: stuck.calls >= 1)
        # the worker dies mid-batch: its connection goes away with nothing acknowledged
        await ingest.transport.__aexit__(None, None, None)
        assert ingest._batcher is not None
        ingest._batcher.cancel()

    fresh = RecordingSink()

    async def second() -> None:
        async with MqttIngest(fresh, broker.url, client_id="ingest-crash"):
            await fresh.wait_for(lambda: len(fresh.envelopes) == 20)

    run(first())
    run(second())
    assert sorted(e.id or "" for e in fresh.envelopes) == sorted(f"M1-{i}" for i in range(20))


def test_batches_call_the_sink_once_per_batch_and_inflight_is_bounded(broker: Broker) -> None:
    sink = RecordingSink()
    sink.gate = asyncio.Event()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-batch", max_inflight=50, batch_size=50,
                              batch_ms=50) as ingest:
            await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", i) for i in range(400)])
            await asyncio.sleep(1.0)
            # the sink is blocked: the broker may not push more than the receive maximum at us
            assert ingest.stats.received <= 50
            assert sink.calls == 1
            assert sink.gate is not None
            sink.gate.set()
            await sink.wait_for(lambda: len(sink.envelopes) == 400)
            assert ingest.stats.batches <= 12  # 400 messages in batches of up to 50

    run(main())
    assert len({e.id for e in sink.envelopes}) == 400


def test_shared_subscription_splits_the_load_without_loss_or_duplicates(broker: Broker) -> None:
    a, b = RecordingSink(), RecordingSink()
    n = 2000

    async def main() -> None:
        async with MqttIngest(a, broker.url, client_id="worker-a", shared_group="tvilling"), \
                MqttIngest(b, broker.url, client_id="worker-b", shared_group="tvilling"):
            await asyncio.to_thread(publish_many, broker.url, [_telemetry(f"M{i % 7}", i) for i in range(n)])
            await a.wait_for(lambda: len(a.envelopes) + len(b.envelopes) >= n)
            await asyncio.sleep(0.5)  # would a duplicate still arrive?

    run(main())
    ids_a = [e.id for e in a.envelopes]
    ids_b = [e.id for e in b.envelopes]
    assert len(ids_a) + len(ids_b) == n
    assert set(ids_a).isdisjoint(ids_b)
    assert len(set(ids_a) | set(ids_b)) == n
    assert len(ids_a) > n // 10 and len(ids_b) > n // 10  # both workers took a real share


def test_mapped_payloads_become_envelopes_and_unmappable_ones_are_rejected(broker: Broker) -> None:
    mappings = load_mappings([{
        "name": "acme-sensors",
        "topic": "plant/{line}/{machine}/sensors",
        "twin": "{machine}",
        "ts": "$.time", "ts_format": "epoch_s",
        "values": {"vibration": {"path": "$.vib.rms", "unit": "centimetrePerSecond"},
                   "temperature": {"path": "$.t", "unit": "degreeFahrenheit", "to_unit": "degreeCelsius"}},
        "id": "$.seq",
        "source": "acme/{line}",
    }])
    sink = RecordingSink()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-map", mappings=mappings):
            await asyncio.to_thread(publish_many, broker.url, [
                ("plant/L1/M7/sensors", json.dumps({"time": 1767225600, "vib": {"rms": 2.5}, "t": 212,
                                                    "seq": 1}).encode(), 1, False),
                ("plant/L1/M8/sensors", json.dumps({"time": 1767225600, "t": 212, "seq": 2}).encode(), 1, False),
                _telemetry("M9", 3),
            ])
            await sink.wait_for(lambda: len(sink.envelopes) == 2 and len(sink.rejected) == 1)

    run(main())
    mapped = next(e for e in sink.envelopes if e.twin == "M7")
    assert mapped.values == {"vibration": {"value": 2.5, "unit": "centimetrePerSecond"}, "temperature": 100.0}
    assert mapped.id == "1" and mapped.source == "acme/L1"
    assert mapped.ts.isoformat() == "2026-01-01T00:00:00+00:00"
    assert any(e.twin == "M9" for e in sink.envelopes)
    raw, reason, rule = sink.rejected[0]
    assert raw.address == "plant/L1/M8/sensors"
    assert "acme-sensors" in reason and "$.vib.rms is missing" in reason and rule == "missing"


def test_reconnects_after_the_broker_restarts(broker: Broker) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-restart") as ingest:
            await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", 1)])
            await sink.wait_for(lambda: len(sink.envelopes) == 1)
            await asyncio.to_thread(broker.restart)
            await asyncio.sleep(0.2)
            await asyncio.wait_for(ingest.transport.wait_connected(), 20)
            await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", 2)])
            await sink.wait_for(lambda: len(sink.envelopes) == 2)

    run(main())
    assert [e.id for e in sink.envelopes] == ["M1-1", "M1-2"]


def test_hostile_payloads_are_dead_lettered_one_by_one_and_the_batch_goes_on(broker: Broker) -> None:
    """A payload nested 1,000 deep, a 400-digit number and a translator bug cannot jam ingest."""
    sink = RecordingSink()
    deep = b'{"ts": 0, "values": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    huge = b'{"ts": 1767225600000, "values": {"vibration": ' + b"9" * 400 + b"}}"

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-hostile", batch_ms=50) as ingest:
            real = ingest.translator.translate

            def buggy(topic, payload, *, received=None):  # an unforeseen failure on one message
                if payload == b'{"bug": 1}':
                    raise KeyError("unforeseen")
                return real(topic, payload, received=received)

            ingest.translator.translate = buggy  # type: ignore[method-assign]
            await asyncio.to_thread(publish_many, broker.url, [
                _telemetry("M1", 1), ("tvilling/M1/telemetry", deep, 1, False),
                ("tvilling/M1/telemetry", b'{"bug": 1}', 1, False), ("tvilling/M1/telemetry", huge, 1, False),
                _telemetry("M1", 2)])
            await sink.wait_for(lambda: len(sink.rejected) == 2 and len(sink.envelopes) == 3)
            assert ingest.stats.acknowledged == 5 and ingest.stats.sink_failures == 0
        again = RecordingSink()  # everything was acknowledged: nothing is delivered again
        async with MqttIngest(again, broker.url, client_id="ingest-hostile"):
            await asyncio.sleep(1.0)
        assert again.calls == 0 and not again.rejected

    run(main())
    rules = {rule: (raw.payload, reason) for raw, reason, rule in sink.rejected}
    assert set(rules) == {"depth", "internal"}
    assert rules["depth"][0] == deep and "1002 levels" in rules["depth"][1]
    assert "KeyError" in rules["internal"][1]
    # the huge number passes translation (JSON allows it); the pipeline rejects it as out of range
    assert [e.values for e in sink.envelopes][1] == {"vibration": int("9" * 400)}


def test_a_failing_store_is_retried_without_acknowledging_and_without_reconnecting(broker: Broker) -> None:
    sink = RecordingSink()
    sink.failures_left = 3

    async def main() -> None:
        async with MqttIngest(sink, broker.url, client_id="ingest-retry", batch_ms=5) as ingest:
            generation = ingest.transport._generation
            await asyncio.to_thread(publish_many, broker.url, [_telemetry("M1", i) for i in range(3)])
            await sink.wait_for(lambda: len(sink.envelopes) == 3, timeout=10)
            assert ingest.stats.sink_failures == 3
            assert ingest.transport._generation == generation  # the same connection: back-pressure, no storm
            assert ingest.stats.acknowledged == 3

    run(main())
