"""The gmqtt adapter of the MQTT transport port (MQTT 5, manual acknowledgements).

How acknowledgements work: the gmqtt client is created with
``optimistic_acknowledgement=False`` and an ``async`` ``on_message``; gmqtt sends the
PUBACK when that coroutine *returns* (its return value is the PUBACK reason code) and
sends nothing when it raises. So the PUBACK for a QoS 1 message leaves only after the
:data:`~.port.MessageHandler` said ``True`` (the sink stored it). A message that is not
acknowledged stays in the broker's session and is delivered again after a reconnect,
which the transport then forces.

Each connection is a fresh gmqtt ``Client`` (its own reconnect is switched off): a late
acknowledgement from an old connection can then never reach a new one, where the broker
may have given its packet id to another message. Reconnects use exponential backoff.

The batch path (``receiver=``, used by the ingest): gmqtt's per-message work (a task per
message for the ``on_message`` coroutine and one socket write per PUBACK) costs more than
the rest of ingest together. With a :data:`~.port.Receiver`, each connection's PUBLISH
handler is replaced by one that parses the packet and calls the receiver synchronously,
and :meth:`GmqttTransport.ack` writes the PUBACKs of a whole stored batch in one write.
It also acknowledges only on ``ack`` with MQTT 3.1.1 brokers, where gmqtt's own path
would acknowledge on receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import gmqtt
import numpy as np
from gmqtt.mqtt.package import Package
from gmqtt.storage import PersistentStorage

from tvilling.connect.mqtt.port import BrokerAddress, Inbound, MessageHandler, Receiver, SessionOptions, TlsFiles
from tvilling.core.errors import Unauthorized, Unavailable
from tvilling.security.tls import client_context

log = logging.getLogger("tvilling.connect.mqtt")

_NO_AUTO_RECONNECT = -2  # gmqtt reconnects while failed_connections <= retries, and -1 means unlimited
_AUTH_CODES = frozenset({4, 5, 134, 135})  # bad user name or password / not authorised (3.1.1 and 5)
_PUBLISH_TIMEOUT_S = 30.0
_MQTT5 = 5


def pubacks(mids: Sequence[int]) -> bytes:
    """PUBACK packets (success) for these packet ids, back to back: ``0x40 0x02 id_hi id_lo`` each.

    MQTT 5 lets a success PUBACK without properties omit its reason code (§3.4.2.1), so the
    same 4 bytes serve 3.1.1 and 5.

    >>> pubacks([1, 258])
    b'@\\x02\\x00\\x01@\\x02\\x01\\x02'
    """
    ids = np.asarray(mids, dtype=np.uint16)
    out = np.empty((len(ids), 4), dtype=np.uint8)
    out[:, 0] = 0x40
    out[:, 1] = 2
    out[:, 2] = ids >> 8
    out[:, 3] = ids & 0xFF
    return out.tobytes()


def ssl_context(address: BrokerAddress) -> ssl.SSLContext | bool:
    """The TLS context of an ``mqtts://`` address (raises ``Invalid`` for unusable files), ``False`` for plain."""
    if not address.tls:
        return False
    files = address.tls_files or TlsFiles()
    return client_context(address.host, ca=files.ca, cert=files.cert, key=files.key, insecure=files.insecure)


class NotAcknowledged(Exception):
    """Raised in gmqtt's ``on_message`` so that it sends no PUBACK (internal)."""


class _QuietNotAcknowledged(logging.Filter):
    """asyncio logs the exception gmqtt's done-callback re-raises; this one is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotAcknowledged))


_asyncio_filter = _QuietNotAcknowledged()


class _AckStorage(PersistentStorage):  # type: ignore[misc]
    """gmqtt's outbound QoS store, with a future per packet id resolved by its PUBACK."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.last: asyncio.Future[None] | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        fut = self.waiters.get(mid)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self.waiters[mid] = fut
        self.last = fut

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        fut = self.waiters.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: nobody may be waiting any more
        self.waiters.clear()


class _Connection:
    """One network connection (one gmqtt client) and its state."""

    def __init__(self, client: gmqtt.Client, storage: _AckStorage, generation: int = 0) -> None:
        self.client = client
        self.storage = storage
        self.generation = generation  # tokens of this connection's messages carry it above the packet id
        self.v5 = True
        self.lost = asyncio.Event()
        self.reason = ""
        self.session_present = False
        self.acked_any = False
        self.unacked: set[int] = set()  # packet ids handed to the receiver and not acknowledged yet
        self.suback: asyncio.Future[tuple[int, ...]] | None = None
        self.unsuback: asyncio.Future[None] | None = None


