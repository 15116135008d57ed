"""Where authorisation, guardrails and audit plug into the one write path.

The twin service calls, for every batch of commands it executes — from the API, ingest,
the importer, analytics outputs, upkeep — in this order:

1. ``authorize(principal, commands, states)`` before anything is decided: may refuse
   (raise ``Forbidden``/``Unauthorized``);
2. ``guard(principal, commands, events)`` once the events are decided, before they are
   committed: may refuse an action whose effect is out of bounds;
3. ``audit(principal, commands, events)`` after the commit, with the stored events
   (their feed positions set).

A refusal in 1 or 2 stores nothing. The default hooks allow everything and record
nothing; the security and autonomy capabilities replace them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from tvilling.core.commands import Command
from tvilling.core.events import Event
from tvilling.core.principal import Principal
from tvilling.core.twin import Twin


class WriteHooks(Protocol):
    def authorize(self, principal: Principal, commands: Sequence[Command],
                  states: Mapping[str, Twin | None]) -> None:
        """Raise to refuse the batch before anything is decided."""

    def guard(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        """Raise to refuse the decided events before they are committed."""

    def audit(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        """Record the committed events (called only after the commit succeeded)."""


class OpenHooks:
    """Allow everything, record nothing (until security and guardrails plug in)."""

    def authorize(self, principal: Principal, commands: Sequence[Command],
                  states: Mapping[str, Twin | None]) -> None:
        return None

    def guard(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        return None

    def audit(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        return None


class HookChain:
    """Several hooks in order: each must allow; each audits."""

    def __init__(self, hooks: Sequence[WriteHooks]) -> None:
        self.hooks = list(hooks)

    def authorize(self, principal: Principal, commands: Sequence[Command],
                  states: Mapping[str, Twin | None]) -> None:
        for h in self.hooks:
            h.authorize(principal, commands, states)

    def guard(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        for h in self.hooks:
            h.guard(principal, commands, events)

    def audit(self, principal: Principal, commands: Sequence[Command], events: Sequence[Event]) -> None:
        for h in self.hooks:
            h.audit(principal, commands, events)
