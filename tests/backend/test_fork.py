"""backend.fork: an isolated in-memory world, seeded with the state at a time and a range of history."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import MODEL, T0, at, created, model, patched, related

from tvilling.backend import Backend, open_backend
from tvilling.core.errors import Invalid, NotFound
from tvilling.core.readings import Readings

US0 = int(T0.timestamp() * 1_000_000)
S = 1_000_000


@pytest.fixture(params=["memory", "embedded"])
def origin(request, tmp_path):
    b = open_backend("memory" if request.param == "memory" else tmp_path / "data")
    b.model_store.add_models([model()])
    b.twin_store.commit([created("A", 0, speed=1), created("B", 0, speed=10), created("C", 0)])
    b.twin_store.commit([patched("A", 2, 10, speed=2), related("B", 2, 15, "C")])
    b.twin_store.commit([patched("A", 3, 30, speed=3), patched("B", 3, 30, speed=30)])
    ts = US0 + np.arange(0, 60) * S
    n = len(ts)
    b.history.append(Readings(np.full(n, "A", dtype=object), np.full(n, "speed", dtype=object), ts,
                              np.arange(n, dtype=np.float64)))
    yield b
    b.close()


def test_the_fork_holds_the_state_as_of_its_time_and_the_history_of_its_range(origin: Backend) -> None:
    fork = origin.fork(at=at(20), history=(at(5), at(25)))
    try:
        assert fork.kind == "memory" and [m.id for m in fork.model_store.list_models()] == [MODEL]
        a, b = fork.twin_store.get("A"), fork.twin_store.get("B")
        assert (a.reported, a.revision) == ({"speed": 2}, 2)
        assert (b.reported, b.revision, list(b.relationships)) == ({"speed": 10}, 2, ["to-C"])
        assert fork.twin_store.count() == 3
        assert [e.revision for e in fork.twin_store.history("A")] == [1, 2]
        points = fork.history.range("A", "speed", US0, US0 + 100 * S, limit=1000)
        assert [p.ts_us for p in points] == list(range(US0 + 5 * S, US0 + 25 * S, S))
        assert [p.value for p in points] == [float(v) for v in range(5, 25)]
    finally:
        fork.close()


def test_writes_to_the_fork_never_reach_the_origin(origin: Backend) -> None:
    with origin.fork(at=at(20), history=(US0, US0 + 10 * S)) as fork:
        fork.twin_store.commit([patched("A", 3, 21, speed=99)])
        fork.history.append(Readings.from_rows([("A", "speed", US0 + 3 * S + 1, 99.0)]))
        fork.command_store.append_change({"kind": "desired"})
        fork.twin_store.commit([created("D", 22)])
        assert fork.twin_store.get("A").reported == {"speed": 99}
    assert origin.twin_store.get("A").reported == {"speed": 3} and origin.twin_store.last_revision("A") == 3
    with pytest.raises(NotFound):
        origin.twin_store.get("D")
    assert origin.history.count() == 60 and origin.command_store.changes(0, 10) == []


def test_a_fork_of_some_twins_takes_the_twins_their_relationships_point_at(origin: Backend) -> None:
    with origin.fork(twins=["B"]) as fork:
        assert sorted(t for t in ("A", "B", "C") if fork.twin_store.get_many([t])) == ["B", "C"]
        assert fork.twin_store.get("B").reported == {"speed": 30}  # no time: the state now
        assert fork.history.count() == 0  # no range: no history
    with pytest.raises(Invalid, match="twin 'nope' has no events"):
        origin.fork(twins=["nope"])


def test_a_fork_before_a_twin_existed_leaves_it_out_and_naive_times_are_refused(origin: Backend) -> None:
    origin.twin_store.commit([created("late", 100)])
    with origin.fork(at=at(50)) as fork:
        assert fork.twin_store.get_many(["late"]) == {} and fork.twin_store.count() == 3
    with pytest.raises(Invalid, match="time zone"):
        origin.fork(at=at(5).replace(tzinfo=None))
