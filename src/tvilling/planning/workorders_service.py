"""The work order service: proposals checked against the twins, moves compare-and-set, completion closing
the loop to the asset.

Every move reads the order, checks it (:func:`~tvilling.planning.workorders.transition`) and stores
it only if nobody changed it since (its ``version``). With an ``if_match`` version a stale order is
:class:`~tvilling.core.errors.PreconditionFailed`; without one the move is decided again on the
newer order (so of two approvals one wins and the other is told the order is approved already).

Completing an order (``done``) records it first, with the operating hours the asset reports then,
and afterwards sends the asset its maintenance command through the command service (the one
behind ``POST /api/twins/{id}/commands/{name}``): the order's own ``maintenance_command``, else the
one configured for its task or its model (:class:`MaintenanceCommands`), else ``maintenanceDone``.
What came of it (the command's id and status, or why none was sent) is recorded in the order's
``completion``. The maintenance record of a twin (:meth:`WorkOrderService.record`) is folded from
its orders and its reported state.

Given an ``analytics_reset`` (:class:`~tvilling.analytics.binding.maintenance.MaintenanceReset`), the
twin then observes the maintenance: once the command has succeeded (waited for up to ``settle_s``),
the analytics of the asset and its parts learn afresh; a command that failed, timed out or is not
confirmed in time resets nothing. What came of it is ``completion.analytics_reset``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from tvilling.core.errors import Conflict, Invalid, Malformed, NotFound, PreconditionFailed, TvillingError
from tvilling.core.principal import Principal
from tvilling.decisions.lifecycle import FINAL
from tvilling.planning.workorders import (
    ACTIONS,
    APPROVED,
    DONE,
    IN_PROGRESS,
    SCHEDULED,
    WorkOrder,
    amend,
    check_window,
    crew_of,
    note_text,
    parse_time,
    parts_of,
    propose,
    transition,
)
from tvilling.planning.workorders_record import maintenance_record, operating_hours
from tvilling.security.audit_events import record as audit

if TYPE_CHECKING:
    from tvilling.backend.workorders import WorkOrderStore
    from tvilling.decisions.commands import CommandService
    from tvilling.twins.service import TwinService

DEFAULT_COMMAND = "maintenanceDone"
MAX_TRIES = 5
SETTLE_S = 10.0  # how long completion waits for the maintenance command's answer before it resets the analytics
MAX_PARTS_LINKED = 64
#: The fields each move's body may hold, beside ``note`` and ``version``.
MOVE_FIELDS: dict[str, frozenset[str]] = {
    APPROVED: frozenset({"firm"}),
    SCHEDULED: frozenset({"planned_start", "planned_end", "crew", "firm"}),
    IN_PROGRESS: frozenset({"actual_start"}),
    DONE: frozenset({"actual_end", "parts"}),
}


class AnalyticsReset(Protocol):
    """Makes a maintained asset's analytics (and its parts') learn afresh; returns what was reset."""

    def __call__(self, asset: str, *, reason: str, at: datetime | None = None, by: str = ...,
                 parts: bool = ...) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MaintenanceCommands:
    """Which command completing an order sends: per task, per model (with or without its version), else
    ``default``. An order's own ``maintenance_command`` comes first."""

    default: str = DEFAULT_COMMAND
    by_task: Mapping[str, str] = field(default_factory=dict)
    by_model: Mapping[str, str] = field(default_factory=dict)

    def name_for(self, order: WorkOrder) -> str:
        """The maintenance command of ``order``."""
        if order.maintenance_command:
            return order.maintenance_command
        if order.task in self.by_task:
            return self.by_task[order.task]
        if order.model is not None:
            for key in (order.model, order.model.split(";")[0]):
                if key in self.by_model:
                    return self.by_model[key]
        return self.default


class WorkOrderService:
    """Propose, read, move and complete work orders; fold a twin's maintenance record.

    ``commands`` is the command service completion sends through (``None``: nothing reaches the
    devices; orders still complete, and their completion says no command was sent).
    ``analytics_reset`` is called once the maintenance command succeeded (see the module's docstring).
    """

    def __init__(self, store: WorkOrderStore, twins: TwinService, *, commands: CommandService | None = None,
                 maintenance: MaintenanceCommands | None = None,
                 clock: Callable[[], datetime] | None = None, analytics_reset: AnalyticsReset | None = None,
                 settle_s: float = SETTLE_S) -> None:
        self.store = store
        self.twins = twins
        self.commands = commands
        self.maintenance = maintenance or MaintenanceCommands()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.analytics_reset = analytics_reset
        self.settle_s = settle_s

    # -- proposals and reads -----------------------------------------------------------------------------------
    def propose(self, body: Any, by: Principal | str) -> WorkOrder:
        """Store a proposal (``proposed``); its asset must be a twin (``NotFound`` naming it otherwise)."""
        actor = Principal.of(by).actor
        asset = body.get("asset") if isinstance(body, Mapping) else None
        model: str | None = None
        if isinstance(asset, str) and asset.strip():
            model = self._twin(asset.strip()).model
        order = propose(body, now=self.clock(), by=actor, model=model)
        if order.maintenance_command is not None and model is not None:
            declared = self.twins.models.resolve(model).commands
            if order.maintenance_command not in declared:
                raise Invalid(f"maintenance_command {order.maintenance_command!r}: the model {model} of twin "
                              f"{order.asset!r} declares no such command; its commands: "
                              f"{', '.join(sorted(declared)) or 'none'}", field="maintenance_command",
                              rule="unknown_command", twin=order.asset)
        self.store.add(order, by=actor)
        audit(self.twins, by, "workorder.propose", f"workorder:{order.id}",
              {"asset": order.asset, "state": order.state, "task": order.task})
        return order

    def get(self, order_id: str) -> WorkOrder:
        """The order ``order_id`` (``NotFound`` naming it otherwise)."""
        return self.store.get(order_id)

    def list(self, *, state: str | None = None, asset: str | None = None, start: datetime | None = None,
             end: datetime | None = None, after: str | None = None, limit: int = 100) -> list[WorkOrder]:
        """Orders by planned start; see :meth:`WorkOrderStore.list`."""
        return self.store.list(state=state, asset=asset, start=start, end=end, after=after, limit=limit)

    def _twin(self, twin_id: str) -> Any:
        try:
            return self.twins.get(twin_id)
        except NotFound:
            raise NotFound(f"the work order's asset {twin_id!r} is not a twin", field="asset", twin=twin_id,
                           rule="unknown_twin") from None
        except Invalid as exc:
            raise Invalid(f"asset: {exc.message}", field="asset", rule=exc.fields.get("rule", "format")) from None

    # -- moves -------------------------------------------------------------------------------------------------
    def move(self, order_id: str, action: str, by: Principal | str, *, if_match: int | None = None,
             body: Mapping[str, Any] | None = None) -> WorkOrder:
        """Approve, schedule, start or cancel an order (``done``: :meth:`complete`); returns it as stored."""
        to = _target(action)
        if to == DONE:
            raise Invalid("completing a work order sends a command: use complete()", field="action", rule="done")
        return self._move(order_id, to, Principal.of(by).actor, if_match, body or {})

    async def act(self, order_id: str, action: str, by: Principal | str, *, if_match: int | None = None,
                  body: Mapping[str, Any] | None = None) -> WorkOrder:
        """Any move by its verb (``approve``, ``schedule``, ``start``, ``done``, ``cancel``); store work in a thread."""
        if _target(action) == DONE:
            return await self.complete(order_id, by, if_match=if_match, body=body)
        return await asyncio.to_thread(self.move, order_id, action, by, if_match=if_match, body=body)

    async def complete(self, order_id: str, by: Principal | str, *, if_match: int | None = None,
                       body: Mapping[str, Any] | None = None) -> WorkOrder:
        """Mark the order done, then send the asset its maintenance command; the order with its completion."""
        actor = Principal.of(by).actor
        order = await asyncio.to_thread(self._move, order_id, DONE, actor, if_match, body or {})
        name = self.maintenance.name_for(order)
        sent = await self._send(order, name, actor)
        if self.analytics_reset is None:
            return await asyncio.to_thread(self._record_command, order, sent, actor)
        sent = await self._settled(sent)
        reset = await asyncio.to_thread(self._reset_analytics, self.analytics_reset, order, sent, actor)
        return await asyncio.to_thread(self._record_command, order, sent, actor, reset)

    async def _settled(self, sent: dict[str, Any]) -> dict[str, Any]:
        """The command's outcome once it is final, or as it stands after ``settle_s``."""
        if self.commands is None or sent.get("id") is None or sent.get("status") in FINAL:
            return sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_s
        pause = 0.01
        while True:
            record = await asyncio.to_thread(self.commands.get, sent["id"])
            if record.final or loop.time() >= deadline:
                return {**sent, "sent": record.status not in ("failed", "timed_out"), "status": record.status,
                        "error": record.error}
            await asyncio.sleep(min(pause, max(deadline - loop.time(), 0.0)))
            pause = min(pause * 2, 0.2)

    def _reset_analytics(self, reset: AnalyticsReset, order: WorkOrder, sent: Mapping[str, Any],
                         actor: str) -> dict[str, Any]:
        """Reset the asset's analytics when its maintenance command succeeded; what came of it."""
        status = sent.get("status")
        if status != "succeeded":
            if status is None:
                why = str(sent.get("reason") or f"the maintenance command {sent.get('name')} was not sent")
            elif status in FINAL:
                why = f"the maintenance command {sent.get('name')} {status}"
            else:
                why = f"the maintenance command {sent.get('name')} was still {status} after {self.settle_s:g} s"
            return {"done": False, "reason": f"{why}: the analytics were not reset (reset them with "
                                             "POST /api/analytics/reset once the work is confirmed)"}
        try:
            report = reset(order.asset, reason=f"work order {order.id} ({order.task}) done", at=order.actual_end,
                           by=actor)
        except TvillingError as exc:
            return {"done": False, "reason": exc.message}
        return {"done": True, **report}

    def _move(self, order_id: str, to: str, actor: str, if_match: int | None, body: Mapping[str, Any]) -> WorkOrder:
        version, note, changes = _move_body(to, body)
        if version is not None and if_match is not None and version != if_match:
            raise Malformed(f"If-Match names version {if_match} but the body's version is {version}",
                            field="version", rule="mismatch")
        expected = if_match if if_match is not None else version
        for _ in range(MAX_TRIES):
            current = self.store.get(order_id)
            if expected is not None and current.version != expected:
                raise PreconditionFailed(f"work order {order_id} is at version {current.version}, not {expected} "
                                         "(If-Match); read it again", workorder=order_id, expected=expected,
                                         version=current.version, rule="if_match")
            fields = dict(changes)
            if to == SCHEDULED:
                check_window(fields.get("planned_start", current.planned_start),
                             fields.get("planned_end", current.planned_end))
                fields.setdefault("firm", True)
            if to == DONE:
                fields["completion"] = {"operating_hours": self._hours(current.asset),
                                        "command": {"name": self.maintenance.name_for(current), "status": "sending"}}
            new = transition(current, to, now=self.clock(), by=actor, note=note, changes=fields)
            try:
                self.store.update(new, expected_version=current.version, by=actor)
            except PreconditionFailed:
                if expected is not None:
                    raise
                continue  # another writer came first: decide again on what it stored
            audit(self.twins, actor, f"workorder.{to}", f"workorder:{order_id}",
                  {"asset": new.asset, "from": current.state, "to": new.state, "version": new.version,
                   "note": None if note is None else str(note)[:300]})
            return new
        raise Conflict(f"work order {order_id} kept changing while it was being moved to {to}; try again",
                       workorder=order_id, rule="contention")

    def _hours(self, twin_id: str) -> float | None:
        try:
            twin = self.twins.get(twin_id)
            model = self.twins.models.resolve(twin.model)
        except TvillingError:
            return None
        return operating_hours(twin, [*model.properties, *model.telemetry])

    async def _send(self, order: WorkOrder, name: str, actor: str) -> dict[str, Any]:
        try:
            await asyncio.to_thread(self._declared, order.asset, name)
        except TvillingError as exc:
            return {"name": name, "sent": False, "reason": exc.message}
        if self.commands is None:
            return {"name": name, "sent": False,
                    "reason": "this server has no way to reach the devices (start it with --broker or --opcua); "
                              f"send it with POST /api/twins/{order.asset}/commands/{name} once it has"}
        try:
            record = await self.commands.invoke(order.asset, name, None, actor=actor)
        except TvillingError as exc:
            return {"name": name, "sent": False, "reason": exc.message}
        return {"name": name, "sent": record.status not in ("failed", "timed_out"), "id": record.id,
                "status": record.status, "error": record.error}

    def _declared(self, twin_id: str, name: str) -> None:
        twin = self.twins.get(twin_id)
        commands = self.twins.models.resolve(twin.model).commands
        if name not in commands:
            raise NotFound(f"twin {twin_id!r} (model {twin.model}) declares no maintenance command {name!r}; its "
                           f"commands: {', '.join(sorted(commands)) or 'none'}", twin=twin_id, command=name)

    def _record_command(self, order: WorkOrder, sent: Mapping[str, Any], actor: str,
                        reset: Mapping[str, Any] | None = None) -> WorkOrder:
        for _ in range(MAX_TRIES):
            current = self.store.get(order.id)
            completion = {**(current.completion or {}), "command": dict(sent)}
            if reset is not None:
                completion["analytics_reset"] = dict(reset)
            new = amend(current, now=self.clock(), by=actor, completion=completion)
            try:
                self.store.update(new, expected_version=current.version, by=actor)
            except PreconditionFailed:
                continue
            return new
        raise Conflict(f"work order {order.id} kept changing while its completion was recorded", workorder=order.id,
                       rule="contention")

    # -- the maintenance record --------------------------------------------------------------------------------
    def record(self, twin_id: str) -> dict[str, Any]:
        """The maintenance record of twin ``twin_id`` (``NotFound`` if there is no such twin)."""
        twin = self.twins.get(twin_id)
        model = self.twins.models.resolve(twin.model)
        orders: list[WorkOrder] = []
        after: str | None = None
        while True:
            page = self.store.list(asset=twin_id, after=after, limit=1000)
            orders.extend(page)
            if len(page) < 1000:
                break
            after = page[-1].id
        parts = []
        for rel in list(twin.relationships.values())[:MAX_PARTS_LINKED]:
            try:
                target = self.twins.get(rel.target)
                declared = self.twins.models.resolve(target.model)
            except TvillingError:
                continue
            parts.append((rel.name, target, [*declared.properties, *declared.telemetry]))
        return maintenance_record(twin, [*model.properties, *model.telemetry], orders, now=self.clock(), parts=parts)


