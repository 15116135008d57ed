"""The production & maintenance planning page (issue 13, item 4) in Debian Chromium against a real server.

The server is the app over a live platform, in this process: the demo's line of three machines stepped until the
drive-end bearing of the first is predicted to fail within (plant) hours, with its analytics, alarm rules, the
machines' behaviour model for the what-if, and the maintenance settings of the planning tests. Through the HTTP
API: four production orders and the line's first plan, then a decision on the bearing's remaining-life alarm —
the what-if weighs the options, a work order is proposed in the best window and production is re-planned around
it. A real dispatcher (its commands through the command service to a loopback transport, the machines' job
reports ingested as readings) carries the plan out, so operations are done, running, dispatched or late.

The page draws the line's machines with the plan's jobs (their progress), the work order, the plan's downtime
and the bearing's predicted failure band, the plan before the re-plan as ghosts; the KPIs of both plans as the
comparison API gives them; the decision's trigger, options and rationale. Approving with the button approves and
schedules the work order. Screenshot: docs/screenshots/production.png.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from planning.test_maintenance_service import NOW, SPEED, STEPS, T0_MS, maintenance_config
from serve_util import free_port
from tvilling.api.app import create_app
from tvilling.api.production import register_dispatcher
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.decisions.alarms import build_driver
from tvilling.decisions.commands import CommandService
from tvilling.decisions.loopback import LoopbackTransport
from tvilling.demo import demo_alarm_rules, demo_analytics, demo_simulations, seed_twins
from tvilling.planning.decision import DecisionService
from tvilling.planning.production_dispatch import ProductionDispatcher
from tvilling.planning.workorders_service import WorkOrderService
from tvilling.plant import Injection
from tvilling.plant.run import TickedPlant
from tvilling.runtime import Runtime
from tvilling.simulation.scenario_service import ScenarioService
from tvilling.simulation.spec import parse_simulations

pytestmark = pytest.mark.slow

LINE = "line-1"
M1, M2, M3 = "line-1-m01", "line-1-m02", "line-1-m03"
BEARING = f"{M1}-de"
APPROVER = "Ada Planner"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def at(minutes: float) -> str:
    return iso(NOW + timedelta(minutes=minutes))


def degraded_line(data: Path) -> Platform:
    """The demo line of three machines, stepped until machine 1's drive-end bearing is predicted to fail soon."""
    plant = TickedPlant(machines=3, seed=1, speed=SPEED, scenario=[
        Injection(machine=1, fault="bearing_defect", at=70 * SPEED, severity=1.0, growth=0.08, bearing="de")])
    config = maintenance_config(decision={"rules": ["bearing-rul"], "samples": 24, "auto": False})
    platform = build_platform(Settings(data_dir=data, analytics=demo_analytics(SPEED, 60),
                                       alarm_rules=demo_alarm_rules(), maintenance=config))
    seed_twins(platform, plant)
    for step in range(STEPS):
        frame = plant.step(1.0, now_ms=T0_MS + step * 1000)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    build_driver(platform).catch_up()
    return platform


class Live:
    """The app over ``platform`` served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.app = create_app(runtime=Runtime(platform))
        # the decisions' what-if runs the machine's behaviour model bound as in the demo (bound here rather than in
        # the settings: with [[simulations]] set, production planning's machine_parameters fails, see the report)
        workorders = WorkOrderService(platform.backend.workorders, platform.twins)
        scenarios = ScenarioService(platform.backend, parse_simulations(demo_simulations(SPEED)),
                                    registry=platform.analytics_registry)
        self.app.state.workorders = workorders
        self.app.state.decisions = DecisionService(platform, workorders, scenarios=scenarios)
        self.base = f"http://127.0.0.1:{free_port()}"
        port = int(self.base.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Live:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def http(base: str, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"content-type": "application/json", "accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, got = r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        status, got = e.code, json.loads(e.read() or b"null")
    assert status == expect, f"{method} {path}: {status} {got}"
    return got


def tick(dispatcher: ProductionDispatcher) -> None:
    """One dispatcher tick on an event loop of its own thread (Playwright's sync API holds this thread's)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(dispatcher.tick(), 30))
        except BaseException as exc:  # reported in the test's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if failed:
        raise failed[0]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    platform = degraded_line(tmp_path_factory.mktemp("production-ui") / "data")
    try:
        with Live(platform) as live:
            yield live
    finally:
        platform.close()


