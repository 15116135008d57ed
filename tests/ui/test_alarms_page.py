"""The alarms page in a real browser against a real `tvilling serve`: one row per condition with the
ancestors it affects, a badge that counts conditions, acknowledge and clear by a named person with a
note, and shelving a machine during a planned stop."""

from __future__ import annotations

from typing import Any

import pytest

from serve_util import call

from .test_dashboard import ingest, wait_text

pytestmark = pytest.mark.slow


def badge(page: Any) -> str:
    return str(page.evaluate("(() => { const b = document.getElementById('nav-alarms');"
                             " return b.hidden ? '0' : b.textContent; })()"))


def test_grouped_rows_named_ack_and_clear_with_notes_and_shelving(watched, plant, server, shots):
    page = watched.open("#/alarms", "alarms")
    page.wait_for_selector('#actor form button[data-action="save-actor"]')  # asked once, before acting
    twin = "line-1-m03-de"
    ingest(server, twin, {"temperature": 91.5})
    row = f'tr[data-state="active"][data-twin="{twin}"]'
    page.wait_for_selector(row, timeout=15_000)
    raw = call("GET", f"{server}/api/alarms?twin={twin}&grouped=false")[1]["items"]
    alarm_id = page.get_attribute(row, "data-alarm")
    # one row for the condition, naming the machine and the line it affects; no rows for the copies
    wait_text(page, f"{row} .affected", "line-1-m03")
    assert "line-1" in page.inner_text(f"{row} .affected")
    assert page.locator('tr[data-alarm][data-twin="line-1-m03"]').count() == 0
    assert len(call("GET", f"{server}/api/alarms?state=active&grouped=false")[1]["items"]) > \
        len(call("GET", f"{server}/api/alarms?state=active")[1]["items"])
    page.wait_for_function("document.getElementById('nav-alarms').textContent"
                           " === String(document.querySelectorAll('tr[data-state=active]').length)", timeout=20_000)
    assert raw and all(a["twin"] == twin for a in raw)

    # acknowledge: the name is asked (once) with an optional note
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="ack"]')
    form = f'tr[data-alarm="{alarm_id}"] form.step-form'
    page.fill(f'{form} input[name="actor"]', "Eva Berg")
    page.fill(f'{form} input[name="note"]', "checking the grease")
    page.click(f'{form} button[data-action="confirm-ack"]')
    page.wait_for_selector(f'tr[data-alarm="{alarm_id}"][data-state="acknowledged"]', timeout=20_000)
    wait_text(page, f'tr[data-alarm="{alarm_id}"] .lifecycle', "Eva Berg")
    assert "checking the grease" in page.inner_text(f'tr[data-alarm="{alarm_id}"] .lifecycle')
    got = call("GET", f"{server}/api/alarms/{alarm_id}")[1]
    assert (got["state"], got["acknowledged_by"], got["ack_note"]) == ("acknowledged", "Eva Berg",
                                                                        "checking the grease")
    assert page.get_attribute("#actor b[data-actor]", "data-actor") == "Eva Berg"  # kept for next time
    shots(page, "dashboard-alarms-grouped.png")

    # clear: not asked again, the note is optional
    page.click(f'tr[data-alarm="{alarm_id}"] button[data-action="clear"]')
    assert page.locator(f'{form} input[name="actor"]').count() == 0
    assert "Eva Berg" in page.inner_text(form)
    page.fill(f'{form} input[name="note"]', "bearing replaced")
    page.click(f'{form} button[data-action="confirm-clear"]')
    page.wait_for_selector(f'tr[data-alarm="{alarm_id}"]', state="detached", timeout=20_000)
    got = call("GET", f"{server}/api/alarms/{alarm_id}")[1]
    assert (got["state"], got["cleared_by"], got["clear_note"], got["ack_note"]) == \
        ("cleared", "Eva Berg", "bearing replaced", "checking the grease")
    page.click('.seg button:text-is("cleared")')
    wait_text(page, f'tr[data-alarm="{alarm_id}"] .lifecycle', "bearing replaced")
    page.click('.seg button:text-is("open")')

    # shelve a machine during a planned stop: its bearing's condition leaves the open list and the badge
    hot = "line-1-m01-de"
    ingest(server, hot, {"temperature": 93.0})
    hot_row = f'tr[data-state="active"][data-twin="{hot}"]'
    page.wait_for_selector(hot_row, timeout=15_000)
    page.wait_for_function("document.getElementById('nav-alarms').textContent"
                           " === String(document.querySelectorAll('tr[data-state=active]').length)", timeout=20_000)
    before = int(badge(page))
    page.click('button[data-action="shelve"]')
    page.fill('.shelve-form input[name="twin"]', "line-1-m01")
    page.select_option('.shelve-form select[name="for"]', "1h")
    page.fill('.shelve-form input[name="reason"]', "planned stop")
    page.click('.shelve-form button[data-action="confirm-shelve"]')
    page.wait_for_selector('.panel.shelves tr[data-twin="line-1-m01"]', timeout=20_000)
    assert "planned stop" in page.inner_text('.panel.shelves tr[data-twin="line-1-m01"]')
    page.wait_for_selector(hot_row, state="detached", timeout=20_000)
    page.wait_for_function(f"(() => {{ const b = document.getElementById('nav-alarms');"
                           f" return (b.hidden ? 0 : +b.textContent) === {before - 1}; }})()", timeout=40_000)
    [shelf] = call("GET", f"{server}/api/alarms/shelves?active=true")[1]["items"]
    assert (shelf["twin"], shelf["actor"], shelf["reason"]) == ("line-1-m01", "Eva Berg", "planned stop")
    assert hot in shelf["twins"]
    page.click('.seg button:text-is("shelved")')
    page.wait_for_selector(f'tr[data-twin="{hot}"][data-shelved="true"]', timeout=20_000)
    assert "shelved until" in page.inner_text(f'tr[data-twin="{hot}"]')
    # a condition raised during the shelf is recorded, and shelved
    ingest(server, "line-1-m01-nde", {"temperature": 95.0})
    page.wait_for_selector('tr[data-twin="line-1-m01-nde"][data-shelved="true"]', timeout=20_000)
    shots(page, "dashboard-alarms-shelved.png")

    # ending the shelf brings them back
    page.click('.panel.shelves button[data-action="end-shelf"]')
    page.wait_for_selector('.panel.shelves', state="detached", timeout=20_000)
    page.click('.seg button:text-is("open")')
    page.wait_for_selector(hot_row, timeout=20_000)
    page.wait_for_selector('tr[data-state="active"][data-twin="line-1-m01-nde"]', timeout=20_000)
    assert call("GET", f"{server}/api/alarms/shelves?active=false")[1]["items"][0]["ended_by"] == "Eva Berg"
