"""OPC UA → ingest: one subscription for the bindings; data changes go to the sink in batches.

asyncua's publish loop awaits :meth:`OpcUaIngest._on_publish` before it asks the server for
the next notification message, and that callback awaits room in a bounded queue. So when
the sink is slow, nothing is dropped here: the back-pressure reaches the server, which keeps
up to ``item_queue_size`` values per monitored item (then discards the oldest and sets the
status code's Overflow bit, which :attr:`OpcUaIngestStats.overflows` counts).

    async with OpcUaIngest(sink, load_opcua_config(doc)) as ingest:
        print(await ingest.browse("Objects"))
        await stop.wait()

On connection loss the client reconnects with exponential backoff (``reconnect_min_s`` …
``reconnect_max_s``), resolves the bindings again and creates a fresh subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.ua_binary import struct_to_binary

from tvilling.connect.opcua.config import Binding, OpcUaConfig, load_opcua_config
from tvilling.connect.opcua.session import BrowseEntry, OpcUaSession
from tvilling.connect.opcua.status import status_error, status_name, translate_error
from tvilling.connect.opcua.translate import Reading, Unsupported, read_data_value, to_envelopes
from tvilling.core.errors import NotFound, TvillingError, Unavailable
from tvilling.ingest.ports import IngestSink, RawMessage

log = logging.getLogger(__name__)

_Item = tuple[datetime, list[tuple[int, ua.DataValue]]]  # (received, [(client handle, value)])
_ITEMS_PER_CALL = 1000


@dataclass
class OpcUaIngestStats:
    """Counters since start; nothing is dropped on the client side, so notifications = delivered + rejected
    + (still buffered)."""

    notifications: int = 0  # data change notifications received
    delivered: int = 0  # readings handed to sink.ingest (which returned)
    rejected: int = 0  # notifications sent to sink.reject
    envelopes: int = 0
    batches: int = 0
    overflows: int = 0  # notifications flagged by the server: it discarded older values of that item
    connects: int = 0
    connection_losses: int = 0
    sink_retries: int = 0
    queue_high_water: int = 0  # most publish messages buffered at once
    unbound: list[str] = field(default_factory=list)  # bindings the server refused at the last subscribe


class OpcUaIngest:
    """Subscribe to the config's bindings and feed the readings to ``sink``, until the context exits.

    ``wait_connected=True`` (default): entering waits for the first connection and subscription, and
    raises (``Unavailable``, ``NotFound``, ``Unauthorized`` …) if it fails; with ``False`` it keeps
    retrying in the background from the start.
    """

    def __init__(self, sink: IngestSink, config: OpcUaConfig | dict[str, Any], *, wait_connected: bool = True) -> None:
        self.config = load_opcua_config(config) if isinstance(config, dict) else config
        self.stats = OpcUaIngestStats()
        self._sink = sink
        self._fail_fast = wait_connected
        self._bindings: dict[int, Binding] = {i + 1: b for i, b in enumerate(self.config.bindings)}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=self.config.queue_max)
        self._inflight = 0  # publish callbacks waiting for room in the queue
        self._session: OpcUaSession | None = None
        self._subscription_id: int | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._first: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._raw_address = self.config.endpoint.display_url
        self._source = self.config.envelope_source

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> OpcUaIngest:
        self._first = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._consume(), name="opcua-consume"),
                       asyncio.create_task(self._supervise(), name="opcua-supervise")]
        if self._fail_fast:
            try:
                await self._first
            except BaseException:
                await self._stop(drain=False)
                raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stop(drain=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected and subscribed (again); ``Unavailable`` after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise Unavailable(f"opcua: not connected to {self._raw_address} after {timeout} s",
                              endpoint=self._raw_address) from None

    async def browse(self, path: str = "Objects") -> list[BrowseEntry]:
        """The children of a node (browse path or node id) on the connected server."""
        if self._session is None:
            raise Unavailable(f"opcua: not connected to {self._raw_address}", endpoint=self._raw_address)
        return await self._session.browse(path)

    async def _stop(self, *, drain: bool) -> None:
        self._closing = True
        session, sub_id = self._session, self._subscription_id
        if drain and session is not None and sub_id is not None and not session.lost.is_set():
            # No new notifications from here on; what the server already sent still reaches the sink.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.client.uaclient.delete_subscriptions([sub_id]),
                                       self.config.endpoint.timeout_s)
        if drain:
            try:
                await asyncio.wait_for(self._drained(), self.config.drain_timeout_s)
            except TimeoutError:
                left = self.stats.notifications - self.stats.delivered - self.stats.rejected
                log.error("opcua: closing with %d notification(s) not delivered to the sink after %.1f s",
                          left, self.config.drain_timeout_s)
        for task in reversed(self._tasks):
            task.cancel()
        for task in reversed(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _drained(self) -> None:
        while True:
            await self._queue.join()
            if self._inflight == 0 and self._queue.empty():
                return
            await asyncio.sleep(0.001)

    # -- connection ------------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        first = True
        while not self._closing:
            session = OpcUaSession(cfg.endpoint)
            try:
                try:
                    await session.connect()
                    await self._subscribe(session, strict=first and self._fail_fast)
                except TvillingError as exc:
                    await session.close()
                    if first and self._fail_fast and self._first is not None and not self._first.done():
                        self._first.set_exception(exc)
                        return
                    log.warning("opcua: %s; retrying in %.1f s", exc.message, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, cfg.reconnect_max_s)
                    continue
                self._session, first, delay = session, False, cfg.reconnect_min_s
                self.stats.connects += 1
                self._connected.set()
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
                await session.lost.wait()
                self.stats.connection_losses += 1
                log.warning("opcua: subscription on %s lost; reconnecting in %.1f s", self._raw_address, delay)
            finally:
                self._connected.clear()
                self._session, self._subscription_id = None, None
                await session.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.reconnect_max_s)

    async def _subscribe(self, session: OpcUaSession, *, strict: bool) -> None:
        cfg = self.config
        failures: list[tuple[str, TvillingError]] = []
        requests: list[ua.MonitoredItemCreateRequest] = []
        for handle, b in self._bindings.items():
            try:
                node_id = await session.resolve(b.node)
            except NotFound as exc:
                failures.append((f"bindings[{handle - 1}]", exc))
                continue
            requests.append(_item_request(handle, node_id, b, cfg.item_queue_size))
        client = session.client
        keepalive = max(1, math.ceil(5000 / cfg.publishing_ms))  # a keep-alive at least every ~5 s
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_ms, RequestedLifetimeCount=max(10_000, 3 * keepalive),
            RequestedMaxKeepAliveCount=keepalive, MaxNotificationsPerPublish=cfg.max_notifications_per_publish,
            PublishingEnabled=True, Priority=0)
        try:
            result = await client.uaclient.create_subscription(params, self._on_publish_for(session))
            self._subscription_id = result.SubscriptionId
            for start in range(0, len(requests), _ITEMS_PER_CALL):
                chunk = requests[start:start + _ITEMS_PER_CALL]
                created = await client.uaclient.create_monitored_items(ua.CreateMonitoredItemsParameters(
                    SubscriptionId=result.SubscriptionId, TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=chunk))
                for req, res in zip(chunk, created, strict=True):
                    if not res.StatusCode.is_good():
                        b = self._bindings[req.RequestedParameters.ClientHandle]
                        failures.append((f"bindings[{req.RequestedParameters.ClientHandle - 1}]", status_error(
                            res.StatusCode.value, "subscribe", node=b.node, twin=b.twin, property=b.property)))
        except TvillingError:
            raise
        except Exception as exc:
            raise translate_error(exc, "subscribe", endpoint=self._raw_address) from exc
        self.stats.unbound = [f"{where}: {exc.message}" for where, exc in failures]
        if failures:
            text = "; ".join(self.stats.unbound)
            if strict:
                first = failures[0][1]
                raise type(first)(f"opcua: {len(failures)} binding(s) cannot be subscribed: {text}",
                                  **first.fields)
            log.warning("opcua: %d binding(s) not subscribed: %s", len(failures), text)
        log.info("opcua: subscribed %d of %d binding(s) on %s", len(self._bindings) - len(failures),
                 len(self._bindings), self._raw_address)

    def _on_publish_for(self, session: OpcUaSession) -> Callable[[ua.PublishResult], Awaitable[None]]:
        async def on_publish(result: ua.PublishResult) -> None:
            data = result.NotificationMessage.NotificationData
            if not data:
                return  # keep-alive
            received = datetime.now(UTC)
            items: list[tuple[int, ua.DataValue]] = []
            for notification in data:
                if isinstance(notification, ua.DataChangeNotification):
                    items.extend((m.ClientHandle, m.Value) for m in notification.MonitoredItems)
                elif isinstance(notification, ua.StatusChangeNotification) and not notification.Status.is_good():
                    log.warning("opcua: subscription status %s", status_name(notification.Status.value))
                    session.lost.set()
            if not items:
                return
            self.stats.notifications += len(items)
            self._inflight += 1
            try:
                await self._queue.put((received, items))  # blocks the publish loop while the sink is behind
            finally:
                self._inflight -= 1
            self.stats.queue_high_water = max(self.stats.queue_high_water, self._queue.qsize())

        return on_publish

    # -- delivery --------------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.config.batch_ms / 1000.0
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0][1])
            deadline = loop.time() + window
            while count < self.config.batch_max:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    nxt = self._queue.get_nowait()
                batch.append(nxt)
                count += len(nxt[1])
            try:
                await self._deliver(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _deliver(self, batch: list[_Item]) -> None:
        readings: list[tuple[str, str, Reading]] = []
        rejects: list[tuple[Binding, ua.DataValue, datetime, str]] = []
        for received, items in batch:
            for handle, dv in items:
                b = self._bindings.get(handle)
                if b is None:
                    log.warning("opcua: notification for unknown client handle %s", handle)
                    continue
                r = read_data_value(dv, received=received)
                if isinstance(r, Unsupported):
                    rejects.append((b, dv, received, r.reason))
                    continue
                if r.overflow:
                    self.stats.overflows += 1
                readings.append((b.twin, b.property, r))
        for b, dv, received, reason in rejects:
            raw = RawMessage(transport="opcua", address=b.node, payload=_encode(dv), received=received)
            text = f"{b.twin}.{b.property} ({b.node}): {reason}"
            await self._retrying(partial(self._sink.reject, raw, text, rule="unsupported_type"))
            self.stats.rejected += 1
        if readings:
            envelopes = to_envelopes(readings, source=self._source)
            raw = RawMessage(transport="opcua", address=self._raw_address, received=batch[0][0])
            await self._retrying(partial(self._sink.ingest, envelopes, raw=raw))
            self.stats.delivered += len(readings)
            self.stats.envelopes += len(envelopes)
            self.stats.batches += 1

    async def _retrying(self, call: Callable[[], Awaitable[object]]) -> None:
        """Call the sink until it succeeds: a reading is never dropped here (cancellation ends it)."""
        delay = 0.05
        while True:
            try:
                await call()
                return
            except Exception as exc:
                self.stats.sink_retries += 1
                log.warning("opcua: sink failed (%r); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _item_request(handle: int, node_id: ua.NodeId, b: Binding, queue_size: int) -> ua.MonitoredItemCreateRequest:
    params = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=b.sampling_ms, QueueSize=queue_size,
                                     DiscardOldest=True)
    if b.deadband is not None:
        params.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                            DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=b.deadband)
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)


def _encode(dv: ua.DataValue) -> bytes:
    """The DataValue in OPC UA binary encoding: the raw form kept with a rejection."""
    try:
        return struct_to_binary(dv)
    except Exception:
        return repr(dv).encode()
