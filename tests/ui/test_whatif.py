"""The what-if page and the twin page's physics section, in Debian Chromium against a real server.

The server is ``tvilling serve`` with the demo plant's machine model bound to the machine twins
(``[[simulations]]``, as shadow mode runs it), seeded with half an hour of the plant's readings. The
browser sets up the page's three default options on the failing machine (keep running, slow down,
maintain), first with a horizon beyond the API's limit (its error must appear next to the horizon
field), then a valid one; it waits for the run to finish and checks the KPI table and the band charts
carry all three options, reopens the scenario from the list, and saves ``docs/screenshots/whatif.png``.
Every request stays on this machine (``watched`` fails the test otherwise)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from serve_util import call
from tvilling.plant import Plant

from .conftest import serve
from .plant_seed import MACHINES, seed

pytestmark = pytest.mark.slow

MACHINE_MODEL = "dtmi:tvilling:example:Machine;4"
SICK_MACHINE = "line-1-m02"  # its drive-end bearing has the defect (plant_seed)
LIVE_ROWS = 60
SIMULATION = f"""
[[simulations]]
name = "machine"
model = "{MACHINE_MODEL}"
kind = "python"
class = "tvilling.simulation.machine:MachineModel"
time_scale = 1.0
step = 20.0
learn_rows = 10

[simulations.inputs]
speedSetpoint = "speedSetpoint"
"spindle:load" = "hasSpindle/load"
running = {{ path = "state", map = {{ running = 1, idle = 0, stopped = 0, fault = 0 }} }}

[simulations.outputs]
speed = "speed"
throughput = "throughput"
"motor.current" = "motor.current"
"motor.temperature" = "motor.temperature"
"de:vibration" = "hasBearing[location=de]/vibration"
"de:vibrationBandBpfo" = "hasBearing[location=de]/vibrationBandBpfo"
"de:temperature" = "hasBearing[location=de]/temperature"
"nde:vibration" = "hasBearing[location=nde]/vibration"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Iterator[str]:
    """`tvilling serve` with the machine model bound to the machine twins (overrides conftest's server)."""
    yield from serve(tmp_path_factory, broker, SIMULATION, "serve-whatif")


@pytest.fixture(scope="module")
def plant(server: str) -> dict[str, Any]:
    """The seeded plant (overrides conftest's), then a minute of live rows, one ingest call per plant step with every
    twin's readings and the machines' state, so shadow mode compares and learns its scales (as with live data)."""
    info = seed(server)
    live = Plant(machines=MACHINES, seed=11, scenario=None)
    live.inject(2, "bearing_defect", at=0.0, bearing="de", severity=1.0)
    now_ms = int(time.time() * 1000)
    for i in range(LIVE_ROWS):
        ts = now_ms + (i + 1) * 1000  # after the seeded history, within the pipeline's allowance for the future
        frame = live.step(20.0, now_ms=ts)
        batch = [{"twin": twin, "ts": [ts], "values": {k: [v] for k, v in values.items()}}
                 for twin, values in frame.records()]
        status, res = call("POST", f"{server}/api/ingest", batch)
        assert status == 200 and not res["rejected"], res
    return info


@pytest.fixture(scope="module")
def posted(server: str, plant: dict[str, Any]) -> str:
    """A scenario posted through the API itself (not the page): the page must list it."""
    status, body = call("POST", f"{server}/api/scenarios", {
        "twin": SICK_MACHINE, "horizon": "2h", "step": "1m", "samples": 5, "seed": 1,
        "options": [{"name": "as is", "interventions": []}]})
    assert status == 202, body
    return str(body["id"])


def test_the_vocabulary_names_the_machine_commands(server: str, plant: dict[str, Any]) -> None:
    status, vocab = call("GET", f"{server}/api/scenarios/vocabulary?twin={SICK_MACHINE}")
    assert status == 200, vocab
    assert vocab["commands"] and vocab["maintenance"] and vocab["outputs"], vocab


