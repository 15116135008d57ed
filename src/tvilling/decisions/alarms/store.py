"""The alarm store port, its in-memory adapter, and the opener the composition root uses.

A store keeps every :class:`~tvilling.decisions.alarms.record.Alarm`, an ordered change
feed (one item per step, written in the same transaction as the alarm), named
cursors (where the alarm driver stopped reading the twin event feed) and the
:class:`~tvilling.decisions.alarms.shelves.Shelf` records.

Listing ``grouped=True`` gives one alarm per condition: the alarms raised on a twin by its
own rules (``source`` is None), never the copies propagated from them to ancestors; a
``twin`` filter then also finds the conditions whose copies are on that twin (an ancestor's
filter finds the conditions affecting it). :meth:`AlarmStore.affected` names the twins of
those copies. Updates are
compare-and-set on the alarm's ``version``; at most one alarm per de-duplication ``key``
is open (``Conflict``, rule ``open_exists``, for a second one), so two workers cannot
raise the same alarm twice.

>>> from datetime import UTC, datetime
>>> from tvilling.decisions.alarms.record import acknowledge, new_alarm
>>> store = MemoryAlarmStore()
>>> a = new_alarm(twin="B1", model=None, rule="hot", severity="major", message="hot", prop="t", value=91,
...               now=datetime(2024, 5, 1, tzinfo=UTC))
>>> store.add(a)
>>> store.update(*acknowledge(a, now=a.raised, actor="ann"))
>>> [item["type"] for _, item in store.changes(0, 10)]
['alarm.raised', 'alarm.acknowledged']
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.decisions.alarms.record import OPEN, RAISED, SEVERITIES, STATES, Alarm, change_item
from tvilling.decisions.alarms.shelves import Shelf

if TYPE_CHECKING:
    from tvilling.config import Settings

MAX_LIST = 1000


@runtime_checkable
class AlarmStore(Protocol):
    def add(self, alarm: Alarm) -> None:
        """Store a new alarm and its ``alarm.raised`` item; ``Conflict`` if the id exists (rule ``exists``)
        or an open alarm has the same key (rule ``open_exists``)."""

    def get(self, alarm_id: str) -> Alarm:
        """The alarm; ``NotFound`` if there is none with that id."""
        ...

    def update(self, alarm: Alarm, change_type: str) -> None:
        """Replace the stored alarm if it is at ``alarm.version - 1`` (compare-and-set) and append
        its change item. ``NotFound`` when unknown, ``Conflict`` (rule ``stale_version``) when it moved on."""

    def open_for(self, key: str) -> Alarm | None:
        """The open (active or acknowledged) alarm with this de-duplication key, if any."""
        ...

    def last_for(self, key: str) -> Alarm | None:
        """The most recent alarm with this de-duplication key (open or not), if any."""
        ...

    def derived(self, source_id: str) -> builtins.list[Alarm]:
        """Alarms propagated from the alarm ``source_id``, oldest first."""
        ...

    def list(self, *, state: str | None = None, twin: str | None = None, severity: str | None = None,
             rule: str | None = None, after: str | None = None, limit: int = 100, grouped: bool = False,
             shelved: bool | None = None, now: datetime | None = None) -> builtins.list[Alarm]:
        """Alarms newest first; ``after`` is the id of the last alarm of the previous page. ``grouped``: one
        per condition (see the module docstring); ``shelved``: only those a shelf holds at ``now`` (default:
        the current time) (True) or only the others (False)."""
        ...

    def affected(self, source_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        """For each alarm id, the twins its propagated copies are on (oldest first; ids without copies
        are left out)."""
        ...

    def open_on(self, twins: Sequence[str]) -> builtins.list[Alarm]:
        """The open alarms (own and propagated) on these twins, oldest first."""
        ...

    def add_shelf(self, shelf: Shelf) -> None:
        """Store a new shelf; ``Conflict`` (rule ``exists``) if its id exists."""

    def get_shelf(self, shelf_id: str) -> Shelf:
        """The shelf; ``NotFound`` if there is none with that id."""
        ...

    def update_shelf(self, shelf: Shelf) -> None:
        """Replace a stored shelf (ending it early); ``NotFound`` when unknown."""

    def shelves(self, *, at: datetime | None = None, limit: int = 100) -> builtins.list[Shelf]:
        """Shelves newest first; with ``at``, only those in effect at that time."""
        ...

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        """The change feed: ``(position, item)`` with position > ``after``, in order."""
        ...

    def cursor(self, name: str) -> int:
        """A named position saved with :meth:`set_cursor` (0 when never saved)."""
        ...

    def set_cursor(self, name: str, position: int) -> None: ...

    def close(self) -> None: ...


def check_list_args(state: str | None, severity: str | None, limit: int) -> None:
    """Shared argument checks of :meth:`AlarmStore.list`."""
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {list(STATES)}; got {state!r}", field="state", rule="enum")
    if severity is not None and severity not in SEVERITIES:
        raise Invalid(f"severity must be one of {list(SEVERITIES)}; got {severity!r}", field="severity",
                      rule="enum")
    if not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}", field="limit", rule="range")


def unknown_shelf(shelf_id: str) -> NotFound:
    return NotFound(f"there is no shelf {shelf_id!r}", shelf=shelf_id)


def shelf_exists(shelf: Shelf) -> Conflict:
    return Conflict(f"shelf {shelf.id} exists already", shelf=shelf.id, rule="exists")


def epoch(ts: datetime | None) -> float | None:
    return None if ts is None else ts.timestamp()


def unknown_cursor(after: str) -> Invalid:
    return Invalid(f"after={after!r} is not the id of a stored alarm", field="after", rule="cursor")


def missing(alarm_id: str) -> NotFound:
    return NotFound(f"there is no alarm {alarm_id!r}", alarm=alarm_id)


def stale(alarm: Alarm, actual: int) -> Conflict:
    return Conflict(f"alarm {alarm.id} is at version {actual}, not {alarm.version - 1}: someone else moved it; "
                    "read it again", alarm=alarm.id, twin=alarm.twin, version=actual, rule="stale_version")


def exists(alarm: Alarm) -> Conflict:
    return Conflict(f"alarm {alarm.id} exists already", alarm=alarm.id, rule="exists")


def open_exists(alarm: Alarm) -> Conflict:
    return Conflict(f"twin {alarm.twin!r} has an open alarm for rule {alarm.rule!r} already", alarm=alarm.id,
                    twin=alarm.twin, rule="open_exists")


def matches(a: Alarm, state: str | None, twin: str | None, severity: str | None, rule: str | None) -> bool:
    return ((state is None or a.state == state) and (twin is None or a.twin == twin)
            and (severity is None or a.severity == severity) and (rule is None or a.rule == rule))


def shelved_filter(a: Alarm, shelved: bool | None, now: datetime | None) -> bool:
    return shelved is None or a.shelved_at(now or datetime.now(UTC)) == shelved


class MemoryAlarmStore:
    """Alarms, their change feed and cursors in process memory (tests, ``store = "memory"``)."""

    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}
        self._seq: dict[str, int] = {}
        self._order: list[str] = []
        self._open: dict[str, str] = {}  # key -> id of the open alarm
        self._last: dict[str, str] = {}  # key -> id of the latest alarm
        self._changes: list[dict[str, Any]] = []
        self._cursors: dict[str, int] = {}
        self._shelves: dict[str, Shelf] = {}
        self._lock = threading.Lock()

    def add(self, alarm: Alarm) -> None:
        with self._lock:
            if alarm.id in self._alarms:
                raise exists(alarm)
            if alarm.is_open and alarm.key in self._open:
                raise open_exists(alarm)
            self._alarms[alarm.id] = alarm
            self._seq[alarm.id] = len(self._order)
            self._order.append(alarm.id)
            if alarm.is_open:
                self._open[alarm.key] = alarm.id
            self._last[alarm.key] = alarm.id
            self._changes.append(change_item(alarm, RAISED))

    def get(self, alarm_id: str) -> Alarm:
        with self._lock:
            try:
                return self._alarms[alarm_id]
            except KeyError:
                raise missing(alarm_id) from None

    def update(self, alarm: Alarm, change_type: str) -> None:
        with self._lock:
            current = self._alarms.get(alarm.id)
            if current is None:
                raise missing(alarm.id)
            if current.version != alarm.version - 1:
                raise stale(alarm, current.version)
            self._alarms[alarm.id] = alarm
            if alarm.state not in OPEN and self._open.get(alarm.key) == alarm.id:
                del self._open[alarm.key]
            self._changes.append(change_item(alarm, change_type))

    def open_for(self, key: str) -> Alarm | None:
        with self._lock:
            alarm_id = self._open.get(key)
            return None if alarm_id is None else self._alarms[alarm_id]

    def last_for(self, key: str) -> Alarm | None:
        with self._lock:
            alarm_id = self._last.get(key)
            return None if alarm_id is None else self._alarms[alarm_id]

    def derived(self, source_id: str) -> builtins.list[Alarm]:
        with self._lock:
            return [a for i in self._order if (a := self._alarms[i]).source == source_id]

    def list(self, *, state: str | None = None, twin: str | None = None, severity: str | None = None,
             rule: str | None = None, after: str | None = None, limit: int = 100, grouped: bool = False,
             shelved: bool | None = None, now: datetime | None = None) -> builtins.list[Alarm]:
        check_list_args(state, severity, limit)
        with self._lock:
            end = len(self._order)
            if after is not None:
                if after not in self._seq:
                    raise unknown_cursor(after)
                end = self._seq[after]
            touching: set[str] = set()
            if grouped and twin is not None:
                touching = {a.source for a in self._alarms.values() if a.twin == twin and a.source is not None}
            out: list[Alarm] = []
            for alarm_id in reversed(self._order[:end]):
                a = self._alarms[alarm_id]
                if grouped and (a.source is not None or not (twin is None or a.twin == twin or a.id in touching)):
                    continue
                if matches(a, state, None if grouped else twin, severity, rule) \
                        and shelved_filter(a, shelved, now):
                    out.append(a)
                    if len(out) >= limit:
                        break
            return out

    def affected(self, source_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        wanted = set(source_ids)
        out: dict[str, list[str]] = {}
        with self._lock:
            for alarm_id in self._order:
                a = self._alarms[alarm_id]
                if a.source in wanted:
                    twins = out.setdefault(a.source, [])
                    if a.twin not in twins:
                        twins.append(a.twin)
        return out

    def open_on(self, twins: Sequence[str]) -> builtins.list[Alarm]:
        wanted = set(twins)
        with self._lock:
            return [a for i in self._order if (a := self._alarms[i]).is_open and a.twin in wanted]

    def add_shelf(self, shelf: Shelf) -> None:
        with self._lock:
            if shelf.id in self._shelves:
                raise shelf_exists(shelf)
            self._shelves[shelf.id] = shelf

    def get_shelf(self, shelf_id: str) -> Shelf:
        with self._lock:
            try:
                return self._shelves[shelf_id]
            except KeyError:
                raise unknown_shelf(shelf_id) from None

    def update_shelf(self, shelf: Shelf) -> None:
        with self._lock:
            if shelf.id not in self._shelves:
                raise unknown_shelf(shelf.id)
            self._shelves[shelf.id] = shelf

    def shelves(self, *, at: datetime | None = None, limit: int = 100) -> builtins.list[Shelf]:
        with self._lock:
            found = [s for s in reversed(self._shelves.values()) if at is None or s.in_effect(at)]
            return found[:limit]

    def changes(self, after: int = 0, limit: int = 100) -> builtins.list[tuple[int, dict[str, Any]]]:
        with self._lock:
            start = max(after, 0)
            return [(start + i + 1, dict(item)) for i, item in enumerate(self._changes[start:start + limit])]

    def cursor(self, name: str) -> int:
        with self._lock:
            return self._cursors.get(name, 0)

    def set_cursor(self, name: str, position: int) -> None:
        with self._lock:
            self._cursors[name] = int(position)

    def close(self) -> None:
        pass


def open_alarm_store(settings: Settings) -> AlarmStore:
    """The alarm store the settings name (memory, PostgreSQL, or the embedded ``tvilling.db``), alone on a
    database of its own; chosen by :func:`tvilling.backend.open_store`. A platform's is ``backend.alarm_store``."""
    from tvilling.backend import open_store

    store: AlarmStore = open_store("alarm_store", settings.store, data_dir=settings.data_dir,
                                   schema=settings.pg_schema)
    return store
