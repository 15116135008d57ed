"""Property-based fuzz of the MQTT ingest path: generated hostile payloads through MqttIngest and the real pipeline.

The transport is replaced by an in-process one that hands each generated message to
MqttIngest's receiver and records the acknowledgements; everything after it is the real
code (translation, the ingest service, normalise, clean, the stores in memory). For every
generated batch: no exception escapes, every message is acknowledged, and every message is
accounted for — its readings stored, dropped as a duplicate, or its rejection dead-lettered.
The same corpus crosses a real broker and server in tests/chaos (``case_poison``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_sink import run
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.connect.mqtt import MqttIngest
from tvilling.connect.mqtt.port import BrokerAddress, SessionOptions
from tvilling.models.builtin import builtin_documents

BEARING = "dtmi:tvilling:example:Bearing;1"
EXAMPLES = int(os.environ.get("TVILLING_FUZZ_EXAMPLES", "150"))


class LoopbackTransport:
    """Stands in for the broker connection: delivers given messages to the receiver, records PUBACKs."""

    def __init__(self, address: BrokerAddress, options: SessionOptions, subscriptions: Sequence[tuple[str, int]],
                 handler: Any = None, *, receiver: Any = None) -> None:
        self.receiver = receiver
        self.acked: list[int] = []
        self.reconnects = 0

    async def __aenter__(self) -> LoopbackTransport:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True

    async def wait_connected(self) -> None:
        return None

    def ack(self, tokens: Sequence[int]) -> int:
        self.acked.extend(tokens)
        return len(tokens)

    def reconnect(self, reason: str) -> None:
        self.reconnects += 1

    def throttle(self, paused: bool) -> None:
        return None


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**500), max_value=10**500),
                      st.floats(allow_nan=False), st.text(max_size=50))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                          st.dictionaries(st.text(max_size=10), kids, max_size=5)),
                          max_leaves=30)
ts = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(), st.text(max_size=30),
               st.just("2026-12-07T12:00:00Z"), st.booleans(), st.none())
prop = st.sampled_from(["vibration", "temperature", "manufacturer", "health", "nonsense", ""])
envelope = st.fixed_dictionaries(
    {"ts": ts, "values": st.one_of(st.dictionaries(prop, json_value, max_size=4), json_value)},
    optional={"id": st.one_of(st.text(max_size=300), st.integers(), st.none()), "quality": json_value,
              "source": json_value, "twin": st.sampled_from(["B1", "B2", "ghost"]), "extra": json_value})


def encode(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


payload = st.one_of(
    envelope.map(encode),
    st.lists(envelope, max_size=4).map(encode),
    json_value.map(encode),
    st.binary(max_size=300),
    st.integers(min_value=1, max_value=400).map(lambda d: b'{"ts": 0, "values": {"v": ' + b"[" * d + b"]" * d + b"}}"),
    envelope.map(encode).map(lambda b: b[: len(b) // 2]),  # cut short
)
message = st.tuples(st.sampled_from(["tvilling/B1/telemetry", "tvilling/B2/telemetry", "tvilling/ghost/telemetry",
                                     "tvilling//telemetry"]), payload)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("TVILLING_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(message, min_size=1, max_size=25))
def test_generated_payloads_never_escape_and_every_message_is_acknowledged_and_accounted(messages):
    platform = build_platform(Settings(store="memory"))
    platform.models.add(builtin_documents("plant"))
    platform.twins.put("B1", {"model": BEARING})
    platform.twins.put("B2", {"model": BEARING})

    async def main() -> tuple[Any, LoopbackTransport]:
        ingest = MqttIngest(platform.ingest, "mqtt://127.0.0.1:1", batch_ms=1, transport_factory=LoopbackTransport)
        async with ingest:
            transport = ingest.transport
            for token, (topic, body) in enumerate(messages, start=1):
                transport.receiver(topic, body, token)  # type: ignore[attr-defined]
            deadline = asyncio.get_running_loop().time() + 20
            while len(transport.acked) < len(messages):  # type: ignore[attr-defined]
                assert asyncio.get_running_loop().time() < deadline, "not every message was acknowledged"
                await asyncio.sleep(0.005)
        return ingest, transport  # type: ignore[return-value]

    try:
        ingest, transport = run(main(), timeout=30)
        assert sorted(transport.acked) == list(range(1, len(messages) + 1))
        assert transport.reconnects == 0 and ingest.stats.sink_failures == 0
        letters = platform.dead_letters.list(limit=10_000)
        assert all(d.payload is not None and d.digest for d in letters)
        assert not [d for d in letters if d.rule == "internal"], [(d.reason, d.payload[:80]) for d in letters]
    finally:
        platform.close()
