"""Saved consumer positions, the port's side: its checks, the memory adapter, and the layering.

The contract every adapter meets (memory, SQLite, PostgreSQL) is in
``tests/contract/test_cursor_contract.py``; the backend's store in ``tests/backend/test_cursors.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tvilling.core.errors import Invalid
from tvilling.streams.offsets import MAX_POSITION, CursorStore, MemoryCursors, check_name, check_position


def test_the_checks_return_what_they_accept_and_name_the_rule_of_what_they_refuse() -> None:
    assert check_name("shard:1.alarms-b_2") == "shard:1.alarms-b_2"
    assert check_position(0) == 0 and check_position(MAX_POSITION) == MAX_POSITION
    with pytest.raises(Invalid) as name:
        check_name(3)  # type: ignore[arg-type]
    assert (name.value.fields["field"], name.value.fields["rule"]) == ("name", "format")
    with pytest.raises(Invalid) as position:
        check_position(MAX_POSITION + 1)
    assert (position.value.fields["field"], position.value.fields["rule"]) == ("position", "range")


def test_two_memory_stores_are_independent() -> None:
    a, b = MemoryCursors(), MemoryCursors()
    assert isinstance(a, CursorStore)
    a.set_cursor("x", 4)
    assert (a.cursor("x"), b.cursor("x")) == (4, 0)


def test_the_streams_package_does_not_load_the_backend() -> None:
    """streams/ depends on the core only: the backend builds the SQL cursor stores, not the reverse."""
    code = ("import sys, tvilling.streams, tvilling.streams.offsets; "
            "print(sorted(m for m in sys.modules if m.startswith('tvilling.') "
            "and not m.startswith(('tvilling.streams', 'tvilling.core'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
