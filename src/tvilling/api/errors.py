"""Mapping errors to HTTP: every failure is a JSON problem body with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tvilling.core.errors import Malformed, TvillingError

log = logging.getLogger("tvilling.api")
PROBLEM = "application/problem+json"


def problem(err: TvillingError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.to_problem(), status_code=err.status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TvillingError)
    async def _tvilling(request: Request, exc: TvillingError) -> JSONResponse:
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _params(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(Malformed(f"{where}: {first.get('msg', 'invalid')}", field=where))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code,
                "detail": f"{request.method} {request.url.path}: {exc.detail}"}
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"type": "about:blank", "title": "Internal error", "status": 500,
                "detail": f"{type(exc).__name__}: the server failed; see its log"}
        return JSONResponse(body, status_code=500, media_type=PROBLEM)
