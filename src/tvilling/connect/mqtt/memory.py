"""The in-memory adapter of the MQTT transport ports: a broker inside this process, for tests and what-if worlds.

:class:`MemoryBroker` keeps what the ports' users rely on from a real broker: topic filters
with ``+`` and ``#``, retained messages (an empty one clears), MQTT 5 response topic and
correlation data, QoS 1 delivery in order that repeats a message until it is acknowledged,
persistent sessions (``clean_start=False``) that keep the QoS 1 messages published while
their client was away, and those it was sent but did not acknowledge, and shared
subscriptions (``$share/<group>/<filter>``: each message to one session of the group, a
connected one first, in turn). Two kinds of client:

* :meth:`MemoryBroker.transport` (a :data:`~tvilling.connect.mqtt.port.TransportFactory`):
  a handler per message, which takes a QoS 1 message by returning ``True``;
* :meth:`MemoryBroker.batch_transport` (a :class:`~tvilling.connect.mqtt.port.BatchTransportFactory`):
  a receiver called synchronously per message with an acknowledgement token, ``ack`` for
  many at once, ``reconnect`` and ``throttle``, as the ingest uses them.

>>> import asyncio
>>> from tvilling.connect.mqtt.port import Inbound, SessionOptions, parse_url
>>> async def demo():
...     broker, got = MemoryBroker(), []
...     async def handler(msg: Inbound) -> bool:
...         got.append((msg.topic, msg.payload))
...         return True
...     address = parse_url("mqtt://127.0.0.1")
...     async with broker.transport(address, SessionOptions("sub"), [("plant/+/speed", 1)], handler):
...         async with broker.transport(address, SessionOptions("pub")) as pub:
...             await pub.publish("plant/M1/speed", b"800")
...             await broker.drain()
...     return got
>>> asyncio.run(demo())
[('plant/M1/speed', b'800')]

The batch form: what is not acknowledged comes again after a reconnect, in order.

>>> async def batch_demo():
...     broker, tokens, got = MemoryBroker(), [], []
...     def receive(topic: str, payload: bytes, token: int) -> None:
...         got.append(payload)
...         tokens.append(token)
...     address = parse_url("mqtt://127.0.0.1")
...     async with broker.batch_transport(address, SessionOptions("ingest"), [("t/#", 1)], receiver=receive) as sub:
...         async with broker.transport(address, SessionOptions("pub")) as pub:
...             for payload in (b"a", b"b", b"c"):
...                 await pub.publish("t/1", payload)
...         await broker.drain()
...         acked = sub.ack(tokens[1:2])  # only b
...         sub.reconnect("store failed")
...         await sub.wait_connected()
...         await broker.drain()
...     return acked, got
>>> asyncio.run(batch_demo())
(1, [b'a', b'b', b'c', b'a', b'c'])
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

from tvilling.connect.mqtt.port import BrokerAddress, Inbound, MessageHandler, Receiver, SessionOptions
from tvilling.core.errors import Invalid, Unavailable

log = logging.getLogger("tvilling.connect.mqtt.memory")

_MAX_PACKET_ID = 65535
_SHARE = "$share/"
_CHUNK = 256  # messages a batch client is handed in one go before other tasks get the loop (as a socket read)


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether an MQTT topic filter matches a topic name (``+`` one level, ``#`` the rest, even none).

    >>> topic_matches("a/+/c", "a/b/c"), topic_matches("a/#", "a"), topic_matches("+/x", "$SYS/x")
    (True, True, False)
    """
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False  # wildcards at the first level do not match system topics
    want, have = pattern.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level != "+" and level != have[i]):
            return False
    return len(want) == len(have)


