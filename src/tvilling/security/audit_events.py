"""Audit entries for the changes that do not go through the twin write path.

Commands sent to devices and their answers, alarm steps, work-order moves, model uploads, tokens,
production plans, approved decisions, sign-ins and refusals: each service calls :func:`record` once
the change is made. It appends one entry (actor, action, target, outcome, the SHA-256 of the request,
a small detail) to the audit chain, and does nothing when audit is off.

Where the chain is (``where``):

* a platform, or a service's :class:`~tvilling.twins.service.TwinService`: audit is on exactly when its
  write path carries the audit hook (``build_platform`` adds it with the setting ``audit`` or
  ``auth = "required"``), and the entry goes to that hook's store;
* an audit store (anything with ``append_many``): always appended to;
* ``None``, or a platform whose audit is off: the chain the current HTTP request runs under, if any
  (:func:`bind`, set by the middleware of :mod:`tvilling.security.http`), else nothing.

Who (``who``): a principal; a bare name (the principal the request runs under when it bears that
name, else an unauthenticated user of that name); or ``None`` (the request's principal, else the
platform itself). A failed append is logged, never raised: the change is already made.

>>> from tvilling.backend.audit import MemoryAudit
>>> store = MemoryAudit()
>>> entry = record(store, "alice", "alarm.ack", "alarm:a1", {"note": "on it"})
>>> entry.actor, entry.action, entry.outcome, len(entry.request_hash)
('alice', 'alarm.ack', 'ok', 64)
>>> record(None, "alice", "alarm.ack", "alarm:a1") is None  # audit off, no request
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.core.principal import Principal
from tvilling.security.audit import Entry, Record, request_hash
from tvilling.security.audit_hook import Appender, AuditHook

log = logging.getLogger(__name__)

PLATFORM = Principal.system("platform")
OUTCOMES = ("ok", "refused")


@dataclass(frozen=True, slots=True)
class Scope:
    """What a request runs under: the audit chain (None: audit off) and the caller (None: not known yet)."""

    sink: Appender | None
    principal: Principal | None = None


_scope: ContextVar[Scope | None] = ContextVar("tvilling_audit_scope", default=None)


@contextmanager
def bind(sink: Appender | None, principal: Principal | None = None) -> Iterator[None]:
    """Run the block (a request) under ``sink`` and ``principal``; threads started from it inherit them."""
    token = _scope.set(Scope(sink, principal))
    try:
        yield
    finally:
        _scope.reset(token)


def enabled(settings: Any) -> bool:
    """Whether the settings turn the audit chain on (the condition ``build_platform`` applies)."""
    return bool(getattr(settings, "audit", False)) or getattr(settings, "auth", "off") == "required"


def _hook_store(hooks: Any) -> Appender | None:
    if isinstance(hooks, AuditHook):
        return hooks.store
    for inner in getattr(hooks, "hooks", None) or ():
        found = _hook_store(inner)
        if found is not None:
            return found
    return None


def sink_of(where: Any) -> Appender | None:
    """The audit chain ``where`` leads to (see the module docs); None when audit is off there."""
    if where is not None:
        if callable(getattr(where, "append_many", None)):
            store: Appender = where
            return store
        twins = where if hasattr(where, "hooks") else getattr(where, "twins", None)
        found = _hook_store(getattr(twins, "hooks", None))
        if found is not None:
            return found
    scope = _scope.get()
    return None if scope is None else scope.sink


def current_principal() -> Principal | None:
    """The principal the current request runs under, when the middleware knows it."""
    scope = _scope.get()
    return None if scope is None else scope.principal


def _principal(who: Principal | str | None) -> Principal:
    if isinstance(who, Principal):
        return who
    known = current_principal()
    if who is None:
        return known or PLATFORM
    if known is not None and known.actor == who:
        return known
    return Principal.of(who)


def record(where: Any, who: Principal | str | None, action: str, target: str,
           detail: Mapping[str, Any] | None = None, outcome: str = "ok", *, request: Any = None) -> Entry | None:
    """Append what ``who`` did (``action`` on ``target``) to the chain ``where`` leads to; the entry, or None.

    ``request`` is what the request hash covers (default: the action, target and detail). ``outcome`` is
    ``ok`` or ``refused``. Does nothing (None) when audit is off; logs (and returns None) when the append
    fails, since the change it records is already made.
    """
    sink = sink_of(where)
    if sink is None:
        return None
    principal = _principal(who)
    details: dict[str, Any] = dict(detail or {})
    if not principal.authenticated:
        details["authenticated"] = False  # a name given, not proven
    try:
        digest = request_hash(request if request is not None else {"action": action, "target": target,
                                                                     "detail": details})
        entry = Record(actor=principal.actor, actor_kind=principal.kind, action=action, target=target[:512],
                       outcome=outcome, request_hash=digest, detail=details)
        try:
            return sink.append_many([entry])[0]
        except Invalid as exc:  # a detail too large or not plain JSON: keep the entry, drop the detail
            log.warning("audit detail of %s on %s dropped: %s", action, target, exc.message)
            short = Record(actor=entry.actor, actor_kind=entry.actor_kind, action=action, target=entry.target,
                           outcome=outcome, request_hash=digest, detail={"detail_dropped": exc.message[:200]})
            return sink.append_many([short])[0]
    except Exception:
        log.exception("could not audit %s by %s on %s (the action itself is done)", action, principal.actor, target)
        return None


def token_detail(token: Any) -> dict[str, Any]:
    """What an audit entry says of an API token: name, role, twins, expiry (never its secret or hash)."""
    expires = getattr(token, "expires", None)
    return {"name": token.name, "role": token.role, "twins": token.twins,
            "expires": None if expires is None else expires.isoformat()}


class SignIns:
    """Who signed in lately: :meth:`first` is true once per identity per ``every_s`` (an hour), so that a
    sign-in is audited without an entry per request."""

    def __init__(self, every_s: float = 3600.0, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.every_s = every_s
        self.clock = clock
        self.max_keys = max_keys
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, principal_id: str) -> bool:
        """Whether ``principal_id`` has not been seen in the last ``every_s`` (and note it as seen now)."""
        now = self.clock()
        with self._lock:
            last = self._seen.get(principal_id)
            if last is not None and now - last < self.every_s:
                return False
            self._seen[principal_id] = now
            self._seen.move_to_end(principal_id)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return True


class ScopeMiddleware:
    """ASGI middleware running each request under the audit chain ``sink`` (audit on, auth off)."""

    def __init__(self, app: Any, *, sink: Appender | None) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with bind(self.sink):
            await self.app(scope, receive, send)


__all__ = ["PLATFORM", "Scope", "ScopeMiddleware", "SignIns", "bind", "current_principal", "enabled", "record",
           "sink_of", "token_detail"]
