"""The work order value and its lifecycle: legal moves, illegal ones named, proposals checked field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from tvilling.core.errors import Conflict, Invalid
from tvilling.planning.workorders import (
    APPROVED,
    CANCELLED,
    DONE,
    FINAL,
    IN_PROGRESS,
    PROPOSED,
    SCHEDULED,
    STATES,
    WorkOrder,
    amend,
    change_item,
    propose,
    transition,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PATH = [APPROVED, SCHEDULED, IN_PROGRESS, DONE]


def proposal(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"task": "replace-bearing", "asset": "M1", "planned_start": "2026-03-03T06:00:00Z",
                            "planned_end": "2026-03-03T08:30:00+00:00", "crew": ["tech-1", "tech-2"],
                            "parts": {"6205-2RS": 2}, "expected_cost": 1200.5, "failure_probability": 0.12,
                            "rationale": {"options": [{"window": "sat", "cost": 1200.5}], "chosen": "sat"},
                            "notes": "bring the puller", "firm": False}
    body.update(over)
    return body


def test_a_proposal_becomes_a_proposed_order_with_its_fields() -> None:
    order = propose(proposal(), now=T0, by="planner", model="dtmi:x:Machine;1")
    assert order.state == PROPOSED and order.version == 1 and order.created_by == "planner"
    assert order.planned_start == datetime(2026, 3, 3, 6, tzinfo=UTC)
    assert order.planned_end - order.planned_start == timedelta(hours=2, minutes=30)
    assert order.crew == ("tech-1", "tech-2") and order.parts == {"6205-2RS": 2}
    assert order.expected_cost == 1200.5 and order.failure_probability == 0.12
    assert order.rationale["chosen"] == "sat" and order.notes[0].text == "bring the puller"
    assert order.id.startswith("wo-") and order.model == "dtmi:x:Machine;1"
    assert [(h.previous, h.to, h.by) for h in order.history] == [(None, PROPOSED, "planner")]
    doc = order.to_json()
    assert doc["planned_start"] == "2026-03-03T06:00:00Z" and doc["planned_end"] == "2026-03-03T08:30:00Z"
    assert msgspec.json.decode(msgspec.json.encode(order), type=WorkOrder) == order  # what the stores keep


def test_the_whole_lifecycle_records_every_move_and_bumps_the_version() -> None:
    order = propose(proposal(), now=T0, by="planner")
    for i, state in enumerate(PATH, start=1):
        order = transition(order, state, now=T0 + timedelta(hours=i), by=f"user{i}", note=f"step {i}")
        assert order.state == state and order.version == 1 + i
    assert order.approved_by == "user1"
    assert order.actual_start == T0 + timedelta(hours=3) and order.actual_end == T0 + timedelta(hours=4)
    assert [(h.previous, h.to) for h in order.history] == [
        (None, PROPOSED), (PROPOSED, APPROVED), (APPROVED, SCHEDULED), (SCHEDULED, IN_PROGRESS), (IN_PROGRESS, DONE)]
    assert [n.text for n in order.notes] == ["bring the puller", "step 1", "step 2", "step 3", "step 4"]
    assert order.final and order.updated == T0 + timedelta(hours=4)


#: The moves a maintenance planner expects, written out independently of the module's table.
LEGAL = {(PROPOSED, APPROVED), (APPROVED, SCHEDULED), (SCHEDULED, IN_PROGRESS), (IN_PROGRESS, DONE),
         (PROPOSED, CANCELLED), (APPROVED, CANCELLED), (SCHEDULED, CANCELLED), (IN_PROGRESS, CANCELLED)}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("to", STATES)
def test_every_move_is_checked(state: str, to: str) -> None:
    order = msgspec.structs.replace(propose(proposal(), now=T0, by="p"), state=state,
                                    actual_start=T0 if state in (IN_PROGRESS, DONE) else None)
    if (state, to) in LEGAL:
        moved = transition(order, to, now=T0 + timedelta(hours=1), by="x")
        assert moved.state == to and moved.version == order.version + 1
        assert (moved.history[-1].previous, moved.history[-1].to) == (state, to)
        return
    with pytest.raises(Conflict) as caught:
        transition(order, to, now=T0, by="x")
    assert f"is {state}; it cannot become {to}" in caught.value.message
    assert caught.value.fields["state"] == state and caught.value.fields["to"] == to
    assert caught.value.fields["rule"] == "transition"
    assert (state in FINAL) == ("none, it is final" in caught.value.message)


def test_cancel_is_allowed_from_every_state_that_is_not_final() -> None:
    order = propose(proposal(), now=T0, by="p")
    for steps in range(4):
        current = order
        for state in PATH[:steps]:
            current = transition(current, state, now=T0, by="p")
        cancelled = transition(current, CANCELLED, now=T0, by="boss", note="no longer needed")
        assert cancelled.state == CANCELLED and cancelled.history[-1].previous == current.state
    done = order
    for state in PATH:
        done = transition(done, state, now=T0, by="p")
    with pytest.raises(Conflict, match="is done; it cannot become cancelled"):
        transition(done, CANCELLED, now=T0, by="p")


def test_unknown_state_and_an_end_before_the_start_are_invalid() -> None:
    order = propose(proposal(), now=T0, by="p")
    with pytest.raises(Invalid) as caught:
        transition(order, "finished", now=T0, by="p")
    assert caught.value.fields["field"] == "state"
    started = transition(transition(transition(order, APPROVED, now=T0, by="p"), SCHEDULED, now=T0, by="p"),
                         IN_PROGRESS, now=T0, by="p")
    with pytest.raises(Invalid) as caught:
        transition(started, DONE, now=T0, by="p", changes={"actual_end": T0 - timedelta(minutes=1)})
    assert caught.value.fields["field"] == "actual_end"


@pytest.mark.parametrize(("over", "field", "words"), [
    ({"planned_end": "2026-03-03T05:00:00Z"}, "planned_end", "must be after planned_start"),
    ({"planned_end": "2026-03-03T06:00:00Z"}, "planned_end", "must be after planned_start"),
    ({"planned_start": "tomorrow"}, "planned_start", "ISO 8601"),
    ({"planned_start": "2026-03-03T06:00:00"}, "planned_start", "time zone"),
    ({"planned_start": None}, "planned_start", "needs"),
    ({"task": ""}, "task", "non-empty"),
    ({"task": None}, "task", "needs"),
    ({"asset": 7}, "asset", "non-empty"),
    ({"crew": "tech-1"}, "crew", "list"),
    ({"crew": ["a", "a"]}, "crew", "twice"),
    ({"parts": {"6205": 0}}, "parts.6205", "whole quantity"),
    ({"parts": {"6205": 1.5}}, "parts.6205", "whole quantity"),
    ({"parts": ["6205"]}, "parts", "object"),
    ({"failure_probability": 1.2}, "failure_probability", "from 0 to 1"),
    ({"failure_probability": True}, "failure_probability", "number"),
    ({"expected_cost": -1}, "expected_cost", "≥ 0"),
    ({"expected_cost": float("nan")}, "expected_cost", "number"),
    ({"rationale": [1, 2]}, "rationale", "object"),
    ({"firm": "yes"}, "firm", "true or false"),
    ({"id": "bad id!"}, "id", "letters"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_a_bad_proposal_names_the_field(over: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        propose(proposal(**over), now=T0, by="p")
    assert caught.value.fields["field"] == field
    assert words in caught.value.message


def test_a_proposal_must_be_an_object() -> None:
    with pytest.raises(Invalid, match="JSON object"):
        propose([proposal()], now=T0, by="p")


def test_amend_changes_fields_without_a_move_and_the_feed_item_names_the_change() -> None:
    order = propose(proposal(id="wo-7"), now=T0, by="p")
    amended = amend(order, now=T0 + timedelta(seconds=5), by="svc", completion={"command": {"sent": False}})
    assert amended.state == PROPOSED and amended.version == 2 and amended.history == order.history
    item = change_item(amended, PROPOSED, "svc")
    assert item == {"kind": "workorder", "id": "wo-7", "twin": "M1", "model": None, "task": "replace-bearing",
                    "state": PROPOSED, "previous": PROPOSED, "version": 2, "firm": False,
                    "planned_start": "2026-03-03T06:00:00Z", "planned_end": "2026-03-03T08:30:00Z", "by": "svc",
                    "time": "2026-03-02T08:00:05Z"}
