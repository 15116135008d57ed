from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tvilling.core import events as ev
from tvilling.core.errors import Conflict
from tvilling.core.events import Event, apply, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def e(rev: int, kind: str, **payload) -> Event:
    return Event(twin="m1", revision=rev, time=T0 + timedelta(seconds=rev), actor="t", type=kind,
                 payload=payload)


def history() -> list[Event]:
    return [
        e(1, ev.TWIN_CREATED, model="dtmi:x:M;1", reported={"speed": 10}, attributes={"site": "A"}),
        e(2, ev.TWIN_PATCHED, reported={"speed": 12, "temp": 40}, desired={"speed": 15},
          metadata={"reported": {"speed": {"time": "t"}}}),
        e(3, ev.RELATIONSHIP_SET, id="r1", name="hasBearing", target="b1", properties={"location": "DE"}),
        e(4, ev.TWIN_PATCHED, reported={"temp": None}),
        e(5, ev.RELATIONSHIP_DELETED, id="r1"),
    ]


def test_fold_builds_state_from_events():
    state = fold(history())
    assert state is not None
    assert state.revision == 5
    assert state.reported == {"speed": 12}
    assert state.desired == {"speed": 15}
    assert state.delta == {"speed": 15}
    assert state.attributes == {"site": "A"}
    assert state.relationships == {}
    assert state.created == T0 + timedelta(seconds=1)
    assert state.updated == T0 + timedelta(seconds=5)


def test_fold_is_pure_and_prefix_gives_past_state():
    events = history()
    at3 = fold(events[:3])
    assert at3 is not None and at3.relationships["r1"].target == "b1"
    again = fold(events[:3])
    assert again == at3
    later = apply(at3, events[3])
    assert at3.reported == {"speed": 12, "temp": 40}  # the earlier value was not modified
    assert later is not None and later.reported == {"speed": 12}


def test_revisions_must_follow_without_gap():
    state = fold(history()[:2])
    with pytest.raises(Conflict):
        apply(state, e(4, ev.TWIN_PATCHED, reported={}))
    with pytest.raises(Conflict):
        apply(state, e(2, ev.TWIN_PATCHED, reported={}))


def test_delete_and_recreate_continue_the_revision_count():
    events = [*history(), e(6, ev.TWIN_DELETED)]
    assert fold(events) is None
    again = fold([*events, e(7, ev.TWIN_CREATED, model="dtmi:x:M;1")])
    assert again is not None and again.revision == 7 and again.reported == {}
    with pytest.raises(Conflict):
        apply(fold(history()), e(6, ev.TWIN_CREATED, model="dtmi:x:M;1"))
    with pytest.raises(Conflict):
        apply(None, e(1, ev.TWIN_PATCHED, reported={"a": 1}))


def test_replace_keeps_creation_time_and_relationships():
    state = fold(history()[:3])
    replaced = apply(state, e(4, ev.TWIN_REPLACED, model="dtmi:x:M;1", reported={"speed": 1}))
    assert replaced is not None
    assert replaced.reported == {"speed": 1} and replaced.desired == {}
    assert replaced.created == state.created
    assert "r1" in replaced.relationships