@dataclass
class _Session:
    """What the broker keeps for one client id, connected or not."""

    client_id: str
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> QoS
    queue: collections.deque[Inbound] = field(default_factory=collections.deque)  # not yet sent, in order
    inflight: dict[int, Inbound] = field(default_factory=dict)  # QoS 1 sent, not acknowledged: packet id -> message
    client: MemoryMqttTransport | None = None
    last_id: int = 0

    def qos_for(self, topic: str) -> int | None:
        """The QoS this session's own (not shared) subscriptions grant ``topic``, or ``None``."""
        granted = [q for f, q in self.subscriptions.items() if not f.startswith(_SHARE) and topic_matches(f, topic)]
        return max(granted) if granted else None

    def shared(self, topic: str) -> list[tuple[str, int]]:
        """The shared subscriptions (``$share/<group>/<filter>``) matching ``topic``: (subscription, QoS)."""
        return [(f, q) for f, q in self.subscriptions.items()
                if f.startswith(_SHARE) and topic_matches(_shared_filter(f), topic)]

    def packet_id(self) -> int:
        """The next packet id (1..65535) not held by an unacknowledged message."""
        for _ in range(_MAX_PACKET_ID):
            self.last_id = self.last_id % _MAX_PACKET_ID + 1
            if self.last_id not in self.inflight:
                return self.last_id
        raise Unavailable("MQTT: 65,535 messages unacknowledged, no packet id free", client=self.client_id)


@dataclass
class _Link:
    """One connection of a client to the broker: a reconnect makes a new one over the same session."""

    session: _Session
    generation: int  # tokens of this connection's messages carry it above the packet id
    wakeup: asyncio.Event  # set when the client may have something (more) to deliver
    lost: bool = False
    reason: str = ""
    acked_any: bool = False
    resend: collections.deque[int] = field(default_factory=collections.deque)  # unacknowledged ids to send again
    sent: set[int] = field(default_factory=set)  # packet ids handed over on this connection, not yet acknowledged


