"""Nothing from outside: every page of the dashboard and the API documentation, in a real browser,
request this server only.

One browser context walks the fleet, a bearing, a machine, the alarms and the graph pages,
then ``/docs`` (Swagger UI), recording every request (:class:`Watched`). Any request
to a host other than the server's 127.0.0.1, any page error and any console error (a blocked
request shows up there as a content-security-policy violation) fails the test. The
documentation must really render the API's operations, not a blank page: every operation
of ``/openapi.json`` appears in Swagger UI, and one opens to show its responses. The screenshot of ``/docs`` is
``api-docs.png`` in the ``shots`` temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serve_util import call

from .conftest import VIEWPORT, Watched
from .plant_seed import SICK

pytestmark = pytest.mark.slow

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def tour(browser: Any, server: str, plant: dict[str, Any]) -> Iterator[Watched]:
    ctx = browser.new_context(viewport=VIEWPORT, bypass_csp=True)  # waits evaluate strings in the page
    try:
        yield Watched(ctx.new_page(), server)
    finally:
        ctx.close()


def operations(server: str) -> list[tuple[str, str]]:
    status, doc = call("GET", f"{server}/openapi.json")
    assert status == 200, doc
    return [(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS]


def test_every_page_and_the_api_docs_are_served_from_this_server(tour: Watched, server: str, shots: Any) -> None:
    machine = SICK.rsplit("-", 1)[0]
    for route, ready in (("#/", "fleet"), (f"#/twin/{SICK}", "twin"), (f"#/twin/{machine}", "twin"),
                         ("#/alarms", "alarms"), ("#/graph", "graph")):
        page = tour.open(route, ready)
        page.wait_for_load_state("networkidle")
    dashboard = len(tour.requests)
    assert dashboard > 5, tour.requests

    expected = operations(server)
    assert len(expected) > 20, expected
    page = tour.page
    page.goto(f"{server}/docs")
    page.wait_for_selector("#swagger-ui .opblock", timeout=20_000)
    page.wait_for_load_state("networkidle")
    shown = page.eval_on_selector_all(
        "#swagger-ui .opblock",
        "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent.trim(),"
        " e.querySelector('.opblock-summary-path').getAttribute('data-path')])")
    assert sorted(map(tuple, shown)) == sorted(expected)
    assert page.title() == "Tvilling API"
    assert page.locator("#swagger-ui .info .title").first.inner_text().startswith("Tvilling")
    assert page.locator("#swagger-ui .errors-wrapper").count() == 0
    shots(page, "api-docs.png")
    # the page's own operation renders its details when opened (Swagger UI works, not just its shell)
    page.locator("#operations-system-health_health_get .opblock-summary").click()
    page.wait_for_selector("#operations-system-health_health_get .responses-wrapper", timeout=10_000)

    docs = [u for u in tour.requests[dashboard:] if "/ui/vendor/" in u]
    assert {u.rsplit("/", 1)[1] for u in docs} == {"swagger-ui-bundle.js", "swagger-ui.css"}
    assert tour.foreign() == [], f"a page reached outside the server: {tour.foreign()}"
    assert tour.errors == [], f"errors in the pages: {tour.errors}"


def test_the_docs_pages_allow_this_origin_only(server: str) -> None:
    import urllib.request

    for path in ("/docs", "/docs/oauth2-redirect"):
        with urllib.request.urlopen(f"{server}{path}") as r:
            html = r.read().decode()
            policy = r.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy, (path, policy)
        assert "http://" not in html and "https://" not in html, (path, html)
    # FastAPI's ReDoc page is not served: ReDoc always loads its logo from its own CDN
    status, problem = call("GET", f"{server}/redoc")
    assert status == 404 and problem["status"] == 404
