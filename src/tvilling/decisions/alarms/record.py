"""One alarm as a pure value, and the lifecycle moves between its states.

An alarm is raised ``active``; an operator may ``acknowledge`` it; it ends ``cleared``,
either by an operator (from ``active`` or ``acknowledged``) or by its rule when the
condition returns to normal (actor ``"rule"``). A cleared alarm is final: a condition
that fires again raises a new alarm. While an alarm is not cleared, a re-trigger of the
same rule on the same twin folds into it (``count`` + 1, ``value`` and ``updated``
refreshed, ``severity`` raised to the higher of the two; it never drops while open).

Acknowledging and clearing record who (``acknowledged_by``, ``cleared_by``) and an optional
note each (``ack_note``, ``clear_note``; ``note`` is the note of the latest step). An alarm
raised while a shelf covers its twin, or open when a shelf is made, carries that shelf
(``shelf``, ``shelved_until``): it is *shelved* until then (see :mod:`.shelves`).

Every move returns a new record (``version`` + 1) and its change-feed type; an illegal
move raises :class:`~tvilling.core.errors.Conflict` (rule ``transition``).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 5, 1, tzinfo=UTC)
>>> a = new_alarm(twin="B1", model="dtmi:x:Bearing;1", rule="hot", severity="major", message="hot",
...               prop="temperature", value=91.0, now=t0)
>>> a, kind = acknowledge(a, now=t0 + timedelta(seconds=5), actor="ann")
>>> (a.state, kind, a.acknowledged_by)
('acknowledged', 'alarm.acknowledged', 'ann')
>>> a, kind = clear(a, now=t0 + timedelta(seconds=9), actor="rule", note="back to normal")
>>> acknowledge(a, now=t0, actor="bob")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Conflict: alarm ... is cleared; it cannot be acknowledged
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from tvilling.core.errors import Conflict, Invalid

ACTIVE: Final = "active"
ACKNOWLEDGED: Final = "acknowledged"
CLEARED: Final = "cleared"
STATES: Final = (ACTIVE, ACKNOWLEDGED, CLEARED)
OPEN: Final = frozenset({ACTIVE, ACKNOWLEDGED})

#: Severities, most severe first; ``RANK`` orders them (higher is more severe).
SEVERITIES: Final = ("critical", "major", "minor", "warning")
RANK: Final = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}

RAISED: Final = "alarm.raised"
ACKNOWLEDGED_TYPE: Final = "alarm.acknowledged"
CLEARED_TYPE: Final = "alarm.cleared"
UPDATED: Final = "alarm.updated"
CHANGE_TYPES: Final = frozenset({RAISED, ACKNOWLEDGED_TYPE, CLEARED_TYPE, UPDATED})

MAX_NOTE = 2000
RULE_ACTOR: Final = "rule"


class Alarm(msgspec.Struct, frozen=True, kw_only=True):
    """One alarm on one twin. ``source`` is the id of the alarm it was propagated from (else None)."""

    id: str
    key: str  # de-duplication key: at most one alarm per key is open
    twin: str
    model: str | None
    rule: str
    severity: str
    state: str
    message: str
    property: str
    value: Any
    raised: datetime
    updated: datetime
    acknowledged: datetime | None = None
    cleared: datetime | None = None
    count: int = 1
    origin: str = ""
    source: str | None = None
    actor: str = RULE_ACTOR
    acknowledged_by: str | None = None
    cleared_by: str | None = None
    note: str | None = None
    version: int = 1
    reading: datetime | None = None  # data time of the last reading a rule applied (raise, re-trigger, clear)
    ack_note: str | None = None
    clear_note: str | None = None
    shelf: str | None = None  # the id of the shelf that holds (or held) it
    shelved_until: datetime | None = None

    def shelved_at(self, at: datetime) -> bool:
        """Whether a shelf holds it at ``at`` (a cleared alarm is never shelved)."""
        return self.is_open and self.shelved_until is not None and at < self.shelved_until

    @builtins.property
    def is_open(self) -> bool:
        return self.state in OPEN

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The API representation (times ISO 8601 UTC); ``shelved`` is as of ``now`` (default: its last
        change)."""
        return {
            "id": self.id, "twin": self.twin, "model": self.model, "rule": self.rule,
            "severity": self.severity, "state": self.state, "message": self.message,
            "property": self.property, "value": self.value, "raised": iso(self.raised),
            "acknowledged": iso_or_none(self.acknowledged), "cleared": iso_or_none(self.cleared),
            "updated": iso(self.updated), "count": self.count, "origin": self.origin, "actor": self.actor,
            "source": self.source, "acknowledged_by": self.acknowledged_by, "cleared_by": self.cleared_by,
            "note": self.note, "ack_note": self.ack_note, "clear_note": self.clear_note, "shelf": self.shelf,
            "shelved_until": iso_or_none(self.shelved_until), "shelved": self.shelved_at(now or self.updated),
        }


