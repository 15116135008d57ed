"""Short versions of every chaos case (``python bench/chaos.py`` runs the full sizes).

Each test kills or starves a real process (the server, the broker, the disk) mid-ingest and
counts, from history read back after a clean stop, what was lost and what was stored twice.
"""

from __future__ import annotations

import signal

import pytest

import chaos
from pgtest import require_postgres

MESSAGES, RATE = 6_000, 3_000


def test_server_kill_9_embedded_loses_nothing_and_stores_nothing_twice():
    r = chaos.case_server_kill(MESSAGES, RATE)
    assert (r["sent"], r["lost"], r["duplicated"]) == (MESSAGES, 0, 0), r
    assert r["broker_sessions"] <= 3, r  # ingest, commands and the publisher: the restart resumed, no orphan


@pytest.mark.postgres
def test_server_kill_9_postgres_loses_nothing_and_stores_nothing_twice():
    require_postgres()
    r = chaos.case_server_kill(MESSAGES, RATE, postgres=True)
    assert (r["sent"], r["lost"], r["duplicated"]) == (MESSAGES, 0, 0), r


@pytest.mark.postgres
def test_two_workers_share_the_stream_and_a_killed_one_resumes_its_own_session():
    require_postgres()
    r = chaos.case_server_kill(MESSAGES, RATE, shared=True)
    assert (r["sent"], r["lost"], r["duplicated"]) == (MESSAGES, 0, 0), r
    assert r["identities"] == 2 and r["broker_sessions"] <= 5, r  # 2 ingest + 2 commands + the publisher


def test_broker_sigterm_loses_nothing():
    r = chaos.case_broker(MESSAGES, RATE, signal.SIGTERM)
    assert (r["sent"], r["lost"], r["duplicated"]) == (MESSAGES, 0, 0), r
    assert r["recovery_s"] < 5, r  # reconnected and subscribed within a second of the broker's return


def test_broker_sigkill_saving_every_change_loses_at_most_what_the_configuration_says():
    """deploy/mosquitto/tvilling.conf: with autosave_on_changes true / interval 1 a SIGKILL loses at most one
    message per publishing connection (one publisher here), while the subscriber keeps reading."""
    r = chaos.case_broker(MESSAGES, RATE, signal.SIGKILL, every_change=True)
    assert r["sent"] == MESSAGES and r["lost"] <= 1 and r["duplicated"] == 0, r


def test_broker_sigkill_with_the_shipped_setting_recovers_at_once():
    """The shipped 60 s interval: what the broker had neither saved nor handed to the server is lost, and so is
    what publishers send before the server has subscribed again to a broker that forgot its session (the
    configuration says so). The server is back within a second of the broker and stores nothing twice."""
    r = chaos.case_broker(MESSAGES, RATE, signal.SIGKILL)
    assert r["sent"] == MESSAGES and r["duplicated"] == 0 and r["recovery_s"] < 5, r


def test_poison_corpus_is_dead_lettered_once_each_and_valid_readings_all_stored():
    r = chaos.case_poison(2_000, RATE, extra=200)
    assert (r["lost"], r["duplicated"]) == (0, 0), r
    assert r["reconnects"] == 0, r
    assert r["internal"] == 0, r  # every rejection names its rule
    # every distinct hostile payload is dead-lettered (one letter per rule it breaks); a repeated one is counted
    # as another delivery of the same letter (or, an exact repeat of a reading, as a duplicate), not stored again
    assert r["distinct"] <= r["dead_letters"] <= 3 * r["distinct"], r
    assert r["distinct"] <= r["dead_letter_deliveries"] <= 3 * r["hostile"], r


def test_overload_keeps_memory_bounded():
    r = chaos.case_overload(20)
    assert r["alive"], r
    assert r["peak_rss_mb"] < 600, r


def test_full_disk_fails_writes_clearly_loses_nothing_and_resumes():
    why = chaos.can_mount()
    if why:
        pytest.skip(why)
    r = chaos.case_disk_full(MESSAGES, RATE)
    assert (r["sent"], r["lost"], r["duplicated"]) == (MESSAGES, 0, 0), r
    assert r["full_disk_errors_logged"] > 0, r
    assert r["integrity"] == "tvilling.db: ok; history.duckdb: ok", r  # every relational store in the one file
