"""Commands with care, in a real browser against a real `tvilling serve` and a simulated plant answering on MQTT.

The machines' model (the demo plant's Machine;3) marks stop, start and maintenanceDone as
disruptive: the page asks in a dialog before sending one, and Cancel sends nothing. The plant
(the same simulator as the demo, here as MQTT devices on the module's Mosquitto) answers every
command: a rejection's reason shows in the page beside the command until the next command, and
an accepted command's effect shows in the twin (state, speed) with the affected properties
highlighted. Screenshots: commands-confirm.png, commands-rejected.png, commands-effect.png.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from serve_util import call
from tvilling.models.builtin import builtin_documents
from tvilling.plant import Plant
from tvilling.plant.mqtt import PlantRunner

from .conftest import VIEWPORT, Watched

MACHINE_MODEL = "dtmi:tvilling:example:Machine;3"  # plant-v4: commands marked with Tvilling's extension
TWIN = "line-1-m02"


@pytest.fixture(scope="module")
def device(broker: str) -> Iterator[Plant]:
    """The simulated line as MQTT devices: telemetry every 0.5 s, and an answer to every command."""
    plant = Plant(machines=3, seed=11, scenario=None)
    done = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        async with PlantRunner(plant, broker, interval=0.5):
            while not done.is_set():
                await asyncio.sleep(0.1)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the fixture, never lost in a thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="plant-devices", daemon=True)
    thread.start()
    try:
        yield plant
    finally:
        done.set()
        thread.join(15)
    assert not failed, f"the simulated plant failed: {failed!r}"


@pytest.fixture(scope="module")
def machines(server: str, device: Plant) -> list[str]:
    """The plant's machines as twins of the model that marks its disruptive commands; running, live."""
    status, body = call("POST", f"{server}/api/models", builtin_documents("plant-v4"))
    assert status == 201, body
    for twin in device.machine_ids:
        status, body = call("PUT", f"{server}/api/twins/{twin}", {"model": MACHINE_MODEL})
        assert status == 201, body
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and reported(server).get("state") != "running":
        time.sleep(0.25)
    assert reported(server).get("state") == "running", "the plant's telemetry does not reach the twin"
    return list(device.machine_ids)


@pytest.fixture
def page(browser: Any, server: str, machines: list[str]) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT, bypass_csp=True)  # waits evaluate strings in the page
    w = Watched(ctx.new_page(), server)
    try:
        p = w.open(f"#/twin/{TWIN}", "twin")
        p.wait_for_selector('#commands button[data-command="stop"]:not([disabled])', timeout=10_000)
        yield p
        assert w.foreign() == [], f"the dashboard reached outside the machine: {w.foreign()}"
        assert w.errors == [], f"errors in the page: {w.errors}"
    finally:
        ctx.close()


def reported(server: str) -> dict[str, Any]:
    status, body = call("GET", f"{server}/api/twins/{TWIN}")
    return dict(body.get("reported") or {}) if status == 200 else {}


def commands(server: str, name: str) -> list[dict[str, Any]]:
    status, body = call("GET", f"{server}/api/commands?twin={TWIN}")
    assert status == 200, body
    return [c for c in body["items"] if c["name"] == name]


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_api_describes_which_commands_are_disruptive(server: str, machines: list[str]) -> None:
    status, body = call("GET", f"{server}/api/twins/{TWIN}/commands")
    assert status == 200, body
    assert body["available"] is True
    marked = {c["name"]: c["disruptive"] for c in body["items"]}
    assert marked == {"setSpeed": False, "stop": True, "start": True, "maintenanceDone": True}


def test_a_disruptive_command_is_sent_only_after_confirmation(page: Any, server: str, shots: Any) -> None:
    stop = page.locator('#commands button[data-command="stop"]')
    assert "danger" in (stop.get_attribute("class") or "")
    assert page.locator('#commands [data-row="stop"] .cmd-care').is_visible()
    dialog = page.locator("dialog.cmd-confirm")

    # Cancel: the dialog closes, nothing is sent
    stop.click()
    dialog.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog.cmd-confirm').open") is True
    assert dialog.locator("h3").inner_text() == f"Stop {TWIN}?"
    now = dialog.locator("p.now").inner_text()
    assert now.startswith(f"{TWIN} is running at ") and now.endswith(" rpm."), now
    assert "production on it stops" in dialog.inner_text()
    assert page.evaluate("document.activeElement.dataset.action") == "cancel"  # the safe choice has the focus
    page.wait_for_timeout(200)
    confirm_shot = shots(page, "commands-confirm.png")
    dialog.locator('[data-action="cancel"]').click()
    dialog.wait_for(state="hidden")
    assert "cancelled: nothing was sent" in page.locator("#commands .cmd-err").inner_text()
    # Escape cancels too
    stop.click()
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.wait_for_timeout(500)
    assert commands(server, "stop") == []
    assert reported(server)["state"] == "running"

    # Confirm: sent, answered by the machine, and the twin shows the effect
    stop.click()
    dialog.wait_for(state="visible")
    dialog.locator('[data-action="confirm"]').click()
    dialog.wait_for(state="hidden")
    page.wait_for_selector('#commands [data-outcome="stop"][data-status="succeeded"]', timeout=20_000)
    assert [c["status"] for c in commands(server, "stop")] == ["succeeded"]
    assert page.locator('#commands [data-outcome="stop"]').inner_text().startswith("Succeeded:")
    state_cell = "#properties tr[data-prop=\"state\"] td[data-col=\"reported\"]"
    page.wait_for_function(f"document.querySelector('{state_cell}')?.textContent === 'stopped'", timeout=20_000)
    row = page.locator("#commands .cmd-history .cmd-item").first
    assert row.get_attribute("data-status") == "succeeded"
    assert row.locator(".steps").inner_text() == "sent → succeeded"
    wait_text_in(row.locator(".cmd-effect"), "state running → stopped")
    # the properties it affects are highlighted on the page, and say which command changed them
    watch = page.locator("style#cmd-watch")
    assert (watch.get_attribute("data-paths") or "").split() == ["state", "speed"]
    marker = page.evaluate("getComputedStyle(document.querySelector('#properties tr[data-prop=\"state\"] td'),"
                           " '::after').content")
    assert marker == '" ← stop"'
    unmarked = page.evaluate("getComputedStyle(document.querySelector('#properties tr[data-prop=\"throughput\"] td'),"
                             " '::after').content")
    assert unmarked in ("none", "normal")
    wait_for(lambda: reported(server).get("speed", 1e9) < 1000, "the stopped machine to slow down")
    page.wait_for_timeout(1200)
    shots(page, "commands-effect.png")

    # start it again (disruptive too), confirmed, for the next test
    page.click('#commands button[data-command="start"]')
    dialog.wait_for(state="visible")
    assert dialog.locator("h3").inner_text() == f"Start {TWIN}?"
    dialog.locator('[data-action="confirm"]').click()
    page.wait_for_selector('#commands [data-outcome="start"][data-status="succeeded"]', timeout=20_000)
    wait_for(lambda: reported(server).get("state") == "running", "the machine to run again")
    assert confirm_shot.exists()


