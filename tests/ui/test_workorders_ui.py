"""The work orders page and the twin page's maintenance record, in Debian Chromium against a real
`tvilling serve` seeded with the demo plant.

Work orders are made through the API: two proposed (one with the planner's rationale), one approved and
one carried through to done on the failing machine. The page lists the open ones with their state, asset,
window, crew, parts, expected cost and failure probability; the nav badge counts the proposed ones; the
Gantt draws a bar per order on its asset's row and the predicted failure band of the failing machine's
bearing. Approving with the button moves the order (and the badge), an approval through the API arrives
over the change stream, a move from a stale page is refused with If-Match and said so, and the machine's
page shows its maintenance record. Screenshots: docs/screenshots/workorders.png and twin-maintenance.png.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serve_util import call

from .plant_seed import SICK
from .test_dashboard import wait_text

pytestmark = pytest.mark.slow

MACHINE = "line-1-m02"  # its drive-end bearing (SICK) carries the predicted remaining life
RATIONALE = {
    "why": "Tonight's stop costs least: the bearing's failure risk stays low until then and no production is lost.",
    "options": [
        {"name": "run to failure", "expected_cost": 9400.0, "prob_fail_before": 0.62},
        {"name": "tonight's planned stop", "expected_cost": 1850.0, "prob_fail_before": 0.12, "chosen": True},
        {"name": "weekend window", "expected_cost": 2600.0, "prob_fail_before": 0.31},
    ],
    "solver": "cp-sat",
}


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def post(server: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
    """POST JSON; a generous timeout, since completing an order waits a while for the asset's answer."""
    req = urllib.request.Request(f"{server}{path}", data=json.dumps(body if body is not None else {}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, got = r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        status, got = e.code, json.loads(e.read())
    assert status == expect, f"POST {path}: {status} {got}"
    return got


@pytest.fixture(scope="module")
def orders(server: str, plant: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)

    def hours(h: float) -> str:
        return iso(now + timedelta(hours=h))

    made = {
        "wo-bearing": post(server, "/api/workorders", {
            "id": "wo-bearing", "task": "replace-bearing", "asset": MACHINE, "planned_start": hours(4),
            "planned_end": hours(6), "crew": ["tech-anna", "tech-ben"], "parts": {"6205-2RS": 1},
            "expected_cost": 1850.0, "failure_probability": 0.12, "rationale": RATIONALE}, expect=201),
        "wo-lube": post(server, "/api/workorders", {
            "id": "wo-lube", "task": "lubricate", "asset": "line-1-m01", "planned_start": hours(20),
            "planned_end": hours(21), "crew": ["tech-ben"], "expected_cost": 120.0, "failure_probability": 0.01},
            expect=201),
        "wo-inspect": post(server, "/api/workorders", {
            "id": "wo-inspect", "task": "inspect-spindle", "asset": "line-1-m03", "planned_start": hours(10),
            "planned_end": hours(11), "crew": ["tech-anna"], "expected_cost": 300.0, "failure_probability": 0.03},
            expect=201),
        "wo-past": post(server, "/api/workorders", {
            "id": "wo-past", "task": "replace-bearing", "asset": MACHINE, "planned_start": hours(-30),
            "planned_end": hours(-28), "crew": ["tech-anna"], "parts": {"6205-2RS": 2}, "expected_cost": 2100.0,
            "failure_probability": 0.05}, expect=201),
    }
    post(server, "/api/workorders/wo-inspect/approve", {"note": "ok by planning"})
    post(server, "/api/workorders/wo-past/approve")
    post(server, "/api/workorders/wo-past/schedule")
    post(server, "/api/workorders/wo-past/start", {"actual_start": hours(-30)})
    made["wo-past"] = post(server, "/api/workorders/wo-past/done", {"actual_end": hours(-28)})
    return made


def wait_badge(page: Any, value: str) -> None:
    page.wait_for_function("(v) => { const b = document.getElementById('nav-workorders');"
                           " return (b.hidden ? '0' : b.textContent) === v; }", arg=value, timeout=20_000)


def test_work_orders_page_lists_approves_and_draws_the_gantt(watched, server, orders, shots):
    page = watched.open("#/workorders", "workorders")
    page.wait_for_selector('tr[data-workorder="wo-bearing"]', timeout=20_000)

    # the open orders, by planned start; the done one is not among them
    ids = page.eval_on_selector_all("#wo-list tr[data-workorder]", "rs => rs.map(r => r.dataset.workorder)")
    assert ids == ["wo-bearing", "wo-inspect", "wo-lube"]
    row = page.inner_text('tr[data-workorder="wo-bearing"]')
    for text in ("proposed", "replace-bearing", MACHINE, "tech-anna, tech-ben", "6205-2RS ×1", "1,850", "12 %"):
        assert text in row, f"{text!r} not in the row: {row!r}"
    assert page.get_attribute(f'tr[data-workorder="wo-bearing"] a[href="#/twin/{MACHINE}"]', "href")
    wait_badge(page, "2")
    page.click('#wo-tabs button[data-tab="done"]')
    page.wait_for_selector('tr[data-workorder="wo-past"][data-state="done"]')
    assert page.locator("#wo-list tr[data-workorder]").count() == 1
    page.click('#wo-tabs button[data-tab="open"]')

    # filter by asset
    page.select_option('select[name="asset"]', MACHINE)
    page.wait_for_function("document.querySelectorAll('#wo-list tr[data-workorder]').length === 1")
    assert page.get_attribute("#wo-list tr[data-workorder]", "data-workorder") == "wo-bearing"
    page.select_option('select[name="asset"]', "")
    page.wait_for_function("document.querySelectorAll('#wo-list tr[data-workorder]').length === 3")

    # the Gantt: one row per asset, one maintenance bar per open order, the now line; a tooltip on hover
    gantt = "#wo-gantt"
    drawn = page.eval_on_selector_all(f"{gantt} g.g-item[data-kind=maintenance]", "gs => gs.map(g => g.dataset.id)")
    assert sorted(drawn) == ["wo-bearing", "wo-inspect", "wo-lube"]
    assert page.get_attribute(f"{gantt} .gantt", "data-rows") == "3"
    assert page.locator(f"{gantt} line.g-now").count() == 1
    bars = {i: page.locator(f'{gantt} g.g-item[data-id="{i}"] rect.bar').bounding_box()
            for i in ("wo-bearing", "wo-inspect", "wo-lube")}
    assert bars["wo-bearing"]["x"] < bars["wo-inspect"]["x"] < bars["wo-lube"]["x"]  # later start, further right
    assert bars["wo-bearing"]["width"] > bars["wo-lube"]["width"]  # 2 h against 1 h
    assert len({round(b["y"]) for b in bars.values()}) == 3  # three assets, three rows
    page.hover(f'{gantt} g.g-item[data-id="wo-bearing"] rect.bar')
    page.wait_for_selector(f"{gantt} .gantt-tip:not([hidden])")
    tip = page.inner_text(f"{gantt} .gantt-tip")
    assert "replace-bearing" in tip and "proposed" in tip and "tech-anna" in tip
    # the failing bearing's predicted failure band (p10–p90 of its remaining life) lies days ahead: a longer range
    page.click('#wo-range button[data-range="30d"]')
    band = f'{gantt} g.g-item[data-kind="failure-band"][data-row="{MACHINE}"]'
    page.wait_for_selector(band, timeout=20_000)
    box = page.locator(f"{band} rect.bar").bounding_box()
    now_x = float(page.get_attribute(f"{gantt} line.g-now", "x1"))
    assert box["x"] > now_x and box["width"] > 20
    page.click('#wo-range button[data-range="fit"]')

    # the detail: the rationale with its options and the chosen one, the history, the legal moves only
    page.click('tr[data-workorder="wo-bearing"] td:first-child')
    detail = '#wo-detail .wo-detail[data-workorder="wo-bearing"]'
    page.wait_for_selector(detail)
    assert "tonight's planned stop" in page.inner_text(f"{detail} .wo-rationale tr.chosen")
    assert "9,400" in page.inner_text(f'{detail} .wo-rationale tr[data-option="run to failure"]')
    assert RATIONALE["why"] in page.inner_text(f"{detail} .wo-rationale")
    assert "cp-sat" in page.inner_text(f"{detail} .wo-rationale")
    moves = page.eval_on_selector_all(f"{detail} .wo-actions button[data-action]",
                                      "bs => bs.map(b => b.dataset.action)")
    assert moves == ["approve", "cancel"]
    assert page.get_attribute(f'{gantt} g.g-item[data-id="wo-bearing"]', "class").count("selected") == 1

    # approve with the button: named, with a note; the row, the detail, the bar and the badge follow
    page.fill(f'{detail} input[name="actor"]', "Eva Berg")
    page.fill(f'{detail} input[name="note"]', "parts are on the shelf")
    page.click(f'{detail} button[data-action="approve"]')
    page.wait_for_selector('tr[data-workorder="wo-bearing"][data-state="approved"]', timeout=20_000)
    page.wait_for_selector('#wo-detail .wo-detail[data-workorder="wo-bearing"][data-state="approved"]')
    assert "approved by Eva Berg" in page.inner_text("#wo-detail .wo-msg.ok")
    wait_badge(page, "1")
    got = call("GET", f"{server}/api/workorders/wo-bearing")[1]
    assert (got["state"], got["approved_by"], got["version"]) == ("approved", "Eva Berg", 2)
    assert got["notes"][-1]["text"] == "parts are on the shelf"
    assert page.get_attribute(f'{gantt} g.g-item[data-id="wo-bearing"]', "data-state") == "approved"
    assert page.eval_on_selector_all("#wo-detail .wo-history li", "rs => rs.map(r => r.dataset.to)") == \
        ["approved", "proposed"]
    # the screenshot: the approved order's detail beside the list, the Gantt with a tooltip, the badge at 1
    page.hover(f'{gantt} g.g-item[data-id="wo-bearing"] rect.bar')
    page.wait_for_selector(f"{gantt} .gantt-tip:not([hidden])")
    shots(page, "workorders.png", docs=True)

    # an approval elsewhere (the API) arrives over the change stream; the badge goes out
    post(server, "/api/workorders/wo-lube/approve")
    page.wait_for_selector('tr[data-workorder="wo-lube"][data-state="approved"]', timeout=20_000)
    wait_badge(page, "0")

    # a stale page: the schedule form is open while someone else schedules the order; If-Match refuses the move
    page.click('tr[data-workorder="wo-inspect"] td:first-child')
    inspect = '#wo-detail .wo-detail[data-workorder="wo-inspect"]'
    page.wait_for_selector(f'{inspect}[data-version="2"]')
    page.click(f'{inspect} button[data-action="schedule"]')
    page.wait_for_selector(f'{inspect} button[data-action="confirm-schedule"]')
    post(server, "/api/workorders/wo-inspect/schedule", {"crew": ["tech-carl"]})
    wait_text(page, "#wo-detail .wo-stale", "now scheduled (version 3)")
    page.click(f'{inspect} button[data-action="confirm-schedule"]')
    wait_text(page, "#wo-detail .wo-msg.error", "changed since this page read it")
    assert "version 3" in page.inner_text("#wo-detail .wo-msg.error")
    # the browser logs the refused request itself; that one console line is expected, nothing else is
    refused = [e for e in watched.errors if "status of 412" in e]
    assert len(refused) == 1, watched.errors
    watched.errors.remove(refused[0])
    page.wait_for_selector(f'{inspect}[data-state="scheduled"][data-version="3"]')
    got = call("GET", f"{server}/api/workorders/wo-inspect")[1]
    assert (got["state"], got["crew"], got["version"]) == ("scheduled", ["tech-carl"], 3)  # the page changed nothing

    # start and complete it with the buttons: completing records the maintenance command it sent
    page.click(f'{inspect} button[data-action="start"]')
    page.wait_for_selector(f'{inspect}[data-state="in_progress"]', timeout=20_000)
    page.click(f'{inspect} button[data-action="done"]')
    page.wait_for_selector('tr[data-workorder="wo-inspect"]', state="detached", timeout=40_000)  # no longer open
    page.wait_for_selector(f'{inspect}[data-state="done"]')
    wait_text(page, inspect, "maintenanceDone")
    got = call("GET", f"{server}/api/workorders/wo-inspect")[1]
    assert got["state"] == "done" and got["completion"]["command"]["name"] == "maintenanceDone"
    assert [h["by"] for h in got["history"][-2:]] == ["Eva Berg", "Eva Berg"]

    # cancelling asks first
    page.click('tr[data-workorder="wo-lube"] td:first-child')
    lube = '#wo-detail .wo-detail[data-workorder="wo-lube"]'
    page.click(f'{lube} button[data-action="cancel"]')
    assert call("GET", f"{server}/api/workorders/wo-lube")[1]["state"] == "approved"
    page.click(f'{lube} button[data-action="confirm-cancel"]')
    page.wait_for_selector(f'{lube}[data-state="cancelled"]', timeout=20_000)
    assert page.locator('tr[data-workorder="wo-lube"]').count() == 0
    assert "nothing more to do" in page.inner_text(lube)


def test_twin_page_shows_the_maintenance_record(watched, server, orders, shots):
    page = watched.open(f"#/twin/{MACHINE}", "twin")
    panel = "#maintenance"
    wait_text(page, f'{panel} [data-maint="done"] .v', "1")
    assert "replace-bearing" in page.inner_text(f'{panel} [data-maint="last"]')
    assert page.locator(f'{panel} #maint-parts tr[data-part="6205-2RS"]').count() == 1
    assert "×2" in page.inner_text(f'{panel} #maint-parts tr[data-part="6205-2RS"]')
    # running hours: the machine's own operatingHours, reported after the last order ended
    record = call("GET", f"{server}/api/twins/{MACHINE}/maintenance")[1]
    assert record["operating_hours_source"] == "reported:operatingHours"
    hours = page.inner_text(f'{panel} [data-maint="hours"]')
    shown = re.search(r"([\d,.]+) h", hours)
    assert shown and "operatingHours" in hours, hours
    expected = record["operating_hours_since_maintenance"]
    assert float(shown.group(1).replace(",", "")) == pytest.approx(expected, abs=0.05)
    # the bearings' part numbers and install dates, through the machine's relationships
    installed = page.inner_text(f"{panel} #maint-installed")
    assert SICK in installed and "6205-2RS" in installed
    # open orders link to the work orders page
    link = page.locator(f'{panel} #maint-open tr[data-workorder="wo-bearing"] a')
    assert link.get_attribute("href") == "#/workorders/wo-bearing"
    assert [o["id"] for o in record["open_workorders"]] == \
        page.eval_on_selector_all(f"{panel} #maint-open tr", "rs => rs.map(r => r.dataset.workorder)")

    # a new proposal for this machine appears without a reload
    now = datetime.now(UTC)
    post(server, "/api/workorders", {"id": "wo-belt", "task": "replace-belt", "asset": MACHINE,
                                     "planned_start": iso(now + timedelta(hours=30)),
                                     "planned_end": iso(now + timedelta(hours=31))}, expect=201)
    page.wait_for_selector(f'{panel} #maint-open tr[data-workorder="wo-belt"]', timeout=20_000)
    page.locator(panel).scroll_into_view_if_needed()
    page.evaluate("document.getElementById('maintenance').scrollIntoView({block: 'center'})")
    shots(page, "twin-maintenance.png", docs=True)

    # following the link opens the order on the work orders page
    link.click()
    page.wait_for_function("document.body.dataset.ready === 'workorders'")
    page.wait_for_selector('#wo-detail .wo-detail[data-workorder="wo-bearing"]', timeout=20_000)


GANTT_DEMO = """async () => {
  const { renderGantt } = await import("/ui/gantt.js");
  const host = document.createElement("div");
  host.id = "gantt-demo";
  host.style.width = "900px";
  document.body.prepend(host);
  const h = 3600000;
  const t0 = Date.UTC(2026, 2, 2, 6);
  window.ganttDemo = renderGantt(host, {
    rows: [{ id: "M1", label: "Machine 1", href: "#/twin/M1" }, "M2"],
    items: [
      { id: "j1", row: "M1", kind: "job", start: t0, end: t0 + 4 * h, label: "J1" },
      { id: "j2", row: "M1", kind: "job", start: t0 + 2 * h, end: t0 + 6 * h, label: "J2" },
      { id: "pm", row: "M1", kind: "maintenance", state: "scheduled", start: t0 + 8 * h, end: t0 + 10 * h,
        label: "PM" },
      { id: "band", row: "M1", kind: "failure-band", start: t0 + 12 * h, end: t0 + 20 * h, mid: t0 + 15 * h },
      { id: "old", row: "M1", kind: "job", variant: "before", start: t0 + 7 * h, end: t0 + 11 * h, label: "J3 before" },
      { id: "stop", row: "M2", kind: "downtime", start: new Date(t0 + 1 * h), end: new Date(t0 + 3 * h).toISOString() },
      { id: "j9", row: "M3", kind: "job", start: t0, end: t0 + h, label: "J9" },
      { id: "bad", row: "M2", kind: "job", start: "not a time", end: t0 },
    ],
    from: t0, to: t0 + 24 * h, now: t0 + 5 * h,
  });
  const box = (id) => { const r = host.querySelector(`g.g-item[data-id="${id}"] rect.bar`).getBoundingClientRect();
    return { x: r.x, y: r.y, w: r.width, h: r.height }; };
  const svg = host.querySelector("svg").getBoundingClientRect();
  const nowLine = host.querySelector("line.g-now");
  return {
    rows: host.querySelector(".gantt").dataset.rows, items: host.querySelector(".gantt").dataset.items,
    boxes: Object.fromEntries(["j1", "j2", "pm", "band", "old", "stop", "j9"].map((i) => [i, box(i)])),
    left: svg.x, now: +nowLine.getAttribute("x1") + svg.x,
    p50: +host.querySelector('g.g-item[data-id="band"] line.p50').getAttribute("x1") + svg.x,
    hatch: host.querySelector('g.g-item[data-id="stop"] rect.bar').getAttribute("fill"),
    labels: [...host.querySelectorAll(".g-row-label")].map((t) => t.firstChild.textContent),
    link: host.querySelector('a[data-row="M1"]')?.getAttribute("href"),
    legend: host.querySelector(".gantt-legend").textContent,
  };
}"""


def test_gantt_component_draws_every_kind_on_a_time_axis(watched, server):
    """The Gantt the production plan reuses: jobs packed into lanes, maintenance, a failure band with its p50,
    downtime, a plan before a change, rows only items name, and bad times left out."""
    page = watched.open("#/workorders", "workorders")
    got = page.evaluate(GANTT_DEMO)
    assert got["rows"] == "3" and got["items"] == "7"  # M3 added from its item; the item with a bad time left out
    assert got["labels"] == ["Machine 1", "M2", "M3"] and got["link"] == "#/twin/M1"
    b = got["boxes"]
    hour = b["pm"]["w"] / 2  # the maintenance block is 2 h long
    assert hour > 20
    assert b["j1"]["w"] == pytest.approx(4 * hour, abs=1) and b["band"]["w"] == pytest.approx(8 * hour, abs=1)
    assert b["j2"]["x"] - b["j1"]["x"] == pytest.approx(2 * hour, abs=1)
    assert b["pm"]["x"] - b["j1"]["x"] == pytest.approx(8 * hour, abs=1)
    assert got["now"] - b["j1"]["x"] == pytest.approx(5 * hour, abs=1)
    assert got["p50"] - b["band"]["x"] == pytest.approx(3 * hour, abs=1)
    assert b["j2"]["y"] > b["j1"]["y"]  # overlapping jobs: two lanes
    assert b["pm"]["y"] == b["j1"]["y"]  # after both: back in the first lane
    assert b["band"]["h"] > b["j1"]["h"] + b["j2"]["h"]  # the band spans the row's height
    assert b["old"]["y"] > b["j2"]["y"] and b["old"]["h"] < b["j1"]["h"]  # the plan before: a thin lane underneath
    assert b["stop"]["y"] > b["band"]["y"] + b["band"]["h"] - 1 and b["j9"]["y"] > b["stop"]["y"]  # rows in order
    assert got["hatch"].startswith("url(#") and got["hatch"].endswith("-hatch)")
    for text in ("job", "maintenance", "predicted failure (p10–p90)", "downtime", "before the change", "now"):
        assert text in got["legend"]
    page.hover('#gantt-demo g.g-item[data-id="band"] rect.bar')
    tip = page.inner_text("#gantt-demo .gantt-tip")
    assert "p10" in tip and "p90" in tip and "p50" in tip
    # update: a narrower range moves the bars, an empty chart says so
    page.evaluate("window.ganttDemo.update({ from: Date.UTC(2026, 2, 2, 6), to: Date.UTC(2026, 2, 2, 18) })")
    wider = page.locator('#gantt-demo g.g-item[data-id="pm"] rect.bar').bounding_box()["width"]
    assert wider == pytest.approx(2 * b["pm"]["w"], abs=1.5)
    page.evaluate("window.ganttDemo.update({ rows: [], items: [], empty: 'Nothing planned.' })")
    assert page.inner_text("#gantt-demo .gantt-empty") == "Nothing planned."
