"""The HTTP application: one router per capability mounted on a runtime, JSON problem errors,
bounded requests.

The background services (change hub, alarms, commands, transports, upkeep) belong to the
:class:`~tvilling.runtime.Runtime`; the app's lifespan is ``async with runtime``. Routes
reach them through ``app.state``: ``runtime``, ``platform`` and ``hub``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tvilling import __version__
from tvilling.api import (
    alarms,
    audit,
    commands,
    docs,
    errors,
    graph,
    guard,
    history,
    ingest,
    models,
    openapi,
    streams,
    twins,
)
from tvilling.api import analytics as analytics_routes
from tvilling.api import auth as auth_routes
from tvilling.api import health as health_routes
from tvilling.api import maintenance as maintenance_routes
from tvilling.api import policies as policy_routes
from tvilling.api import production as production_routes
from tvilling.api import scenarios as scenario_routes
from tvilling.api import simulations as simulation_routes
from tvilling.api import tokens as token_routes
from tvilling.api import ui as ui_routes
from tvilling.api import workorders as workorder_routes
from tvilling.app import Platform
from tvilling.config import Settings
from tvilling.runtime import Runtime
from tvilling.security import http as security_http


def create_app(settings: Settings | None = None, *, platform: Platform | None = None,
               runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app on ``runtime``; or on a runtime over a ready ``platform`` (tests), or over one built
    from ``settings`` (which the runtime then owns and closes)."""
    if runtime is None:
        runtime = Runtime(platform) if platform is not None else Runtime.from_settings(settings or Settings())
    run = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run:
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
    app.state.runtime = runtime
    app.state.platform = runtime.platform
    app.state.hub = runtime.hub
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
    app.include_router(scenario_routes.router)
    app.include_router(simulation_routes.router)
    app.include_router(workorder_routes.router)
    app.include_router(maintenance_routes.router)
    app.include_router(production_routes.router)
    app.include_router(token_routes.router)
    app.include_router(policy_routes.router)
    app.include_router(audit.router)
    app.include_router(auth_routes.router)
    app.include_router(ui_routes.router)
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.finish(generate())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    security_http.install(app, runtime.platform.settings, runtime.platform.backend)  # after the routes and document
    guard.install(app, runtime.platform.settings)  # outermost: host, origin and content type before sign-in
    return app
