"""The command service: validated commands out to assets, their answers and deadlines tracked.

``invoke`` checks the command against the twin's model, stores it ``pending``, hands it
to the transport (retrying transient transport failures) and records it ``sent``;
``on_response`` applies the device's answers; ``sweep`` times out what got no final
answer before its deadline. Every move is compare-and-set in the store, so a response
racing the send, or two workers, never lose a transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from tvilling.core.errors import Conflict, Invalid, NotFound, TvillingError, Unavailable
from tvilling.core.patch import check_json
from tvilling.core.principal import Principal
from tvilling.decisions.lifecycle import (
    ACKNOWLEDGED,
    FAILED,
    PENDING,
    SENT,
    SUCCEEDED,
    TIMED_OUT,
    CommandRecord,
    new_command,
    transition,
)
from tvilling.decisions.store import CommandStore
from tvilling.decisions.transport import CommandTransport, SupportsCall, device_status, error_text, route
from tvilling.models.interface import CommandDef, CommandPayload
from tvilling.models.schema import PrimitiveSchema
from tvilling.models.values import Issues, check_value
from tvilling.security.audit_events import record as audit
from tvilling.twins.service import TwinService

log = logging.getLogger("tvilling.decisions.commands")

P = ParamSpec("P")
T = TypeVar("T")
MAX_CAS_TRIES = 5
#: Transport errors worth another attempt; anything else fails the command at once.
TRANSIENT = (Unavailable, OSError, TimeoutError)


class CommandService:
    """Invoke commands declared by twins' models; track them to a final status."""

    def __init__(self, twins: TwinService, store: CommandStore, transport: CommandTransport, *,
                 timeout_s: float = 30.0, retries: int = 2, retry_backoff_s: float = 0.2,
                 send_timeout_s: float = 10.0, clock: Callable[[], datetime] | None = None) -> None:
        if retries < 0:
            raise Invalid("retries must be 0 or more", field="retries", rule="range")
        self.twins = twins
        self.store = store
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.send_timeout_s = send_timeout_s
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- commands out -------------------------------------------------------------------------
    def command(self, twin_id: str, name: str) -> CommandDef:
        """The command ``name`` as the twin's model declares it (``NotFound`` naming it otherwise)."""
        return self._declared(twin_id, name)[1]

    def _declared(self, twin_id: str, name: str) -> tuple[str, CommandDef]:
        twin = self.twins.get(twin_id)
        model = self.twins.models.resolve(twin.model)
        cmd = model.commands.get(name)
        if cmd is None:
            known = ", ".join(sorted(model.commands)) or "none"
            raise NotFound(f"twin {twin_id!r} (model {twin.model}) has no command {name!r}; its commands: {known}",
                           twin=twin_id, command=name, model=twin.model, rule="unknown_command")
        return twin.model, cmd

    def check_request(self, twin_id: str, name: str, request: Any) -> tuple[str, Any]:
        """``(model, request)``: the request validated against the command's request schema (units converted)."""
        model, cmd = self._declared(twin_id, name)
        check_json(request, field="request")
        return model, validate_payload(twin_id, name, cmd.request, request, "request")

    async def invoke(self, twin_id: str, name: str, request: Any = None, *, actor: str = "api",
                     timeout_s: float | None = None) -> CommandRecord:
        """Validate, store and send a command; returns it ``sent`` (or ``failed``/``timed_out``)."""
        model, clean = await _io(self.check_request, twin_id, name, request)
        record = new_command(twin_id, name, clean, now=self.clock(), model=model,
                             timeout_s=self.timeout_s if timeout_s is None else timeout_s, actor=actor)
        await _io(self.store.add, record)
        try:
            done = await self._send(record, clean)
        except Conflict:  # an answer or the sweeper moved it meanwhile: report where it stands
            done = await _io(self.store.get, record.id)
        await _io(audit, self.twins, actor, "command.send", f"twin:{twin_id}",
                  {"command": name, "id": record.id, "status": done.status, "error": done.error},
                  request={"twin": twin_id, "command": name, "request": clean})
        return done

    async def _send(self, record: CommandRecord, clean: Any) -> CommandRecord:
        twin_id, name = record.twin, record.name
        transport = route(self.transport, twin_id)
        caller = transport if isinstance(transport, SupportsCall) else None
        answer: Any = None
        for attempt in range(self.retries + 1):
            remaining = (record.deadline - self.clock()).total_seconds()
            if remaining <= 0:
                return await self._move(record, TIMED_OUT, error="the transport did not take the command in time")
            try:
                if caller is not None:
                    answer = await asyncio.wait_for(caller.call(twin_id, name, record.id, clean),
                                                    min(remaining, self.send_timeout_s))
                else:
                    await asyncio.wait_for(transport.send(twin_id, name, record.id, clean),
                                           min(remaining, self.send_timeout_s))
            except TRANSIENT as exc:
                text = _describe(exc)
                if attempt < self.retries:
                    log.info("command %s to %s: attempt %d failed (%s); retrying", record.id, twin_id,
                             attempt + 1, text)
                    record = await self._move(record, PENDING, error=text)
                    await asyncio.sleep(self.retry_backoff_s * 2 ** attempt)
                    continue
                return await self._move(record, FAILED, error=text)
            except Exception as exc:  # a command the transport refuses (bad topic, bad argument): no retry
                return await self._move(record, FAILED, error=_describe(exc))
            break
        sent = await self._move(record, SENT)
        if caller is None:
            return sent
        done = await self._apply(sent, SUCCEEDED, answer, status="ok")
        return done if done is not None else await _io(self.store.get, record.id)

    # -- answers in ---------------------------------------------------------------------------
    async def on_response(self, twin: str, name: str, request_id: str, status: Any,
                          payload: Any) -> CommandRecord | None:
        """Apply a device's answer; returns the updated command, or ``None`` when it was ignored.

        Unknown ids, answers naming another twin or command, unknown statuses and answers
        to commands that are final already are logged and ignored (never raised: this is
        a transport callback).
        """
        target = device_status(status)
        if target is None:
            log.warning("command %s: device status %r is not understood; ignored", request_id, status)
            return None
        try:
            record = await _io(self.store.get, request_id)
        except NotFound:
            log.warning("answer from %s for unknown command %s; ignored", twin, request_id)
            return None
        if (record.twin, record.name) != (twin, name):
            log.warning("answer for command %s names %s/%s, but it was sent to %s/%s; ignored", request_id,
                        twin, name, record.twin, record.name)
            await self._audit_answer(twin, record, status, payload, "refused")
            return None
        done = await self._apply(record, target, payload, status=status)
        if done is not None:
            await self._audit_answer(twin, done, status, payload, "ok")
        return done

    async def _audit_answer(self, twin: str, record: CommandRecord, status: Any, payload: Any, outcome: str) -> None:
        """An answer as the device's (by the twin it names; the transport proves no more than that)."""
        device = Principal(id=twin[:128] or "unknown", kind="device")
        detail = {"command": record.name, "id": record.id, "device_status": str(status)[:64],
                  "status": record.status}
        if outcome == "refused":
            detail["reason"] = f"the answer names {twin}, but the command went to {record.twin}/{record.name}"
        await _io(audit, self.twins, device, "command.answer", f"twin:{record.twin}", detail, outcome,
                  request={"id": record.id, "status": status, "payload": payload})

    async def _apply(self, record: CommandRecord, target: str, payload: Any, *, status: Any) -> CommandRecord | None:
        for _ in range(MAX_CAS_TRIES):
            try:
                if record.final:
                    log.info("command %s is %s already; late answer %r ignored", record.id, record.status, status)
                    return None
                if record.status == PENDING:  # the answer overtook our own 'sent'
                    record = await self._move(record, SENT)
                if target == ACKNOWLEDGED:
                    if record.status == ACKNOWLEDGED:
                        return record
                    return await self._move(record, ACKNOWLEDGED)
                if target == FAILED:
                    return await self._move(record, FAILED, response=payload, error=error_text(status, payload))
                problem = await _io(self._response_problem, record, payload)
                if problem is not None:
                    return await self._move(record, FAILED, response=payload, error=problem)
                return await self._move(record, SUCCEEDED, response=payload)
            except Conflict:
                record = await _io(self.store.get, record.id)
        log.warning("command %s kept changing while applying answer %r; gave up", record.id, status)
        return None

    def _response_problem(self, record: CommandRecord, payload: Any) -> str | None:
        if payload is None:
            return None
        try:
            cmd = self.command(record.twin, record.name)
        except NotFound:
            return None  # the twin or the command is gone: nothing left to check against
        if cmd.response is None:
            return None
        try:
            validate_payload(record.twin, record.name, cmd.response, payload, "response")
        except Invalid as exc:
            return f"the device's response does not fit the model: {exc.message}"
        return None

    # -- deadlines ----------------------------------------------------------------------------
    async def sweep(self, now: datetime | None = None) -> list[CommandRecord]:
        """Time out every command past its deadline that is not final; returns those it moved."""
        now = now or self.clock()
        moved: list[CommandRecord] = []
        while True:
            due = await _io(self.store.pending_deadlines, now)
            progressed = False
            for record in due:
                with contextlib.suppress(Conflict):  # answered meanwhile: leave it
                    moved.append(await self._move(record, TIMED_OUT, now=now,
                                                  error=f"no final answer before the deadline ({record.status})"))
                    progressed = True
            if not due or not progressed:
                return moved

    async def run_sweeper(self, interval_s: float = 1.0) -> None:
        """Sweep forever (a server lifespan task; cancel it to stop)."""
        while True:
            try:
                await self.sweep()
            except TvillingError as exc:
                log.warning("command sweep failed: %s", exc.message)
            await asyncio.sleep(interval_s)

    # -- reads --------------------------------------------------------------------------------
    def get(self, command_id: str) -> CommandRecord:
        return self.store.get(command_id)

    def list(self, *, twin: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> list[CommandRecord]:
        return self.store.list(twin=twin, status=status, after=after, limit=limit)

    async def _move(self, record: CommandRecord, to: str, *, now: datetime | None = None, response: Any = None,
                    error: str | None = None) -> CommandRecord:
        new, _ = transition(record, to, now=now or self.clock(), response=response, error=error)
        await _io(self.store.update, new, record.status)
        return new


def describe_commands(twins: TwinService, twin_id: str) -> dict[str, Any]:
    """The commands a twin's model declares, as a client needs them to offer them to a person.

    Each item: ``name``, ``displayName``, ``description``, ``request`` (``{name, schema, unit}``
    or ``None``), ``disruptive`` (a person must confirm it first), ``disruption`` (what
    happens, in words) and ``affects`` (the properties it changes: what to watch afterwards).
    """
    twin = twins.get(twin_id)
    model = twins.models.resolve(twin.model)
    texts = _command_texts(twins, model.bases)
    items = []
    for cmd in model.commands.values():
        name, text = texts.get(cmd.name, (None, None))
        items.append({
            "name": cmd.name, "displayName": name, "description": text,
            "request": _payload(cmd.request), "disruptive": cmd.disruptive, "disruption": cmd.disruption,
            "affects": list(cmd.affects),
        })
    return {"twin": twin_id, "model": twin.model, "items": items}


def _command_texts(twins: TwinService, bases: frozenset[str]) -> dict[str, tuple[str | None, str | None]]:
    """``{command: (displayName, description)}`` from the documents of a model and its bases."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for base in sorted(bases):
        for item in twins.models.modelset.get(base).document.get("contents", []):
            if isinstance(item, dict) and "Command" in _types(item) and isinstance(item.get("name"), str):
                out[item["name"]] = (_text(item.get("displayName")), _text(item.get("description")))
    return out


def _types(item: dict[str, Any]) -> list[Any]:
    value = item.get("@type")
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str | None:
    if isinstance(value, dict):  # a language map: English, else the first
        value = value.get("en", next(iter(value.values()), None))
    return value if isinstance(value, str) else None


def _payload(payload: CommandPayload | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    schema = payload.schema
    kind = schema.name if isinstance(schema, PrimitiveSchema) else type(schema).__name__.removesuffix("Schema")
    return {"name": payload.name, "schema": kind, "unit": payload.unit}


def validate_payload(twin_id: str, name: str, payload_def: CommandPayload | None, value: Any, field: str) -> Any:
    """Check a command's request or response against its declared payload; return it (units converted)."""
    if payload_def is None:
        if value is not None:
            raise Invalid(f"twin {twin_id!r}: command {name!r} takes no {field}; got {value!r}"[:300],
                          twin=twin_id, command=name, field=field, rule=f"no_{field}")
        return None
    if value is None:
        if payload_def.nullable:
            return None
        raise Invalid(f"twin {twin_id!r}: command {name!r} needs a {field} ({payload_def.name})", twin=twin_id,
                      command=name, field=field, rule="required")
    issues = Issues()
    clean = check_value(payload_def.schema, value, field, issues, unit=payload_def.unit)
    try:
        issues.raise_for(twin_id)
    except Invalid as exc:
        exc.fields["command"] = name
        raise
    return clean


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TvillingError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "the transport did not take the command in time"
    return f"{type(exc).__name__}: {exc}"


async def _io(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)
