"""Maintenance work orders: the value, its lifecycle and the checks on a proposal. Pure: no I/O.

A work order is one maintenance task on one asset (a twin), in a planned window, with a crew
and spare parts. It moves ``proposed → approved → scheduled → in_progress → done``; any state
that is not final may become ``cancelled``. Every move is checked (an illegal one is a
:class:`~tvilling.core.errors.Conflict` naming both states), bumps ``version`` (optimistic
concurrency) and is kept in the order's ``history``.

>>> from datetime import UTC, datetime
>>> t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
>>> order = propose({"task": "replace-bearing", "asset": "M1", "planned_start": "2026-03-03T06:00:00Z",
...                  "planned_end": "2026-03-03T08:00:00Z", "parts": {"6205-2RS": 2}}, now=t0, by="planner")
>>> order.state, order.version, order.parts
('proposed', 1, {'6205-2RS': 2})
>>> approved = transition(order, APPROVED, now=t0, by="alice")
>>> approved.state, approved.approved_by, approved.version, [h.to for h in approved.history]
('approved', 'alice', 2, ['proposed', 'approved'])
>>> transition(approved, DONE, now=t0, by="alice")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Conflict: work order ... is approved; it cannot become done (from approved: scheduled, cancelled)
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from tvilling.core.errors import Conflict, Invalid
from tvilling.core.patch import check_json

PROPOSED: Final = "proposed"
APPROVED: Final = "approved"
SCHEDULED: Final = "scheduled"
IN_PROGRESS: Final = "in_progress"
DONE: Final = "done"
CANCELLED: Final = "cancelled"

STATES: Final = (PROPOSED, APPROVED, SCHEDULED, IN_PROGRESS, DONE, CANCELLED)
FINAL: Final = frozenset({DONE, CANCELLED})
#: Allowed moves; every state that is not final may also be cancelled.
TRANSITIONS: Final[dict[str, tuple[str, ...]]] = {
    PROPOSED: (APPROVED, CANCELLED),
    APPROVED: (SCHEDULED, CANCELLED),
    SCHEDULED: (IN_PROGRESS, CANCELLED),
    IN_PROGRESS: (DONE, CANCELLED),
    DONE: (),
    CANCELLED: (),
}
#: The verb of each move, as the API and the CLI name it.
ACTIONS: Final[dict[str, str]] = {"approve": APPROVED, "schedule": SCHEDULED, "start": IN_PROGRESS, "done": DONE,
                                  "cancel": CANCELLED}

MAX_TEXT = 200
MAX_NOTE = 4000
MAX_CREW = 100
MAX_PARTS = 200
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: The fields a proposal may hold.
PROPOSAL_FIELDS: Final = frozenset({"id", "task", "asset", "planned_start", "planned_end", "crew", "parts",
                                    "expected_cost", "failure_probability", "rationale", "notes", "firm",
                                    "maintenance_command"})


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded move: from which state (``None`` for the proposal itself) to which, when, by whom, why."""

    to: str
    at: datetime
    by: str
    previous: str | None = None
    note: str | None = None


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """A remark on the order (from the proposal or given with a move)."""

    at: datetime
    by: str
    text: str


class WorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One maintenance task on one asset, with where it stands.

    ``parts`` maps a part number to a quantity; ``rationale`` is the planner's reasoning (JSON);
    ``completion`` says what completing it did (the maintenance command sent, the operating
    hours the asset reported then). ``version`` counts the changes (1 when proposed).
    """

    id: str
    task: str
    asset: str
    state: str
    planned_start: datetime
    planned_end: datetime
    created: datetime
    updated: datetime
    created_by: str
    version: int = 1
    model: str | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    crew: tuple[str, ...] = ()
    parts: dict[str, int] = msgspec.field(default_factory=dict)
    expected_cost: float | None = None
    failure_probability: float | None = None
    rationale: dict[str, Any] = msgspec.field(default_factory=dict)
    approved_by: str | None = None
    notes: tuple[Note, ...] = ()
    firm: bool = False
    maintenance_command: str | None = None
    completion: dict[str, Any] | None = None
    history: tuple[Transition, ...] = ()

    @property
    def final(self) -> bool:
        """Done or cancelled: no move is left."""
        return self.state in FINAL

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def to_json(self) -> dict[str, Any]:
        """The API representation (times as ISO 8601 UTC)."""
        return {
            "id": self.id, "task": self.task, "asset": self.asset, "model": self.model, "state": self.state,
            "planned_start": iso(self.planned_start), "planned_end": iso(self.planned_end),
            "actual_start": iso_or_none(self.actual_start), "actual_end": iso_or_none(self.actual_end),
            "crew": list(self.crew), "parts": dict(self.parts), "expected_cost": self.expected_cost,
            "failure_probability": self.failure_probability, "rationale": self.rationale,
            "created_by": self.created_by, "approved_by": self.approved_by,
            "notes": [{"at": iso(n.at), "by": n.by, "text": n.text} for n in self.notes],
            "firm": self.firm, "maintenance_command": self.maintenance_command, "completion": self.completion,
            "version": self.version, "created": iso(self.created), "updated": iso(self.updated),
            "history": [{"previous": h.previous, "to": h.to, "at": iso(h.at), "by": h.by, "note": h.note}
                        for h in self.history],
        }


def propose(body: Any, *, now: datetime, by: str, model: str | None = None) -> WorkOrder:
    """A ``proposed`` work order from a proposal document; ``Invalid`` naming the field otherwise.

    Required: ``task``, ``asset``, ``planned_start``, ``planned_end`` (after the start). Optional:
    ``id``, ``crew`` (technician ids), ``parts`` (part number → quantity ≥ 1), ``expected_cost`` (≥ 0),
    ``failure_probability`` (0..1), ``rationale`` (an object), ``notes``, ``firm``,
    ``maintenance_command`` (the command completing it sends, instead of the configured one).
    """
    if not isinstance(body, Mapping):
        raise Invalid(f"a work order proposal is a JSON object; got {type(body).__name__}", field="body",
                      rule="type")
    unknown = sorted(set(body) - PROPOSAL_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r} in the work order; the fields are {sorted(PROPOSAL_FIELDS)}",
                      field=unknown[0], rule="unknown_field")
    order_id = body.get("id")
    if order_id is None:
        order_id = f"wo-{uuid.uuid4().hex[:12]}"
    elif not isinstance(order_id, str) or not _ID.fullmatch(order_id):
        raise Invalid(f"id must be 1-128 letters, digits or . _ : - (starting with a letter or digit); got "
                      f"{_show(order_id)}", field="id", rule="format")
    start = parse_time(_required(body, "planned_start"), "planned_start")
    end = parse_time(_required(body, "planned_end"), "planned_end")
    check_window(start, end)
    notes: tuple[Note, ...] = ()
    text = body.get("notes")
    if text is not None:
        notes = (Note(at=now, by=by, text=note_text(text, "notes")),)
    rationale = body.get("rationale", {})
    if rationale is None:
        rationale = {}
    if not isinstance(rationale, Mapping):
        raise Invalid(f"rationale must be a JSON object; got {_show(rationale)}", field="rationale", rule="type")
    check_json(rationale, field="rationale")
    firm = body.get("firm", False)
    if not isinstance(firm, bool):
        raise Invalid(f"firm must be true or false; got {_show(firm)}", field="firm", rule="type")
    command = body.get("maintenance_command")
    if command is not None:
        command = text_field(command, "maintenance_command")
    return WorkOrder(
        id=order_id, task=text_field(_required(body, "task"), "task"),
        asset=text_field(_required(body, "asset"), "asset"), state=PROPOSED, planned_start=start, planned_end=end,
        created=now, updated=now, created_by=by, model=model, crew=crew_of(body.get("crew", [])),
        parts=parts_of(body.get("parts", {})),
        expected_cost=_number(body.get("expected_cost"), "expected_cost", low=0.0),
        failure_probability=_number(body.get("failure_probability"), "failure_probability", low=0.0, high=1.0),
        rationale=dict(rationale), notes=notes, firm=firm, maintenance_command=command,
        history=(Transition(to=PROPOSED, at=now, by=by),))


def allowed(state: str) -> tuple[str, ...]:
    """The states an order in ``state`` may move to."""
    return TRANSITIONS.get(state, ())


def transition(order: WorkOrder, to: str, *, now: datetime, by: str, note: str | None = None,
               changes: Mapping[str, Any] | None = None) -> WorkOrder:
    """``order`` moved to ``to``: checked, recorded in its history, its version bumped.

    ``approved`` records the approver; ``in_progress`` the actual start and ``done`` the actual
    end (``now`` unless ``changes`` give ``actual_start``/``actual_end``). ``changes`` may also
    set ``planned_start``/``planned_end``/``crew`` (when scheduling), ``parts`` (those used, when
    done) and ``completion``. ``Conflict`` (rule ``transition``) when the move is not allowed.
    """
    if to not in TRANSITIONS:
        raise Invalid(f"unknown work order state {to!r}; one of {list(STATES)}", field="state", rule="enum")
    if to not in allowed(order.state):
        options = ", ".join(allowed(order.state)) or "none, it is final"
        raise Conflict(f"work order {order.id} is {order.state}; it cannot become {to} (from {order.state}: "
                       f"{options})", workorder=order.id, state=order.state, to=to, rule="transition")
    fields: dict[str, Any] = dict(changes or {})
    if to == APPROVED:
        fields["approved_by"] = by
    if to == IN_PROGRESS:
        fields.setdefault("actual_start", now)
    if to == DONE:
        fields.setdefault("actual_end", now)
        start = fields.get("actual_start", order.actual_start)
        if start is not None and fields["actual_end"] < start:
            raise Invalid(f"work order {order.id}: actual_end {iso(fields['actual_end'])} is before its actual "
                          f"start {iso(start)}", field="actual_end", rule="order")
    return _changed(order, now=now, by=by, note=note, history=Transition(previous=order.state, to=to, at=now, by=by,
                                                                          note=note), state=to, **fields)


def amend(order: WorkOrder, *, now: datetime, by: str, note: str | None = None, **fields: Any) -> WorkOrder:
    """``order`` with ``fields`` changed (no move of state; e.g. the completion recorded), version bumped."""
    return _changed(order, now=now, by=by, note=note, history=None, **fields)


def _changed(order: WorkOrder, *, now: datetime, by: str, note: str | None, history: Transition | None,
             **fields: Any) -> WorkOrder:
    notes = order.notes + ((Note(at=now, by=by, text=note),) if note else ())
    more = (history,) if history is not None else ()
    return msgspec.structs.replace(order, **fields, notes=notes, history=order.history + more,
                                   version=order.version + 1, updated=max(now, order.updated))


def change_item(order: WorkOrder, previous: str | None, by: str) -> dict[str, Any]:
    """The change-feed item for a stored change of ``order`` (``previous``: its state before; ``None`` when new)."""
    return {"kind": "workorder", "id": order.id, "twin": order.asset, "model": order.model, "task": order.task,
            "state": order.state, "previous": previous, "version": order.version, "firm": order.firm,
            "planned_start": iso(order.planned_start), "planned_end": iso(order.planned_end), "by": by,
            "time": iso(order.updated)}


# -- checks on values -------------------------------------------------------------------------------------------


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-03-03T06:00:00Z``), as UTC; ``Invalid`` naming ``field`` otherwise."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise Invalid(f"{field} must be an ISO 8601 time like 2026-03-03T06:00:00Z; got {_show(value)}",
                          field=field, rule="format") from None
    else:
        raise Invalid(f"{field} must be an ISO 8601 time like 2026-03-03T06:00:00Z; got {_show(value)}",
                      field=field, rule="format")
    if parsed.tzinfo is None:
        raise Invalid(f"{field} needs a time zone (e.g. Z for UTC); got {_show(value)}", field=field, rule="zone")
    if not 1970 <= parsed.year <= 9998:
        raise Invalid(f"{field} must be between the years 1970 and 9998; got {_show(value)}", field=field,
                      rule="range")
    return parsed.astimezone(UTC)


def check_window(start: datetime, end: datetime) -> None:
    """``Invalid`` (field ``planned_end``) unless the window ends after it starts."""
    if end <= start:
        raise Invalid(f"planned_end {iso(end)} must be after planned_start {iso(start)}", field="planned_end",
                      rule="order")


def text_field(value: Any, field: str) -> str:
    """A non-empty one-line string of at most :data:`MAX_TEXT` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or "\x00" in value \
            or "\n" in value:
        raise Invalid(f"{field} must be a non-empty line of at most {MAX_TEXT} characters; got {_show(value)}",
                      field=field, rule="text")
    return value.strip()


