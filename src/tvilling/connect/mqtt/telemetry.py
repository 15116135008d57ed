"""Translate MQTT messages into canonical envelopes (pure: no I/O).

Canonical telemetry arrives on ``tvilling/{twin}/telemetry`` as one JSON object
``{"ts": …, "values": {…}, "id"?, "quality"?, "source"?}`` or a list of them; the twin
comes from the topic. Other payloads are read by declarative mappings
(:mod:`tvilling.connect.mapping`).

>>> t = Translator()
>>> [env] = t.translate("tvilling/pump-7/telemetry", b'{"ts": "2026-01-01T00:00:00Z", "values": {"rpm": 1480}}')
>>> env.twin, env.values
('pump-7', {'rpm': 1480})
>>> t.translate("tvilling/pump-7/telemetry", b'{"values": {}}')
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: envelope: 'ts' is required (ISO 8601 with a zone, or epoch milliseconds)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from tvilling.connect.mapping import PayloadMapping, TopicPattern
from tvilling.core.envelope import Envelope, parse_envelope
from tvilling.core.errors import Invalid

TELEMETRY_TOPIC = "tvilling/{twin}/telemetry"
MAX_RECORDS = 10_000  # records in one message (a list payload)


def decode_json(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise Invalid(f"payload is not JSON: {exc}", field="payload", rule="json") from None


class Translator:
    """Routes a topic to canonical parsing or to the first mapping whose pattern matches."""

    def __init__(self, topics: Sequence[str] = (TELEMETRY_TOPIC,), mappings: Sequence[PayloadMapping] = ()) -> None:
        self.topics: list[TopicPattern] = []
        for topic in topics:
            try:
                pattern = TopicPattern.parse(topic)
            except ValueError as exc:
                raise Invalid(f"telemetry topic {topic!r}: {exc}", field="topics", rule="topic") from None
            if "twin" not in pattern.variables:
                raise Invalid(f"telemetry topic {topic!r} must capture the twin, like 'tvilling/{{twin}}/telemetry'",
                              field="topics", rule="topic")
            self.topics.append(pattern)
        self.mappings = list(mappings)

    @property
    def subscriptions(self) -> list[str]:
        """Topic filters to subscribe to (mappings first), without duplicates."""
        out: list[str] = []
        for sub in [m.subscription for m in self.mappings] + [p.subscription for p in self.topics]:
            if sub not in out:
                out.append(sub)
        return out

    def translate(self, topic: str, payload: bytes, *, received: datetime | None = None) -> list[Envelope]:
        """The envelopes in one message; raises ``Invalid`` saying why it cannot be translated."""
        for mapping in self.mappings:
            variables = mapping.match(topic)
            if variables is not None:
                return mapping.translate(topic, _records(decode_json(payload)), received=received,
                                         variables=variables)
        for pattern in self.topics:
            variables = pattern.match(topic)
            if variables is not None:
                return _canonical(variables["twin"], decode_json(payload))
        raise Invalid(f"no telemetry topic or mapping matches {topic!r}", field="topic", rule="topic")


def _records(doc: Any) -> Any:
    if isinstance(doc, list) and len(doc) > MAX_RECORDS:
        raise Invalid(f"payload has {len(doc)} records; at most {MAX_RECORDS}", field="payload", rule="size")
    return doc


def _canonical(twin: str, doc: Any) -> list[Envelope]:
    items = _records(doc) if isinstance(doc, list) else [doc]
    if not items:
        raise Invalid("payload is an empty list", field="payload", rule="empty")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "twin" in item and item["twin"] != twin:
            raise Invalid(f"record [{i}]: twin {item['twin']!r} differs from the topic's twin {twin!r}",
                          field="twin", rule="twin", twin=twin)
        try:
            out.append(parse_envelope(item, default_twin=twin))
        except Invalid as exc:
            if len(items) == 1:
                raise
            raise Invalid(f"record [{i}]: {exc.message}", **exc.fields) from None
    return out
