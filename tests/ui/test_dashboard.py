"""The dashboard in a real browser (Debian Chromium via Playwright) against a real `tvilling serve`.

Each test opens a page, changes the plant through the HTTP API while the page is open and
checks the page follows over the live stream; every page must make no request outside
127.0.0.1 and raise no error (checked by the ``watched`` fixture). Screenshots at 1280×800
go to a temp dir, and the fleet and twin pages also to ``docs/screenshots/``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from serve_util import call

from .plant_seed import MACHINES, SICK

pytestmark = pytest.mark.slow


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ingest(base: str, twin: str, values: dict[str, Any]) -> None:
    status, body = call("POST", f"{base}/api/ingest", {"twin": twin, "ts": now_iso(), "values": values})
    assert status == 200 and body["accepted"] >= 1 and body["rejected"] == 0, body


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.inner_text())


def wait_text(page: Any, selector: str, expected: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        loc = page.locator(selector)
        if loc.count():
            seen = str(loc.first.inner_text())
            if expected in seen:
                return
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector}: expected {expected!r}, saw {seen!r}")


def test_the_app_and_the_charting_library_are_served_locally(server):
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(f"{server}/") as r:
        html = r.read().decode()
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert 'src="/ui/vendor/plotly.min.js"' in html and "http" not in html.replace("http-equiv", "")
    with urllib.request.urlopen(f"{server}/ui/vendor/plotly.min.js") as r:
        body = r.read()
        assert len(body) > 1_000_000 and b"plotly" in body[:2000].lower()
        assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
        etag = r.headers["etag"]
    req = urllib.request.Request(f"{server}/ui/vendor/plotly.min.js", headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("expected 304 Not Modified")
    except urllib.error.HTTPError as e:
        assert e.code == 304
    for bad in ("/ui/..%2F..%2Fapi%2Fui.py", "/ui/nope.js", "/ui/"):
        status, problem = call("GET", f"{server}{bad}")
        assert status == 404 and problem["status"] == 404, (bad, status)


def test_fleet_lists_every_twin_in_its_hierarchy_and_follows_live_values(watched, plant, server, shots):
    page = watched.open("#/", "fleet")
    rows = page.locator("table.fleet tbody tr[data-twin]")
    ids = [rows.nth(i).get_attribute("data-twin") for i in range(rows.count())]
    assert set(plant["twins"]) <= set(ids)
    # line → machines → their components, machines in station order
    assert ids[0] == "line-1"
    for m in range(1, MACHINES + 1):
        mid = f"line-1-m{m:02d}"
        assert ids.index(mid) < ids.index(f"{mid}-de") < ids.index(f"{mid}-nde") < ids.index(f"{mid}-spindle")
    assert ids.index("line-1-m01-spindle") < ids.index("line-1-m02")
    if plant["analytics"]:
        sick = page.locator(f'tr[data-twin="{SICK}"]')
        assert "ANOMALY" in sick.inner_text() and "bearing_defect" in sick.inner_text()

    ingest(server, "line-1-m01", {"speed": 1234.5})
    wait_text(page, 'tr[data-twin="line-1-m01"] [data-path="speed"]', "1,234.5")
    shots(page, "dashboard-fleet.png", docs=True)


def test_twin_page_charts_history_then_live_readings(watched, plant, server, shots):
    twin = "line-1-m01-de"
    page = watched.open(f"#/twin/{twin}", "twin")
    page.wait_for_selector("#charts .charts[data-ready]")
    n0 = page.evaluate("document.getElementById('chart-vibration').data[0].x.length")
    assert n0 > 50, "the chart starts from the twin's history"
    ingest(server, twin, {"vibration": 0.987, "temperature": 44.25})
    page.wait_for_function(
        f"(() => {{ const d = document.getElementById('chart-vibration').data[0];"
        f" return d.x.length === {n0 + 1} && d.y[d.y.length - 1] === 0.987; }})()", timeout=20_000)
    wait_text(page, 'tr[data-prop="vibration"] [data-col="reported"]', "0.987")
    wait_text(page, 'tr[data-prop="temperature"] [data-col="reported"]', "44.25")
    wait_text(page, "#events tbody", "vibration=0.987")


def test_reported_versus_desired_follows_a_desired_change(watched, plant, server):
    twin = "line-1-m02"
    page = watched.open(f"#/twin/{twin}", "twin")
    wait_text(page, 'tr[data-prop="speedSetpoint"] [data-col="desired"]', "1,500")
    wait_text(page, 'tr[data-prop="speedSetpoint"] [data-col="delta"]', "in sync")
    status, _ = call("PATCH", f"{server}/api/twins/{twin}", {"desired": {"speedSetpoint": 1200.0}})
    assert status == 200
    wait_text(page, 'tr[data-prop="speedSetpoint"] [data-col="desired"]', "1,200")
    wait_text(page, 'tr[data-prop="speedSetpoint"] [data-col="delta"]', "-300")


def test_analytic_outputs_anomaly_threshold_and_rul_band(watched, plant, server, shots):
    if not plant["analytics"]:
        pytest.skip("this server does not accept the reserved analytic outputs yet")
    page = watched.open(f"#/twin/{SICK}", "twin")
    page.wait_for_selector("#charts .charts[data-ready]")
    shapes = page.evaluate("document.getElementById('chart-anomaly_score').layout.shapes")
    assert [(s["y0"], s["y1"]) for s in shapes] == [(1.0, 1.0)], "a threshold line at 1.0"
    rul = page.evaluate("document.getElementById('chart-rul').data.map(t => [t.name, t.fill || '', t.x.length])")
    assert [t[0] for t in rul] == ["p10", "p90", "RUL"] and rul[1][1] == "tonexty" and min(t[2] for t in rul) > 10
    analytics = text_of(page, "#analytics")
    assert "bearing_defect" in analytics and "vibration-detector v3" in analytics and "bearing-rul v2" in analytics
    contributions = text_of(page, '[data-output="contributions"]')
    assert "vibrationBandBpfo" in contributions and "61%" in contributions

    n0 = page.evaluate("document.getElementById('chart-anomaly_score').data[0].x.length")
    ingest(server, SICK, {"anomaly_score": 2.25, "rul": 180.0, "rul_p10": 120.0, "rul_p90": 260.0, "health": 0.2})
    page.wait_for_function(f"document.getElementById('chart-anomaly_score').data[0].x.length === {n0 + 1}",
                           timeout=20_000)
    page.wait_for_function("(() => { const d = document.getElementById('chart-rul').data;"
                           " return d[2].y[d[2].y.length - 1] === 180 && d[0].y[d[0].y.length - 1] === 120; })()",
                           timeout=20_000)
    wait_text(page, '[data-output="anomaly_score"]', "2.25")
    wait_text(page, '[data-output="rul"]', "180")
    page.wait_for_timeout(300)  # let the charts finish drawing
    shots(page, "dashboard-twin.png", docs=True)


def test_a_command_button_posts_and_shows_the_command_status(watched, plant, server, shots):
    twin = "line-1-m01"
    page = watched.open(f"#/twin/{twin}", "twin")
    page.fill('#commands input[name="rpm"]', "900")
    page.click('#commands button[data-command="setSpeed"]')
    # no device listens on the broker: the command is pending or sent, never answered
    page.wait_for_selector('#commands [data-command="setSpeed"] [data-status]', timeout=20_000)
    status = page.get_attribute('#commands [data-command="setSpeed"] [data-status]', "data-status")
    assert status in ("pending", "sent")
    code, listed = call("GET", f"{server}/api/commands?twin={twin}")
    assert code == 200
    sent = [c for c in listed["items"] if c["name"] == "setSpeed"]
    assert sent and sent[-1]["request"] == 900
    # a bad value is refused in the page, with a reason, and nothing is sent
    page.fill('#commands input[name="rpm"]', "fast")
    page.click('#commands button[data-command="setSpeed"]')
    wait_text(page, "#commands .cmd-err", "enter a number")
    assert len([c for c in call("GET", f"{server}/api/commands?twin={twin}")[1]["items"]
                if c["name"] == "setSpeed"]) == len(sent)
    page.click('#commands button[data-command="stop"]')  # disruptive: the page asks first
    page.click('dialog.cmd-confirm [data-action="confirm"]')
    page.wait_for_selector('#commands [data-command="stop"] [data-status]', timeout=20_000)
    shots(page, "dashboard-machine.png")


def test_graph_view_draws_the_hierarchy_and_opens_a_twin(watched, plant, server, shots):
    page = watched.open("#/graph", "graph")
    nodes = page.locator("svg.graph g.node")
    assert set(plant["twins"]) <= {nodes.nth(i).get_attribute("data-twin") for i in range(nodes.count())}
    assert page.locator("svg.graph path.edge").count() == len(plant["twins"]) - 1
    if plant["analytics"]:
        # coloured by the health index (anomalous, health 0.2: poor), and its machine shows its worst part
        page.wait_for_function(f"document.querySelector('g.node[data-twin=\"{SICK}\"]').classList.contains('poor')")
        assert "poor" in (page.get_attribute('g.node[data-twin="line-1-m02"]', "class") or "")
    shots(page, "dashboard-graph.png", docs=True)
    page.click('g.node[data-twin="line-1-m02"]')
    page.wait_for_function("location.hash === '#/twin/line-1-m02' && document.body.dataset.ready === 'twin'")
    assert text_of(page, ".twin-head h1") == "line-1-m02"


def test_alarm_list_follows_alarms_live_and_acknowledges_and_clears(watched, plant, server, shots):
    status, _ = call("GET", f"{server}/api/alarms")
    if status == 404:
        pytest.skip("GET /api/alarms is not served by this build: no alarm API yet")
    page = watched.open("#/alarms", "alarms")
    twin = "line-1-m03-de"
    ingest(server, twin, {"temperature": 91.5})  # above the bearing-hot rule's 80 °C
    row = f'tr[data-state="active"][data-twin="{twin}"]'
    page.wait_for_selector(row, timeout=15_000)
    assert "bearing-hot" in page.inner_text(row) and "major" in page.inner_text(row).lower()
    page.wait_for_function("document.getElementById('nav-alarms').textContent"  # the header counts them
                           " === String(document.querySelectorAll('tr[data-state=active]').length)", timeout=20_000)
    shots(page, "dashboard-alarms.png", docs=True)

    alarm_id = page.get_attribute(row, "data-alarm")
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="ack"]')  # the page asks who (once) and why
    page.fill(f'tr[data-alarm="{alarm_id}"] form.step-form input[name="actor"]', "Eva")
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="confirm-ack"]')
    page.wait_for_selector(f'tr[data-alarm="{alarm_id}"][data-state="acknowledged"]', timeout=20_000)
    assert call("GET", f"{server}/api/alarms/{alarm_id}")[1]["state"] == "acknowledged"
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="clear"]')
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="confirm-clear"]')
    page.wait_for_selector(f'tr[data-alarm="{alarm_id}"]', state="detached", timeout=20_000)  # gone from "open"
    assert call("GET", f"{server}/api/alarms/{alarm_id}")[1]["state"] == "cleared"
    page.click('.seg button:text-is("cleared")')
    page.wait_for_selector(f'tr[data-alarm="{alarm_id}"][data-state="cleared"]', timeout=20_000)


def test_a_signal_without_history_starts_from_its_current_value(watched, plant, server):
    status, _ = call("PUT", f"{server}/api/twins/spare-spindle",
                     {"model": plant["models"]["spindle"], "reported": {"load": 12.5}})
    assert status in (200, 201)
    page = watched.open("#/twin/spare-spindle", "twin")
    page.wait_for_selector("#charts .charts[data-ready]")
    assert page.evaluate("document.getElementById('chart-load').data[0].y") == [12.5]
    ingest(server, "spare-spindle", {"load": 13.25})
    page.wait_for_function("(() => { const d = document.getElementById('chart-load');"
                           " return d.data && d.data[0].y.length === 2 && d.layout.xaxis.autorange === true; })()",
                           timeout=20_000)
    wait_text(page, "#events tbody", "load=13.25")


def test_a_desired_value_never_reported_then_reported(watched, plant, server):
    page = watched.open("#/twin/line-1", "twin")
    wait_text(page, 'tr[data-prop="targetRate"] [data-col="delta"]', "not reported")
    ingest(server, "line-1", {"targetRate": 120.0})
    wait_text(page, 'tr[data-prop="targetRate"] [data-col="delta"]', "in sync")
