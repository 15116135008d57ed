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
from tvilling.api import errors, graph, history, ingest, models, twins
from tvilling.app import Platform, build_platform
from tvilling.config import Settings

log = logging.getLogger("tvilling.server")


def _mqtt_ingest(plat: Platform) -> Any:
    """The MQTT subscriber feeding the ingest pipeline (``--broker``)."""
    from tvilling.connect.mapping import load_mappings_file
    from tvilling.connect.mqtt import MqttIngest

    s = plat.settings
    mappings = load_mappings_file(s.mqtt_mappings) if s.mqtt_mappings else []
    log.info("ingesting from %s (%d payload mapping(s))", s.broker, len(mappings))
    return MqttIngest(plat.ingest, s.broker or "", client_id=s.mqtt_client_id, mappings=mappings,
                      shared_group=s.mqtt_shared_group)


async def _maintain(plat: Platform) -> None:
    """Periodic upkeep: mark silent series stale, merge history rollups."""
    while True:
        await asyncio.sleep(plat.settings.maintenance_s)
        try:
            await asyncio.to_thread(plat.pipeline.check_stale)
            await asyncio.to_thread(plat.history.compact)
        except Exception:  # upkeep must not stop the server; the next round tries again
            log.exception("maintenance round failed")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings | None = None, *, platform: Platform | None = None) -> FastAPI:
    """The ASGI app. Pass a ready ``platform`` (tests) or settings to build one on startup."""
    owned = platform is None
    plat = platform if platform is not None else build_platform(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:  # unwinds in reverse: MQTT stops, upkeep stops, then close
            if owned:
                stack.callback(plat.close)
            if plat.settings.broker:
                stack.push_async_callback(_stop, asyncio.create_task(_maintain(plat)))
                await stack.enter_async_context(_mqtt_ingest(plat))
            yield

    app = FastAPI(
        title="Tvilling",
        version=__version__,
        description="Digital-twin platform: typed twin models (DTDL v3), live state with revisions, "
        "events, time travel, graph queries.",
        lifespan=lifespan,
    )
    app.state.platform = plat
    errors.install(app)

    @app.get("/health", tags=["system"], summary="Liveness and version")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    app.include_router(models.router)
    app.include_router(twins.router)
    app.include_router(graph.router)
    app.include_router(ingest.router)
    app.include_router(history.router)
    return app
