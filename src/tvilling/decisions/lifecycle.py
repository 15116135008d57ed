"""The lifecycle of a command sent to an asset: pure values and the transitions between them.

A command is created ``pending``, becomes ``sent`` once the transport has taken it,
may be ``acknowledged`` by the device, and ends ``succeeded``, ``failed`` or
``timed_out``. Every transition returns the new record and one change item (plain
JSON) for the change feed; an illegal transition raises :class:`Conflict`.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 5, 1, tzinfo=UTC)
>>> rec = new_command("M1", "setSpeed", {"rpm": 900}, now=t0, timeout_s=30)
>>> rec, item = transition(rec, SENT, now=t0 + timedelta(seconds=1))
>>> (rec.status, item["kind"], item["previous"], rec.attempts)
('sent', 'command', 'pending', 1)
>>> rec, item = transition(rec, SUCCEEDED, now=t0 + timedelta(seconds=2), response={"accepted": True})
>>> transition(rec, FAILED, now=t0 + timedelta(seconds=3))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Conflict: command ... is succeeded already; it cannot become failed
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from tvilling.core.errors import Conflict, Invalid

PENDING: Final = "pending"
SENT: Final = "sent"
ACKNOWLEDGED: Final = "acknowledged"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
TIMED_OUT: Final = "timed_out"

STATUSES: Final = (PENDING, SENT, ACKNOWLEDGED, SUCCEEDED, FAILED, TIMED_OUT)
FINAL: Final = frozenset({SUCCEEDED, FAILED, TIMED_OUT})
OPEN: Final = frozenset({PENDING, SENT, ACKNOWLEDGED})

#: Allowed moves. ``pending → pending`` is a send that failed and will be retried.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({PENDING, SENT, FAILED, TIMED_OUT}),
    SENT: frozenset({ACKNOWLEDGED, SUCCEEDED, FAILED, TIMED_OUT}),
    ACKNOWLEDGED: frozenset({SUCCEEDED, FAILED, TIMED_OUT}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    TIMED_OUT: frozenset(),
}

MAX_ERROR = 2000


class CommandRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One command to one twin's asset, with where it stands."""

    id: str
    twin: str
    name: str
    request: Any
    status: str
    created: datetime
    updated: datetime
    deadline: datetime
    sent_at: datetime | None = None
    response: Any = None
    error: str | None = None
    attempts: int = 0
    actor: str = "api"
    model: str | None = None  # the twin's model when the command was invoked

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> dict[str, Any]:
        """The API representation (times as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "twin": self.twin,
            "name": self.name,
            "request": self.request,
            "status": self.status,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "sent_at": None if self.sent_at is None else iso(self.sent_at),
            "deadline": iso(self.deadline),
            "response": self.response,
            "error": self.error,
            "attempts": self.attempts,
            "actor": self.actor,
            "model": self.model,
        }


def new_command(twin: str, name: str, request: Any, *, now: datetime, timeout_s: float,
                actor: str = "api", model: str | None = None, command_id: str | None = None) -> CommandRecord:
    """A fresh ``pending`` command whose deadline is ``timeout_s`` from ``now``."""
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or not 0 < timeout_s <= 7 * 86400:
        raise Invalid(f"command {name!r}: timeout_s must be a number of seconds in (0, 604800]; got {timeout_s!r}",
                      twin=twin, field="timeout_s", rule="range")
    return CommandRecord(id=command_id or str(uuid.uuid4()), twin=twin, name=name, request=request,
                         status=PENDING, created=now, updated=now, deadline=now + timedelta(seconds=timeout_s),
                         actor=actor, model=model)


def can_move(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def transition(record: CommandRecord, to: str, *, now: datetime, response: Any = None,
               error: str | None = None) -> tuple[CommandRecord, dict[str, Any]]:
    """Move ``record`` to status ``to``; returns the new record and its change item.

    ``sent`` and a retried ``pending`` count one more attempt; ``response`` and
    ``error`` are kept when given. Raises :class:`Conflict` (rule ``transition``) when
    the move is not allowed from the current status.
    """
    if to not in TRANSITIONS:
        raise Invalid(f"unknown command status {to!r}; one of {list(STATUSES)}", field="status", rule="enum")
    if not can_move(record.status, to):
        raise Conflict(f"command {record.id} is {record.status} already; it cannot become {to}",
                       command=record.id, twin=record.twin, status=record.status, to=to, rule="transition")
    changes: dict[str, Any] = {"status": to, "updated": max(now, record.updated)}
    if to == SENT or (record.status == PENDING and to in (PENDING, FAILED)):
        changes["attempts"] = record.attempts + 1  # a send was tried (a failed send counts too)
    if to == SENT:
        changes["sent_at"] = now
        changes["error"] = None
    if response is not None:
        changes["response"] = response
    if error is not None:
        changes["error"] = error[:MAX_ERROR]
    new = msgspec.structs.replace(record, **changes)
    return new, change_item(new, record.status)


def change_item(record: CommandRecord, previous: str | None) -> dict[str, Any]:
    """The change-feed item for ``record`` having arrived in its status from ``previous``."""
    item = record.to_json()
    item["kind"] = "command"
    item["previous"] = previous
    item["time"] = item["updated"]
    return item


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
