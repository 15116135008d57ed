"""MQTT ingest: subscribe to telemetry, translate to envelopes, hand batches to the sink, then ack.

    async with MqttIngest(sink, "mqtt://127.0.0.1:1883", client_id="ingest-1", shared_group="tvilling"):
        ...  # runs until the block exits

or ``await MqttIngest(...).run()`` to run until cancelled.

Guarantees (QoS 1, with the broker configured as in ``deploy/mosquitto/tvilling.conf``):

* a message is acknowledged only after ``sink.ingest`` returned for the batch holding it
  (readings durably stored), or after ``sink.reject`` stored it as a dead letter;
* if a store fails (the sink raises), nothing of that batch is acknowledged and the store is
  retried with back-off (0.1 s doubling to 2 s) until it succeeds; meanwhile the broker sends at
  most ``max_inflight`` unacknowledged messages, then holds the rest (back-pressure). A message
  whose content makes ingest fail is the sink's to dead-letter: it cannot hold its batch up;
* after a lost connection the broker delivers unacknowledged messages again (at least once:
  the pipeline drops ids it has stored, across restarts too);
* the session is persistent (clean start off, session expiry), so messages published while
  the worker is down are queued by the broker and delivered when it comes back;
* at most ``max_inflight`` messages are unacknowledged at a time (MQTT Receive Maximum),
  so the broker's packet ids never run out; and should a broker send more anyway, reading
  from it pauses once ``max_inflight + batch_size`` messages wait, so memory stays bounded.

Messages are batched without a task or a future per message: the transport parses each
PUBLISH and calls :meth:`MqttIngest._receive` synchronously, which translates it at once
(so translation overlaps the store of the previous batch) and adds it to the open batch.
One batch is stored at a time (the platform's sink stores it in a worker thread); whatever
arrived meanwhile is the next batch, up to ``batch_size`` messages, so batches grow with the
load and stay small (low latency) when it is light. When the store is idle, a batch waits at
most ``batch_ms`` after its first message for more. After a batch is stored, the PUBACKs of
all its messages leave in one socket write. With ``shared_group`` the subscriptions are
``$share/<group>/<filter>`` so several workers split the stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from tvilling.connect.mapping import PayloadMapping
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import BatchTransport, BatchTransportFactory, SessionOptions, TlsFiles, parse_url
from tvilling.connect.mqtt.telemetry import TELEMETRY_TOPIC, Translator
from tvilling.core.envelope import Envelope
from tvilling.core.errors import Invalid, TvillingError
from tvilling.ingest.ports import IngestSink, RawMessage
from tvilling.streams.waiting import wait_set

log = logging.getLogger("tvilling.connect.mqtt.ingest")
RETRY_INITIAL_S = 0.1  # a failed store is retried after this, doubling ...
RETRY_MAX_S = 2.0  # ... up to this, until it succeeds or the ingest stops


@dataclass
class IngestStats:
    received: int = 0
    acknowledged: int = 0
    rejected: int = 0
    batches: int = 0
    sink_failures: int = 0


@dataclass(slots=True)
class _Batch:
    """Messages received and translated, waiting to be stored together."""

    first_at: float  # loop time of the first message
    received: datetime  # wall-clock time of the first message (kept with dead letters)
    messages: int = 0
    envelopes: list[Envelope] = field(default_factory=list)
    origins: list[RawMessage] = field(default_factory=list)  # per envelope, the raw message it came from
    tokens: list[int] = field(default_factory=list)  # acknowledgement tokens of the translated messages
    rejects: list[tuple[RawMessage, str, str, int]] = field(default_factory=list)  # (raw, reason, rule, token)
    topic: str | None = None  # the topic of all its messages, if they share one
    mixed: bool = False
    rejects_stored: int = 0  # dead letters written so far (a retried batch does not write them again)


class MqttIngest:
    """Subscribes to telemetry topics and feeds an :class:`~tvilling.ingest.ports.IngestSink`."""

    def __init__(self, sink: IngestSink, url: str = "mqtt://127.0.0.1:1883", *, client_id: str | None = None,
                 topics: Sequence[str] = (TELEMETRY_TOPIC,), mappings: Sequence[PayloadMapping] = (),
                 shared_group: str | None = None, qos: int = 1, max_inflight: int = 4000,
                 batch_size: int = 2000, batch_ms: float = 2.0, session_expiry_s: int = 7 * 24 * 3600,
                 transport_factory: BatchTransportFactory | None = None, tls_files: TlsFiles | None = None) -> None:
        if qos not in (0, 1):
            raise Invalid("qos must be 0 or 1", field="qos", rule="enum")
        if not 1 <= max_inflight <= 65535:
            raise Invalid("max_inflight must be between 1 and 65535", field="max_inflight", rule="range")
        if batch_size < 1 or batch_ms < 0:
            raise Invalid("batch_size must be ≥ 1 and batch_ms ≥ 0", field="batch_size", rule="range")
        if shared_group is not None and (not shared_group or any(c in shared_group for c in "/+#")):
            raise Invalid("shared_group must be a non-empty name without '/', '+' or '#'", field="shared_group",
                          rule="format")
        self.sink = sink
        self.address = parse_url(url, tls_files)
        self.translator = Translator(topics, mappings)
        self._mapped = bool(mappings)
        self.qos = qos
        self.batch_size = min(batch_size, max_inflight)
        self.batch_s = batch_ms / 1000.0
        self.stats = IngestStats()
        prefix = f"$share/{shared_group}/" if shared_group else ""
        self.subscriptions = [(prefix + f, qos) for f in self.translator.subscriptions]
        self.options = SessionOptions(
            client_id=client_id or f"tvilling-ingest-{uuid.uuid4().hex[:12]}",
            clean_start=False, session_expiry_s=session_expiry_s, receive_maximum=max_inflight)
        factory: BatchTransportFactory = transport_factory or GmqttTransport
        self.transport: BatchTransport = factory(self.address, self.options, self.subscriptions,
                                                 receiver=self._receive)
        self._open: _Batch | None = None
        self._sealed: collections.deque[_Batch] = collections.deque()  # full batches, oldest first
        self._wake = asyncio.Event()  # a first message, or a full batch
        self._storing = False
        self._batcher: asyncio.Task[None] | None = None
        self._accepting = False
        # messages received and not yet stored and acknowledged; above the high mark the transport stops reading
        # (a broker may send past the Receive Maximum: Mosquitto 2.0.11 did, 60,000 ahead under load)
        self._pending = 0
        self._high = self.batch_size + max_inflight
        self._low = max(1, max_inflight // 2)
        self._paused = False

    @property
    def client_id(self) -> str:
        return self.options.client_id

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> MqttIngest:
        self._accepting = True
        self._batcher = asyncio.create_task(self._batch_loop(), name=f"mqtt-ingest-{self.client_id}")
        try:
            await self.transport.__aenter__()
        except BaseException:
            await self._stop_batcher()
            raise
        log.info("MQTT ingest %s subscribed to %s", self.client_id, [s for s, _ in self.subscriptions])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._accepting = False  # new messages stay unacknowledged: the broker keeps them
        try:
            await self._stop_batcher()  # finishes (stores and acks) what was already received
        finally:
            await self.transport.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Run until cancelled."""
        async with self:
            await asyncio.Event().wait()

    async def _stop_batcher(self) -> None:
        if self._batcher is None:
            return
        while (self._open is not None or self._sealed or self._storing) and not self._batcher.done():
            self._wake.set()
            await asyncio.sleep(0.005)
        self._batcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._batcher
        self._batcher = None

    # -------------------------------------------------------------- messages

    def _receive(self, topic: str, payload: bytes, token: int) -> None:
        """Called by the transport for every message, on the event loop: translate and add to the open batch."""
        if not self._accepting:
            return  # not acknowledged: the broker delivers it again to the next session
        self.stats.received += 1
        self._pending += 1
        if self._pending >= self._high and not self._paused:
            self._paused = True
            self.transport.throttle(True)
            log.debug("MQTT ingest %s: %d message(s) waiting to be stored; reading paused", self.client_id,
                      self._pending)
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(asyncio.get_running_loop().time(), datetime.now(UTC), topic=topic)
            self._wake.set()
        elif not batch.mixed and topic != batch.topic:
            batch.mixed, batch.topic = True, None
        batch.messages += 1
        received = datetime.now(UTC) if self._mapped else batch.received
        try:
            found = self.translator.translate(topic, payload, received=received if self._mapped else None)
        except TvillingError as exc:
            raw = RawMessage(transport="mqtt", address=topic, payload=payload, received=received)
            batch.rejects.append((raw, exc.message, str(exc.fields.get("rule", "translate")), token))
        except Exception as exc:  # no message can stop ingest: anything unforeseen dead-letters that message
            raw = RawMessage(transport="mqtt", address=topic, payload=payload, received=received)
            batch.rejects.append((raw, f"unexpected {type(exc).__name__} while reading the message: {str(exc)[:200]}",
                                  "internal", token))
        else:
            if found:
                raw = RawMessage(transport="mqtt", address=topic, payload=payload, received=received)
                batch.envelopes.extend(found)
                batch.origins.extend([raw] * len(found))
            batch.tokens.append(token)
        if batch.messages >= self.batch_size:
            self._sealed.append(batch)
            self._open = None
            self._wake.set()

    def _next_batch(self) -> _Batch | None:
        if self._sealed:
            return self._sealed.popleft()
        batch, self._open = self._open, None
        return batch

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._sealed and self._open is not None and self.batch_s > 0 and self._accepting:
                remaining = self._open.first_at + self.batch_s - loop.time()
                if remaining > 0:  # the store is idle: give a young batch a moment to fill
                    await wait_set(self._wake, remaining)
                    self._wake.clear()
            batch = self._next_batch()
            if batch is None:
                continue
            self._storing = True
            try:
                await self._process(batch)
            except Exception:  # _process retries store failures itself: this is a bug, and must not stop ingest
                log.exception("MQTT ingest %s: a batch of %d message(s) failed; not acknowledged, reconnecting "
                              "for redelivery", self.client_id, batch.messages)
                self.transport.reconnect("ingest failed")
            finally:
                self._storing = False
                self._pending -= batch.messages
                if self._paused and self._pending <= self._low:
                    self._paused = False
                    self.transport.throttle(False)
            if self._open is not None or self._sealed:
                self._wake.set()

    async def _process(self, batch: _Batch) -> None:
        """Store the batch, retrying (with back-off) while a store fails; then acknowledge all its messages.

        While the store is down nothing is acknowledged, so the broker stops sending once
        ``max_inflight`` messages are unacknowledged: back-pressure, not an unbounded buffer.
        """
        delay = RETRY_INITIAL_S
        while True:
            try:
                await self._store(batch)
                break
            except Exception as exc:
                self.stats.sink_failures += 1
                if not self._accepting:
                    log.warning("MQTT ingest %s: stopping with a batch of %d message(s) not stored (%s); the broker "
                                "keeps them for the next session", self.client_id, batch.messages, exc)
                    return
                log.error("MQTT ingest %s: storing a batch of %d message(s) failed (%s: %s); nothing of it is "
                          "acknowledged; retrying in %.1f s", self.client_id, batch.messages, type(exc).__name__, exc,
                          delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        acks = batch.tokens + [token for *_, token in batch.rejects]
        self.stats.acknowledged += len(acks)
        if self.qos:
            self.transport.ack([t for t in acks if t])

    async def _store(self, batch: _Batch) -> None:
        """Dead letters (once), then the readings; raises if a store fails."""
        while batch.rejects_stored < len(batch.rejects):
            raw, reason, rule, _token = batch.rejects[batch.rejects_stored]
            await self.sink.reject(raw, reason, rule=rule)
            batch.rejects_stored += 1
            self.stats.rejected += 1
            log.debug("MQTT ingest %s: rejected message on %r: %s", self.client_id, raw.address, reason)
        if batch.envelopes:
            started = time.perf_counter()
            raw = RawMessage(transport="mqtt", address=batch.topic, received=batch.received)
            await self.sink.ingest(batch.envelopes, origins=batch.origins, raw=raw)
            self.stats.batches += 1
            log.debug("MQTT ingest %s: stored %d message(s) in %.1f ms", self.client_id, len(batch.tokens),
                      (time.perf_counter() - started) * 1000)