def note_text(value: Any, field: str = "note") -> str:
    """A remark: a non-empty string of at most :data:`MAX_NOTE` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NOTE or "\x00" in value:
        raise Invalid(f"{field} must be a non-empty text of at most {MAX_NOTE} characters; got {_show(value)}",
                      field=field, rule="text")
    return value.strip()


def crew_of(value: Any, field: str = "crew") -> tuple[str, ...]:
    """Technician ids: a list of distinct non-empty strings."""
    if not isinstance(value, list | tuple) or len(value) > MAX_CREW:
        raise Invalid(f"{field} must be a list of at most {MAX_CREW} technician ids; got {_show(value)}",
                      field=field, rule="type")
    out = tuple(text_field(v, f"{field}[{i}]") for i, v in enumerate(value))
    if len(set(out)) != len(out):
        raise Invalid(f"{field} names a technician twice", field=field, rule="unique")
    return out


def parts_of(value: Any, field: str = "parts") -> dict[str, int]:
    """Spare parts: an object of part number → whole quantity ≥ 1."""
    if not isinstance(value, Mapping) or len(value) > MAX_PARTS:
        raise Invalid(f"{field} must be an object of part number → quantity (at most {MAX_PARTS}); got "
                      f"{_show(value)}", field=field, rule="type")
    out: dict[str, int] = {}
    for part, qty in value.items():
        name = text_field(part, f"{field} (a part number)")
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1_000_000:
            raise Invalid(f"{field}.{name} must be a whole quantity from 1 to 1000000; got {_show(qty)}",
                          field=f"{field}.{name}", rule="range")
        out[name] = qty
    return out


def _number(value: Any, field: str, *, low: float, high: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low \
            or (high is not None and value > high):
        bound = f"from {low:g} to {high:g}" if high is not None else f"≥ {low:g}"
        raise Invalid(f"{field} must be a number {bound}; got {_show(value)}", field=field, rule="range")
    return float(value)


def _required(body: Mapping[str, Any], field: str) -> Any:
    if body.get(field) is None:
        raise Invalid(f"the work order needs {field!r}", field=field, rule="required")
    return body[field]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def iso(ts: datetime) -> str:
    """``2026-03-03T06:00:00Z``: a time as the API writes it."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_or_none(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)


def sort_key(ts: datetime) -> str:
    """A fixed-width UTC text of ``ts`` that sorts as the time does (the stores' time columns)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["ACTIONS", "APPROVED", "CANCELLED", "DONE", "FINAL", "IN_PROGRESS", "PROPOSED", "SCHEDULED", "STATES",
           "TRANSITIONS", "Note", "Transition", "WorkOrder", "allowed", "amend", "change_item", "check_window",
           "crew_of", "iso", "note_text", "parse_time", "parts_of", "propose", "sort_key", "transition"]