@pytest.fixture(scope="module")
def server(live: Live) -> str:
    """This module's server (the conftest's `tvilling serve` is not started)."""
    return live.base


@pytest.fixture(scope="module")
def plant(live: Live) -> dict[str, Any]:
    """The line is this module's own (see :func:`degraded_line`), not the conftest's seeded plant."""
    return {"machines": [M1, M2, M3]}


@pytest.fixture(scope="module")
def scene(live: Live) -> dict[str, Any]:
    """Orders, the first plan, the decision (work order proposed, production re-planned), a dispatcher at work."""
    base = live.base
    orders = [
        {"id": "PO-shaft", "product": "shaft", "quantity": 16, "routing": [[M1], [M2]], "due": at(30), "priority": 3},
        {"id": "PO-gear", "product": "gear", "quantity": 12, "routing": [[M1], [M3]], "due": at(28)},
        {"id": "PO-hub", "product": "hub", "quantity": 10, "routing": [[M2], [M3]], "due": at(25)},
        {"id": "PO-pin", "product": "pin", "quantity": 8, "routing": [[M3], [M1]], "due": at(35)},
    ]
    for o in orders:
        http(base, "POST", "/api/production/orders", {"line": LINE, "release": at(0), **o}, expect=201)
    first = http(base, "POST", "/api/production/plans", {"line": LINE, "at": iso(NOW), "time_limit": 5},
                 expect=201)["plan"]
    alarm = next(a for a in live.platform.alarm_store.list(state="active")
                 if a.rule == "bearing-rul" and a.twin == BEARING)
    decision = http(base, "POST", "/api/decisions", {"now": iso(NOW), "alarm": {
        "id": alarm.id, "rule": alarm.rule, "twin": alarm.twin, "origin": BEARING, "severity": alarm.severity,
        "raised": iso(NOW), "message": alarm.message}})
    assert decision["status"] == "proposed" and decision["work_order"], decision
    assert decision["production"] and decision["production"]["replanned"], decision["production"]
    current = http(base, "GET", f"/api/production/plans/current?line={LINE}")
    assert current["previous"] == first["id"] and current["reason"] == "maintenance inserted"
    comparison = http(base, "GET", f"/api/production/compare?before={first['id']}&after={current['id']}")

    # the dispatcher carries the plan out: the first jobs are sent, one is reported done and one under way
    clock = [NOW]
    commands = CommandService(live.platform.twins, live.platform.command_store, LoopbackTransport(), retries=0)
    dispatcher = ProductionDispatcher(live.platform.twins, commands, live.platform, LINE, clock=lambda: clock[0])
    tick(dispatcher)
    sent = [o for o in dispatcher.status()["operations"] if o["status"] == "dispatched"]
    assert len(sent) >= 2, dispatcher.status()
    done, running = sent[0], sent[1]
    clock[0] = max(datetime.fromisoformat(done["planned_end"].replace("Z", "+00:00")),
                   datetime.fromisoformat(running["planned_end"].replace("Z", "+00:00")))
    stamp = int(clock[0].timestamp() * 1_000_000)
    rows = [(done["machine"], "lastJob", stamp, f"{done['order']}/{done['op']}"),
            (done["machine"], "job", stamp, ""), (done["machine"], "jobsCompleted", stamp, 1),
            (running["machine"], "job", stamp, f"{running['order']}/{running['op']}"),
            (running["machine"], "jobProgress", stamp, 0.4), (running["machine"], "partsDone", stamp, 4)]
    result = live.platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    assert not result.rejected, result
    tick(dispatcher)
    status = dispatcher.status()
    register_dispatcher(live.app, dispatcher)
    return {"first": first, "current": current, "comparison": comparison, "decision": decision,
            "status": status, "done": done, "running": running}


