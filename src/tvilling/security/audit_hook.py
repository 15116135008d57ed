"""The write path's audit hook: every committed batch of twin commands becomes audit entries.

One entry per (action, target) of a batch — ``twin.create``, ``twin.put``, ``twin.patch``,
``twin.desired`` (a request to the asset), ``twin.delete``, ``twin.migrate``,
``relationship.set``/``relationship.delete`` on ``twin:<id>`` — with the SHA-256 of those commands
and the feed positions of the batch's events. Telemetry (``RecordReported``) is audited by source,
never per reading: ONE ``telemetry.batch`` entry per batch on ``source:<principal>``, with the
number of readings and of twins touched.

Wire it (the lead does, in the platform)::

    build_platform(settings, backend, hooks=HookChain([policy, AuditHook(backend.audit)]))

Authorisation and guardrails are not its business: ``authorize`` and ``guard`` allow everything.
Refusals seen elsewhere (sign-in, a policy) are recorded with :meth:`AuditHook.refused`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec

from tvilling.core.commands import (
    Command,
    CreateTwin,
    DeleteRelationship,
    DeleteTwin,
    MigrateTwin,
    PatchTwin,
    PutTwin,
    RecordReported,
    SetDesired,
    SetRelationship,
)
from tvilling.core.events import Event
from tvilling.core.principal import Principal
from tvilling.core.twin import Twin
from tvilling.security.audit import Entry, Record, request_hash

log = logging.getLogger(__name__)

TELEMETRY = "telemetry.batch"
ACTIONS: dict[type[Any], str] = {
    CreateTwin: "twin.create", PutTwin: "twin.put", PatchTwin: "twin.patch", SetDesired: "twin.desired",
    DeleteTwin: "twin.delete", MigrateTwin: "twin.migrate", SetRelationship: "relationship.set",
    DeleteRelationship: "relationship.delete",
}
SAMPLE = 10  # ids named in a detail, at most


class Appender(Protocol):
    """Where entries go: an :class:`~tvilling.backend.audit.AuditStore`."""

    def append_many(self, records: Sequence[Record]) -> list[Entry]:
        """Chain ``records`` in order."""
        ...


def _who(principal: Principal) -> dict[str, Any]:
    return {"actor": principal.actor, "actor_kind": principal.kind}


def _positions(events: Sequence[Event]) -> list[int] | None:
    known = [e.position for e in events if e.position is not None]
    return [min(known), max(known)] if known else None


def records_for(principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> list[Record]:
    """The audit records of one committed batch (pure)."""
    groups: dict[tuple[str, str], list[Command]] = {}
    telemetry: list[RecordReported] = []
    for c in commands:
        if isinstance(c, RecordReported):
            telemetry.append(c)
        else:
            groups.setdefault((ACTIONS.get(type(c), type(c).__name__), f"twin:{c.twin}"), []).append(c)
    common: dict[str, Any] = {"positions": _positions(events)}
    if not principal.authenticated:
        common["authenticated"] = False  # the name was given, not proven
    out: list[Record] = []
    if telemetry:
        twins = list(dict.fromkeys(c.twin for c in telemetry))
        out.append(Record(**_who(principal), action=TELEMETRY, target=f"source:{principal.actor}",
                          request_hash=request_hash(telemetry),
                          detail={**common, "readings": sum(len(c.reported) for c in telemetry),
                                  "commands": len(telemetry), "twins": len(twins), "twins_sample": twins[:SAMPLE]}))
    for (action, target), group in groups.items():
        detail = {**common, "commands": len(group)}
        named = [c.id for c in group if isinstance(c, SetRelationship | DeleteRelationship)]
        if named:
            detail["relationships"] = named[:SAMPLE]
        out.append(Record(**_who(principal), action=action, target=target, request_hash=request_hash(group),
                          detail=detail))
    return out


class AuditHook:
    """:class:`~tvilling.twins.hooks.WriteHooks` that append each committed batch to the audit chain.

    A failed append is logged and raised: the change is committed but its caller learns that it is not
    audited (the audit store's error, usually ``Unavailable``).
    """

    def __init__(self, store: Appender) -> None:
        self.store = store

    def authorize(self, principal: Principal, commands: Sequence[Command],
                  states: Mapping[str, Twin | None]) -> None:
        """Allow (authorisation is another hook's)."""
        return None

    def guard(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        """Allow (guardrails are another hook's)."""
        return None

    def audit(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        """Append the batch's entries."""
        records = records_for(principal, commands, events)
        if not records:
            return
        try:
            self.store.append_many(records)
        except Exception:
            log.exception("a committed batch of %d commands by %s could not be audited", len(commands),
                          principal.actor)
            raise

    def refused(self, principal: Principal, action: str, target: str, reason: str, *,
                request: Any = None) -> Entry:
        """Record a refusal (sign-in failure, a policy or guardrail saying no) with its reason."""
        digest = None if request is None else request_hash(msgspec.to_builtins(request))
        record = Record(**_who(principal), action=action, target=target, outcome="refused", request_hash=digest,
                        detail={"reason": reason[:500]})
        return self.store.append_many([record])[0]


__all__ = ["ACTIONS", "TELEMETRY", "AuditHook", "records_for"]
