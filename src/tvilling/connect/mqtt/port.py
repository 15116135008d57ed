"""The MQTT transport port: what the ingest and command code needs from an MQTT client.

The ingest side depends on this, never on a client library; :mod:`.gmqtt_transport` is
the adapter (gmqtt won the measurement in ``bench/mqtt_raw.py``).

>>> parse_url("mqtts://ingest:secret@broker.example:8884")
BrokerAddress(host='broker.example', port=8884, tls=True, username='ingest', password='secret')
>>> parse_url("mqtts://127.0.0.1", TlsFiles(ca="ca.pem")).tls_files
TlsFiles(ca='ca.pem', cert=None, key=None, insecure=False)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from urllib.parse import unquote, urlsplit

from tvilling.core.errors import Invalid
from tvilling.security.tls import is_loopback


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """How an ``mqtts://`` client checks the broker and shows itself: a CA file (default: the system's trust
    store), an optional client certificate and key, and ``insecure`` (no host-name check; loopback only)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    tls_files: TlsFiles | None = field(default=None, repr=False)


def parse_url(url: str, tls_files: TlsFiles | None = None) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://…`` (TLS, 8883).

    ``tls_files`` apply to an ``mqtts://`` URL; given (non-empty) with a plain ``mqtt://`` one, they are an
    error rather than silently unused, as is ``insecure`` for a broker that is not on loopback.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise Invalid(f"MQTT url {url!r}: scheme must be mqtt:// or mqtts://", field="url", rule="url")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise Invalid(f"MQTT url {url!r}: bad port", field="url", rule="url") from None
    if not parts.hostname:
        raise Invalid(f"MQTT url {url!r}: no host", field="url", rule="url")
    if tls_files is not None and not tls and tls_files != TlsFiles():
        raise Invalid(f"MQTT url {url!r}: TLS settings (CA, client certificate) are given but the URL is not "
                      "mqtts://", field="url", rule="tls")
    if tls_files is not None and tls_files.insecure and not is_loopback(parts.hostname):
        raise Invalid(f"MQTT url {url!r}: skipping the host-name check (mqtt_tls_insecure) is refused for a broker "
                      "not on loopback", field="mqtt_tls_insecure", rule="tls")
    return BrokerAddress(
        host=parts.hostname, port=port, tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls_files=tls_files if tls else None,
    )


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received PUBLISH, library-neutral."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None


#: Called for every message. For QoS 1, ``True`` acknowledges it (PUBACK); ``False`` (or an
#: exception) leaves it unacknowledged and makes the transport reconnect, so that the broker
#: delivers it again from the persistent session.
MessageHandler = Callable[[Inbound], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How to connect: identity, session persistence and flow control."""

    client_id: str
    clean_start: bool = False
    session_expiry_s: int = 7 * 24 * 3600  # keep the broker-side queue a week across disconnects
    receive_maximum: int = 1000  # QoS 1 messages the broker may have in flight to us
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.1  # the first reconnect attempt, doubling up to backoff_max_s ...
    backoff_max_s: float = 1.0  # ... so a broker that is back is found within a second (each wait jittered)
    protocol_version: int = 5  # 5 = MQTT 5; 4 = MQTT 3.1.1 (e.g. amqtt): no properties, no retain handling


class MqttTransport(Protocol):
    """A connected MQTT client that reconnects by itself (with backoff) until closed."""

    async def __aenter__(self) -> MqttTransport: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    @property
    def connected(self) -> bool: ...

    async def wait_connected(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      response_topic: str | None = None, correlation_data: bytes | None = None) -> None:
        """Publish; for QoS 1 returns once the broker has acknowledged it (raises ``Unavailable`` otherwise)."""
        ...


#: Builds a transport: (address, session options, subscriptions as (filter, qos), handler).
TransportFactory = Callable[[BrokerAddress, SessionOptions, Sequence[tuple[str, int]], MessageHandler | None],
                            MqttTransport]

#: The batch path, for high rates: called on the event loop for every received PUBLISH with
#: ``(topic, payload, token)``; it must not block or await. ``token`` is 0 for QoS 0; for QoS 1
#: it names the message on its connection, to be passed to :meth:`BatchTransport.ack` once
#: the message is durably stored (an ack for a connection that has since gone is dropped:
#: the broker delivers the message again on the new one).
Receiver = Callable[[str, bytes, int], None]


class BatchTransport(MqttTransport, Protocol):
    """A transport that hands messages to a :data:`Receiver` and acknowledges them in bulk."""

    def ack(self, tokens: Sequence[int]) -> int:
        """Send the PUBACKs of these messages (one write); returns how many were still acknowledgeable."""
        ...

    def reconnect(self, reason: str) -> None:
        """Drop the connection (after a failed store) so that the broker delivers unacknowledged messages again."""
        ...

    def throttle(self, paused: bool) -> None:
        """Stop (``True``) or resume reading from the broker: TCP back-pressure for when messages arrive faster
        than they are stored, whatever the broker makes of the Receive Maximum."""
        ...


class BatchTransportFactory(Protocol):
    def __call__(self, address: BrokerAddress, options: SessionOptions, subscriptions: Sequence[tuple[str, int]],
                 handler: MessageHandler | None = None, *, receiver: Receiver | None = None) -> BatchTransport: ...
