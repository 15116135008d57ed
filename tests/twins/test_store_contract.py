"""The contract of ModelStore and TwinStore, run against every adapter (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.core.events import (
    RELATIONSHIP_DELETED,
    RELATIONSHIP_SET,
    TWIN_CREATED,
    TWIN_DELETED,
    TWIN_MIGRATED,
    TWIN_PATCHED,
    TWIN_REPLACED,
    Event,
    fold,
)
from tvilling.twins.ports import ModelRecord, ModelStore, TwinStore
from tvilling.twins.query import Predicate, Query, Step, parse_query

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PUMP1 = "dtmi:test:Pump;1"
PUMP2 = "dtmi:test:Pump;2"
VALVE = "dtmi:test:Valve;1"


def ev(twin: str, revision: int, type_: str, seconds: float = 0, **payload: Any) -> Event:
    return Event(
        twin=twin,
        revision=revision,
        time=T0 + timedelta(seconds=seconds),
        actor="test",
        type=type_,
        payload=payload,
    )


def created(twin: str, model: str = PUMP1, revision: int = 1, **sections: Any) -> Event:
    return ev(twin, revision, TWIN_CREATED, model=model, **sections)


def rel(twin: str, revision: int, rel_id: str, name: str, target: str, **props: Any) -> Event:
    return ev(twin, revision, RELATIONSHIP_SET, id=rel_id, name=name, target=target, properties=props)


def state_of(twins: TwinStore) -> tuple:
    """Everything observable about a store, to check that a failed commit changed nothing."""
    feed = twins.feed(limit=100_000)
    ids = sorted({e.twin for e in feed})
    return (
        feed,
        {i: twins.last_revision(i) for i in ids},
        twins.get_many(ids),
        {i: twins.incoming(i) for i in ids},
        twins.count(),
    )


def test_implements_the_ports(stores):
    models, twins = stores
    assert isinstance(models, ModelStore)
    assert isinstance(twins, TwinStore)


# -- twins: create, get, commit --


def test_create_get_and_not_found(stores):
    _, twins = stores
    assert twins.count() == 0
    with pytest.raises(NotFound):
        twins.get("p1")
    assert twins.last_revision("p1") == 0
    e = created("p1", attributes={"serial": "S-1"}, reported={"temp": 21.5, "on": True}, desired={"on": False})
    stored = twins.commit([e])
    assert [s.position for s in stored] == [stored[0].position] and stored[0].position >= 1
    t = twins.get("p1")
    assert t == fold([e])
    assert t.created == T0 and t.created.tzinfo is not None and t.created.microsecond == 123456
    assert t.reported == {"temp": 21.5, "on": True}
    assert twins.count() == 1
    assert twins.last_revision("p1") == 1


def test_get_many_leaves_out_missing(stores):
    _, twins = stores
    twins.commit([created("a"), created("b", model=VALVE), created("c")])
    got = twins.get_many(["c", "zz", "a"])
    assert set(got) == {"a", "c"}
    assert got["c"].id == "c" and got["a"] == twins.get("a")
    assert twins.get_many([]) == {}


def test_commit_empty_batch(stores):
    _, twins = stores
    assert twins.commit([]) == []
    assert twins.feed() == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: [created("p1")], id="second-create-same-revision"),
        pytest.param(lambda: [created("p1", revision=2)], id="create-over-live-twin"),
        pytest.param(lambda: [ev("p1", 1, TWIN_PATCHED, reported={"x": 9})], id="stale-revision"),
        pytest.param(lambda: [ev("p1", 4, TWIN_PATCHED, reported={"x": 9})], id="gap"),
        pytest.param(
            lambda: [
                ev("p1", 3, TWIN_PATCHED, reported={"x": 9}),
                ev("p1", 3, TWIN_PATCHED, reported={"x": 8}),
            ],
            id="same-revision-twice",
        ),
    ],
)
def test_commit_conflicts_store_nothing(stores, bad):
    _, twins = stores
    twins.commit([created("p1", reported={"x": 1}), ev("p1", 2, TWIN_PATCHED, reported={"x": 2})])
    before = state_of(twins)
    with pytest.raises(Conflict):
        twins.commit(bad())
    assert state_of(twins) == before
    assert twins.get("p1").reported == {"x": 2}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (lambda: ev("ghost", 1, TWIN_PATCHED, reported={"x": 1}), Conflict),
        (lambda: ev("a", 4, TWIN_PATCHED, reported={"x": 1}), Conflict),
        (lambda: ev("a", 3, "NoSuchEvent"), Invalid),
    ],
    ids=["missing-twin", "gap", "unknown-type"],
)
def test_batch_is_atomic(stores, bad, error):
    _, twins = stores
    twins.commit([created("a", reported={"x": 0})])
    before = state_of(twins)
    batch = [
        ev("a", 2, TWIN_PATCHED, reported={"x": 1}),
        created("b"),
        rel("b", 2, "r1", "feeds", "a"),
        bad(),
        created("c"),
    ]
    with pytest.raises(error):
        twins.commit(batch)
    assert state_of(twins) == before
    with pytest.raises(NotFound):
        twins.get("b")
    assert twins.last_revision("b") == 0
    assert twins.incoming("a") == []


def test_snapshot_is_the_fold_of_history(stores):
    _, twins = stores
    events = [
        created(
            "m1",
            reported={"speed": 10, "cfg": {"a": 1, "b": 2}},
            metadata={"reported": {"speed": {"q": "good"}}},
        ),
        created("m2", model=VALVE),
        ev(
            "m1",
            2,
            TWIN_PATCHED,
            1,
            reported={"speed": 12, "cfg": {"a": None, "c": [1, 2]}},
            desired={"speed": 15},
        ),
        rel("m1", 3, "r1", "feeds", "m2", weight=0.5),
        ev("m1", 4, TWIN_MIGRATED, 2, to=PUMP2, reported={"extra": True}),
        rel("m1", 5, "r2", "feeds", "m2"),
        ev("m1", 6, RELATIONSHIP_DELETED, 3, id="r1"),
        ev("m1", 7, TWIN_REPLACED, 4, model=PUMP2, reported={"speed": 1}, attributes={"serial": "X"}),
    ]
    twins.commit(events[:3])
    twins.commit(events[3:5])
    twins.commit(events[5:])
    history = twins.history("m1")
    assert [e.revision for e in history] == list(range(1, 8))
    expected = fold(events[i] for i in (0, 2, 3, 4, 5, 6, 7))
    assert twins.get("m1") == expected == fold(history)
    assert [e.payload for e in history] == [e.payload for e in events if e.twin == "m1"]
    assert [e.time for e in history] == [e.time for e in events if e.twin == "m1"]
    assert list(twins.get("m1").relationships) == ["r2"]


def test_history_windows(stores):
    _, twins = stores
    events = [created("h")] + [ev("h", r, TWIN_PATCHED, r * 10, reported={"n": r}) for r in range(2, 11)]
    twins.commit(events)
    assert [e.revision for e in twins.history("h")] == list(range(1, 11))
    assert [e.revision for e in twins.history("h", after=7)] == [8, 9, 10]
    assert [e.revision for e in twins.history("h", after=2, limit=3)] == [3, 4, 5]
    assert [e.revision for e in twins.history("h", until_revision=4)] == [1, 2, 3, 4]
    assert [e.revision for e in twins.history("h", after=1, until_revision=3)] == [2, 3]
    until = T0 + timedelta(seconds=50)
    assert [e.revision for e in twins.history("h", until_time=until)] == [1, 2, 3, 4, 5]
    assert [e.revision for e in twins.history("h", until_time=until - timedelta(microseconds=1))] == [
        1,
        2,
        3,
        4,
    ]
    assert twins.history("h", after=10) == []
    assert twins.history("nobody") == []
    assert all(e.position is not None for e in twins.history("h"))


def test_feed_positions_strictly_increase(stores):
    _, twins = stores
    first = twins.commit([created("a"), created("b"), ev("a", 2, TWIN_PATCHED, reported={"x": 1})])
    second = twins.commit([ev("b", 2, TWIN_DELETED), created("c")])
    positions = [e.position for e in first + second]
    assert all(isinstance(p, int) for p in positions)
    assert positions == sorted(positions) and len(set(positions)) == 5
    feed = twins.feed()
    assert feed == first + second
    assert [(e.twin, e.revision) for e in feed] == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 1)]
    assert twins.feed(after=positions[1]) == feed[2:]
    assert twins.feed(after=positions[0], limit=2) == feed[1:3]
    assert twins.feed(after=positions[-1]) == []
    assert twins.history("a") == [feed[0], feed[2]]


def test_delete_keeps_revision_and_recreate_continues(stores):
    _, twins = stores
    twins.commit([created("d", reported={"x": 1}), ev("d", 2, TWIN_PATCHED, reported={"x": 2})])
    twins.commit([ev("d", 3, TWIN_DELETED, 5)])
    with pytest.raises(NotFound):
        twins.get("d")
    assert twins.get_many(["d"]) == {}
    assert twins.last_revision("d") == 3
    assert twins.count() == 0
    with pytest.raises(Conflict):
        twins.commit([created("d")])  # revision 1 is taken
    twins.commit([created("d", model=VALVE, revision=4, reported={"y": 1})])
    t = twins.get("d")
    assert (t.revision, t.model, t.reported, t.created) == (4, VALVE, {"y": 1}, T0)
    assert [e.revision for e in twins.history("d")] == [1, 2, 3, 4]
    assert twins.count() == 1


def test_create_and_delete_in_one_batch(stores):
    _, twins = stores
    twins.commit([created("e"), rel("e", 2, "r", "x", "t"), ev("e", 3, TWIN_DELETED)])
    assert twins.last_revision("e") == 3
    assert twins.count() == 0
    assert twins.incoming("t") == []


def test_relationships_set_replace_delete_and_incoming(stores):
    _, twins = stores
    twins.commit([created("line", model=VALVE), created("m1"), created("m2")])
    twins.commit([rel("line", 2, "r1", "hasMachine", "m1", slot=1), rel("line", 3, "r2", "hasMachine", "m2", slot=2)])
    incoming = twins.incoming("m1")
    assert [(s, r.id, r.name, r.target, r.properties) for s, r in incoming] == [
        ("line", "r1", "hasMachine", "m1", {"slot": 1})
    ]
    assert twins.get("line").relationships["r2"].properties == {"slot": 2}
    # replace r1: it now points at m2
    twins.commit([rel("line", 4, "r1", "hasMachine", "m2", slot=3)])
    assert twins.incoming("m1") == []
    assert [(s, r.id, r.properties) for s, r in twins.incoming("m2")] == [
        ("line", "r1", {"slot": 3}),
        ("line", "r2", {"slot": 2}),
    ]
    twins.commit([ev("line", 5, RELATIONSHIP_DELETED, id="r2")])
    assert [r.id for _, r in twins.incoming("m2")] == ["r1"]
    twins.commit([rel("m1", 2, "back", "partOf", "m2")])
    assert [(s, r.id) for s, r in twins.incoming("m2")] == [("line", "r1"), ("m1", "back")]
    # a deleted source's relationships vanish from incoming
    twins.commit([ev("line", 6, TWIN_DELETED)])
    assert [(s, r.id) for s, r in twins.incoming("m2")] == [("m1", "back")]
    assert twins.incoming("nobody") == []


# -- queries --


WEIRD = {'q"k': 1, "b\\s": 2, "0": "zero", "it's": 3, "semi;colon": 4}


def fleet() -> list[Event]:
    return [
        created(
            "p1",
            PUMP1,
            reported={
                "temp": 80,
                "mode": "auto",
                "on": True,
                "tags": ["a", "b"],
                "flags": [True],
                "nested": {"x": {"y": 1}},
                "name": "50%_off",
                "arr": [10, 20],
            },
        ),
        created(
            "p2",
            PUMP1,
            reported={"temp": 80.0, "mode": "manual", "on": False, "name": "50x", "flags": [1]},
            desired={"temp": 70},
        ),
        created("p3", PUMP2, reported={"temp": "80", "mode": None, "on": 1, "name": "abc_def"}),
        created("p4", PUMP2, reported={"temp": 95.5, "nested": {"x": {"y": "1"}}, "name": "a_c", "arr": {"0": 5}}),
        created("v1", VALVE, attributes={"serial": "S-1"}, reported={"temp": 10, "on": True, **WEIRD}),
        created("x1", VALVE, reported={"other": "é"}),
    ]


def where(
    *preds: tuple[str, str, Any],
    models: frozenset[str] | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Query:
    step = Step(where=tuple(Predicate(tuple(p.split(".")), op, v) for p, op, v in preds), models=models)
    return Query(steps=(step,), limit=limit, after=after)


def ids(twins: TwinStore, query: Query) -> list[str]:
    return [t.id for t in twins.query(query).items]


CASES = [
    # equality is JSON equality: 80 = 80.0, a string is not a number, true is not 1
    (("reported.temp", "=", 80), ["p1", "p2"]),
    (("reported.temp", "=", 80.0), ["p1", "p2"]),
    (("reported.temp", "=", "80"), ["p3"]),
    (("reported.temp", "!=", 80), ["p3", "p4", "v1"]),
    (("reported.on", "=", True), ["p1", "v1"]),
    (("reported.on", "=", False), ["p2"]),
    (("reported.on", "=", 1), ["p3"]),
    (("reported.on", "!=", True), ["p2", "p3"]),
    (("reported.mode", "=", None), ["p3"]),
    (("reported.mode", "!=", None), ["p1", "p2"]),
    (("reported.tags", "=", ["a", "b"]), ["p1"]),
    (("reported.tags", "=", ["b", "a"]), []),
    (("reported.flags", "=", [True]), ["p1"]),
    (("reported.flags", "=", [1.0]), ["p2"]),
    # ordering only between two numbers or two strings; booleans are not numbers
    (("reported.temp", ">", 79), ["p1", "p2", "p4"]),
    (("reported.temp", ">=", 80), ["p1", "p2", "p4"]),
    (("reported.temp", "<", 80), ["v1"]),
    (("reported.temp", "<=", 80.0), ["p1", "p2", "v1"]),
    (("reported.temp", ">=", "8"), ["p3"]),
    (("reported.temp", "<", "9"), ["p3"]),
    (("reported.on", ">", 0), ["p3"]),
    (("reported.on", ">=", 0), ["p3"]),
    (("reported.mode", ">", "a"), ["p1", "p2"]),
    (("reported.mode", "<", "b"), ["p1"]),
    # in, exists, startswith (LIKE wildcards are plain characters)
    (("reported.mode", "in", ["auto", None]), ["p1", "p3"]),
    (("reported.temp", "in", [80, "x"]), ["p1", "p2"]),
    (("reported.temp", "in", ["80", 95.5]), ["p3", "p4"]),
    (("reported.on", "in", [True]), ["p1", "v1"]),
    (("reported.on", "in", [1]), ["p3"]),
    (("reported.tags", "in", [["a", "b"], 3]), ["p1"]),
    (("reported.temp", "in", []), []),
    (("reported.mode", "exists", True), ["p1", "p2", "p3"]),
    (("reported.mode", "exists", False), ["p4", "v1", "x1"]),
    (("reported.name", "startswith", "50%"), ["p1"]),
    (("reported.name", "startswith", "50"), ["p1", "p2"]),
    (("reported.name", "startswith", "a_"), ["p4"]),
    (("reported.name", "startswith", "a"), ["p3", "p4"]),
    (("reported.name", "startswith", ""), ["p1", "p2", "p3", "p4"]),
    (("reported.temp", "startswith", "8"), ["p3"]),
    (("reported.other", "startswith", "é"), ["x1"]),
    # nested paths; arrays are not indexed by a path; odd characters in keys
    (("reported.nested.x.y", "=", 1), ["p1"]),
    (("reported.nested.x.y", "=", "1"), ["p4"]),
    (("reported.nested.x", "exists", True), ["p1", "p4"]),
    (("reported.nested.x.y.z", "exists", True), []),
    (("reported.arr.0", "exists", True), ["p4"]),
    (("reported.arr.0", "=", 10), []),
    (("reported.arr.0", "exists", False), ["p1", "p2", "p3", "v1", "x1"]),
    (('reported.q"k', "=", 1), ["v1"]),
    (("reported.b\\s", "=", 2), ["v1"]),
    (("reported.0", "=", "zero"), ["v1"]),
    (("reported.it's", ">", 2), ["v1"]),
    (("reported.semi;colon", "exists", True), ["v1"]),
    (("reported.x' OR 1=1 --", "exists", False), ["p1", "p2", "p3", "p4", "v1", "x1"]),
    # attributes, desired and the scalar roots
    (("attributes.serial", "=", "S-1"), ["v1"]),
    (("desired.temp", "<", 75), ["p2"]),
    (("id", "startswith", "p"), ["p1", "p2", "p3", "p4"]),
    (("id", "in", ["p2", "x1", 5]), ["p2", "x1"]),
    (("id", ">", "p3"), ["p4", "v1", "x1"]),
    (("id", "=", 1), []),
    (("id", "!=", 1), ["p1", "p2", "p3", "p4", "v1", "x1"]),
    (("model", "=", VALVE), ["v1", "x1"]),
    (("model", "startswith", "dtmi:test:Pump"), ["p1", "p2", "p3", "p4"]),
    (("revision", "=", 1), ["p1", "p2", "p3", "p4", "v1", "x1"]),
    (("revision", "=", 1.0), ["p1", "p2", "p3", "p4", "v1", "x1"]),
    (("revision", "=", "1"), []),
    (("revision", ">", 1), []),
    (("revision", "in", [True, 1]), ["p1", "p2", "p3", "p4", "v1", "x1"]),
    (("revision", "exists", False), []),
]


@pytest.mark.parametrize(("pred", "expected"), CASES, ids=[f"{p[0]} {p[1]} {p[2]!r}" for p, _ in CASES])
def test_query_operators(stores, pred, expected):
    _, twins = stores
    twins.commit(fleet())
    assert ids(twins, where(pred)) == expected


def test_query_combines_predicates_and_model_sets(stores):
    _, twins = stores
    twins.commit(fleet())
    assert ids(twins, where(models=frozenset({PUMP1}))) == ["p1", "p2"]
    assert ids(twins, where(models=frozenset({PUMP1, PUMP2}))) == ["p1", "p2", "p3", "p4"]
    assert ids(twins, where(models=frozenset({PUMP2, VALVE, "dtmi:none;1"}))) == ["p3", "p4", "v1", "x1"]
    assert ids(twins, where(models=frozenset())) == []
    assert ids(twins, where(models=frozenset({"dtmi:none;1"}))) == []
    assert ids(twins, where(("reported.temp", ">", 50), models=frozenset({PUMP1, PUMP2}))) == [
        "p1",
        "p2",
        "p4",
    ]
    assert ids(twins, where(("reported.temp", ">", 50), ("reported.mode", "exists", True))) == ["p1", "p2"]
    assert ids(twins, where(("reported.temp", ">", 50), models=frozenset({PUMP2}), after="p3")) == ["p4"]
    q = parse_query({"where": [["reported.temp", "=", 80]], "limit": 1})
    page = twins.query(Query(steps=(Step(where=q.steps[0].where),), limit=1))
    assert [t.id for t in page.items] == ["p1"] and page.next == "p1"
    assert page.items[0] == twins.get("p1")


@pytest.mark.parametrize(
    "models", [None, frozenset({PUMP1}), frozenset({PUMP1, VALVE}), frozenset({PUMP1, PUMP2, VALVE})]
)
@pytest.mark.parametrize("limit", [1, 4, 7, 40])
def test_pagination_walks_every_page(stores, models, limit):
    _, twins = stores
    models_of = [PUMP1, PUMP2, VALVE]
    batch = [created(f"t{i:02d}", models_of[i % 3], reported={"n": i, "even": i % 2 == 0}) for i in range(31)]
    twins.commit(batch)
    expected = sorted(e.twin for e in batch if models is None or e.payload["model"] in models)
    for preds in [(), (("reported.even", "=", True),)]:
        want = [i for i in expected if not preds or int(i[1:]) % 2 == 0]
        seen: list[str] = []
        after = None
        for _ in range(100):
            page = twins.query(where(*preds, models=models, limit=limit, after=after))
            assert len(page.items) <= limit
            seen += [t.id for t in page.items]
            if page.next is None:
                break
            assert page.next == page.items[-1].id and len(page.items) == limit
            after = page.next
        assert seen == want


def plant(twins: TwinStore) -> None:
    line, machine, bearing = "dtmi:test:Line;1", "dtmi:test:Machine;1", "dtmi:test:Bearing;1"
    twins.commit(
        [
            created("L1", line),
            created("L2", line),
            created("M1", machine, reported={"speed": 1500}),
            created("M2", machine),
            created("M3", machine),
            created("B1", bearing, reported={"temp": 90}),
            created("B2", bearing, reported={"temp": 70}),
            created("B3", bearing, reported={"temp": 95}),
            created("B4", bearing, reported={"temp": 99}),
            created("S1", "dtmi:test:Sensor;1"),
        ]
    )
    twins.commit(
        [
            rel("L1", 2, "l1m1", "hasMachine", "M1", slot=1),
            rel("L1", 3, "l1m2", "hasMachine", "M2", slot=2),
            rel("L2", 2, "l2m3", "hasMachine", "M3", slot=1),
            rel("M1", 2, "m1b1", "hasBearing", "B1", side="drive"),
            rel("M1", 3, "m1b2", "hasBearing", "B2", side="free"),
            rel("M2", 2, "m2b2", "hasBearing", "B2"),  # a bearing reached from two machines
            rel("M3", 2, "m3b3", "hasBearing", "B3"),
            rel("M3", 3, "m3b4", "hasBearing", "B4", side="drive"),
            rel("M3", 4, "m3s1", "hasSensor", "S1"),
            rel("B1", 2, "b1m1", "partOf", "M1"),
        ]
    )


def chain(*steps: Step, limit: int = 100, after: str | None = None) -> Query:
    return Query(steps=steps, limit=limit, after=after)


def p(path: str, op: str, value: Any) -> Predicate:
    return Predicate(tuple(path.split(".")), op, value)


def test_multi_hop_out_and_in(stores):
    _, twins = stores
    plant(twins)
    line = Step(where=(p("id", "=", "L1"),))
    assert ids(twins, chain(line, Step(via="hasMachine"))) == ["M1", "M2"]
    assert ids(twins, chain(line, Step(via="hasMachine"), Step(via="hasBearing"))) == ["B1", "B2"]
    hot = Step(via="hasBearing", where=(p("reported.temp", ">", 80),))
    assert ids(twins, chain(Step(models=frozenset({"dtmi:test:Line;1"})), Step(via="hasMachine"), hot)) == [
        "B1",
        "B3",
        "B4",
    ]
    assert ids(twins, chain(line, Step(via="hasMachine"), hot)) == ["B1"]
    # backwards: from bearings to their machines, then to lines
    b2 = Step(where=(p("id", "=", "B2"),))
    assert ids(twins, chain(b2, Step(via="hasBearing", direction="in"))) == ["M1", "M2"]
    assert ids(twins, chain(b2, Step(via="hasBearing", direction="in"), Step(via="hasMachine", direction="in"))) == [
        "L1"
    ]
    # out and back again: the bearings' machines' bearings
    assert ids(twins, chain(b2, Step(via="hasBearing", direction="in"), Step(via="hasBearing"))) == [
        "B1",
        "B2",
    ]
    # model filters on later steps, the wrong name, and paging of a traversal
    everything = Step()
    any_machine = Step(via="hasBearing", models=frozenset({"dtmi:test:Bearing;1"}))
    assert ids(twins, chain(everything, any_machine)) == ["B1", "B2", "B3", "B4"]
    assert ids(twins, chain(everything, any_machine, limit=3)) == ["B1", "B2", "B3"]
    assert twins.query(chain(everything, any_machine, limit=3)).next == "B3"
    assert ids(twins, chain(everything, any_machine, after="B2")) == ["B3", "B4"]
    assert twins.query(chain(everything, any_machine, limit=4)).next is None
    assert ids(twins, chain(everything, Step(via="hasBearing", models=frozenset({"dtmi:test:Line;1"})))) == []
    assert ids(twins, chain(line, Step(via="hasBearing"))) == []
    assert ids(twins, chain(line, Step(via="hasMachine", models=frozenset()))) == []


def test_rel_where_and_deleted_twins_in_traversal(stores):
    _, twins = stores
    plant(twins)
    lines = Step(models=frozenset({"dtmi:test:Line;1"}))
    slot2 = Step(via="hasMachine", rel_where=(p("slot", "=", 2),))
    assert ids(twins, chain(lines, slot2)) == ["M2"]
    assert ids(twins, chain(lines, Step(via="hasMachine", rel_where=(p("slot", "<", 2),)))) == ["M1", "M3"]
    drive = Step(via="hasBearing", rel_where=(p("side", "=", "drive"),))
    assert ids(twins, chain(Step(), drive)) == ["B1", "B4"]
    assert ids(twins, chain(Step(), Step(via="hasBearing", rel_where=(p("side", "exists", False),)))) == [
        "B2",
        "B3",
    ]
    back = Step(via="hasBearing", direction="in", rel_where=(p("side", "startswith", "fr"),))
    assert ids(twins, chain(Step(where=(p("id", "=", "B2"),)), back)) == ["M1"]
    # a deleted target is not reached; a deleted source's relationships are gone
    twins.commit([ev("M1", 4, RELATIONSHIP_DELETED, id="m1b1"), ev("B1", 3, TWIN_DELETED)])
    assert ids(twins, chain(Step(), drive)) == ["B4"]
    twins.commit([ev("L2", 3, RELATIONSHIP_DELETED, id="l2m3"), ev("M3", 5, TWIN_DELETED)])
    assert ids(twins, chain(Step(), drive)) == []
    assert ids(twins, chain(lines, Step(via="hasMachine"))) == ["M1", "M2"]
    assert ids(twins, chain(Step(where=(p("id", "=", "B3"),)), Step(via="hasBearing", direction="in"))) == []


def test_relationships_never_point_at_a_missing_twin(stores):
    _, twins = stores
    plant(twins)
    before = state_of(twins)
    with pytest.raises(Conflict) as err:
        twins.commit([ev("B3", 2, TWIN_DELETED)])  # M3/m3b3 points at it
    assert err.value.fields["rule"] == "has_incoming" and "M3/m3b3" in err.value.message
    with pytest.raises(Conflict) as err:
        twins.commit([rel("M2", 3, "x", "hasBearing", "ghost")])
    assert err.value.fields["rule"] == "target_exists"
    with pytest.raises(Conflict):  # the relationship and the deletion of its target in one batch
        twins.commit([rel("M2", 3, "x", "hasBearing", "B4"), ev("M3", 5, RELATIONSHIP_DELETED, id="m3b4"),
                      ev("B4", 2, TWIN_DELETED)])
    assert state_of(twins) == before
    # a target created in the same batch, and a source and its target deleted together, are fine
    twins.commit([created("B9", "dtmi:test:Bearing;1"), rel("M2", 3, "m2b9", "hasBearing", "B9")])
    twins.commit([ev("M3", 5, TWIN_DELETED), ev("S1", 2, TWIN_DELETED), ev("L2", 3, RELATIONSHIP_DELETED,
                                                                           id="l2m3")])
    assert twins.incoming("S1") == [] and twins.last_revision("S1") == 2


# -- models --


def record(model_id: str, n: int = 0) -> ModelRecord:
    return ModelRecord(
        id=model_id,
        document={
            "@id": model_id,
            "@type": "Interface",
            "contents": [{"name": "x", "schema": "double"}],
            "n": n,
        },
        uploaded=T0 + timedelta(seconds=n),
    )


def test_model_store(stores):
    models, _ = stores
    assert models.list_models() == []
    with pytest.raises(NotFound):
        models.get_model(PUMP1)
    models.add_models([record(VALVE, 1), record(PUMP2, 2)])
    models.add_models([record(PUMP1, 3)])
    assert [m.id for m in models.list_models()] == [PUMP1, PUMP2, VALVE]
    assert models.get_model(PUMP2) == record(PUMP2, 2)
    assert models.get_model(PUMP2).uploaded == T0 + timedelta(seconds=2)
    # a duplicate id (stored or within the batch) stores nothing of the batch
    with pytest.raises(Conflict):
        models.add_models([record("dtmi:test:New;1"), record(PUMP1, 9)])
    with pytest.raises(Conflict):
        models.add_models([record("dtmi:test:New;1"), record("dtmi:test:New;1")])
    assert [m.id for m in models.list_models()] == [PUMP1, PUMP2, VALVE]
    assert models.get_model(PUMP1) == record(PUMP1, 3)
    changed = models.set_decommissioned(PUMP1, True)
    assert changed.decommissioned is True and models.get_model(PUMP1).decommissioned is True
    assert models.set_decommissioned(PUMP1, False).decommissioned is False
    with pytest.raises(NotFound):
        models.set_decommissioned("dtmi:test:Nope;1", True)
    models.add_models([])
    assert len(models.list_models()) == 3


def test_ids_order_as_python_strings(stores):
    models, twins = stores
    odd = ["a-1", "a.2", "A_3", "a_4", "B", "b", "Z", "0", "a:5", "aa", "a"]
    twins.commit([created(i, VALVE if n % 2 else PUMP1) for n, i in enumerate(odd)])
    twins.commit([rel(i, 2, "r", "to", "B") for i in odd if i != "B"])
    assert ids(twins, where()) == sorted(odd)
    assert ids(twins, where(models=frozenset({PUMP1, VALVE}))) == sorted(odd)
    assert ids(twins, where(("id", ">", "a"))) == sorted(i for i in odd if i > "a")
    assert ids(twins, chain(Step(where=(p("id", "=", "B"),)), Step(via="to", direction="in"))) == sorted(
        i for i in odd if i != "B"
    )
    assert [s for s, _ in twins.incoming("B")] == sorted(i for i in odd if i != "B")
    models.add_models([record(f"dtmi:test:{m};1") for m in ["b", "B", "a_b", "aB", "A"]])
    assert [m.id for m in models.list_models()] == sorted(f"dtmi:test:{m};1" for m in ["b", "B", "a_b", "aB", "A"])
