"""The dashboard: ``/`` serves the single-page app, ``/ui/...`` its static files (``tvilling/ui``).

Nothing is fetched from another host: the charting library is the ``plotly.min.js`` that
the installed ``plotly`` Python package ships, served at ``/ui/vendor/plotly.min.js``, and the
API documentation's Swagger UI files (:mod:`tvilling.api.docs`) are served from
``/ui/vendor/`` too. Static files are sent with an ``ETag`` (a ``304`` when the browser
already has them); vendored files, which only change with the installed packages, are
cacheable for a day.
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request, Response

from tvilling.api import docs
from tvilling.core.errors import NotFound, Unavailable

router = APIRouter(include_in_schema=False)

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json",
         ".png": "image/png", ".ico": "image/x-icon"}
VENDOR_MAX_AGE = 86_400
#: the app's own security policy: every script, style, image and connection from this origin only, and no
#: code made from strings ('unsafe-eval'): the plotly.js that plotly 7 ships draws without it
#: (tests/ui/test_csp.py runs the pages with charts under this policy and fails on any refusal).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
       "base-uri 'self'; frame-ancestors 'none'")


def ui_root() -> Path:
    """The directory of the dashboard's static files inside the installed package."""
    return Path(str(resources.files("tvilling") / "ui"))


@lru_cache(maxsize=1)
def plotly_path() -> Path:
    """``plotly.min.js`` from the installed plotly package."""
    try:
        import plotly
    except ImportError as exc:  # a dependency of the project: only a broken install lacks it
        raise Unavailable("the plotly package is not installed; the dashboard's charts need it",
                          rule="missing_dependency") from exc
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise Unavailable(f"plotly {getattr(plotly, '__version__', '?')} ships no package_data/plotly.min.js",
                          rule="missing_dependency")
    return path


@lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def _send(request: Request, path: Path, cache_control: str) -> Response:
    data, etag = _load(path, path.stat().st_mtime_ns)
    media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)


def resolve(rel: str) -> Path:
    """The static file ``rel`` under the UI directory; ``NotFound`` for anything else."""
    root = ui_root().resolve()
    target = (root / rel).resolve()
    if not rel or not target.is_relative_to(root) or not target.is_file() or target.name.startswith("."):
        raise NotFound(f"no dashboard file {rel!r}", path=rel)
    return target


@router.get("/")
async def index(request: Request) -> Response:
    return _send(request, resolve("index.html"), "no-cache")


def vendor_path(name: str) -> Path:
    """A file of a Python dependency served under ``/ui/vendor/``; ``NotFound`` for any other name."""
    if name == "plotly.min.js":
        return plotly_path()
    return docs.asset_path(name)


@router.get("/ui/vendor/{name}")
async def vendor(request: Request, name: str) -> Response:
    return _send(request, vendor_path(name), f"public, max-age={VENDOR_MAX_AGE}")


@router.get("/ui/{rel:path}")
async def static(request: Request, rel: str) -> Response:
    return _send(request, resolve(rel), "no-cache")
