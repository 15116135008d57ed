"""Live change streams: Server-Sent Events at ``GET /api/stream``, WebSocket at ``GET /api/ws``.

Every change to a twin (created, patched — telemetry included —, replaced, migrated,
deleted, relationships set or deleted) is an item of the stream, as soon as it is
committed, by this server or by any other process on the same store.

**Filters** (query parameters, comma-separated; all optional, all must hold):

- ``twins=M1,B1`` — these twins only;
- ``model=dtmi:tvilling:example:Asset;1`` — twins of this model *or a model extending it*
  (an unknown model is a 422, as in the query API);
- ``properties=temperature,motor.current`` — changes that set or clear one of these
  reported/desired properties (dotted paths reach into components);
- ``types=TwinPatched,TwinCreated`` — these event types, or kinds (``event``, ``command``,
  ``desired``);
- ``after=events:1200`` — start after this cursor (replaying what came since); without
  it the stream starts with the next change. ``after=events:0`` replays all history.
- ``buffer=1000`` — how many items the server holds for a client that reads slowly;
  beyond that the stream is closed with the reason (reconnect and resume).

A bad filter is a 400 problem (``application/problem+json``) before the stream starts.

**Cursors** such as ``events:1200,commands:45`` name a position in each feed (twin
events, command lifecycle); every item carries the one to resume after it. A feed the
cursor leaves out starts at its live head.

**SSE format** (``text/event-stream``): one event per change, its cursor as ``id``,
its type as ``event``, the item as JSON ``data``; a comment (with the current cursor as
``id``, so a quiet filtered stream still moves forward) every 15 s; on reconnect the
browser sends ``Last-Event-ID`` and gets exactly what it missed. A client too slow to
keep up gets a final ``event: error`` whose data is a problem document
(``rule: "slow_consumer"``, ``resume``: the cursor to reconnect from) and the stream ends::

    retry: 2000

    id: events:1201
    event: TwinPatched
    data: {"twin":"B1","revision":7,"time":"2026-01-05T10:00:00.120000Z","actor":"ingest",
           "type":"TwinPatched","payload":{"reported":{"temperature":71.5},"metadata":{...}},
           "position":1201,"kind":"event","model":"dtmi:tvilling:example:Bearing;1"}

    : keep-alive
    id: events:1250

(``data`` is one line on the wire.) With curl::

    curl -N 'http://127.0.0.1:8000/api/stream?model=dtmi:tvilling:example:Asset;1&properties=temperature'
    curl -N -H 'Last-Event-ID: events:1201' 'http://127.0.0.1:8000/api/stream?twins=B1'

In a browser::

    const es = new EventSource("/api/stream?twins=B1,M1");
    const show = (e) => console.log(e.lastEventId, JSON.parse(e.data));
    for (const t of ["TwinCreated", "TwinPatched", "TwinReplaced", "TwinMigrated", "TwinDeleted",
                     "RelationshipSet", "RelationshipDeleted"]) es.addEventListener(t, show);
    es.addEventListener("error", (e) => { if (e.data) console.warn(JSON.parse(e.data).detail); });
    // EventSource reconnects by itself, sending Last-Event-ID: nothing is missed.

**WebSocket** ``/api/ws``: the same filters as query parameters, or — when the URL has
none — a first text message ``{"subscribe": {"twins": ["B1"], "model": "...",
"properties": [...], "types": [...], "after": "events:1200", "buffer": 1000}}`` within
10 s. Each change is a text message ``{"id": "events:1201", "item": {...}}``. A bad filter
in the URL refuses the handshake with the 400 problem; in a message it is answered with
``{"error": problem}`` and close code 1008. A slow client gets ``{"error": problem}`` and
close code 1013 (try again later), the reason in the close frame; resume with ``?after=``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from tvilling.api.errors import problem
from tvilling.api.openapi import problems
from tvilling.core.errors import Malformed, TvillingError, Unavailable
from tvilling.security.enforce import screener
from tvilling.streams import Change, ChangeHub, SlowConsumer, Subscription, parse_filter

router = APIRouter(tags=["streams"])

HEARTBEAT_S = 15.0
SUBSCRIBE_WITHIN_S = 10.0
FINAL_SEND_S = 5.0
BATCH_BYTES = 64 * 1024
RETRY_MS = 2000
FILTER_KEYS = frozenset({"twins", "model", "properties", "types", "after", "buffer"})
#: One event of the stream (before OpenAPI 3.2's ``itemSchema``, ``schema`` describes each event).
SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {"id": {"type": "string", "description": "the cursor to resume after this event"},
                   "event": {"type": "string", "description": "the change's type (TwinPatched...), or error"},
                   "data": {"type": "string", "description": "the change as JSON; for event: error, a problem "
                            "document (rule slow_consumer, resume: the cursor to reconnect from)"}},
}


def hub_of(app: Any) -> ChangeHub:
    hub = getattr(app.state, "hub", None)
    if not isinstance(hub, ChangeHub):
        raise Unavailable("live change streams are not enabled in this server", rule="no_hub")
    return hub


async def open_subscription(app: Any, params: Mapping[str, Any], *, last_event_id: str | None = None
                            ) -> Subscription:
    """Check the filter and cursor and return an (unentered) subscription; ``TvillingError`` if bad."""
    hub = hub_of(app)
    unknown = sorted(set(params) - FILTER_KEYS)
    if unknown:
        raise Malformed(f"unknown subscription key(s) {unknown}; known: {sorted(FILTER_KEYS)}", field=unknown[0])
    expand = app.state.platform.models.expand
    known = hub.known_types()
    flt = await run_in_threadpool(lambda: parse_filter(
        twins=params.get("twins"), model=params.get("model"), properties=params.get("properties"),
        types=params.get("types"), expand=expand, known_types=known))
    after = last_event_id if last_event_id and last_event_id.strip() else params.get("after")
    if after is not None and not isinstance(after, str):
        raise Malformed("after must be a cursor string such as 'events:120'", field="after")
    buffer = params.get("buffer")
    if buffer is not None:
        try:
            buffer = int(buffer)
        except (TypeError, ValueError):
            raise Malformed("buffer must be a whole number", field="buffer") from None
    hub.check_running()
    return hub.subscribe(flt, after=after or None, buffer=buffer)


# -- Server-Sent Events ------------------------------------------------------------------------
@router.get("/api/stream", summary="Live changes as Server-Sent Events (filters: twins, model, properties, types)",
            response_class=Response,
            responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}, **problems(400, 422, 503)})
async def stream(request: Request, twins: str | None = None, model: str | None = None,
                 properties: str | None = None, types: str | None = None, after: str | None = None,
                 buffer: int | None = None) -> Response:
    params = {k: v for k, v in {"twins": twins, "model": model, "properties": properties, "types": types,
                                "after": after, "buffer": buffer}.items() if v is not None}
    sub = await open_subscription(request.app, params, last_event_id=request.headers.get("last-event-id"))
    return EventStream(sub, heartbeat=float(getattr(request.app.state, "stream_heartbeat_s", HEARTBEAT_S)),
                       screen=screener(request))


def sse_event(cursor: str, event: str, data: bytes) -> bytes:
    return b"id: " + cursor.encode() + b"\nevent: " + event.encode() + b"\ndata: " + data + b"\n\n"


class EventStream(Response):
    """A ``text/event-stream`` response fed by a subscription; ends when the client leaves."""

    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription, *, heartbeat: float = HEARTBEAT_S,
                 screen: Callable[[Change], Change | None] | None = None) -> None:
        self.subscription = subscription
        self.screen = screen  # auth required: each change as the subscriber may see it when sent (policies)
        self.heartbeat = heartbeat
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                await self._stream(send)
            finally:
                tg.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        async def body(chunk: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

        started = False
        try:
            async with self.subscription as sub:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await self._events(sub, body)
        except Unavailable as err:
            if started:
                raise
            await problem(err)({"type": "http"}, _no_receive, send)  # the hub stopped since the route looked
            return
        with anyio.move_on_after(FINAL_SEND_S):
            await body(b"", more=False)

    async def _events(self, sub: Subscription, body: Callable[[bytes], Awaitable[None]]) -> None:
        await body(f"retry: {RETRY_MS}\n\n".encode())
        while True:
            try:
                first = await sub.get(timeout=self.heartbeat)
            except StopAsyncIteration:
                return
            except SlowConsumer as exc:
                data = json.dumps(exc.to_problem()).encode()
                with anyio.move_on_after(FINAL_SEND_S):
                    await body(b"event: error\ndata: " + data + b"\n\n")
                return
            if first is None:
                cursor = sub.resume_cursor()
                await body(b": keep-alive\n" + (b"id: " + cursor.encode() + b"\n" if cursor else b"") + b"\n")
                continue
            chunk = _batch(first, sub, self.screen)
            if chunk:
                await body(chunk)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _batch(first: Change, sub: Subscription, screen: Callable[[Change], Change | None] | None = None) -> bytes:
    """``first`` and what else is ready, up to ``BATCH_BYTES``: few writes, and little held outside the queue;
    without what ``screen`` hides from the subscriber."""
    parts: list[bytes] = []
    size = 0
    change: Change | None = first
    while True:
        if screen is not None and change is not None:
            change = screen(change)
        if change is not None:
            parts.append(_sse(change))
            size += len(parts[-1])
        if size >= BATCH_BYTES or not (more := sub.ready(1)):
            return b"".join(parts)
        change = more[0]


def _sse(change: Change) -> bytes:
    return sse_event(change.cursor, str(change.item.get("type") or change.item.get("kind")), change.json)


# -- WebSocket ---------------------------------------------------------------------------------
@router.websocket("/api/ws")
async def websocket_stream(websocket: WebSocket) -> None:
    """Live changes over a WebSocket: ``{"id": cursor, "item": {...}}`` text messages."""
    params = dict(websocket.query_params)
    sub: Subscription | None = None
    if FILTER_KEYS & set(params):
        try:
            sub = await open_subscription(websocket.app, params)
        except TvillingError as err:
            await _refuse(websocket, err)
            return
    await websocket.accept()
    if sub is None:
        sub = await _subscribe_message(websocket)
        if sub is None:
            return
    try:
        async with sub:
            await _pump(websocket, sub, screener(websocket))
    except TvillingError as err:  # the hub stopped before we entered
        await _close_with(websocket, err, 1013)


async def _refuse(websocket: WebSocket, err: TvillingError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(problem(err))
        return
    await websocket.accept()
    await _close_with(websocket, err, 1008)


async def _subscribe_message(websocket: WebSocket) -> Subscription | None:
    try:
        with anyio.fail_after(SUBSCRIBE_WITHIN_S):
            text = await websocket.receive_text()
    except TimeoutError:
        await _close_with(websocket, Malformed(
            f'send {{"subscribe": {{...}}}} within {SUBSCRIBE_WITHIN_S:g} s, or put the filters in the URL'), 1008)
        return None
    except (WebSocketDisconnect, KeyError, RuntimeError):
        return None
    try:
        try:
            msg = json.loads(text)
        except ValueError:
            raise Malformed("the first message must be JSON: {\"subscribe\": {...}}") from None
        spec = msg.get("subscribe") if isinstance(msg, dict) and set(msg) == {"subscribe"} else None
        if not isinstance(spec, dict):
            raise Malformed("the first message must be {\"subscribe\": {filters...}}")
        return await open_subscription(websocket.app, spec)
    except TvillingError as err:
        await _close_with(websocket, err, 1008)
        return None


async def _pump(websocket: WebSocket, sub: Subscription,
                screen: Callable[[Change], Change | None] | None = None) -> None:
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            try:
                while True:
                    msg = await websocket.receive()
                    if msg["type"] == "websocket.disconnect":
                        break
            finally:
                tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            async for change in sub:  # one frame at a time: the server's send waits while the client is behind
                c = change if screen is None else screen(change)  # the policies as they are now
                if c is None:
                    continue
                frame = b'{"id":' + json.dumps(c.cursor).encode() + b',"item":' + c.json + b"}"
                await websocket.send({"type": "websocket.send", "text": frame.decode()})
        except SlowConsumer as exc:
            await _close_with(websocket, exc, 1013)
        except (WebSocketDisconnect, OSError):
            pass
        finally:
            tg.cancel_scope.cancel()
    if sub.closed is not None and not isinstance(sub.closed, SlowConsumer):
        await _close_with(websocket, Unavailable("the server is stopping"), 1001)


async def _close_with(websocket: WebSocket, err: TvillingError, code: int) -> None:
    with anyio.move_on_after(FINAL_SEND_S):
        try:
            await websocket.send_text(json.dumps({"error": err.to_problem()}))
            await websocket.close(code, err.message.encode()[:123].decode(errors="ignore"))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass

