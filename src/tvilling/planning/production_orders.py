"""Production orders: the value and the checks on a new one. Pure: no I/O.

An order asks a line for ``quantity`` parts of ``product``: a routing of ordered steps, each run on one
of its eligible machines (an empty list: any machine of the line), not before ``release``, due by ``due``,
weighted by ``priority`` when late. The machines are checked against the line's twin graph elsewhere
(:mod:`tvilling.planning.production_twin`); here only the form is.

>>> from datetime import UTC, datetime
>>> t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
>>> o = parse_order({"line": "line-1", "product": "shaft", "quantity": 120, "routing": [["line-1-m01"], []],
...                  "due": "2026-03-02T12:00:00Z", "id": "po-1"}, now=t0, by="alice")
>>> o.routing, o.release == t0, o.priority, o.state
((('line-1-m01',), ()), True, 1, 'open')
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from tvilling.core.errors import Conflict, Invalid

OPEN: Final = "open"
DONE: Final = "done"
CANCELLED: Final = "cancelled"
STATES: Final = (OPEN, DONE, CANCELLED)
FIELDS: Final = frozenset({"id", "line", "product", "quantity", "routing", "due", "release", "priority"})
MAX_QUANTITY = 10_000_000
MAX_STEPS = 50
MAX_PRIORITY = 1000
MAX_MACHINES_PER_STEP = 200
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class ProductionOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order of a line: ``routing[k]`` are the machines step ``k`` may run on (empty: any of the line)."""

    id: str
    line: str
    product: str
    quantity: int
    routing: tuple[tuple[str, ...], ...]
    due: datetime
    release: datetime
    priority: int
    created: datetime
    created_by: str
    state: str = OPEN
    version: int = 1
    updated: datetime | None = None
    completed: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The API form: ISO times, the routing as lists."""
        return {"id": self.id, "line": self.line, "product": self.product, "quantity": self.quantity,
                "routing": [list(step) for step in self.routing], "due": iso(self.due),
                "release": iso(self.release), "priority": self.priority, "state": self.state,
                "version": self.version, "created": iso(self.created), "created_by": self.created_by,
                "updated": None if self.updated is None else iso(self.updated),
                "completed": None if self.completed is None else iso(self.completed)}


def parse_order(body: Any, *, now: datetime, by: str) -> ProductionOrder:
    """A new open order from a request body; :class:`Invalid` names the first field that is wrong."""
    if not isinstance(body, Mapping):
        raise Invalid("a production order is a JSON object", field="body", rule="type")
    unknown = sorted(str(k) for k in body if k not in FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}; an order has {sorted(FIELDS)}", field=unknown[0],
                      rule="unknown")
    order_id = body.get("id")
    if order_id is None:
        order_id = f"po-{uuid.uuid4().hex[:12]}"
    elif not isinstance(order_id, str) or not _ID.fullmatch(order_id):
        raise Invalid(f"id must be 1-128 letters, digits or ._:- (starting with a letter or digit), not "
                      f"{_show(order_id)}", field="id", rule="format")
    line = _text(_required(body, "line"), "line")
    product = _text(_required(body, "product"), "product")
    quantity = _integer(_required(body, "quantity"), "quantity", 1, MAX_QUANTITY)
    routing = parse_routing(_required(body, "routing"))
    due = parse_time(_required(body, "due"), "due")
    release = parse_time(body["release"], "release") if body.get("release") is not None else now
    if due <= release:
        raise Invalid(f"due {iso(due)} is not after the release {iso(release)}", field="due", rule="order")
    priority = _integer(body.get("priority", 1), "priority", 1, MAX_PRIORITY)
    return ProductionOrder(id=order_id, line=line, product=product, quantity=quantity, routing=routing, due=due,
                           release=release, priority=priority, created=now, created_by=by)


def parse_routing(value: Any) -> tuple[tuple[str, ...], ...]:
    """Steps in order; each a list of machine twin ids (empty or ``"*"``: any machine of the line)."""
    if not isinstance(value, list):
        raise Invalid(f"routing must be a list of steps (each a list of machine ids), not {_show(value)}",
                      field="routing", rule="type")
    if not value:
        raise Invalid("routing is empty: an order needs at least one step", field="routing", rule="empty")
    if len(value) > MAX_STEPS:
        raise Invalid(f"routing has {len(value)} steps; at most {MAX_STEPS}", field="routing", rule="size")
    steps: list[tuple[str, ...]] = []
    for k, step in enumerate(value):
        where = f"routing[{k}]"
        if step == "*" or step is None:
            steps.append(())
            continue
        if isinstance(step, str):
            step = [step]
        if not isinstance(step, list) or len(step) > MAX_MACHINES_PER_STEP:
            raise Invalid(f"{where} must be a list of machine ids (or '*' for any machine of the line), not "
                          f"{_show(step)}", field=where, rule="type")
        machines: list[str] = []
        for m in step:
            name = _text(m, where)
            if name == "*":
                machines = []
                break
            if name in machines:
                raise Invalid(f"{where} lists machine {name!r} twice", field=where, machine=name, rule="duplicate")
            machines.append(name)
        steps.append(tuple(machines))
    return tuple(steps)


def cancel(order: ProductionOrder, *, now: datetime) -> ProductionOrder:
    """The order cancelled; :class:`Conflict` when it is done or cancelled already."""
    if order.state != OPEN:
        raise Conflict(f"production order {order.id} is {order.state}; only an open order can be cancelled",
                       order=order.id, state=order.state, rule="state")
    return msgspec.structs.replace(order, state=CANCELLED, version=order.version + 1, updated=now)


def complete(order: ProductionOrder, *, now: datetime, at: datetime) -> ProductionOrder:
    """The order done (its last operation ended at ``at`` per the plan)."""
    return msgspec.structs.replace(order, state=DONE, version=order.version + 1, updated=now, completed=at)


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time with a zone, as UTC; :class:`Invalid` naming ``field`` otherwise."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise Invalid(f"{field} must be an ISO 8601 time such as 2026-03-03T06:00:00Z, not {_show(value)}",
                          field=field, rule="format") from None
    else:
        raise Invalid(f"{field} must be an ISO 8601 time such as 2026-03-03T06:00:00Z, not {_show(value)}",
                      field=field, rule="format")
    if ts.tzinfo is None:
        raise Invalid(f"{field} {_show(value)} has no time zone; add Z or an offset", field=field, rule="zone")
    try:
        out = ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Invalid(f"{field} {_show(value)} is out of range", field=field, rule="range") from None
    if not 1970 <= out.year <= 9998:
        raise Invalid(f"{field} {_show(value)} is out of range (years 1970-9998)", field=field, rule="range")
    return out


def iso(ts: datetime) -> str:
    """UTC ISO 8601 with a ``Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _required(body: Mapping[str, Any], field: str) -> Any:
    if body.get(field) is None:
        raise Invalid(f"{field} is required", field=field, rule="required")
    return body[field]


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or "\x00" in value:
        raise Invalid(f"{field} must be a non-empty text of at most 200 characters, not {_show(value)}",
                      field=field, rule="type")
    return value.strip()


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{field} must be an integer from {low} to {high}, not {_show(value)}", field=field,
                      rule="range")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["CANCELLED", "DONE", "OPEN", "STATES", "ProductionOrder", "cancel", "complete", "iso", "parse_order",
           "parse_routing", "parse_time"]