def number(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-").replace("±", "").replace("+", "").split()[0])


def weighed(option: dict[str, Any]) -> float | None:
    if option["kind"] in ("window", "preventive") and option.get("p_fail_before") is not None:
        return float(option["p_fail_before"])
    for key in ("p_fail_horizon_planned", "p_fail_horizon"):
        if option.get(key) is not None:
            return float(option[key])
    return None


def percent(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p * 100:.{1 if 0 < p < 0.1 else 0}f} %"


def test_the_page_draws_the_plan_compares_kpis_and_approves_the_decision(watched, live, scene, shots):
    current, first, decision, status = scene["current"], scene["first"], scene["decision"], scene["status"]
    page = watched.open(f"#/production/{LINE}", "production")
    gantt = "#pp-gantt"
    page.wait_for_selector(f'{gantt} g.g-item[data-kind="failure-band"]', timeout=20_000)

    # the Gantt: the line's machines in station order, a bar per planned operation on its machine
    assert page.get_attribute(f"{gantt} .gantt", "data-rows") == "3"
    labels = page.eval_on_selector_all(f"{gantt} a[data-row]", "as => as.map(a => a.dataset.row)")
    assert labels == [M1, M2, M3]
    jobs = page.eval_on_selector_all(f"{gantt} g.kind-job:not(.variant-before)",
                                     "gs => gs.map(g => [g.dataset.id, g.dataset.row, g.dataset.state || ''])")
    planned = {(o["order"], o["op"]): o["machine"] for o in current["operations"]}
    drawn = {(i.split("|")[3], int(i.split("|")[4])): row for i, row, _ in jobs}
    assert drawn == planned
    # later operations lie further right on their row
    xs = {key: page.locator(f'{gantt} g.kind-job:not(.variant-before)[data-id$="|{key[0]}|{key[1]}"] rect.bar')
          .bounding_box()["x"] for key in planned}
    for a, b in ((("PO-shaft", 0), ("PO-shaft", 1)), (("PO-gear", 0), ("PO-gear", 1))):
        assert xs[a] < xs[b]
    # colour by order: the two steps of an order alike, two orders apart
    bar = f'{gantt} g.kind-job:not(.variant-before)[data-id$="|{{}}|{{}}"] rect.bar'
    fill = {key: page.eval_on_selector(bar.format(*key), "r => getComputedStyle(r).fill") for key in planned}
    assert fill[("PO-shaft", 0)] == fill[("PO-shaft", 1)] and fill[("PO-shaft", 0)] != fill[("PO-gear", 0)]

    # progress from the dispatcher: done, running (late: 40 % made at its planned end), dispatched, pending
    states = {(i.split("|")[3], int(i.split("|")[4])): (state, "|late|" in i) for i, _, state in jobs}
    by_key = {(o["order"], o["op"]): o for o in status["operations"]}
    assert {key: state for key, (state, _) in states.items()} == {key: o["status"] for key, o in by_key.items()}
    done, running = scene["done"], scene["running"]
    assert states[(done["order"], done["op"])] == ("done", False)
    assert states[(running["order"], running["op"])] == ("running", True)
    assert page.inner_text('#pp-dispatch [data-count="done"]') == "1 done"
    assert "late" in page.inner_text("#pp-dispatch")
    page.hover(f'{gantt} g.kind-job[data-id$="|{running["order"]}|{running["op"]}"] rect.bar')
    page.wait_for_selector(f"{gantt} .gantt-tip:not([hidden])")
    tip = page.inner_text(f"{gantt} .gantt-tip")
    assert "running" in tip and "40 %" in tip and "lateness" in tip

    # maintenance: the proposed work order and the plan's downtime around it on machine 1; the failure band there
    wo = decision["work_order"]
    assert page.get_attribute(f'{gantt} g.kind-maintenance[data-id="{wo}"]', "data-row") == M1
    assert page.get_attribute(f'{gantt} g.kind-maintenance[data-id="{wo}"]', "data-state") == "proposed"
    assert page.eval_on_selector_all(f"{gantt} g.kind-downtime", "gs => gs.map(g => g.dataset.row)") == [M1]
    assert page.eval_on_selector_all(f'{gantt} g[data-kind="failure-band"]', "gs => gs.map(g => g.dataset.row)") == [M1]
    assert page.locator(f"{gantt} line.g-now").count() == 1

    # the plan before the re-plan, as ghosts; the toggle takes them away
    ghosts = f"{gantt} g.variant-before"
    assert page.locator(ghosts).count() == len(first["operations"])
    page.uncheck('input[name="before"]')
    page.wait_for_function(f"document.querySelectorAll({ghosts!r}).length === 0")
    page.check('input[name="before"]')
    page.wait_for_function(f"document.querySelectorAll({ghosts!r}).length === {len(first['operations'])}")
    assert current["id"] in page.inner_text("#pp-plan-info") and first["id"] in page.inner_text("#pp-plan-info")

    # KPIs before and after, as the comparison gives them; a worse one red, a better one green
    kpis = scene["comparison"]["kpis"]
    for name in ("makespan_h", "total_tardiness_h", "throughput_per_h", "lost_production", "downtime_h"):
        row = f'#pp-kpis tr[data-kpi="{name}"]'
        for col in ("before", "after"):
            assert number(page.inner_text(f'{row} td[data-col="{col}"]')) == pytest.approx(kpis[name][col], abs=0.01)
        delta = number(page.inner_text(f'{row} td[data-col="delta"]'))
        assert delta == pytest.approx(kpis[name]["delta"], abs=0.01)  # signed: "−23" is −23
    assert kpis["throughput_per_h"]["delta"] < 0 and kpis["makespan_h"]["delta"] > 0
    assert page.get_attribute('#pp-kpis tr[data-kpi="throughput_per_h"]', "data-trend") == "bad"
    assert page.get_attribute('#pp-kpis tr[data-kpi="makespan_h"]', "data-trend") == "bad"
    assert page.get_attribute('#pp-kpis tr[data-kpi="total_tardiness_h"]', "data-trend") == "same"
    assert page.inner_text('[data-fact="moved"]') == str(len(scene["comparison"]["moved"]))

    # the decision: its trigger, the options weighed with the chosen one marked, the rationale
    panel = "#pp-decision"
    assert page.get_attribute(f"{panel} .pp-dec", "data-status") == "proposed"
    trigger = page.inner_text(f"{panel} .pp-trigger")
    assert "bearing-rul" in trigger and BEARING in trigger and "critical" in trigger.lower()
    options = page.eval_on_selector_all(f"{panel} tr[data-option]",
                                        "rs => rs.map(r => [r.dataset.option, r.dataset.chosen])")
    assert [o[0] for o in options] == [o["name"] for o in decision["options"]]
    assert [o[0] for o in options if o[1] == "true"] == [decision["chosen"]["name"]]
    chosen_row = f'{panel} tr[data-chosen="true"]'
    assert number(page.inner_text(f'{chosen_row} td[data-col="cost"]')) == decision["chosen"]["expected_cost"]
    rtf = f'{panel} tr[data-kind="run_to_failure"]'
    assert page.inner_text(f'{rtf} td[data-col="pfail"]') == "100 %"  # as planned over the horizon
    # each option's failure probability is the one its cost weighs: before the work for work, else the horizon's
    shown = page.eval_on_selector_all(f'{panel} tr[data-option] td[data-col="pfail"]',
                                      "ts => ts.map(t => t.textContent)")
    assert shown == [percent(weighed(o)) for o in decision["options"]]
    assert page.inner_text("#pp-why") == decision["chosen"]["why"]
    assert page.get_attribute(f'{panel} a[data-action="change"]', "href") == f"#/workorders/{wo}"
    page.set_viewport_size({"width": 1280, "height": 1000})  # the decision's options in the picture too
    page.wait_for_timeout(300)
    shots(page, "production.png", docs=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # approve: the name is asked for, then the work order is approved and scheduled
    page.fill(f'{panel} input[name="actor"]', "")
    page.click(f'{panel} button[data-action="approve"]')
    assert page.get_attribute(f'{panel} input[name="actor"]', "class") == "invalid"
    page.fill(f'{panel} input[name="actor"]', APPROVER)
    page.click(f'{panel} button[data-action="approve"]')
    page.wait_for_selector(f'{panel} .pp-dec[data-status="approved"]', timeout=20_000)
    order = http(live.base, "GET", f"/api/workorders/{wo}")
    assert order["state"] == "scheduled" and order["approved_by"] == APPROVER and order["firm"] is True
    assert http(live.base, "GET", f"/api/decisions/{decision['id']}")["status"] == "approved"
    page.wait_for_selector(f'{gantt} g.kind-maintenance[data-id="{wo}"][data-state="scheduled"]', timeout=20_000)
    assert page.locator(f'{panel} button[data-action="approve"]').is_disabled()
    assert page.inner_text(f"{panel} .wo-msg.ok") == f"Approved by {APPROVER}: work order {wo} is scheduled."
    # approving again (another page, same decision) is refused: the server says why
    again = http(live.base, "POST", f"/api/decisions/{decision['id']}/approve", {}, expect=409)
    assert "nothing to approve" in again["detail"]


def test_change_opens_the_work_order_to_reschedule(watched, scene):
    page = watched.open("#/production", "production")  # no line named: the first with orders
    assert page.eval_on_selector('select[name="line"]', "s => s.value") == LINE
    page.wait_for_selector('#pp-decision a[data-action="change"]', timeout=20_000)
    page.click('#pp-decision a[data-action="change"]')
    page.wait_for_function("document.body.dataset.ready === 'workorders'", timeout=20_000)
    wo = scene["decision"]["work_order"]
    page.wait_for_selector(f'#wo-detail .wo-detail[data-workorder="{wo}"]', timeout=20_000)


def test_without_a_dispatcher_the_page_says_the_times_are_planned_only(watched, live, scene):
    from tvilling.api.production import dispatchers

    registry = dispatchers(live.app)
    kept = registry.pop(LINE)
    try:
        page = watched.open(f"#/production/{LINE}", "production")
        page.wait_for_selector('#pp-dispatch [data-dispatching="false"]', timeout=20_000)
        jobs = page.eval_on_selector_all("#pp-gantt g.kind-job:not(.variant-before)",
                                         "gs => gs.map(g => [g.getAttribute('class'), g.dataset.id])")
        assert len(jobs) == len(scene["current"]["operations"])
        assert not any("state-" in c or "|late|" in i for c, i in jobs), jobs  # no progress, nothing late
    finally:
        registry[LINE] = kept


def test_a_new_plan_arrives_without_reloading(watched, live, scene):
    page = watched.open(f"#/production/{LINE}", "production")
    page.wait_for_selector(f'#pp-gantt[data-plan="{scene["current"]["id"]}"]', timeout=20_000)
    answer = http(live.base, "POST", "/api/production/plans/replan", {
        "line": LINE, "reason": "machine slowed", "event": {"machine": M2, "speed_rpm": 900}, "at": iso(NOW),
        "time_limit": 5}, expect=201)
    new, comparison = answer["plan"], answer["comparison"]
    page.wait_for_selector(f'#pp-gantt[data-plan="{new["id"]}"]', timeout=20_000)
    info = page.inner_text("#pp-plan-info")
    assert new["id"] in info and "machine slowed" in info and scene["current"]["id"] in info
    # the ghosts and the KPIs now compare against the plan it replaced
    assert page.locator("#pp-gantt g.variant-before").count() == len(scene["current"]["operations"])
    assert page.inner_text('[data-fact="moved"]') == str(len(comparison["moved"]))
    after = number(page.inner_text('#pp-kpis tr[data-kpi="makespan_h"] td[data-col="after"]'))
    assert after == pytest.approx(comparison["kpis"]["makespan_h"]["after"], abs=0.01)
