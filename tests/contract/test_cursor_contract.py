"""The stream cursor store's contract (``cursor``, ``set_cursor``) over memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tvilling.core.errors import Invalid
from tvilling.streams.offsets import MAX_POSITION, CursorStore


def test_a_name_never_saved_is_at_zero(cursors: CursorStore) -> None:
    assert isinstance(cursors, CursorStore)
    assert cursors.cursor("reconciler") == 0


def test_positions_are_kept_by_name_and_the_last_save_wins(cursors: CursorStore) -> None:
    cursors.set_cursor("alarms", 12)
    cursors.set_cursor("reconciler", 3)
    cursors.set_cursor("alarms", 40)
    cursors.set_cursor("reconciler", 1)  # a position may go back (a consumer replaying on purpose)
    assert (cursors.cursor("alarms"), cursors.cursor("reconciler"), cursors.cursor("other")) == (40, 1, 0)


def test_names_differing_only_in_case_are_different_consumers(cursors: CursorStore) -> None:
    cursors.set_cursor("Audit", 5)
    cursors.set_cursor("audit", 6)
    assert (cursors.cursor("Audit"), cursors.cursor("audit")) == (5, 6)


def test_every_allowed_name_and_the_whole_position_range_round_trip(cursors: CursorStore) -> None:
    names = ["a", "A9", "shard:3.reconciler-b_2", "x" * 128]
    for i, name in enumerate(names):
        cursors.set_cursor(name, i)
    cursors.set_cursor("top", MAX_POSITION)
    cursors.set_cursor("bottom", 0)
    assert [cursors.cursor(n) for n in names] == list(range(len(names)))
    assert (cursors.cursor("top"), cursors.cursor("bottom")) == (MAX_POSITION, 0)


@pytest.mark.parametrize("name", ["", "a b", "x" * 129, "/etc", "-lead", "é", "a\x00"])
def test_a_bad_name_is_refused_naming_the_field_and_nothing_is_saved(cursors: CursorStore, name: str) -> None:
    with pytest.raises(Invalid) as err:
        cursors.set_cursor(name, 1)
    assert err.value.fields["field"] == "name" and repr(name) in str(err.value)
    with pytest.raises(Invalid) as read:
        cursors.cursor(name)
    assert read.value.fields["field"] == "name"


@pytest.mark.parametrize("position", [-1, MAX_POSITION + 1, 1.5, True, "3", None])
def test_a_bad_position_is_refused_naming_the_field_and_the_old_one_stays(cursors: CursorStore,
                                                                          position: object) -> None:
    cursors.set_cursor("ok", 7)
    with pytest.raises(Invalid) as err:
        cursors.set_cursor("ok", position)  # type: ignore[arg-type]
    assert err.value.fields["field"] == "position"
    assert cursors.cursor("ok") == 7


def test_threads_saving_different_consumers_keep_every_position(cursors: CursorStore) -> None:
    errors: list[BaseException] = []

    def save(worker: int) -> None:
        try:
            for position in range(1, 21):
                cursors.set_cursor(f"w{worker}", position * 10 + worker)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert [cursors.cursor(f"w{w}") for w in range(6)] == [200 + w for w in range(6)]


def test_positions_outlive_a_reopen(store_kind: str, open_cursors: Callable[[], CursorStore]) -> None:
    if store_kind == "memory":
        pytest.skip("the memory store lives as long as its process")
    first = open_cursors()
    first.set_cursor("reconciler", 41)
    first.set_cursor("analytics", 9)
    again = open_cursors()  # a restarted process on the same database
    assert (again.cursor("reconciler"), again.cursor("analytics"), again.cursor("never")) == (41, 9, 0)
    again.set_cursor("reconciler", 42)
    assert first.cursor("reconciler") == 42  # both see one table
