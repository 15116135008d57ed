"""The HTTP application: one router per capability, JSON problem errors, bounded requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tvilling import __version__
from tvilling.api import alarms, commands, docs, errors, graph, history, ingest, models, openapi, streams, twins
from tvilling.api import analytics as analytics_routes
from tvilling.api import health as health_routes
from tvilling.api import ui as ui_routes
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.twins.changes import ChangeHub, SlowConsumer, hub_for, parse_filter

log = logging.getLogger("tvilling.server")


def _mqtt_ingest(plat: Platform, client_id: str) -> Any:
    """The MQTT subscriber feeding the ingest pipeline (``--broker``), with the server's stable client id."""
    from tvilling.connect.mapping import load_mappings_file
    from tvilling.connect.mqtt import MqttIngest

    s = plat.settings
    mappings = load_mappings_file(s.mqtt_mappings) if s.mqtt_mappings else []
    log.info("ingesting from %s (%d payload mapping(s))", s.broker, len(mappings))
    return MqttIngest(plat.ingest, s.broker or "", client_id=client_id, mappings=mappings,
                      shared_group=s.mqtt_shared_group, transport_factory=_transport_factory(s))


def _transport_factory(s: Settings) -> Any:
    """``None`` (MQTT 5, the default) or the factory of MQTT 3.1.1 connections (``mqtt_protocol = 4``)."""
    if s.mqtt_protocol == 5:
        return None
    from tvilling.connect.mqtt.gmqtt_transport import mqtt311_transport

    return mqtt311_transport


def _opcua_config(plat: Platform) -> Any:
    """The OPC UA config file (``--opcua``), read and validated."""
    import json
    import tomllib

    from tvilling.connect.opcua import load_opcua_config

    path = plat.settings.opcua
    if path is None:
        raise ValueError("no OPC UA config file is set (--opcua)")
    text = path.read_text(encoding="utf-8")
    return load_opcua_config(tomllib.loads(text) if path.suffix == ".toml" else json.loads(text))


def _opcua_ingest(plat: Platform, config: Any) -> Any:
    """The OPC UA subscription feeding the ingest pipeline."""
    from tvilling.connect.opcua import OpcUaIngest

    log.info("ingesting from %s (%d binding(s))", config.endpoint.url, len(config.bindings))
    return OpcUaIngest(plat.ingest, config)


async def _start_commands(plat: Platform, stack: AsyncExitStack, hub: ChangeHub, opcua: Any,
                          client_id: str | None) -> None:
    """Commands and desired state to devices: over OPC UA for the twins its config binds, over
    MQTT for the rest; the command service, its timeout sweeper and the reconciler."""
    from tvilling.decisions import CommandService, DesiredReconciler
    from tvilling.decisions.transport import CommandTransport, OpcUaTransport, RoutedTransport

    async def on_response(twin: str, name: str, request_id: str, status: str, payload: Any) -> None:
        await plat.commands.on_response(twin, name, request_id, status, payload)

    mqtt: CommandTransport | None = None
    if plat.settings.broker:
        from tvilling.connect.mqtt import MqttCommands

        mqtt = await stack.enter_async_context(MqttCommands(plat.settings.broker, on_response=on_response,
                                                            client_id=client_id,
                                                            transport_factory=_transport_factory(plat.settings)))
    transport: CommandTransport
    if opcua is not None:
        from tvilling.connect.opcua import OpcUaCommands

        opc = OpcUaTransport(await stack.enter_async_context(OpcUaCommands(opcua)))
        twins = {b.twin for b in opcua.bindings} | {m.twin for m in opcua.methods}
        transport = RoutedTransport(dict.fromkeys(twins, opc), default=mqtt)
    elif mqtt is not None:
        transport = mqtt
    else:
        return  # no way to reach a device: the command routes answer 503
    plat.commands = CommandService(plat.twins, plat.command_store, transport, timeout_s=30, retries=2)
    reconciler = DesiredReconciler(plat.twins, plat.command_store, transport, retry_s=5, timeout_s=120)
    for task in (plat.commands.run_sweeper(1.0), reconciler.run(1.0), _follow_events(hub, reconciler)):
        stack.push_async_callback(_stop, asyncio.create_task(task))


async def _follow_events(hub: ChangeHub, reconciler: Any) -> None:
    """Hand every new twin event to the reconciler (desired or reported values changed).

    It starts from now: the reconciler looks at every twin once when it starts. Should it
    ever fall behind, it resumes where the hub says it stopped.
    """
    flt = parse_filter(types="event")
    cursor: str | None = None
    while True:
        try:
            async with hub.subscribe(flt, after=cursor, buffer=100_000) as sub:
                async for position, item in sub:
                    cursor = position  # where to resume should the subscription be dropped
                    reconciler.notify(item)
        except SlowConsumer as exc:
            cursor = exc.fields.get("resume", cursor)
            log.warning("the reconciler fell behind the change feed; resuming at %s", cursor)


