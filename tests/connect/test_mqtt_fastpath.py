"""The fast paths of MQTT ingest give the same results as the general ones (pure: no broker)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tvilling.connect.mqtt.gmqtt_transport import pubacks
from tvilling.connect.mqtt.telemetry import Translator, _canonical, _fast_canonical, decode_json
from tvilling.core.errors import Invalid

TOPIC = "tvilling/B1/telemetry"

PAYLOADS = [
    b'{"ts": 1767225600000, "values": {"v": 1.5, "t": 70}}',
    b'{"ts": 1767225600000.5, "values": {"v": 1.5}}',
    b'{"ts": "2026-01-01T00:00:00Z", "values": {"v": 1}, "id": 7, "quality": "uncertain", "source": "plc"}',
    b'{"ts": "2026-01-01T01:00:00+01:00", "values": {"s": "text", "b": true, "n": null, "o": {"x": 1}}}',
    b'{"twin": "B1", "ts": 0, "values": {}}',
    b'{"ts": 1767225600000, "values": {"v": 1}, "id": "a", "quality": null, "source": null}',
    # the general path decides these (and words their errors)
    b'{"twin": "B2", "ts": 0, "values": {"v": 1}}',
    b'{"twin": null, "ts": 0, "values": {"v": 1}}',
    b'{"ts": true, "values": {"v": 1}}',
    b'{"ts": "2026-01-01T00:00:00", "values": {"v": 1}}',
    b'{"ts": 1e300, "values": {"v": 1}}',
    b'{"ts": 99999999999999999999999, "values": {"v": 1}}',
    b'{"ts": 0, "values": [1, 2]}',
    b'{"ts": 0, "values": {"v": 1}, "extra": 1}',
    b'{"ts": 0, "values": {"v": 1}, "quality": "great"}',
    b'{"ts": 0, "values": {"v": 1}, "id": true}',
    b'{"ts": 0, "values": {"v": 1}, "id": "' + b"x" * 300 + b'"}',
    b'{"ts": 0, "values": {"v": 1}, "source": "' + b"s" * 300 + b'"}',
    b'{"values": {"v": 1}}',
    b'[{"ts": 0, "values": {"v": 1}}, {"ts": 1, "values": {"v": 2}}]',
    b'{"ts": 0, "values": {"v": 1}, "ts": 5}',
    b'not json',
    b'',
]


def _general(payload: bytes) -> Any:
    try:
        return _canonical("B1", decode_json(payload))
    except Invalid as exc:
        return ("error", exc.message, exc.fields.get("rule"))


def _translated(payload: bytes) -> Any:
    try:
        return Translator().translate(TOPIC, payload)
    except Invalid as exc:
        return ("error", exc.message, exc.fields.get("rule"))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_translate_gives_what_the_general_path_gives(payload: bytes) -> None:
    assert _translated(payload) == _general(payload)


def test_the_fast_path_takes_the_common_payloads_and_leaves_the_rest() -> None:
    taken = [i for i, p in enumerate(PAYLOADS) if _fast_canonical("B1", p) is not None]
    assert taken == [0, 1, 2, 3, 4, 5, 20]  # 20: a repeated key, the last one wins on both paths
    env = _fast_canonical("B1", PAYLOADS[2])
    assert env is not None and env.id == "7" and env.quality == "uncertain" and env.source == "plc"
    assert env.ts.isoformat() == "2026-01-01T00:00:00+00:00"
    assert _fast_canonical("B1", PAYLOADS[0]) == _general(PAYLOADS[0])[0]


def test_routes_are_remembered_per_topic_and_unknown_topics_still_fail() -> None:
    t = Translator()
    assert t.translate(TOPIC, PAYLOADS[0]) == t.translate(TOPIC, PAYLOADS[0])
    for _ in range(2):
        with pytest.raises(Invalid, match="no telemetry topic or mapping matches 'other/B1'"):
            t.translate("other/B1", PAYLOADS[0])


def test_pubacks_are_back_to_back_success_packets() -> None:
    mids = [1, 255, 256, 65535]
    data = pubacks(mids)
    assert len(data) == 16
    assert [struct.unpack("!BBH", data[i:i + 4]) for i in range(0, 16, 4)] == [(0x40, 2, m) for m in mids]
    assert pubacks([]) == b""


def _publish_parser(v5: bool = True) -> tuple[Any, list[tuple[str, bytes, int]]]:
    """The batch path's PUBLISH parser on a real (unconnected) gmqtt client, and what it hands over."""
    import gmqtt

    from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport, _Connection
    from tvilling.connect.mqtt.port import SessionOptions, parse_url

    got: list[tuple[str, bytes, int]] = []
    transport = GmqttTransport(parse_url("mqtt://127.0.0.1:1"), SessionOptions("parser-test"),
                               receiver=lambda t, p, k: got.append((t, p, k)))
    conn = _Connection(gmqtt.Client("parser-test"), None, generation=3)  # type: ignore[arg-type]
    conn.v5 = v5
    return transport._publish_handler(conn, transport.receiver), got  # type: ignore[arg-type]


def _publish(topic: bytes, payload: bytes, mid: int | None, props: bytes | None) -> tuple[int, bytes]:
    body = struct.pack("!H", len(topic)) + topic
    if mid is not None:
        body += struct.pack("!H", mid)
    if props is not None:
        body += bytes([len(props)]) + props
    return (0x32 if mid is not None else 0x30), body + payload


def test_publish_parser_reads_topic_packet_id_properties_and_payload() -> None:
    on_publish, got = _publish_parser()
    user_property = b"\x26" + struct.pack("!H", 4) + b"site" + struct.pack("!H", 5) + b"north"
    for topic, payload, mid, props in [(b"tvilling/A/telemetry", b'{"x":1}', 7, b""),
                                       (b"tvilling/B/telemetry", b"{}", 65535, user_property),
                                       (b"tvilling/C/telemetry", b"zero", None, b"")]:
        cmd, body = _publish(topic, payload, mid, props)
        on_publish(cmd, b"junk" + body + b"more", 4, 4 + len(body))  # the parser keeps to its slice
    assert got == [("tvilling/A/telemetry", b'{"x":1}', (3 << 16) | 7),
                   ("tvilling/B/telemetry", b"{}", (3 << 16) | 65535),
                   ("tvilling/C/telemetry", b"zero", 0)]


def test_publish_parser_for_mqtt_311_has_no_property_length() -> None:
    on_publish, got = _publish_parser(v5=False)
    cmd, body = _publish(b"t/1", b"\x00payload", 9, None)
    on_publish(cmd, body, 0, len(body))
    assert got == [("t/1", b"\x00payload", (3 << 16) | 9)]


def test_malformed_publish_is_not_handed_over_and_raises_nothing() -> None:
    on_publish, got = _publish_parser()
    cmd, body = _publish(b"tvilling/A/telemetry", b"{}", 1, b"")
    for cut in (1, 5, 23, 24):  # inside the topic length, the topic, the packet id; no property length
        on_publish(cmd, body[:cut], 0, cut)
    on_publish(cmd, b"\xff\xff" + body[2:], 0, len(body))  # a topic longer than the packet
    assert got == []
