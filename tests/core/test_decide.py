"""decide(state, command) -> events: pure, and what it decides folds with apply into the state asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tvilling.core import events as ev
from tvilling.core.commands import (
    CreateTwin,
    DeleteRelationship,
    DeleteTwin,
    MigrateTwin,
    PatchTwin,
    PutTwin,
    RecordReported,
    SetDesired,
    SetRelationship,
)
from tvilling.core.decide import decide, decide_all
from tvilling.core.errors import Conflict, NotFound, PreconditionFailed
from tvilling.core.events import apply, fold
from tvilling.core.principal import Principal

T0 = datetime(2026, 12, 7, tzinfo=UTC)
M = "dtmi:test:Pump;1"


def made(**values):
    [e] = decide(None, CreateTwin(twin="p1", model=M, reported=values, stamp={"time": "t", "quality": "good"}),
                 actor="a", time=T0)
    twin = apply(None, e)
    assert twin is not None
    return twin


def test_create_records_values_with_their_stamp_and_refuses_an_existing_twin():
    twin = made(speed=3.0)
    assert twin.revision == 1 and twin.reported == {"speed": 3.0}
    assert twin.metadata["reported"]["speed"] == {"time": "t", "quality": "good"}
    with pytest.raises(Conflict) as err:
        decide(twin, CreateTwin(twin="p1", model=M), actor="a", time=T0)
    assert err.value.fields["rule"] == "exists"


def test_a_twin_created_again_after_deletion_continues_its_revision_count():
    [e] = decide(None, PutTwin(twin="p1", model=M), actor="a", time=T0, last_revision=7)
    assert (e.type, e.revision) == (ev.TWIN_CREATED, 8)


def test_put_replaces_on_the_same_model_only():
    twin = made(speed=3.0)
    [e] = decide(twin, PutTwin(twin="p1", model=M, reported={"flow": 1}), actor="a", time=T0)
    assert e.type == ev.TWIN_REPLACED and apply(twin, e).reported == {"flow": 1}
    with pytest.raises(Conflict) as err:
        decide(twin, PutTwin(twin="p1", model="dtmi:test:Other;1"), actor="a", time=T0)
    assert err.value.fields["rule"] == "model_change"


def test_if_match_is_checked_against_the_state():
    twin = made()
    with pytest.raises(PreconditionFailed) as err:
        decide(twin, PatchTwin(twin="p1", reported={"x": 1}, if_match=5), actor="a", time=T0)
    assert err.value.fields == {"twin": "p1", "expected": 5, "revision": 1, "rule": "if_match"}
    assert decide(twin, PatchTwin(twin="p1", reported={"x": 1}, if_match=1), actor="a", time=T0)


def test_patch_and_set_desired_stamp_what_they_write_and_an_empty_patch_changes_nothing():
    twin = made(speed=3.0)
    [e] = decide(twin, PatchTwin(twin="p1", reported={"speed": None, "flow": 2}, stamp={"q": 1}), actor="a",
                 time=T0)
    assert e.payload["metadata"] == {"reported": {"speed": None, "flow": {"q": 1}}}
    after = apply(twin, e)
    assert after is not None and after.reported == {"flow": 2}
    assert decide(twin, PatchTwin(twin="p1"), actor="a", time=T0) == []
    [d] = decide(twin, SetDesired(twin="p1", desired={"speed": 5}), actor="a", time=T0)
    desired = apply(twin, d)
    assert desired is not None and desired.delta == {"speed": 5}


def test_recorded_readings_for_a_deleted_twin_are_skipped_not_refused():
    assert decide(None, RecordReported(twin="gone", reported={"x": 1}), actor="ingest", time=T0) == []
    twin = made()
    [e] = decide(twin, RecordReported(twin="p1", reported={"x": 1}, metadata={"reported": {"x": {"time": "t"}}}),
                 actor="ingest", time=T0)
    assert e.actor == "ingest" and e.payload["reported"] == {"x": 1}


def test_commands_on_a_missing_twin_say_it_does_not_exist():
    for command in (PatchTwin(twin="nope"), DeleteTwin(twin="nope"), SetDesired(twin="nope", desired={}),
                    SetRelationship(twin="nope", id="r", name="n", target="t"), MigrateTwin(twin="nope", to=M)):
        with pytest.raises(NotFound):
            decide(None, command, actor="a", time=T0)


def test_relationships_and_deletion():
    twin = made()
    [e] = decide(twin, SetRelationship(twin="p1", id="r1", name="feeds", target="p2"), actor="a", time=T0)
    twin2 = apply(twin, e)
    assert twin2 is not None and twin2.relationships["r1"].target == "p2"
    with pytest.raises(NotFound):
        decide(twin2, DeleteRelationship(twin="p1", id="r9"), actor="a", time=T0)
    with pytest.raises(Conflict) as err:
        decide(twin2, DeleteTwin(twin="p1", incoming=("p0/r1",)), actor="a", time=T0)
    assert err.value.fields["relationships"] == ["p0/r1"]
    [d] = decide(twin2, DeleteTwin(twin="p1"), actor="a", time=T0)
    assert apply(twin2, d) is None


def test_migration_drops_what_the_new_model_does_not_declare():
    twin = made(speed=3.0, old=1)
    [e] = decide(twin, MigrateTwin(twin="p1", to="dtmi:test:Pump;2", dropped=("old",)), actor="a", time=T0)
    after = apply(twin, e)
    assert after is not None and after.model == "dtmi:test:Pump;2" and after.reported == {"speed": 3.0}


def test_a_batch_is_decided_in_order_and_folds_to_the_same_state():
    states: dict = {}
    last: dict = {}
    cmds = [CreateTwin(twin="a", model=M), CreateTwin(twin="b", model=M),
            SetRelationship(twin="a", id="r", name="feeds", target="b"),
            PatchTwin(twin="a", reported={"x": 1}), DeleteTwin(twin="b"), PutTwin(twin="b", model=M)]
    events = decide_all(states, cmds, actor="a", time=T0, last_revisions=last)
    assert [e.revision for e in events if e.twin == "b"] == [1, 2, 3]
    assert fold(e for e in events if e.twin == "a") == states["a"]
    assert last == {"a": 3, "b": 3}


def test_decide_is_pure():
    twin = made(speed=3.0)
    command = PatchTwin(twin="p1", reported={"speed": 4.0})
    first = decide(twin, command, actor="a", time=T0)
    assert decide(twin, command, actor="a", time=T0) == first
    assert twin.reported == {"speed": 3.0} and command.reported == {"speed": 4.0}


def test_principals():
    assert Principal.of("bob") == Principal(id="bob")
    assert Principal.system("ingest:mqtt").kind == "system"
    with pytest.raises(ValueError):
        Principal(id="x", kind="robot")
    with pytest.raises(ValueError):
        Principal(id="")