def alarm_key(twin: str, rule: str, origin: str | None = None) -> str:
    """The de-duplication key: (twin, rule) for a twin's own alarms, (twin, rule, origin) for derived ones."""
    return f"{twin}\x1f{rule}" if origin is None or origin == twin else f"{twin}\x1f{rule}\x1f{origin}"


def new_alarm(*, twin: str, model: str | None, rule: str, severity: str, message: str, prop: str, value: Any,
              now: datetime, origin: str | None = None, source: str | None = None,
              alarm_id: str | None = None, shelf: str | None = None,
              shelved_until: datetime | None = None) -> Alarm:
    """A fresh ``active`` alarm (``origin`` defaults to ``twin``: not propagated), on ``shelf`` if given."""
    check_severity(severity)
    origin = origin or twin
    return Alarm(id=alarm_id or str(uuid.uuid4()), key=alarm_key(twin, rule, origin), twin=twin, model=model,
                 rule=rule, severity=severity, state=ACTIVE, message=message, property=prop, value=value,
                 raised=now, updated=now, origin=origin, source=source, reading=now, shelf=shelf,
                 shelved_until=shelved_until if shelf is not None else None)


def acknowledge(alarm: Alarm, *, now: datetime, actor: str, note: str | None = None) -> tuple[Alarm, str]:
    """``active → acknowledged``; ``Conflict`` from any other state."""
    if alarm.state != ACTIVE:
        raise _illegal(alarm, "acknowledged")
    return _step(alarm, now, actor, note, state=ACKNOWLEDGED, acknowledged=now, acknowledged_by=actor[:128],
                 ack_note=_note(note)), ACKNOWLEDGED_TYPE


def clear(alarm: Alarm, *, now: datetime, actor: str, note: str | None = None,
          reading: datetime | None = None) -> tuple[Alarm, str]:
    """``active | acknowledged → cleared``; ``Conflict`` when cleared already. ``reading``: the data
    time of the reading that cleared it (a rule's clear)."""
    if alarm.state not in OPEN:
        raise _illegal(alarm, "cleared")
    return _step(alarm, now, actor, note, state=CLEARED, cleared=now, cleared_by=actor[:128],
                 clear_note=_note(note), reading=reading or alarm.reading), CLEARED_TYPE


def fold(alarm: Alarm, *, now: datetime, value: Any, severity: str, message: str | None = None,
         count: int | None = None) -> tuple[Alarm, str]:
    """A re-trigger of an open alarm: ``count`` + 1 (or the source's ``count``), value refreshed,
    severity escalated (never lowered). ``Conflict`` when the alarm is cleared."""
    if alarm.state not in OPEN:
        raise _illegal(alarm, "re-triggered")
    check_severity(severity)
    sev = severity if RANK[severity] > RANK[alarm.severity] else alarm.severity
    return _step(alarm, now, RULE_ACTOR, None, value=value, severity=sev, message=message or alarm.message,
                 count=alarm.count + 1 if count is None else count, reading=now), UPDATED


def shelve(alarm: Alarm, *, shelf: str | None, until: datetime | None, now: datetime) -> tuple[Alarm, str]:
    """Put an open alarm on a shelf (``shelf`` None: take it off); ``Conflict`` when it is cleared.
    The actor and notes of its lifecycle are kept: shelving is not a lifecycle step."""
    if alarm.state not in OPEN:
        raise _illegal(alarm, "shelved")
    return msgspec.structs.replace(alarm, updated=max(now, alarm.updated), shelf=shelf,
                                   shelved_until=None if shelf is None else until,
                                   version=alarm.version + 1), UPDATED


def _note(note: Any) -> str | None:
    if note is not None and not isinstance(note, str):
        raise Invalid("note must be a string", field="note", rule="type")
    return None if note is None or not note.strip() else note.strip()[:MAX_NOTE]


def _step(alarm: Alarm, now: datetime, actor: str, note: str | None, **changes: Any) -> Alarm:
    return msgspec.structs.replace(alarm, updated=max(now, alarm.updated), actor=actor[:128], note=_note(note),
                                   version=alarm.version + 1, **changes)


def _illegal(alarm: Alarm, what: str) -> Conflict:
    return Conflict(f"alarm {alarm.id} is {alarm.state}; it cannot be {what}", alarm=alarm.id, twin=alarm.twin,
                    state=alarm.state, rule="transition")


def check_severity(severity: Any) -> str:
    if severity not in RANK:
        raise Invalid(f"severity must be one of {list(SEVERITIES)}; got {severity!r}", field="severity",
                      rule="enum")
    return str(severity)


def change_item(alarm: Alarm, change_type: str) -> dict[str, Any]:
    """The change-feed (and hub) item for one step: ``{"kind": "alarm", "type", "twin", "model", "alarm"}``."""
    return {"kind": "alarm", "type": change_type, "twin": alarm.twin, "model": alarm.model,
            "time": iso(alarm.updated), "alarm": alarm.to_json()}


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def iso_or_none(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)
