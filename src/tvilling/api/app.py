"""The HTTP application: one router per capability, JSON problem errors, bounded requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tvilling import __version__
from tvilling.api import errors, graph, history, ingest, models, twins
from tvilling.app import Platform, build_platform
from tvilling.config import Settings


def create_app(settings: Settings | None = None, *, platform: Platform | None = None) -> FastAPI:
    """The ASGI app. Pass a ready ``platform`` (tests) or settings to build one on startup."""
    owned = platform is None
    plat = platform if platform is not None else build_platform(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                plat.close()

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
