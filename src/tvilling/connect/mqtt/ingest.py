"""MQTT ingest: subscribe to telemetry, translate to envelopes, hand batches to the sink, then ack.

    async with MqttIngest(sink, "mqtt://127.0.0.1:1883", client_id="ingest-1", shared_group="tvilling"):
        ...  # runs until the block exits

or ``await MqttIngest(...).run()`` to run until cancelled.

Guarantees (QoS 1, with the broker configured as in ``deploy/mosquitto/tvilling.conf``):

* a message is acknowledged only after ``sink.ingest`` returned for the batch holding it
  (readings durably stored), or after ``sink.reject`` stored it as a dead letter;
* if the sink raises, nothing of that batch is acknowledged; the connection is dropped and
  re-established with backoff and the broker delivers the messages again (at least once:
  the pipeline drops repeated ids);
* the session is persistent (clean start off, session expiry), so messages published while
  the worker is down are queued by the broker and delivered when it comes back;
* at most ``max_inflight`` messages are unacknowledged at a time (MQTT Receive Maximum),
  so the broker's packet ids never run out and memory stays bounded.

Messages are batched: up to ``batch_size`` messages or ``batch_ms`` milliseconds, one
``sink.ingest`` call per batch. With ``shared_group`` the subscriptions are
``$share/<group>/<filter>`` so several workers split the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from tvilling.connect.mapping import PayloadMapping
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import Inbound, MqttTransport, SessionOptions, TransportFactory, parse_url
from tvilling.connect.mqtt.telemetry import TELEMETRY_TOPIC, Translator
from tvilling.core.envelope import Envelope
from tvilling.core.errors import Invalid, TvillingError
from tvilling.ingest.ports import IngestSink, RawMessage

log = logging.getLogger("tvilling.connect.mqtt.ingest")


@dataclass
class IngestStats:
    received: int = 0
    acknowledged: int = 0
    rejected: int = 0
    batches: int = 0
    sink_failures: int = 0


@dataclass(slots=True)
class _Pending:
    msg: Inbound
    received: datetime
    done: asyncio.Future[bool]


class MqttIngest:
    """Subscribes to telemetry topics and feeds an :class:`~tvilling.ingest.ports.IngestSink`."""

    def __init__(self, sink: IngestSink, url: str = "mqtt://127.0.0.1:1883", *, client_id: str | None = None,
                 topics: Sequence[str] = (TELEMETRY_TOPIC,), mappings: Sequence[PayloadMapping] = (),
                 shared_group: str | None = None, qos: int = 1, max_inflight: int = 4000,
                 batch_size: int = 1000, batch_ms: float = 20.0, session_expiry_s: int = 7 * 24 * 3600,
                 transport_factory: TransportFactory | None = None) -> None:
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
        self.address = parse_url(url)
        self.translator = Translator(topics, mappings)
        self.qos = qos
        self.batch_size = min(batch_size, max_inflight)
        self.batch_s = batch_ms / 1000.0
        self.stats = IngestStats()
        prefix = f"$share/{shared_group}/" if shared_group else ""
        self.subscriptions = [(prefix + f, qos) for f in self.translator.subscriptions]
        self.options = SessionOptions(
            client_id=client_id or f"tvilling-ingest-{uuid.uuid4().hex[:12]}",
            clean_start=False, session_expiry_s=session_expiry_s, receive_maximum=max_inflight)
        factory = transport_factory or GmqttTransport
        self.transport: MqttTransport = factory(self.address, self.options, self.subscriptions, self._on_message)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._batcher: asyncio.Task[None] | None = None
        self._accepting = False

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
            await self._stop_batcher()  # finishes (stores and acks) what was already queued
        finally:
            await self.transport.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Run until cancelled."""
        async with self:
            await asyncio.Event().wait()

    async def _stop_batcher(self) -> None:
        if self._batcher is None:
            return
        await self._queue.join()
        self._batcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._batcher
        self._batcher = None

    # -------------------------------------------------------------- messages

    async def _on_message(self, msg: Inbound) -> bool:
        if not self._accepting:
            return False
        self.stats.received += 1
        pending = _Pending(msg, datetime.now(UTC), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return await pending.done

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.batch_s
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                await self._process(batch)
            finally:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_result(False)
                    self._queue.task_done()

    async def _process(self, batch: list[_Pending]) -> None:
        envelopes: list[Envelope] = []
        stored: list[_Pending] = []
        raw_single: RawMessage | None = None
        for pending in batch:
            msg = pending.msg
            try:
                found = self.translator.translate(msg.topic, msg.payload, received=pending.received)
            except TvillingError as exc:
                ok = await self._reject(pending, exc.message, str(exc.fields.get("rule", "translate")))
                pending.done.set_result(ok)
                continue
            envelopes.extend(found)
            stored.append(pending)
        if not stored:
            return
        if len(stored) == 1:
            raw_single = _raw(stored[0])
        try:
            await self.sink.ingest(envelopes, raw=raw_single)
        except Exception as exc:
            self.stats.sink_failures += 1
            log.error("MQTT ingest %s: sink failed on a batch of %d message(s) (%s: %s); not acknowledged, "
                      "the broker will deliver them again", self.client_id, len(stored), type(exc).__name__, exc)
            for pending in stored:
                pending.done.set_result(False)
            return
        self.stats.batches += 1
        self.stats.acknowledged += len(stored)
        for pending in stored:
            pending.done.set_result(True)

    async def _reject(self, pending: _Pending, reason: str, rule: str) -> bool:
        try:
            await self.sink.reject(_raw(pending), reason, rule=rule)
        except Exception as exc:
            self.stats.sink_failures += 1
            log.error("MQTT ingest %s: dead-letter store failed for %r (%s); not acknowledged", self.client_id,
                      pending.msg.topic, exc)
            return False
        self.stats.rejected += 1
        self.stats.acknowledged += 1
        log.debug("MQTT ingest %s: rejected message on %r: %s", self.client_id, pending.msg.topic, reason)
        return True


def _raw(pending: _Pending) -> RawMessage:
    return RawMessage(transport="mqtt", address=pending.msg.topic, payload=pending.msg.payload,
                      received=pending.received)