def _target(action: str) -> str:
    if action not in ACTIONS:
        raise Invalid(f"unknown work order action {action!r}; one of {list(ACTIONS)}", field="action", rule="enum")
    return ACTIONS[action]


def _move_body(to: str, body: Any) -> tuple[int | None, str | None, dict[str, Any]]:
    """``(version, note, changes)`` from a move's body; ``Invalid`` naming the field otherwise."""
    if not isinstance(body, Mapping):
        raise Invalid(f"a work order move's body is a JSON object; got {type(body).__name__}", field="body",
                      rule="type")
    allowed = MOVE_FIELDS.get(to, frozenset()) | {"note", "version"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r} for this move; it takes {sorted(allowed)}", field=unknown[0],
                      rule="unknown_field")
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise Invalid(f"version must be a whole number ≥ 1; got {version!r}", field="version", rule="type")
    note = None if body.get("note") is None else note_text(body["note"], "note")
    changes: dict[str, Any] = {}
    for name in ("planned_start", "planned_end", "actual_start", "actual_end"):
        if body.get(name) is not None:
            changes[name] = parse_time(body[name], name)
    if body.get("crew") is not None:
        changes["crew"] = crew_of(body["crew"])
    if body.get("parts") is not None:
        changes["parts"] = parts_of(body["parts"])
    if body.get("firm") is not None:
        if not isinstance(body["firm"], bool):
            raise Invalid(f"firm must be true or false; got {body['firm']!r}", field="firm", rule="type")
        changes["firm"] = body["firm"]
    return version, note, changes


__all__ = ["DEFAULT_COMMAND", "AnalyticsReset", "MaintenanceCommands", "WorkOrderService"]