class GmqttTransport:
    """An MQTT 5 client on gmqtt that subscribes, hands messages to a handler and reconnects.

    Use as ``async with GmqttTransport(address, options, subscriptions, handler) as t:``;
    entering connects once (raising ``Unavailable``/``Unauthorized`` if that fails), after
    which connection losses are repaired in the background with exponential backoff.
    """

    def __init__(self, address: BrokerAddress, options: SessionOptions,
                 subscriptions: Sequence[tuple[str, int]] = (), handler: MessageHandler | None = None, *,
                 receiver: Receiver | None = None) -> None:
        if handler is not None and receiver is not None:
            raise ValueError("give a handler or a receiver, not both")
        self.address = address
        self._ssl = ssl_context(address)
        self.options = options
        self.subscriptions = tuple(subscriptions)
        self.handler = handler
        self.receiver = receiver
        self._generation = 0
        self._newest: _Connection | None = None
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._up = asyncio.Event()
        self._publish_slots = asyncio.Semaphore(max(1, min(options.receive_maximum, 1000)))
        self._delivering = 0  # on_message coroutines not yet finished (their PUBACK not yet written)
        self._flowing = asyncio.Event()  # cleared by throttle(True): the read loop waits
        self._flowing.set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> GmqttTransport:
        logging.getLogger("asyncio").addFilter(_asyncio_filter)
        self._closing = False
        self._conn = await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-{self.options.client_id}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        with contextlib.suppress(TimeoutError):  # let handled messages get their PUBACK out first
            await asyncio.wait_for(self._idle.wait(), 2)
        for _ in range(3):
            await asyncio.sleep(0)  # gmqtt writes the PUBACK in a done-callback of on_message
        if self._conn is not None and not self._conn.lost.is_set():
            await self._barrier(self._conn)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._conn is not None:
            await self._drop(self._conn, "closed")
            self._conn = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.lost.is_set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    def throttle(self, paused: bool) -> None:
        """Pause or resume reading from the broker (kept across reconnects).

        gmqtt reads through an asyncio StreamReader, whose own flow control resumes a paused
        socket as soon as its buffer is read; so the gate is on the read loop instead: it waits
        before each read, the reader's buffer fills (128 KiB), the reader pauses the socket, and
        the broker's sends wait in the kernel's socket buffers and in its own queue.
        """
        if paused:
            self._flowing.clear()
        else:
            self._flowing.set()

    def _gate_reads(self, conn: _Connection) -> None:
        protocol = getattr(conn.client._connection, "_protocol", None)
        if protocol is None:
            return
        read = protocol.read
        flowing = self._flowing

        async def gated_read(n: int = -1) -> bytes:
            if not flowing.is_set():
                await flowing.wait()
            data: bytes = await read(n)
            return data

        protocol.read = gated_read  # an instance attribute wins over the method in gmqtt's read loop

    def reconnect(self, reason: str) -> None:
        """Drop the current connection; the supervisor connects again after a backoff."""
        if self._conn is not None:
            self._lose(self._conn, reason)

    def _lose(self, conn: _Connection, reason: str) -> None:
        """Mark ``conn`` lost (the supervisor drops it and connects again once it is the current one)."""
        if not conn.lost.is_set():
            conn.reason = reason
            conn.lost.set()
            if conn is self._conn:
                self._up.clear()

    # -------------------------------------------------------------- connections

    async def _connect(self) -> _Connection:
        opts, addr = self.options, self.address
        storage = _AckStorage()
        client = gmqtt.Client(opts.client_id, clean_session=opts.clean_start, optimistic_acknowledgement=False,
                              persistent_storage=storage, session_expiry_interval=opts.session_expiry_s,
                              receive_maximum=opts.receive_maximum)
        client.set_config({"reconnect_retries": _NO_AUTO_RECONNECT})
        self._generation += 1
        conn = _Connection(client, storage, self._generation)
        self._newest = conn  # messages of a resumed session may arrive (and be acked) before connect() returns
        on_publish = self._publish_handler(conn, self.receiver) if self.receiver is not None else None
        if on_publish is not None:
            # an instance attribute wins over gmqtt's method when its handler looks up "_handle_publish_packet"
            client._package_handler._handle_publish_packet = lambda cmd, raw: on_publish(cmd, raw, 0, len(raw))
        if addr.username is not None:
            client.set_auth_credentials(addr.username, addr.password)

        def on_connect(_client: Any, session_present: int, _rc: int, _props: Any) -> None:
            conn.session_present = bool(session_present)
            conn.v5 = client._connection_state.protocol_version >= _MQTT5

        def on_disconnect(_client: Any, _packet: Any, exc: Any = None) -> None:
            if not conn.lost.is_set():
                conn.reason = conn.reason or "connection lost"
                conn.lost.set()
                self._up.clear()
            storage.fail_all(Unavailable("MQTT connection lost before the broker acknowledged the message",
                                         broker=f"{addr.host}:{addr.port}"))

        def on_subscribe(_client: Any, _mid: int, granted: tuple[int, ...], _props: Any) -> None:
            if conn.suback is not None and not conn.suback.done():
                conn.suback.set_result(tuple(granted))

        def on_unsubscribe(_client: Any, _mid: int, _codes: Any) -> None:
            if conn.unsuback is not None and not conn.unsuback.done():
                conn.unsuback.set_result(None)

        async def on_message(_client: Any, topic: str, payload: bytes, qos: int, props: dict[str, Any]) -> int:
            self._delivering += 1
            self._idle.clear()
            try:
                return await self._deliver(conn, topic, payload, qos, props)
            finally:
                self._delivering -= 1
                if not self._delivering:
                    self._idle.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        client.on_unsubscribe = on_unsubscribe
        if self.receiver is None:
            client.on_message = on_message
        where = f"{addr.host}:{addr.port}"
        try:
            version = gmqtt.constants.MQTTv311 if opts.protocol_version == 4 else gmqtt.constants.MQTTv50
            await asyncio.wait_for(client.connect(addr.host, addr.port, ssl=self._ssl, keepalive=opts.keepalive_s,
                                                  version=version), opts.connect_timeout_s)
        except gmqtt.MQTTConnectError as exc:
            await self._drop(conn, "refused")
            code = getattr(exc, "_code", None)
            if code in _AUTH_CODES:
                raise Unauthorized(f"MQTT broker {where} refused client {opts.client_id!r}: {exc}",
                                   broker=where) from None
            raise Unavailable(f"MQTT broker {where} refused the connection: {exc}", broker=where) from None
        except ssl.SSLError as exc:  # before OSError, of which it is one: not a network problem
            await self._drop(conn, "tls")
            raise Unavailable(f"MQTT broker {where}: TLS handshake failed: {exc.reason or exc}", broker=where,
                              rule="tls") from None
        except (OSError, TimeoutError) as exc:
            await self._drop(conn, "unreachable")
            raise Unavailable(f"MQTT broker {where} unreachable: {exc or type(exc).__name__}",
                              broker=where) from None
        self._gate_reads(conn)
        if on_publish is not None:
            reader = self._fast_reader(conn, on_publish)
            if reader is not None:  # gmqtt's read loop looks "_read_packet" up for every chunk it reads
                client._connection._protocol._read_packet = reader
        if self.subscriptions:
            await self._subscribe(conn)
        log.info("MQTT %s connected to %s (session %s)", opts.client_id, where,
                 "resumed" if conn.session_present else "new")
        self._up.set()
        return conn

    async def _subscribe(self, conn: _Connection) -> None:
        # retain_handling 1: retained messages only for a new subscription, not on every reconnect
        # (MQTT 3.1.1 has no subscription options: the byte must hold the QoS alone)
        handling = 1 if self.options.protocol_version != 4 else 0
        subs = [gmqtt.Subscription(topic, qos=qos, retain_handling_options=handling)
                for topic, qos in self.subscriptions]
        conn.suback = asyncio.get_running_loop().create_future()
        conn.client.subscribe(subs)
        try:
            granted = await asyncio.wait_for(conn.suback, self.options.connect_timeout_s)
        except TimeoutError:
            await self._drop(conn, "no SUBACK")
            raise Unavailable(f"MQTT broker did not acknowledge the subscription to {list(self.subscriptions)}",
                              broker=f"{self.address.host}:{self.address.port}") from None
        refused = [topic for (topic, _), code in zip(self.subscriptions, granted, strict=False) if code >= 0x80]
        if refused:
            await self._drop(conn, "subscription refused")
            raise Unauthorized(f"MQTT broker refused the subscription(s) {refused}", topics=refused)

    async def _barrier(self, conn: _Connection) -> None:
        """One round trip (UNSUBSCRIBE of a filter never subscribed → UNSUBACK) before disconnecting.

        The broker handles a connection's packets in order, so once the UNSUBACK is back it has
        processed every PUBACK written before. Without this, a worker restarting at once with
        the same client id can take the session over while Mosquitto has not read the last
        PUBACKs of the old connection, and those messages are delivered again.
        """
        conn.unsuback = asyncio.get_running_loop().create_future()
        with contextlib.suppress(Exception):
            conn.client.unsubscribe(f"tvilling-barrier/{uuid.uuid4().hex}")
            await asyncio.wait_for(asyncio.shield(conn.unsuback), 2)

    async def _drop(self, conn: _Connection, reason: str) -> None:
        conn.reason = conn.reason or reason
        conn.lost.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.client.disconnect(), 5)
        conn.storage.fail_all(Unavailable(f"MQTT connection {reason}"))

    async def _supervise(self) -> None:
        delay = self.options.backoff_initial_s
        while not self._closing:
            conn = self._conn
            if conn is None:
                return
            await conn.lost.wait()
            if self._closing:
                return
            if conn.acked_any:
                delay = self.options.backoff_initial_s
            log.warning("MQTT %s disconnected from %s:%s (%s); reconnecting in %.1f s", self.options.client_id,
                        self.address.host, self.address.port, conn.reason, delay)
            await self._drop(conn, conn.reason)
            while not self._closing:
                # full jitter in [delay/2, delay]: workers that lost the same broker do not return in lockstep
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self.options.backoff_max_s)
                try:
                    self._conn = await self._connect()
                    break
                except (Unavailable, Unauthorized) as exc:
                    log.warning("MQTT %s: reconnect failed: %s; next try in %.1f s", self.options.client_id,
                                exc.message, delay)

    # -------------------------------------------------------------- messages

    def _publish_handler(self, conn: _Connection, receiver: Receiver) -> Callable[[int, bytes, int, int], None]:
        """Parse one PUBLISH (``data[start:end]``, after the fixed header) and hand it over synchronously."""
        package_handler = conn.client._package_handler
        base = conn.generation << 16
        client_id = self.options.client_id
        unacked = conn.unacked

        def parse(cmd: int, data: bytes, start: int, end: int) -> tuple[bytes, bytes, int] | None:
            qos = (cmd >> 1) & 3
            pos = start + 2 + ((data[start] << 8) | data[start + 1])
            if pos > end:
                raise IndexError("topic longer than the packet")
            topic = data[start + 2:pos]
            token = 0
            if qos:
                if qos == 2:  # never delivered: the subscriptions ask for at most QoS 1
                    log.error("MQTT %s: QoS 2 message on %r ignored", client_id, topic)
                    return None
                mid = (data[pos] << 8) | data[pos + 1]
                unacked.add(mid)
                token = base | mid
                pos += 2
            if not conn.v5:
                return topic, data[pos:end], token
            if data[pos] == 0:  # no properties: the common case
                return topic, data[pos + 1:end], token
            props, payload = package_handler._parse_properties(data[pos:end])
            if props is None:
                raise IndexError("malformed properties")
            alias = props.get("topic_alias")
            if alias:
                if topic:
                    package_handler._server_topics_aliases[alias[0]] = topic
                else:
                    topic = package_handler._server_topics_aliases.get(alias[0], b"")
            return topic, payload, token

        def on_publish(cmd: int, data: bytes, start: int, end: int) -> None:
            try:
                parsed = parse(cmd, data, start, end)
            except (IndexError, ValueError, struct.error) as exc:
                log.error("MQTT %s: malformed PUBLISH (%s); reconnecting", client_id, exc)
                self.reconnect("malformed PUBLISH")
                return
            if parsed is None or conn.lost.is_set():
                return  # not acknowledged: delivered again on the next connection
            topic, payload, token = parsed
            try:
                receiver(topic.decode("utf-8", "replace"), payload, token)
            except Exception:
                log.exception("MQTT %s: receiver failed on %r; reconnecting for redelivery", client_id, topic)
                self.reconnect("receiver failed")

        return on_publish

    def _fast_reader(self, conn: _Connection,
                     on_publish: Callable[[int, bytes, int, int], None]) -> Callable[[bytes], int] | None:
        """A replacement for gmqtt's packet splitter that hands PUBLISH packets straight to ``on_publish``.

        gmqtt's splits the stream into ``Package`` objects and routes each through its connection
        and handler (a debug log call, a handler lookup, a slice per packet); PUBLISH is nearly all
        the traffic, so it goes direct, and everything else takes gmqtt's way.
        """
        connection = conn.client._connection
        if connection is None:
            return None
        handler = conn.client._package_handler

        def read_packets(data: bytes) -> int:
            size, parsed = len(data), 0
            current = handler.current_connection is connection
            if current:
                connection._last_data_in = time.monotonic()
            while size - parsed >= 2:
                pos, mult, length = parsed + 1, 1, 0
                while True:  # the remaining length: a variable byte integer
                    if pos >= size:
                        return parsed
                    byte = data[pos]
                    pos += 1
                    length += (byte & 0x7F) * mult
                    if not byte & 0x80:
                        break
                    mult *= 128
                    if mult > 2097152:
                        return -1  # malformed: gmqtt drops the connection
                end = pos + length
                if end > size:
                    return parsed
                cmd = data[parsed]
                if cmd & 0xF0 == 0x30 and current:
                    on_publish(cmd, data, pos, end)
                else:
                    connection.put_package(Package(cmd, data[pos:end]))
                parsed = end
            return parsed

        return read_packets

    def ack(self, tokens: Sequence[int]) -> int:
        """PUBACK these messages (tokens from the receiver) in one write; those of a lost connection are dropped."""
        conn = self._newest
        if conn is None or conn.lost.is_set():
            return 0
        gen, unacked = conn.generation, conn.unacked
        mids = [t & 0xFFFF for t in tokens if t >> 16 == gen and t & 0xFFFF in unacked]
        connection = conn.client._connection
        if not mids or connection is None:
            return 0
        unacked.difference_update(mids)  # a token counts once: the broker may reuse its packet id later
        connection.send_package(pubacks(mids))
        conn.acked_any = True
        return len(mids)

    async def _deliver(self, conn: _Connection, topic: str, payload: bytes, qos: int, props: dict[str, Any]) -> int:
        response = props.get("response_topic")
        correlation = props.get("correlation_data")
        msg = Inbound(topic=topic, payload=bytes(payload), qos=qos, retain=bool(props.get("retain")),
                      response_topic=response[0] if response else None,
                      correlation_data=bytes(correlation[0]) if correlation else None)
        ok = False
        if self.handler is not None and not conn.lost.is_set():
            try:
                ok = await self.handler(msg)
            except Exception:
                log.exception("MQTT message handler failed on %r; the message stays unacknowledged", topic)
        if qos == 0:
            return 0
        if ok and not conn.lost.is_set():
            conn.acked_any = True
            return 0  # gmqtt sends PUBACK(success) now
        if not self._closing:
            # the connection that delivered it, which may be one still connecting (a resumed session's
            # messages arrive before connect() returns): dropping the previous one would leave this one up,
            # and the broker does not send a message again on the connection it is unacknowledged on
            self._lose(conn, "message not stored; reconnecting for redelivery")
        raise NotAcknowledged(topic)

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      response_topic: str | None = None, correlation_data: bytes | None = None) -> None:
        props: dict[str, Any] = {}
        if response_topic is not None:
            props["response_topic"] = response_topic
        if correlation_data is not None:
            props["correlation_data"] = correlation_data
        async with self._publish_slots:
            conn = self._conn
            if conn is None or conn.lost.is_set():
                raise Unavailable("MQTT not connected", broker=f"{self.address.host}:{self.address.port}")
            message = gmqtt.Message(topic, payload, qos=qos, retain=retain, **props)
            deadline = asyncio.get_running_loop().time() + _PUBLISH_TIMEOUT_S
            while True:
                conn.storage.last = None
                try:
                    conn.client.publish(message)
                    break
                except OverflowError:  # the broker's receive maximum is reached: wait for a PUBACK
                    if asyncio.get_running_loop().time() > deadline:
                        raise Unavailable("MQTT: too many unacknowledged publishes", topic=topic) from None
                    await asyncio.sleep(0.005)
            waiter = conn.storage.last
            if qos == 0 or waiter is None:
                return
            try:
                await asyncio.wait_for(asyncio.shield(waiter), _PUBLISH_TIMEOUT_S)
            except TimeoutError:
                raise Unavailable(f"MQTT broker did not acknowledge {topic!r} within {_PUBLISH_TIMEOUT_S:.0f} s",
                                  topic=topic) from None


def mqtt311_transport(address: BrokerAddress, options: SessionOptions, subscriptions: Sequence[tuple[str, int]] = (),
                      handler: MessageHandler | None = None, **kwargs: Any) -> GmqttTransport:
    """A transport factory for the project's MQTT clients that speaks MQTT 3.1.1 (e.g. the embedded amqtt broker).

    ``MqttIngest(sink, url, transport_factory=mqtt311_transport)``, likewise ``MqttCommands``;
    MQTT 3.1.1 has no response topic or correlation data, so command answers are matched by
    the ``id`` in their payload.
    """
    return GmqttTransport(address, dataclasses.replace(options, protocol_version=4), subscriptions, handler, **kwargs)