def test_a_rejection_shows_the_devices_reason_beside_the_command_until_the_next(page: Any, server: str,
                                                                                shots: Any) -> None:
    page.fill('#commands input[name="rpm"]', "5000")
    page.click('#commands button[data-command="setSpeed"]')  # not disruptive: no dialog
    outcome = page.locator('#commands [data-outcome="setSpeed"]')
    page.wait_for_selector('#commands [data-outcome="setSpeed"][data-status="failed"]', timeout=20_000)
    assert not page.locator("dialog.cmd-confirm").is_visible()
    text = outcome.inner_text()
    assert text.startswith("Rejected by the device:") and "rpm ≤ 3000" in text and "5000" in text, text
    assert outcome.is_visible() and outcome.bounding_box()["height"] >= 16  # in the page, not in a tooltip
    assert commands(server, "setSpeed")[-1]["status"] == "failed"
    failed_row = page.locator('#commands .cmd-history .cmd-item[data-status="failed"]').first
    assert "rpm ≤ 3000" in failed_row.inner_text()
    page.wait_for_timeout(3000)  # still there after a few live updates of the twin
    assert "rpm ≤ 3000" in outcome.inner_text()
    shots(page, "commands-rejected.png")

    # the next command replaces it: the speed falls towards the new setpoint, highlighted
    speed_before = reported(server)["speed"]
    page.fill('#commands input[name="rpm"]', "900")
    page.click('#commands button[data-command="setSpeed"]')
    page.wait_for_selector('#commands [data-outcome="setSpeed"][data-status="succeeded"]', timeout=20_000)
    assert "rpm ≤ 3000" not in outcome.inner_text()
    assert "speedSetpoint 900" in outcome.inner_text()
    assert (page.locator("style#cmd-watch").get_attribute("data-paths") or "").split() == ["speedSetpoint", "speed"]
    wait_for(lambda: reported(server)["speed"] < speed_before - 50, "the speed to fall towards 900 rpm")
    effect = page.locator("#commands .cmd-history .cmd-item").first.locator(".cmd-effect")
    wait_text_in(effect, "speed ")
    assert "→" in effect.inner_text()
    history = page.locator("#commands .cmd-history .cmd-item")
    assert [history.nth(i).get_attribute("data-status") for i in range(2)] == ["succeeded", "failed"]


def wait_text_in(locator: Any, expected: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        if locator.count():
            seen = str(locator.first.inner_text())
            if expected in seen:
                return
        time.sleep(0.2)
    raise AssertionError(f"expected {expected!r}, the page shows {seen!r}")


def test_a_command_answered_while_the_pages_stream_is_down_still_shows_its_answer(browser: Any, server: str,
                                                                                   machines: list[str]) -> None:
    """The device can answer before the page's live stream is connected (it starts at "now"): the page
    reads its own command again until it is final, so it never shows "sent" for a command long done."""
    ctx = browser.new_context(viewport=VIEWPORT, bypass_csp=True)  # waits evaluate strings in the page
    try:
        p = ctx.new_page()
        p.goto(f"{server}/#/twin/{TWIN}")
        p.wait_for_function("document.body.dataset.ready === 'twin'", timeout=20_000)
        p.route("**/api/stream**", lambda route: route.abort())  # from now on no stream can (re)connect
        p.evaluate("window.dispatchEvent(new HashChangeEvent('hashchange'))")  # the page again, without a stream
        p.wait_for_function("document.body.dataset.ready === 'twin'", timeout=20_000)
        p.wait_for_selector('#commands button[data-command="setSpeed"]:not([disabled])', timeout=10_000)
        p.fill('#commands input[name="rpm"]', "1200")
        p.click('#commands button[data-command="setSpeed"]')
        wait_text_in(p.locator('#commands [data-outcome="setSpeed"]'), "speedSetpoint 1,200")  # this answer
        assert p.locator('#commands [data-outcome="setSpeed"]').get_attribute("data-status") == "succeeded"
        assert commands(server, "setSpeed")[-1]["status"] == "succeeded"
    finally:
        ctx.close()
