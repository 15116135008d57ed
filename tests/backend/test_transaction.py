"""One transaction across stores: a twin event and a row of another store commit together or not at all."""

from __future__ import annotations

import pytest
from backend_helpers import command, created, letter, open_kind, patched

from tvilling.core.errors import Conflict, NotFound

SQL_KINDS = ["embedded", pytest.param("postgresql", marks=pytest.mark.postgres)]


class Boom(Exception):
    pass


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_failure_inside_the_transaction_leaves_neither_write(kind, tmp_path, request) -> None:
    b = open_kind(kind, tmp_path, request)
    try:
        b.twin_store.commit([created("P1", speed=1)])
        cmd = command()
        with pytest.raises(Boom), b.transaction():
            b.twin_store.commit([patched("P1", 2, 1, speed=2)])
            b.command_store.add(cmd)
            b.dead_letters.add([letter()])
            assert b.twin_store.get("P1").reported == {"speed": 2}  # this thread sees its own writes
            raise Boom
        assert b.twin_store.get("P1").reported == {"speed": 1} and b.twin_store.last_revision("P1") == 1
        with pytest.raises(NotFound):
            b.command_store.get(cmd.id)
        assert b.dead_letters.count() == 0 and b.command_store.changes(0, 10) == []
        assert [e.revision for e in b.twin_store.feed()] == [1]

        with b.transaction():  # and both, when nothing fails
            b.twin_store.commit([patched("P1", 2, 1, speed=2)])
            b.command_store.add(cmd)
        assert b.twin_store.get("P1").reported == {"speed": 2} and b.command_store.get(cmd.id) == cmd
    finally:
        b.close()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_store_error_caught_inside_undoes_only_that_write(kind, tmp_path, request) -> None:
    b = open_kind(kind, tmp_path, request)
    try:
        cmd = command()
        b.command_store.add(cmd)
        with b.transaction():
            b.twin_store.commit([created("P1")])
            with pytest.raises(Conflict):
                b.command_store.add(cmd)  # exists already: its savepoint is rolled back, not the transaction
            b.twin_store.commit([patched("P1", 2, 1, x=1)])
        assert b.twin_store.last_revision("P1") == 2 and len(b.command_store.changes(0, 10)) == 1
    finally:
        b.close()


def test_the_transaction_is_durable_across_a_reopen(tmp_path) -> None:
    from tvilling.backend import open_backend

    with open_backend(tmp_path / "d") as b, b.transaction():
        b.twin_store.commit([created("P1")])
        b.command_store.add(cmd := command())
    with open_backend(tmp_path / "d") as again:
        assert again.twin_store.get("P1").revision == 1 and again.command_store.get(cmd.id) == cmd