async def _maintain(plat: Platform) -> None:
    """Periodic upkeep: mark silent series stale, merge history rollups, and (hourly) delete
    history older than its retention rules allow."""
    last_retention = 0.0
    while True:
        await asyncio.sleep(plat.settings.maintenance_s)
        try:
            await asyncio.to_thread(plat.pipeline.check_stale)
            await asyncio.to_thread(plat.history.compact)
            if plat.settings.analytics:
                reloaded = await asyncio.to_thread(plat.analytics.refresh)
                if reloaded:
                    log.info("analytics: promoted versions changed for %s; reloaded", ", ".join(reloaded))
            loop_now = asyncio.get_running_loop().time()
            if loop_now - last_retention >= 3600:
                deleted = await asyncio.to_thread(apply_retention, plat)
                last_retention = loop_now
                if any(deleted.values()):
                    log.info("retention: deleted %s", deleted)
        except Exception:  # upkeep must not stop the server; the next round tries again
            log.exception("maintenance round failed")


def apply_retention(plat: Platform) -> dict[str, int]:
    """Apply the history retention rules now (model rules need each twin's model)."""
    from datetime import UTC, datetime

    rules = plat.history.retention_rules()
    if not rules:
        return {}
    models: dict[str, str] = {}
    if any(r.model is not None for r in rules):
        after: str | None = None
        from tvilling.twins.query import Query, Step

        while True:  # every twin's model, a page at a time
            page = plat.twins.store.query(Query(steps=(Step(),), limit=1000, after=after))
            models.update((t.id, t.model) for t in page.items)
            if page.next is None:
                break
            after = page.next
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    result: dict[str, int] = plat.history.apply_retention(now_us, models)
    return result


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings | None = None, *, platform: Platform | None = None) -> FastAPI:
    """The ASGI app. Pass a ready ``platform`` (tests) or settings to build one on startup."""
    owned = platform is None
    plat = platform if platform is not None else build_platform(settings or Settings())
    hub = hub_for(plat)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:  # unwinds in reverse: MQTT stops, upkeep stops, then close
            if owned:
                stack.callback(plat.close)
            await stack.enter_async_context(hub)
            plat.on_stored(lambda *_: hub.notify())  # stream new readings at once, not at the next poll
            if plat.settings.broker or plat.settings.opcua or plat.settings.analytics:
                stack.push_async_callback(_stop, asyncio.create_task(_maintain(plat)))
            opcua = _opcua_config(plat) if plat.settings.opcua else None
            if opcua is not None:
                await stack.enter_async_context(_opcua_ingest(plat, opcua))
            identity = None
            if plat.settings.broker:  # one stable identity per data directory: restarts resume their sessions
                from tvilling.connect.mqtt.identity import claim_identity

                identity = claim_identity(plat.settings.data_dir, plat.settings.mqtt_client_id)
                stack.callback(identity.release)
                await stack.enter_async_context(_mqtt_ingest(plat, identity.ingest_client_id))
            if plat.settings.broker or opcua is not None:
                await _start_commands(plat, stack, hub, opcua, identity.commands_client_id if identity else None)
            if plat.alarm_rule_docs():
                from tvilling.decisions.alarms import build_driver

                driver = build_driver(plat, notify=hub.notify)
                app.state.alarm_driver = driver
                stack.push_async_callback(_stop, asyncio.create_task(driver.run(0.25)))
            yield

    app = FastAPI(
        title="Tvilling",
        version=__version__,
        description="Digital-twin platform: typed twin models (DTDL v3), live state with revisions, "
        "events, time travel, graph queries.",
        lifespan=lifespan,
        docs_url=None,  # /docs comes from tvilling.api.docs, served locally (FastAPI's loads a CDN);
        # no /redoc: ReDoc always fetches its logo from its CDN
        redoc_url=None,
    )
    docs.install(app)
    app.state.platform = plat
    app.state.hub = hub
    errors.install(app)

    @app.get("/health", tags=["system"], summary="Liveness and version")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    app.include_router(models.router)
    app.include_router(twins.router)
    app.include_router(graph.router)
    app.include_router(health_routes.router)
    app.include_router(ingest.router)
    app.include_router(history.router)
    app.include_router(commands.router)
    app.include_router(alarms.router)
    app.include_router(streams.router)
    app.include_router(analytics_routes.router)
    app.include_router(ui_routes.router)
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.finish(generate())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    return app
