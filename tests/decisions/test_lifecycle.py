"""The pure command lifecycle: legal moves, illegal ones, and the change items they yield."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from tvilling.core.errors import Conflict, Invalid
from tvilling.decisions import commands, lifecycle, reconcile, store, transport
from tvilling.decisions.lifecycle import (
    ACKNOWLEDGED,
    FAILED,
    PENDING,
    SENT,
    STATUSES,
    SUCCEEDED,
    TIMED_OUT,
    new_command,
    transition,
)

from .conftest import T0


def _at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_the_full_path_pending_sent_acknowledged_succeeded() -> None:
    rec = new_command("M1", "setSpeed", 900.0, now=T0, timeout_s=30, actor="ops")
    assert (rec.status, rec.attempts, rec.sent_at, rec.deadline) == (PENDING, 0, None, _at(30))
    assert len(rec.id) == 36 and rec.id.count("-") == 4  # a uuid
    rec, item = transition(rec, SENT, now=_at(1))
    assert (rec.status, rec.attempts, rec.sent_at) == (SENT, 1, _at(1))
    assert item == {**rec.to_json(), "kind": "command", "previous": PENDING, "time": "2024-05-01T08:00:01Z"}
    rec, item = transition(rec, ACKNOWLEDGED, now=_at(2))
    assert (item["status"], item["previous"]) == (ACKNOWLEDGED, SENT)
    rec, item = transition(rec, SUCCEEDED, now=_at(3), response={"accepted": True})
    assert rec.final and rec.response == {"accepted": True} and rec.updated == _at(3)
    assert item["response"] == {"accepted": True} and item["actor"] == "ops"


@pytest.mark.parametrize(("path", "final"), [
    ([SENT, SUCCEEDED], SUCCEEDED),
    ([SENT, FAILED], FAILED),
    ([SENT, TIMED_OUT], TIMED_OUT),
    ([SENT, ACKNOWLEDGED, FAILED], FAILED),
    ([SENT, ACKNOWLEDGED, TIMED_OUT], TIMED_OUT),
    ([FAILED], FAILED),  # the transport refused it
    ([TIMED_OUT], TIMED_OUT),  # never sent before the deadline
    ([PENDING, PENDING, SENT], SENT),  # two failed sends, then it went
])
def test_legal_paths(path: list[str], final: str) -> None:
    rec = new_command("M1", "stop", None, now=T0, timeout_s=5)
    for i, status in enumerate(path):
        rec, item = transition(rec, status, now=_at(i + 1))
        assert item["status"] == status
    assert rec.status == final


@pytest.mark.parametrize(("path", "illegal"), [
    ([], ACKNOWLEDGED), ([], SUCCEEDED), ([SENT], PENDING), ([SENT], SENT),
    ([SENT, ACKNOWLEDGED], SENT), ([SENT, ACKNOWLEDGED], ACKNOWLEDGED), ([SENT, SUCCEEDED], FAILED),
    ([FAILED], SENT), ([TIMED_OUT], SUCCEEDED), ([SENT, TIMED_OUT], ACKNOWLEDGED),
])
def test_illegal_transitions_are_conflicts(path: list[str], illegal: str) -> None:
    rec = new_command("M1", "stop", None, now=T0, timeout_s=5)
    for status in path:
        rec, _ = transition(rec, status, now=T0)
    with pytest.raises(Conflict) as err:
        transition(rec, illegal, now=T0)
    assert err.value.fields["rule"] == "transition"
    assert (err.value.fields["status"], err.value.fields["to"]) == (rec.status, illegal)


def test_attempts_count_every_send_tried() -> None:
    rec = new_command("M1", "stop", None, now=T0, timeout_s=5)
    rec, _ = transition(rec, PENDING, now=_at(1), error="broker down")
    assert (rec.attempts, rec.error) == (1, "broker down")
    rec, _ = transition(rec, FAILED, now=_at(2), error="broker still down")
    assert (rec.attempts, rec.error) == (2, "broker still down")
    other = new_command("M1", "stop", None, now=T0, timeout_s=5)
    other, _ = transition(other, TIMED_OUT, now=_at(6))
    assert other.attempts == 0  # timing out sends nothing


def test_sent_clears_the_error_of_a_failed_attempt() -> None:
    rec = new_command("M1", "stop", None, now=T0, timeout_s=5)
    rec, _ = transition(rec, PENDING, now=_at(1), error="broker down")
    rec, _ = transition(rec, SENT, now=_at(2))
    assert rec.error is None and rec.attempts == 2


def test_unknown_status_and_bad_timeouts_are_invalid() -> None:
    rec = new_command("M1", "stop", None, now=T0, timeout_s=5)
    with pytest.raises(Invalid):
        transition(rec, "exploded", now=T0)
    for bad in (0, -1, True, "5", 10**9):
        with pytest.raises(Invalid) as err:
            new_command("M1", "stop", None, now=T0, timeout_s=bad)  # type: ignore[arg-type]
        assert err.value.fields["field"] == "timeout_s"
    assert set(STATUSES) == {PENDING, SENT, ACKNOWLEDGED, SUCCEEDED, FAILED, TIMED_OUT}


def test_change_items_are_plain_json() -> None:
    import json

    rec = new_command("M1", "setSpeed", 900.0, now=T0, timeout_s=5)
    rec, item = transition(rec, SENT, now=_at(1))
    assert json.loads(json.dumps(item)) == item


@pytest.mark.parametrize("module", [lifecycle, store, transport, commands, reconcile])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
