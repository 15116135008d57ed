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

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from tvilling.connect.mapping import PayloadMapping, TopicPattern
from tvilling.core.envelope import MAX_MESSAGE_ID, MAX_SOURCE, QUALITIES, Envelope, parse_envelope, parse_ts
from tvilling.core.errors import Invalid
from tvilling.core.ids import MAX_TWIN_ID

TELEMETRY_TOPIC = "tvilling/{twin}/telemetry"
MAX_RECORDS = 10_000  # records in one message (a list payload)
MAX_ROUTES = 100_000  # topics whose route is remembered ...
MAX_CACHED_TOPIC = 256  # ... if no longer than this (a flood of long random topics cannot fill memory)
MAX_DEPTH = 32  # nesting of JSON objects and arrays in one payload; deeper ones are rejected before parsing
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def check_depth(payload: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise ``Invalid`` (rule ``depth``) if the JSON nests objects and arrays deeper than ``limit``.

    Checked before parsing, so a hostile payload cannot exhaust the parser's recursion; it costs
    two byte counts unless the payload has more brackets than the limit.

    >>> check_depth(b'{"ts": 1, "values": {"a": [1, [2]]}}')
    >>> check_depth(b"[" * 40 + b"]" * 40)
    Traceback (most recent call last):
    ...
    tvilling.core.errors.Invalid: payload nests 40 levels deep; at most 32
    """
    if payload.count(b"{") + payload.count(b"[") <= limit:
        return
    text = _STRING.sub(b'""', payload) if b'"' in payload else payload
    arr = np.frombuffer(text, dtype=np.uint8)
    step = np.isin(arr, _OPEN).astype(np.int32) - np.isin(arr, _CLOSE).astype(np.int32)
    depth = int(np.cumsum(step).max(initial=0))
    if depth > limit:
        raise Invalid(f"payload nests {depth} levels deep; at most {limit}", field="payload", rule="depth")


_OPEN = np.frombuffer(b"{[", dtype=np.uint8)
_CLOSE = np.frombuffer(b"}]", dtype=np.uint8)


class _Canonical(msgspec.Struct, forbid_unknown_fields=True):
    """The common canonical payload (one object), decoded with its types checked in one msgspec call.

    Anything it does not take (a list, a bool ``ts``, an unknown key, ``"twin": null``, ...) goes
    through :func:`parse_envelope`, which also words the error.
    """

    ts: int | float | str
    values: dict[str, Any]
    twin: str | msgspec.UnsetType = msgspec.UNSET
    id: str | int | None = None
    source: str | None = None
    quality: str | None = None


_decode_canonical = msgspec.json.Decoder(_Canonical).decode


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
        # topic → (mapping or None for canonical, captured variables), or the reason it matches nothing
        self._routes: dict[str, tuple[PayloadMapping | None, Mapping[str, str]] | str] = {}

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
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        if isinstance(route, str):
            raise Invalid(route, field="topic", rule="topic")
        mapping, variables = route
        check_depth(payload)
        if mapping is not None:
            return mapping.translate(topic, _records(decode_json(payload)), received=received, variables=variables)
        twin = variables["twin"]
        fast = _fast_canonical(twin, payload)
        if fast is not None:
            return [fast]
        return _canonical(twin, decode_json(payload))

    def _route(self, topic: str) -> tuple[PayloadMapping | None, Mapping[str, str]] | str:
        route: tuple[PayloadMapping | None, Mapping[str, str]] | str
        route = f"no telemetry topic or mapping matches {topic!r}"
        for mapping in self.mappings:
            variables = mapping.match(topic)
            if variables is not None:
                route = (mapping, variables)
                break
        else:
            for pattern in self.topics:
                variables = pattern.match(topic)
                if variables is not None:
                    route = (None, variables)
                    break
        if len(topic) <= MAX_CACHED_TOPIC:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[topic] = route
        return route


def _fast_canonical(twin: str, payload: bytes) -> Envelope | None:
    """The envelope of a plain canonical object, or None to take the general path (same result or error)."""
    try:
        doc = _decode_canonical(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    msg_id = doc.id
    if isinstance(msg_id, int):
        msg_id = str(msg_id)
    if (doc.twin is not msgspec.UNSET and doc.twin != twin) or not twin or len(twin) > MAX_TWIN_ID \
            or isinstance(doc.ts, bool) or (msg_id is not None and len(msg_id) > MAX_MESSAGE_ID) \
            or (doc.source is not None and len(doc.source) > MAX_SOURCE) \
            or (doc.quality is not None and doc.quality not in QUALITIES):
        return None
    try:
        ts = datetime.fromtimestamp(doc.ts / 1000.0, tz=UTC) if type(doc.ts) is int else parse_ts(doc.ts)
    except (Invalid, OverflowError, OSError, ValueError):
        return None
    return Envelope(twin=twin, ts=ts, values=doc.values, source=doc.source, id=msg_id, quality=doc.quality)


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
