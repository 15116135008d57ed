"""The dashboard works under a Content-Security-Policy without ``'unsafe-eval'``, and so does /docs.

A real `tvilling serve` and Debian Chromium (see conftest.py). The dashboard's pages run under the policy
the server sends (no ``'unsafe-eval'``; the route below checks that it is the app's ``CSP`` and that it
allows no code from strings), and so does /docs. The fleet page, twin
pages with their charts (hovered, and fed a live reading) and the graph view are loaded while every
console message, page error and ``securitypolicyviolation`` event is recorded; none may be a CSP refusal,
and the charts must have drawn. At the end each page makes code from a string itself, which must be
refused: that proves the policy is in force and that the recorder would have seen a refusal. (Nothing
here waits with ``wait_for_function``: Playwright evaluates its string in the page, which the policy
refuses.)
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tvilling.api.ui import CSP

from .conftest import VIEWPORT
from .plant_seed import SICK
from .test_dashboard import ingest

pytestmark = pytest.mark.slow

#: runs before the page's own scripts (injected by the browser, not subject to the page's CSP)
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`), true);
"""
#: code made from a string by the page itself (a string timer; CDP's own evaluations are let through)
TRY_EVAL = "setTimeout('window.__evalRan = true', 0)"
REFUSALS = ("refused to", "unsafe-eval", "content security policy", "evalerror")
#: the dashboard's own policy, which must not allow code from strings
STRICT = CSP
assert "unsafe-eval" not in STRICT


class Recorded:
    """One page whose console messages, page errors and CSP violation events are all kept."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.messages: list[str] = []
        self.policies: list[str] = []  # the policy each document of the dashboard was given
        page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        page.add_init_script(RECORD_VIOLATIONS)
        page.route(f"{base}/", self._strict)

    def _strict(self, route: Any) -> None:
        """The dashboard's page as the server sends it, under the policy without 'unsafe-eval'."""
        answer = route.fetch()
        assert answer.headers["content-security-policy"] == CSP, "the test's policy must follow the app's"
        self.policies.append(STRICT)
        route.fulfill(response=answer, headers={**answer.headers, "content-security-policy": STRICT})

    def violations(self) -> list[str]:
        return list(self.page.evaluate("window.__violations"))

    def refusals(self) -> list[str]:
        """Console messages and page errors that speak of a CSP refusal, and the violation events."""
        said = [m for m in self.messages if any(r in m.lower() for r in REFUSALS)]
        return said + self.violations()

    def errors(self) -> list[str]:
        return [m for m in self.messages if m.startswith(("error:", "pageerror:"))]


@pytest.fixture
def recorded(browser: Any, server: str, plant: dict[str, Any]) -> Iterator[Recorded]:
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        yield Recorded(ctx.new_page(), server)
    finally:
        ctx.close()


def _csp(url: str) -> str:
    with urllib.request.urlopen(url) as r:
        return str(r.headers["content-security-policy"])


def _directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def _eval_refused(page: Any) -> bool:
    """Whether the page's policy refuses code made from a string (and the refusal was recorded)."""
    before = len(page.evaluate("window.__violations"))
    page.evaluate(TRY_EVAL)
    page.wait_for_timeout(300)
    ran = page.evaluate("window.__evalRan === true")
    refused = [v for v in page.evaluate("window.__violations")[before:] if v.startswith("script-src")]
    return not ran and bool(refused)


def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _open(rec: Recorded, route: str, ready: str) -> Any:
    rec.page.goto(f"{rec.base}/{route}")
    rec.page.locator(f'body[data-ready="{ready}"]').wait_for(timeout=20_000)
    return rec.page


def _charts_drawn(page: Any) -> list[str]:
    """The ids of the twin page's charts that plotly drew (an SVG with a plotted trace)."""
    page.wait_for_selector("#charts .charts[data-ready]", timeout=20_000)
    return list(page.evaluate(
        "[...document.querySelectorAll('#charts .js-plotly-plot')]"
        ".filter((el) => el.querySelector('svg.main-svg .trace') && el.data && el.data.length)"
        ".map((el) => el.id)"))


def test_the_docs_policy_and_the_dashboards_without_eval_are_strict(server: str) -> None:
    assert _csp(f"{server}/") == CSP
    for policy in (_directives(_csp(f"{server}/docs")), _directives(STRICT)):
        assert "'unsafe-eval'" not in policy["script-src"], policy
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert _directives(STRICT)["script-src"] == ["'self'"]  # nor inline scripts


def test_fleet_twin_and_graph_pages_work_without_eval(recorded: Recorded, plant: dict[str, Any],
                                                      server: str) -> None:
    page = _open(recorded, "#/", "fleet")
    assert page.locator("table.fleet tbody tr[data-twin]").count() >= len(plant["twins"])

    twin = "line-1-m01-de"
    page = _open(recorded, f"#/twin/{twin}", "twin")
    drawn = _charts_drawn(page)
    assert "chart-vibration" in drawn and len(drawn) >= 2, drawn
    box = page.locator("#chart-vibration .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)  # hover labels
    n0 = page.evaluate("document.getElementById('chart-vibration').data[0].x.length")
    ingest(server, twin, {"vibration": 0.75})
    _until(lambda: page.evaluate("document.getElementById('chart-vibration').data[0].x.length") == n0 + 1,
           "the live reading on the chart")

    if plant["analytics"]:
        page = _open(recorded, f"#/twin/{SICK}", "twin")
        drawn = _charts_drawn(page)
        assert "chart-anomaly_score" in drawn and "chart-rul" in drawn, drawn

    page = _open(recorded, "#/graph", "graph")
    page.wait_for_timeout(500)  # let the graph finish drawing

    assert recorded.policies and set(recorded.policies) == {STRICT}
    assert recorded.refusals() == [], recorded.messages
    assert recorded.errors() == [], recorded.messages
    # the policy is in force, and a refusal would have been seen
    assert _eval_refused(page)


def test_the_docs_page_works_without_eval(recorded: Recorded) -> None:
    page = recorded.page
    page.goto(f"{recorded.base}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    page.locator(".swagger-ui .opblock-summary").first.click()  # open one operation
    page.wait_for_selector(".swagger-ui .opblock-body", timeout=10_000)
    assert page.locator(".swagger-ui .opblock").count() > 50
    assert recorded.refusals() == [], recorded.messages
    assert recorded.errors() == [], recorded.messages
    assert _eval_refused(page)
