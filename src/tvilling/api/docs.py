"""The interactive API documentation (``/docs``, Swagger UI), served from this machine.

FastAPI's own page loads Swagger UI from a CDN, so behind a firewall or offline it is
blank. Here FastAPI's page builder (``get_swagger_ui_html``) is pointed at copies served by
the app itself, at ``/ui/vendor/...`` (see :mod:`tvilling.api.ui`): the
``swagger-ui-bundle.js`` and ``swagger-ui.css`` of Swagger UI 5 (it reads OpenAPI 3.1, which
FastAPI writes) that the ``fastapi-offline`` package ships as package data (a dependency;
only its files are used, not its app factory). The favicon is the dashboard's, and Swagger
UI's online validator badge (a request to validator.swagger.io) is turned off. The pages
carry a content security policy that allows this origin only, so an asset that tries to
reach outside is refused and shows as an error in the browser's console.

There is no ``/redoc``: ReDoc 2 always loads its footer logo from cdn.redoc.ly, whatever
its options say, so it cannot be served without reaching outside.

    app = FastAPI(docs_url=None, redoc_url=None)
    install(app)
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

from tvilling.core.errors import NotFound, Unavailable

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: the files this module serves, by their name under /ui/vendor/
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css")
FAVICON = "/ui/favicon.svg"
#: this origin only; inline scripts and styles because FastAPI's page starts Swagger UI from an inline <script>
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
       "base-uri 'self'; frame-ancestors 'none'")


@lru_cache(maxsize=8)
def asset_path(name: str) -> Path:
    """The installed copy of one documentation asset (``NotFound`` for any other name)."""
    if name not in ASSETS:
        raise NotFound(f"no documentation asset {name!r}", path=name)
    try:
        root = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError as exc:  # a dependency of the project: only a broken install lacks it
        raise Unavailable("the fastapi-offline package is not installed; /docs needs its Swagger UI files",
                          rule="missing_dependency") from exc
    path = Path(str(root / name))
    if not path.is_file():
        raise Unavailable(f"the installed fastapi-offline ships no static/{name}", rule="missing_dependency")
    return path


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def install(app: FastAPI) -> None:
    """Add ``/docs`` and its OAuth2 redirect page to ``app`` (built with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        parameters: dict[str, Any] = {"validatorUrl": None, **(app.swagger_ui_parameters or {})}
        return _page(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} API",
            swagger_js_url=f"{root}/ui/vendor/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/ui/vendor/swagger-ui.css", swagger_favicon_url=f"{root}{FAVICON}",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}", swagger_ui_parameters=parameters))

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return _page(get_swagger_ui_oauth2_redirect_html())
