"""The command store port, its in-memory adapter, and the opener the composition root uses.

A store keeps every :class:`~tvilling.decisions.lifecycle.CommandRecord` and an ordered
change feed: one item per command transition (written in the same transaction as the
record) and the desired-state items the reconciler appends. Updates are
compare-and-set on the status, so two workers that race on one command cannot both
move it.

>>> from datetime import UTC, datetime
>>> from tvilling.decisions.lifecycle import SENT, new_command, transition
>>> store = MemoryCommandStore()
>>> rec = new_command("M1", "stop", None, now=datetime(2024, 5, 1, tzinfo=UTC), timeout_s=5)
>>> store.add(rec)
>>> sent, _ = transition(rec, SENT, now=rec.created)
>>> store.update(sent, "pending")
>>> [item["status"] for _, item in store.changes(0, 10)]
['pending', 'sent']
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.lifecycle import OPEN, STATUSES, CommandRecord, change_item

if TYPE_CHECKING:
    from tvilling.config import Settings

MAX_LIST = 1000


@runtime_checkable
class CommandStore(Protocol):
    def add(self, record: CommandRecord) -> None:
        """Store a new command (and its ``pending`` change item); ``Conflict`` if the id exists."""

    def get(self, command_id: str) -> CommandRecord:
        """The command; ``NotFound`` if there is none with that id."""
        ...

    def update(self, record: CommandRecord, expected_status: str) -> None:
        """Replace the stored command if it is still in ``expected_status`` (compare-and-set).

        Appends the change item for ``expected_status → record.status``. ``NotFound`` when
        the command does not exist, ``Conflict`` (rule ``stale_status``) when it moved on.
        """

    def list(self, *, twin: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> builtins.list[CommandRecord]:
        """Commands oldest first; ``after`` is the id of the last command of the previous page."""
        ...

    def pending_deadlines(self, now: datetime, *, limit: int = MAX_LIST) -> builtins.list[CommandRecord]:
        """Commands not yet final whose deadline is at or before ``now``, earliest deadline first."""
        ...

    def append_change(self, item: Mapping[str, Any]) -> int:
        """Append an item (e.g. ``"kind": "desired"``) to the change feed; returns its position."""
        ...

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        """The change feed: ``(position, item)`` with position > ``after``, in order."""
        ...

    def close(self) -> None: ...


def check_list_args(status: str | None, limit: int) -> None:
    """Shared argument checks of :meth:`CommandStore.list`."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {list(STATUSES)}; got {status!r}", field="status", rule="enum")
    if not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}", field="limit", rule="range")


def unknown_cursor(after: str) -> Invalid:
    return Invalid(f"after={after!r} is not the id of a stored command", field="after", rule="cursor")


def stale(record: CommandRecord, expected: str, actual: str) -> Conflict:
    return Conflict(
        f"command {record.id} is {actual}, not {expected}: someone else moved it; read it again",
        command=record.id, twin=record.twin, expected=expected, status=actual, rule="stale_status",
    )


def missing(command_id: str) -> NotFound:
    return NotFound(f"there is no command {command_id!r}", command=command_id)


class MemoryCommandStore:
    """Commands and their change feed in process memory (tests, ``store = "memory"``)."""

    def __init__(self) -> None:
        self._records: dict[str, CommandRecord] = {}
        self._seq: dict[str, int] = {}
        self._order: list[str] = []
        self._changes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, record: CommandRecord) -> None:
        with self._lock:
            if record.id in self._records:
                raise Conflict(f"command {record.id} exists already", command=record.id, rule="exists")
            self._records[record.id] = record
            self._seq[record.id] = len(self._order)
            self._order.append(record.id)
            self._changes.append(change_item(record, None))

    def get(self, command_id: str) -> CommandRecord:
        with self._lock:
            try:
                return self._records[command_id]
            except KeyError:
                raise missing(command_id) from None

    def update(self, record: CommandRecord, expected_status: str) -> None:
        with self._lock:
            current = self._records.get(record.id)
            if current is None:
                raise missing(record.id)
            if current.status != expected_status:
                raise stale(record, expected_status, current.status)
            self._records[record.id] = record
            self._changes.append(change_item(record, expected_status))

    def list(self, *, twin: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> builtins.list[CommandRecord]:
        check_list_args(status, limit)
        with self._lock:
            start = 0
            if after is not None:
                if after not in self._seq:
                    raise unknown_cursor(after)
                start = self._seq[after] + 1
            out: list[CommandRecord] = []
            for command_id in self._order[start:]:
                rec = self._records[command_id]
                if (twin is None or rec.twin == twin) and (status is None or rec.status == status):
                    out.append(rec)
                    if len(out) >= limit:
                        break
            return out

    def pending_deadlines(self, now: datetime, *, limit: int = MAX_LIST) -> builtins.list[CommandRecord]:
        with self._lock:
            due = [r for r in self._records.values() if r.status in OPEN and r.deadline <= now]
        due.sort(key=lambda r: (r.deadline, self._seq[r.id]))
        return due[:limit]

    def append_change(self, item: Mapping[str, Any]) -> int:
        with self._lock:
            self._changes.append(dict(item))
            return len(self._changes)

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        with self._lock:
            start = max(after, 0)
            return [(start + i + 1, dict(item)) for i, item in enumerate(self._changes[start:start + limit])]

    def close(self) -> None:
        pass


def open_command_store(settings: Settings) -> CommandStore:
    """The command store the settings name (memory, PostgreSQL, or the embedded ``tvilling.db``), alone on a
    database of its own; chosen by :func:`tvilling.backend.open_store`. A platform's is ``backend.command_store``."""
    from tvilling.backend import open_store

    store: CommandStore = open_store("command_store", settings.store, data_dir=settings.data_dir,
                                     schema=settings.pg_schema)
    return store