class MemoryBroker:
    """An MQTT broker in memory. One per world: its clients see each other and nothing else."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, Inbound] = {}
        self._turns: dict[str, int] = {}  # shared subscription -> messages handed to its group so far

    def transport(self, address: BrokerAddress, options: SessionOptions,
                  subscriptions: Sequence[tuple[str, int]] = (),
                  handler: MessageHandler | None = None) -> MemoryMqttTransport:
        """A client of this broker (the address is not used: every client reaches this broker)."""
        return MemoryMqttTransport(self, options, subscriptions, handler)

    def batch_transport(self, address: BrokerAddress, options: SessionOptions,
                        subscriptions: Sequence[tuple[str, int]] = (), handler: MessageHandler | None = None, *,
                        receiver: Receiver | None = None) -> MemoryBatchTransport:
        """A batch client of this broker: ``MqttIngest(sink, url, transport_factory=broker.batch_transport)``."""
        return MemoryBatchTransport(self, options, subscriptions, handler, receiver=receiver)

    def retained(self, topic: str) -> bytes | None:
        """The retained payload of ``topic``, or ``None``."""
        msg = self._retained.get(topic)
        return None if msg is None else msg.payload

    def unacknowledged(self, client_id: str) -> int:
        """QoS 1 messages sent to ``client_id``'s session and not acknowledged (0 if it has none)."""
        session = self._sessions.get(client_id)
        return 0 if session is None else len(session.inflight)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until no connected client has anything it can be given now.

        A handler client has taken everything queued for it; a batch client has been handed
        everything its Receive Maximum allows and is not paused with more waiting.
        """
        async with asyncio.timeout(timeout):
            while any(s.client is not None and not s.client._idle() for s in list(self._sessions.values())):
                await asyncio.sleep(0.002)

    # -- used by the transports -------------------------------------------------------------------------------

    def _connect(self, client: MemoryMqttTransport) -> _Session:
        opts = client.options
        session = self._sessions.get(opts.client_id)
        if session is not None and session.client is not None and session.client is not client:
            session.client._taken_over()  # MQTT: a second connection with the same id takes over
        if session is None or opts.clean_start or opts.session_expiry_s == 0:
            session = _Session(opts.client_id)
            self._sessions[opts.client_id] = session
        session.client = client
        for pattern, qos in client.subscriptions:
            new = pattern not in session.subscriptions
            session.subscriptions[pattern] = min(qos, 1)
            if new and not pattern.startswith(_SHARE):  # retained messages go to a new, not shared, subscription
                for msg in list(self._retained.values()):
                    if topic_matches(pattern, msg.topic):
                        self._enqueue(session, replace(msg, qos=min(msg.qos, qos), retain=True))
        return session

    def _disconnect(self, client: MemoryMqttTransport) -> None:
        session = self._sessions.get(client.options.client_id)
        if session is None or session.client is not client:
            return
        session.client = None
        if client.options.session_expiry_s == 0:
            del self._sessions[session.client_id]

    def _publish(self, msg: Inbound, retain: bool) -> None:
        if retain:
            if msg.payload:
                self._retained[msg.topic] = msg
            else:
                self._retained.pop(msg.topic, None)
        for session in list(self._sessions.values()):
            qos = session.qos_for(msg.topic)
            if qos is None:
                continue
            out = replace(msg, qos=min(qos, msg.qos), retain=False)
            if session.client is None and out.qos == 0:
                continue  # QoS 0 is not kept for a client that is away
            self._enqueue(session, out)
        groups: dict[str, list[tuple[_Session, int]]] = {}
        for session in self._sessions.values():
            for subscription, qos in session.shared(msg.topic):
                groups.setdefault(subscription, []).append((session, qos))
        for subscription, members in groups.items():
            connected = [m for m in members if m[0].client is not None]
            pool = connected or members
            turn = self._turns.get(subscription, 0)
            self._turns[subscription] = turn + 1
            session, qos = pool[turn % len(pool)]
            out = replace(msg, qos=min(qos, msg.qos), retain=False)
            if session.client is not None or out.qos > 0:
                self._enqueue(session, out)

    @staticmethod
    def _enqueue(session: _Session, msg: Inbound) -> None:
        session.queue.append(msg)
        if session.client is not None:
            session.client._wake()


class MemoryMqttTransport:
    """A client of a :class:`MemoryBroker`, with the lifecycle and delivery rules of the MQTT transport port.

    ``reconnect(reason)`` drops the connection and makes a new one over the same session
    after a backoff (jittered, ``backoff_initial_s`` doubling to ``backoff_max_s``), as the
    network adapter does after a lost connection.
    """

    def __init__(self, broker: MemoryBroker, options: SessionOptions, subscriptions: Sequence[tuple[str, int]] = (),
                 handler: MessageHandler | None = None) -> None:
        for pattern, qos in subscriptions:
            _check_filter(pattern)
            if qos not in (0, 1, 2):
                raise Invalid(f"MQTT subscription {pattern!r}: QoS must be 0, 1 or 2", field="qos", rule="range")
        self.broker = broker
        self.options = options
        self.subscriptions = tuple(subscriptions)
        self.handler = handler
        self.redeliveries = 0  # messages handed to the handler again after it did not take them
        self._link: _Link | None = None
        self._generation = 0
        self._worker: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False  # the handler is working on a message
        self._delay = options.backoff_initial_s
        self._up = asyncio.Event()

    async def __aenter__(self) -> MemoryMqttTransport:
        self._closing = False
        self._attach()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._stop()
        if self._link is not None:
            self._link.lost = True
        self.broker._disconnect(self)

    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and not link.lost and link.session.client is self

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      response_topic: str | None = None, correlation_data: bytes | None = None) -> None:
        """Hand the message to the broker; it is routed (and, for QoS 1, kept for sessions) before this returns."""
        if not self.connected:
            raise Unavailable("MQTT not connected", broker="memory", client=self.options.client_id)
        if not topic or any(c in topic for c in "+#\x00"):
            raise Invalid(f"MQTT topic {topic!r} cannot be published to (empty, or a wildcard)", field="topic",
                          rule="topic")
        if qos not in (0, 1, 2):
            raise Invalid("MQTT QoS must be 0, 1 or 2", field="qos", rule="range")
        self.broker._publish(Inbound(topic=topic, payload=bytes(payload), qos=min(qos, 1), retain=retain,
                                     response_topic=response_topic, correlation_data=correlation_data), retain)
        await asyncio.sleep(0)

    def reconnect(self, reason: str) -> None:
        """Drop the connection; a new one over the same session follows after a backoff."""
        link = self._link
        if link is None or link.lost or self._closing:
            return
        link.lost, link.reason = True, reason
        self._up.clear()
        log.warning("MQTT %s (memory) disconnected (%s); reconnecting", self.options.client_id, reason)
        self._supervisor = asyncio.create_task(self._reconnect(link), name=f"mqtt-memory-{self.options.client_id}-up")

    # -- connections --------------------------------------------------------------------------------------------

    def _attach(self) -> None:
        session = self.broker._connect(self)
        self._generation += 1
        link = _Link(session, self._generation, asyncio.Event(), resend=collections.deque(session.inflight))
        link.wakeup.set()
        self._link = link
        self._worker = asyncio.create_task(self._deliver(link), name=f"mqtt-memory-{self.options.client_id}")
        self._up.set()

    async def _reconnect(self, link: _Link) -> None:
        await self._stop()
        self.broker._disconnect(self)
        if link.acked_any:
            self._delay = self.options.backoff_initial_s
        delay = self._delay
        await asyncio.sleep(random.uniform(delay / 2, delay))  # jittered, as the network adapter waits
        self._delay = min(delay * 2, self.options.backoff_max_s)
        if not self._closing and self._link is link:
            self._attach()

    def _taken_over(self) -> None:
        if self._link is not None:
            self._link.lost, self._link.reason = True, "taken over"
        self._up.clear()
        if self._worker is not None:
            self._worker.cancel()

    def _wake(self) -> None:
        if self._link is not None:
            self._link.wakeup.set()

    def _idle(self) -> bool:
        link = self._link
        if link is None or link.lost:
            return True
        return not (self._busy or link.session.queue or link.session.inflight)

    async def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._up.clear()

    # -- messages -----------------------------------------------------------------------------------------------

    async def _deliver(self, link: _Link) -> None:
        """One message at a time to the handler; a QoS 1 one again (with backoff) until it is taken."""
        session = link.session
        while not link.lost:
            if session.inflight:  # sent before and not acknowledged: first, in order
                mid, msg = next(iter(session.inflight.items()))
            elif session.queue:
                msg = session.queue.popleft()
                mid = session.packet_id() if msg.qos else 0
                if mid:
                    session.inflight[mid] = msg
            else:
                link.wakeup.clear()
                await link.wakeup.wait()
                continue
            self._busy = True
            try:
                backoff = self.options.backoff_initial_s
                while not await self._take(msg) and msg.qos > 0:
                    self.redeliveries += 1  # not taken: the broker delivers it again, as after a reconnect
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.options.backoff_max_s)
            finally:
                self._busy = False
            if mid:
                session.inflight.pop(mid, None)
                link.acked_any = True

    async def _take(self, msg: Inbound) -> bool:
        if self.handler is None:
            return True
        try:
            return bool(await self.handler(msg))
        except Exception:
            log.exception("MQTT message handler failed on %r; the message stays unacknowledged", msg.topic)
            return False


class MemoryBatchTransport(MemoryMqttTransport):
    """A batch client of a :class:`MemoryBroker`: the :class:`~tvilling.connect.mqtt.port.BatchTransport` port.

    The receiver is called synchronously for every message with ``(topic, payload, token)``,
    a chunk of messages at a time. ``token`` is 0 for QoS 0; a QoS 1 message stays the
    session's until :meth:`ack` is given its token on the connection that delivered it; at
    most ``receive_maximum`` QoS 1 messages are unacknowledged at a time (the broker holds
    the rest). After :meth:`reconnect`, or in a new connection with the same client id and
    a persistent session, unacknowledged messages come first, in order, with new tokens. A
    receiver that raises makes the transport reconnect. Without a receiver it is a handler
    client, as :class:`MemoryMqttTransport`.
    """

    def __init__(self, broker: MemoryBroker, options: SessionOptions, subscriptions: Sequence[tuple[str, int]] = (),
                 handler: MessageHandler | None = None, *, receiver: Receiver | None = None) -> None:
        if handler is not None and receiver is not None:
            raise ValueError("give a handler or a receiver, not both")
        if options.receive_maximum < 1:
            raise Invalid("MQTT receive_maximum must be at least 1", field="receive_maximum", rule="range")
        super().__init__(broker, options, subscriptions, handler)
        self.receiver = receiver
        self._paused = False

    async def __aenter__(self) -> MemoryBatchTransport:
        await super().__aenter__()
        return self

    def ack(self, tokens: Sequence[int]) -> int:
        """Acknowledge these messages; returns how many were still acknowledgeable (on this connection, once)."""
        link = self._link
        if link is None or link.lost:
            return 0
        gen, done = link.generation, 0
        for token in tokens:
            mid = token & 0xFFFF
            if token >> 16 == gen and mid in link.sent:
                link.sent.discard(mid)
                link.session.inflight.pop(mid, None)
                done += 1
        if done:
            link.acked_any = True
            link.wakeup.set()  # room in the receive window
        return done

    def throttle(self, paused: bool) -> None:
        """Stop (``True``) or resume handing messages to the receiver (kept across reconnects)."""
        self._paused = paused
        if not paused:
            self._wake()

    def _idle(self) -> bool:
        if self.receiver is None:
            return super()._idle()
        link = self._link
        return link is None or link.lost or self._paused or self._next(link) is None

    def _next(self, link: _Link) -> tuple[int, Inbound] | None:
        """The next message the window allows, as (packet id or 0, message), without taking it."""
        session = link.session
        while link.resend and link.resend[0] not in session.inflight:
            link.resend.popleft()  # acknowledged since (by an earlier connection's last PUBACKs)
        if link.resend:
            mid = link.resend[0]
            return mid, session.inflight[mid]
        if session.queue and (session.queue[0].qos == 0 or len(session.inflight) < self.options.receive_maximum):
            return 0, session.queue[0]
        return None

    async def _deliver(self, link: _Link) -> None:
        receiver = self.receiver
        if receiver is None:
            await super()._deliver(link)
            return
        session = link.session
        while not link.lost:
            handed = 0
            while handed < _CHUNK and not self._paused and not link.lost:
                found = self._next(link)
                if found is None:
                    break
                mid, msg = found
                if mid:
                    link.resend.popleft()
                else:
                    session.queue.popleft()
                    if msg.qos:
                        mid = session.packet_id()
                        session.inflight[mid] = msg
                if mid:
                    link.sent.add(mid)
                handed += 1
                try:
                    receiver(msg.topic, msg.payload, (link.generation << 16) | mid if mid else 0)
                except Exception:
                    log.exception("MQTT %s (memory): receiver failed on %r; reconnecting for redelivery",
                                  self.options.client_id, msg.topic)
                    self.reconnect("receiver failed")
                    return
            if handed == _CHUNK:
                await asyncio.sleep(0)  # a full chunk: let the receiver's consumers run before the next one
                continue
            link.wakeup.clear()
            await link.wakeup.wait()


def _shared_filter(subscription: str) -> str:
    """The topic filter of a shared subscription: ``$share/<group>/<filter>`` -> ``<filter>``."""
    return subscription.split("/", 2)[2] if subscription.count("/") >= 2 else ""


def _check_filter(subscription: str) -> None:
    pattern = subscription
    if pattern.startswith(_SHARE):
        group = pattern.split("/")[1]
        if not group or "+" in group or "#" in group or not _shared_filter(pattern):
            raise Invalid(f"MQTT shared subscription {pattern!r} is not valid ('$share/<group>/<filter>', the "
                          "group a name without '+' or '#')", field="subscriptions", rule="topic")
        pattern = _shared_filter(pattern)
    levels = pattern.split("/") if pattern else []
    bad = not levels or any(("#" in lv and (lv != "#" or i != len(levels) - 1)) or ("+" in lv and lv != "+")
                            for i, lv in enumerate(levels))
    if bad:
        raise Invalid(f"MQTT topic filter {subscription!r} is not valid ('+' a whole level, '#' the last one)",
                      field="subscriptions", rule="topic")
