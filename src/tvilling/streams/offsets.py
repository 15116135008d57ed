"""Saved consumer positions: where each named consumer stopped, kept across restarts.

A :class:`CursorStore` maps a consumer's name to the feed position of the last item it
finished (0 when it never saved one). This module holds the port, the checks every adapter
applies, and the in-memory adapter. The durable adapters keep a ``stream_cursors`` table in
the backend's database (:mod:`tvilling.backend.cursors`); the backend chooses one with its
other stores, and a platform's consumers get it as ``backend.cursors``. The alarm stores
are cursor stores too (the alarm evaluation keeps its position beside the alarms it raised).

>>> cursors = MemoryCursors()
>>> cursors.set_cursor("reconciler", 42)
>>> cursors.cursor("reconciler"), cursors.cursor("never-saved")
(42, 0)
"""

from __future__ import annotations

import re
import threading
from typing import Protocol, runtime_checkable

from tvilling.core.errors import Invalid

MAX_POSITION = 2**63 - 1  # what every adapter's column holds
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


@runtime_checkable
class CursorStore(Protocol):
    """Named positions; blocking calls (a consumer runs them in a thread)."""

    def cursor(self, name: str) -> int:
        """The position saved under ``name`` (0 when never saved)."""
        ...

    def set_cursor(self, name: str, position: int) -> None:
        """Save ``position`` under ``name``, durably."""
        ...


def check_name(name: str) -> str:
    """A consumer name: letters, digits and ``_.:-``, at most 128 characters; ``Invalid`` otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Invalid(f"a consumer name is 1 to 128 letters, digits, '_', '.', ':' or '-'; got {name!r}",
                      field="name", rule="format")
    return name


def check_position(position: int) -> int:
    """A position: a whole number from 0 to 2**63 - 1; ``Invalid`` otherwise."""
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        raise Invalid(f"a position is a whole number from 0 to {MAX_POSITION}; got {position!r}",
                      field="position", rule="range")
    return position


class MemoryCursors:
    """Positions in a dict: the memory backend's store, and tests'."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()

    def cursor(self, name: str) -> int:
        """The position saved under ``name`` (0 when never saved)."""
        with self._lock:
            return self._positions.get(check_name(name), 0)

    def set_cursor(self, name: str, position: int) -> None:
        """Save ``position`` under ``name`` (until the process ends)."""
        with self._lock:
            self._positions[check_name(name)] = check_position(position)

    def close(self) -> None:
        """Nothing to release."""