def test_three_options_run_through_the_page(watched: Any, server: str, posted: str, shots: Any) -> None:
    page = watched.open("#/whatif", "whatif")
    page.select_option("#wi-twin", SICK_MACHINE)
    page.wait_for_function("document.querySelectorAll('#wi-options .wi-option').length === 3", timeout=10_000)
    # the baseline has no intervention; the other two have one each, from the vocabulary
    counts = page.eval_on_selector_all("#wi-options .wi-option", "cs => cs.map(c => c.querySelectorAll('.iv').length)")
    assert counts == [0, 1, 1], counts
    kinds = page.eval_on_selector_all("#wi-options .iv", "rs => rs.map(r => r.dataset.kind)")
    assert kinds == ["command", "maintenance"], kinds

    # the list shows the scenario posted through the API
    page.wait_for_selector(f'#wi-list tr[data-id="{posted}"]', timeout=10_000)

    # bad input: the API's error appears next to the field it names, and nothing runs
    page.fill("#wi-horizon", "999d")
    page.click("#wi-run")
    err = page.wait_for_selector('.field-err[data-for="horizon"]', timeout=10_000)
    assert "horizon" in err.inner_text().lower()
    beside = "e => e.previousElementSibling.contains(document.getElementById('wi-horizon'))"
    assert page.eval_on_selector(".field-err", beside)
    assert page.locator("#wi-results").is_hidden()
    # the browser logs the refused request itself; that one console line is expected, nothing else is
    refused = [e for e in watched.errors if "status of 422" in e]
    assert len(refused) == 1, watched.errors
    watched.errors.remove(refused[0])

    # a valid run: progress, then the result
    page.fill("#wi-horizon", "7d")
    page.fill("#wi-step", "10m")
    page.fill("#wi-samples", "40")
    page.fill("#wi-seed", "7")
    page.click("#wi-run")
    assert page.locator(".field-err").count() == 0
    page.wait_for_selector("#wi-progress:not([hidden])", timeout=10_000)
    page.wait_for_selector('#wi-results[data-status="done"]', timeout=120_000)
    page.wait_for_selector('#wi-charts[data-ready="1"]', timeout=10_000)
    assert page.eval_on_selector("#wi-progress", "e => e.dataset.status") == "done"
    # the change stream carried this scenario's progress too (polling is only the fallback)
    page.wait_for_function("Number(document.getElementById('wi-progress').dataset.streamed || 0) >= 1", timeout=10_000)

    # KPI table: every KPI row for each of the three options, the baseline named
    heads = page.eval_on_selector_all("#wi-kpis thead th[data-option]", "ths => ths.map(t => t.dataset.option)")
    assert len(heads) == 3, heads
    assert heads[0] == "keep running"
    assert "baseline" in page.inner_text("#wi-kpis thead th[data-option]").lower()
    rows = page.eval_on_selector_all(
        "#wi-kpis tbody tr", "trs => trs.map(t => [t.dataset.kpi, t.querySelectorAll('td[data-option]').length])")
    assert [r[0] for r in rows] == ["ttf_p10_h", "ttf_p50_h", "ttf_p90_h", "p_fail_horizon", "p_fail_shift",
                                    "production", "energy_kwh", "lost_production"]
    assert all(n == 3 for _, n in rows), rows
    cells = page.eval_on_selector_all('#wi-kpis tr[data-kpi="production"] td[data-option]',
                                      "tds => tds.map(t => t.textContent)")
    assert all(c not in ("", "—") for c in cells), cells

    # charts: one per chosen output, each with three options' bands (p10, p90, p50 = 3 traces per option)
    charts = page.eval_on_selector_all("#wi-charts .chart[data-output]",
                                       "ds => ds.map(d => [d.dataset.output, d.dataset.options, (d.data || []).length,"
                                       " d.querySelectorAll('.scatterlayer .trace').length])")
    assert charts, "no chart drawn"
    for output, options, traces, drawn in charts:
        assert options == "3" and traces == 9 and drawn == 9, (output, options, traces, drawn)
    dashed = page.eval_on_selector("#wi-charts .chart[data-output]",
                                   "d => d.data.filter(t => t.line && t.line.dash === 'dash').map(t => t.name)")
    assert dashed == ["keep running (baseline)"], dashed
    shots(page, "whatif.png", docs=True)

    # reopen the finished scenario from the list: same result, no new run
    scenario = page.eval_on_selector("#wi-results", "e => e.dataset.id")
    status, listed = call("GET", f"{server}/api/scenarios")
    assert status == 200 and scenario in [i["id"] for i in listed["items"]], listed
    watched.open("#/", "fleet")
    page = watched.open(f"#/whatif/{scenario}", "whatif")
    page.wait_for_selector('#wi-results[data-status="done"]', timeout=20_000)
    assert page.eval_on_selector_all("#wi-kpis thead th[data-option]", "ths => ths.length") == 3
    assert page.eval_on_selector_all("#wi-options .wi-option", "cs => cs.length") == 3
    page.wait_for_load_state("networkidle")
    assert any("/api/scenarios" in u for u in watched.requests)
    assert watched.foreign() == [], f"the what-if page reached outside the machine: {watched.foreign()}"


def test_the_twin_page_shows_the_physics_model(watched: Any, server: str, plant: dict[str, Any], shots: Any) -> None:
    status, twin = call("GET", f"{server}/api/twins/{SICK_MACHINE}")
    assert status == 200, twin
    sim = (twin["reported"].get("simulation") or {}).get("machine")
    assert sim and isinstance(sim.get("residual_norm"), float), f"shadow mode wrote no residuals: {twin['reported']}"
    page = watched.open(f"#/twin/{SICK_MACHINE}", "twin")
    section = page.wait_for_selector('#physics:not([hidden]) .physics[data-simulation="machine"]', timeout=10_000)
    assert section.query_selector('[data-output="residual_norm"]').inner_text() == f"{sim['residual_norm']:.2f}"
    assert section.query_selector('[data-output="worst"]').inner_text() == sim["worst"]
    scores = section.query_selector_all("[data-score]")
    assert len(scores) >= 3, [s.inner_text() for s in scores]
    shots(page, "twin-physics.png")
    # a bearing twin has no behaviour model: no section
    page = watched.open(f"#/twin/{SICK_MACHINE}-de", "twin")
    assert page.locator("#physics").is_hidden()
