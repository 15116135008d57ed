"""The twin service: validated commands on twins in, events out, state read back.

Every write is validated against the twin's model, turned into one event whose
revision follows the twin's last one, and committed; a concurrent writer that got
there first makes the commit fail (optimistic concurrency), never a lost update.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import msgspec

from tvilling.core import events as ev
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
from tvilling.core.decide import decide, stale
from tvilling.core.errors import (
    Conflict,
    Invalid,
    Malformed,
    NotFound,
    PreconditionFailed,
    TooLarge,
    TvillingError,
)
from tvilling.core.events import Event, apply, fold
from tvilling.core.ids import check_twin_id
from tvilling.core.patch import check_json
from tvilling.core.principal import Principal
from tvilling.core.twin import Relationship, Twin
from tvilling.models.modelset import ResolvedModel
from tvilling.models.service import ModelRegistry
from tvilling.models.validate import migration_report, validate_relationship, validate_section
from tvilling.twins.hooks import OpenHooks, WriteHooks
from tvilling.twins.ports import Page, TwinStore
from tvilling.twins.query import Query, parse_query

RETRY_BASE_S = 0.002
PATCH_KEYS = frozenset({"attributes", "reported", "desired", "source", "quality", "time"})
QUALITIES = frozenset({"good", "uncertain", "bad"})
MAX_RETRIES = 25
HISTORY_PAGE = 10_000
EAGER_REVISIONS = 8  # batches this small look up deleted twins' last revisions before the first try


class Executed(NamedTuple):
    """What a batch of commands did: the stored events (feed positions set) and each twin's state after."""

    events: list[Event]
    states: dict[str, Twin | None]


class TwinService:
    """Create, read, patch, relate, query and time-travel twins."""

    def __init__(self, store: TwinStore, models: ModelRegistry, *, default_limit: int = 100,
                 max_limit: int = 1000, hooks: WriteHooks | None = None) -> None:
        self.store = store
        self.models = models
        self.hooks: WriteHooks = hooks if hooks is not None else OpenHooks()
        self.default_limit = default_limit
        self.max_limit = max_limit

    # -- reads ----------------------------------------------------------------------------
    def get(self, twin_id: str) -> Twin:
        return self.store.get(check_twin_id(twin_id))

    def get_at(self, twin_id: str, *, revision: int | None = None, at: datetime | None = None) -> Twin:
        """The twin as it was at ``revision`` or at time ``at`` (time travel)."""
        check_twin_id(twin_id)
        events = self.history(twin_id, until_revision=revision, until_time=at)
        if not events:
            raise NotFound(_not_yet(twin_id, revision, at), twin=twin_id)
        state = fold(events)
        if state is None:
            raise NotFound(f"twin {twin_id!r} was deleted at revision {events[-1].revision}", twin=twin_id)
        if revision is not None and state.revision != revision:
            raise NotFound(f"twin {twin_id!r} has no revision {revision}", twin=twin_id, revision=revision)
        return state

    def history(self, twin_id: str, *, after: int = 0, limit: int | None = None,
                until_revision: int | None = None, until_time: datetime | None = None) -> list[Event]:
        out: list[Event] = []
        while True:
            want = HISTORY_PAGE if limit is None else min(HISTORY_PAGE, limit - len(out))
            page = self.store.history(twin_id, after=after, limit=want, until_revision=until_revision,
                                      until_time=until_time)
            out.extend(page)
            if len(page) < want or (limit is not None and len(out) >= limit):
                return out
            after = page[-1].revision

    def events(self, twin_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        check_twin_id(twin_id)
        limit = self._limit(limit)
        if self.store.last_revision(twin_id) == 0:
            raise NotFound(f"twin {twin_id!r} has no events: it never existed", twin=twin_id)
        return self.store.history(twin_id, after=after, limit=limit)

    def feed(self, *, after: int = 0, limit: int | None = None) -> list[Event]:
        return self.store.feed(after=after, limit=self._limit(limit))

    def relationships(self, twin_id: str) -> list[Relationship]:
        return list(self.get(twin_id).relationships.values())

    def incoming(self, twin_id: str) -> list[tuple[str, Relationship]]:
        self.get(twin_id)
        return self.store.incoming(twin_id)

    def query(self, doc: Any) -> Page:
        q = parse_query(doc, default_limit=self.default_limit, max_limit=self.max_limit)
        return self.run_query(q)

    def run_query(self, q: Query) -> Page:
        steps = tuple(
            s if s.model is None else _with_models(s, self.models.expand(s.model, exact=s.exact))
            for s in q.steps
        )
        return self.store.query(Query(steps=steps, limit=q.limit, after=q.after))

    # -- writes: the one path ---------------------------------------------------------------
    def execute(self, commands: Sequence[Command], actor: Principal | str = "api", *,
                known: Mapping[str, Twin] | None = None, states: bool = True) -> Executed:
        """Check, decide and commit a batch of commands atomically; the ONLY caller of the store's commit.

        For every batch, from every caller: the hooks authorise (before deciding), guard (before
        committing) and audit (after). Values are checked against each twin's model (except
        :class:`~tvilling.core.commands.RecordReported`, whose values the ingest stages checked
        per series). When another writer commits first, the batch is decided again on the new
        state — unless a command carries ``if_match``, which then fails (``PreconditionFailed``).
        An error in one command fails the batch; it carries the command's place as ``index``.
        ``known`` are the live twins among the batch's the caller has just read (the first try
        uses them instead of reading again: the ingest pipeline's batches). ``states=False``
        leaves the twins' new states out of the result (the store folds them anyway).
        """
        principal = Principal.of(actor)
        if not commands:
            return Executed([], {})
        ids = list(dict.fromkeys(c.twin for c in commands))
        targets = sorted({c.target for c in commands if isinstance(c, SetRelationship)} - set(ids))
        conditional = [c for c in commands if c.if_match is not None]
        again = {t for t, n in Counter(c.twin for c in commands).items() if n > 1}  # later commands see earlier
        # a twin whose first command creates it is taken not to exist on the first try (bulk imports): if it
        # does, the store's revision check refuses the batch and the next try reads it
        first: dict[str, Command] = {}
        for c in commands:
            first.setdefault(c.twin, c)
        unread = [t for t in ids if type(first[t]) is not CreateTwin]
        last: dict[str, int] = {}
        for attempt in range(MAX_RETRIES):
            _backoff(attempt)
            if attempt == 0 and known is not None and not targets:
                read: Mapping[str, Twin] = known
            else:
                read = self.store.get_many((unread if attempt == 0 else ids) + targets)
            current: dict[str, Twin | None] = {t: read.get(t) for t in ids}
            if attempt or len(ids) <= EAGER_REVISIONS:  # a deleted twin's log goes on: creates continue its count
                last = {t: self.store.last_revision(t) for t in ids if current[t] is None
                        and any(c.twin == t and isinstance(c, CreateTwin | PutTwin) for c in commands)}
            self.hooks.authorize(principal, commands, current)
            checked = _Checker(self, read, {t: None if s is None else s.model for t, s in current.items()})
            when = _now()
            events: list[Event] = []
            for i, command in enumerate(commands):
                state = current.get(command.twin)
                try:
                    decided = decide(state, checked(command, state), actor=principal.actor, time=when,
                                     last_revision=last.get(command.twin, 0))
                except TvillingError as exc:
                    exc.index = i  # type: ignore[attr-defined]
                    raise
                if decided:
                    if states or command.twin in again:
                        for e in decided:
                            state = apply(state, e)
                        current[command.twin] = state
                    last[command.twin] = decided[-1].revision
                events.extend(decided)
            if not events:
                return Executed([], current)
            self.hooks.guard(principal, commands, events)
            try:
                stored = self.store.commit(events)
            except Conflict as exc:
                if exc.fields.get("rule") not in (None, "stale_revision", "exists"):
                    raise
                for c in conditional:
                    actual = self.store.last_revision(c.twin)
                    if c.if_match is not None and actual != c.if_match:
                        raise stale(c.twin, c.if_match, actual) from exc
                if conditional:
                    raise Conflict(f"twin {conditional[0].twin!r} was changed by someone else at the same time; "
                                   "read it and retry", twin=conditional[0].twin, rule="stale_revision") from exc
                continue
            self.hooks.audit(principal, commands, stored)
            return Executed(stored, current if states else {})
        raise Conflict(f"twin {ids[0]!r} changed {MAX_RETRIES} times while writing; try again", twin=ids[0],
                       rule="contention")

    # -- writes: the request forms of the API and CLI -------------------------------------
    def put(self, twin_id: str, body: Mapping[str, Any], *, actor: Principal | str = "api",
            if_match: int | None = None, create_only: bool = False) -> tuple[Twin, bool]:
        """Create the twin, or replace its state; returns (twin, created).

        ``create_only`` (HTTP ``If-None-Match: *``) refuses to replace an existing twin.
        """
        check_twin_id(twin_id)
        if not isinstance(body, Mapping):
            raise Malformed("the twin must be a JSON object", twin=twin_id)
        extra = sorted(set(body) - {"model", "attributes", "reported", "desired", "source", "quality", "time"})
        if extra:
            raise Invalid(f"twin {twin_id!r}: unknown key(s) {extra}", twin=twin_id, field=extra[0],
                          rule="unknown_key")
        model_id = body.get("model")
        if not isinstance(model_id, str):
            raise Invalid(f"twin {twin_id!r}: 'model' (a DTMI) is required", twin=twin_id, field="model",
                          rule="required")
        stamp = self._provenance(twin_id, body)
        kind = CreateTwin if create_only else PutTwin
        command = kind(twin=twin_id, if_match=if_match, model=model_id, stamp=stamp,
                       attributes=_object(body.get("attributes"), twin_id, "attributes"),
                       reported=_object(body.get("reported"), twin_id, "reported"),
                       desired=_object(body.get("desired"), twin_id, "desired"))
        try:
            done = self.execute([command], actor)
        except Conflict as exc:
            if create_only and exc.fields.get("rule") == "exists":
                raise PreconditionFailed(f"twin {twin_id!r} exists already (If-None-Match: *)", twin=twin_id,
                                         revision=exc.fields.get("revision"), rule="if_none_match") from None
            raise
        state = done.states[twin_id]
        assert state is not None  # a create/replace always yields a twin
        return state, done.events[0].type == ev.TWIN_CREATED

    def patch(self, twin_id: str, body: Mapping[str, Any], *, actor: Principal | str = "api",
              if_match: int | None = None) -> Twin:
        """Apply a merge patch of attributes/reported/desired, validated against the model."""
        check_twin_id(twin_id)
        if not isinstance(body, Mapping):
            raise Malformed("a patch must be a JSON object", twin=twin_id)
        extra = sorted(set(body) - PATCH_KEYS)
        if extra:
            raise Invalid(
                f"twin {twin_id!r}: a patch may hold {sorted(PATCH_KEYS)}, not {extra}",
                twin=twin_id, field=extra[0], rule="unknown_key",
            )
        stamp = self._provenance(twin_id, body)
        sections = {k: _object(body[k], twin_id, k) for k in ("attributes", "reported", "desired") if k in body}
        done = self.execute([PatchTwin(twin=twin_id, if_match=if_match, stamp=stamp, **sections)], actor)
        state = done.states.get(twin_id)
        if state is None:
            raise NotFound(f"twin {twin_id!r} does not exist", twin=twin_id)
        return state

    def delete(self, twin_id: str, *, actor: Principal | str = "api", if_match: int | None = None) -> None:
        self.execute([DeleteTwin(twin=check_twin_id(twin_id), if_match=if_match)], actor)

    def set_relationship(self, twin_id: str, rel_id: str, body: Mapping[str, Any], *,
                         actor: Principal | str = "api", if_match: int | None = None) -> Relationship:
        check_twin_id(twin_id)
        check_twin_id(rel_id, field="relationship id")
        if not isinstance(body, Mapping):
            raise Malformed("a relationship must be a JSON object", twin=twin_id)
        extra = sorted(set(body) - {"name", "target", "properties", "id"})
        if extra:
            raise Invalid(f"twin {twin_id!r}: unknown relationship key(s) {extra}", twin=twin_id,
                          field=extra[0], rule="unknown_key")
        if body.get("id", rel_id) != rel_id:
            raise Invalid(f"relationship id in the body ({body.get('id')!r}) differs from the path ({rel_id!r})",
                          twin=twin_id, field="id", rule="id_mismatch")
        name, target_id = body.get("name"), body.get("target")
        if not isinstance(name, str) or not isinstance(target_id, str):
            raise Invalid(f"twin {twin_id!r}: a relationship needs 'name' and 'target' strings",
                          twin=twin_id, field="name" if not isinstance(name, str) else "target",
                          rule="required")
        check_twin_id(target_id, field="target")
        props = _object(body.get("properties"), twin_id, "properties")
        done = self.execute([SetRelationship(twin=twin_id, if_match=if_match, id=rel_id, name=name,
                                             target=target_id, properties=props)], actor)
        state = done.states[twin_id]
        assert state is not None
        return state.relationships[rel_id]

    def delete_relationship(self, twin_id: str, rel_id: str, *, actor: Principal | str = "api",
                            if_match: int | None = None) -> None:
        self.execute([DeleteRelationship(twin=check_twin_id(twin_id), if_match=if_match, id=rel_id)], actor)

    def migrate(self, twin_id: str, new_model: str, *, actor: Principal | str = "api", dry_run: bool = False,
                if_match: int | None = None) -> dict[str, Any]:
        """Move a twin to another model version; returns the validation report."""
        twin = self.get(twin_id)
        if if_match is not None and twin.revision != if_match:
            raise stale(twin_id, if_match, twin.revision)
        out = self.migration_report(twin, new_model)
        if out["problems"] and not dry_run:
            raise Invalid(
                f"twin {twin_id!r} cannot migrate to {new_model}: {out['problems'][0]['message']}",
                twin=twin_id, field="model", rule="migration", report=out,
            )
        if dry_run:
            return out
        done = self.execute([MigrateTwin(twin=twin_id, if_match=if_match, to=new_model)], actor)
        out["applied"] = True
        out["revision"] = done.events[-1].revision
        return out

    def migration_report(self, twin: Twin, new_model: str) -> dict[str, Any]:
        """What moving ``twin`` to ``new_model`` would do: problems, dropped values (nothing is changed)."""
        self.models.ensure_usable(new_model, twin.id)
        rels = []
        for rel in twin.relationships.values():
            try:
                rels.append((rel.id, rel.name, self.store.get(rel.target).model))
            except NotFound:
                continue
        report = migration_report(self.models.modelset, twin.id, twin.reported, twin.desired, rels, new_model,
                                  current_model=twin.model)
        problems = list(report.problems) + self._incoming_problems(twin.id, new_model)
        return {"twin": twin.id, "from": twin.model, "to": new_model, "ok": not problems,
                "problems": problems, "dropped": list(report.dropped), "applied": False}

    def _incoming_problems(self, twin_id: str, new_model: str) -> list[dict[str, Any]]:
        """Relationships of other twins that point here and would no longer accept the new model."""
        problems = []
        for source_id, rel in self.store.incoming(twin_id):
            try:
                source = self.store.get(source_id)
            except NotFound:
                continue
            declared = self.models.resolve(source.model).relationships.get(rel.name)
            target = declared.target if declared is not None else None
            if target is not None and not self.models.modelset.is_a(new_model, target):
                problems.append({
                    "field": f"incoming.{source_id}.{rel.id}", "rule": "target_model",
                    "message": f"relationship {source_id}/{rel.id} ({rel.name}) needs a target of model {target}, "
                               f"which {new_model} is not",
                })
        return problems

    # -- helpers --------------------------------------------------------------------------
    def _provenance(self, twin_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The stamp each written value's metadata records: time, quality and (when given) source."""
        source = body.get("source")
        if source is not None and (not isinstance(source, str) or len(source) > 256):
            raise Invalid(f"twin {twin_id!r}: 'source' must be a string of at most 256 characters",
                          twin=twin_id, field="source", rule="type")
        quality = body.get("quality", "good")
        if not isinstance(quality, str) or quality not in QUALITIES:
            raise Invalid(f"twin {twin_id!r}: 'quality' must be one of {sorted(QUALITIES)}", twin=twin_id,
                          field="quality", rule="enum")
        when = _now()
        if body.get("time") is not None:
            when = parse_time(body["time"], field="time")
        stamp: dict[str, Any] = {"time": when.isoformat().replace("+00:00", "Z"), "quality": quality}
        if source is not None:
            stamp["source"] = source
        return stamp

    def _limit(self, limit: int | None) -> int:
        if limit is None:
            return self.default_limit
        if limit < 1:
            raise Malformed("limit must be at least 1", field="limit")
        if limit > self.max_limit:
            raise TooLarge(f"limit may be at most {self.max_limit}", field="limit", rule="max_limit")
        return limit


def _backoff(attempt: int) -> None:
    """Before a retry after losing a race: a short random sleep, growing with the attempts."""
    if attempt:
        time.sleep(random.uniform(0, RETRY_BASE_S * min(2 ** attempt, 64)))


def parse_time(value: Any, *, field: str) -> datetime:
    """Read an ISO 8601 timestamp (a zone is required) or epoch milliseconds as UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise Malformed(f"{field}: {value} is not a valid epoch-milliseconds time", field=field) from exc
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise Malformed(f"{field}: {value!r} is not an ISO 8601 time", field=field) from exc
        if ts.tzinfo is None:
            raise Malformed(f"{field}: {value!r} has no time zone; add 'Z' or an offset", field=field)
        return ts.astimezone(UTC)
    raise Malformed(f"{field} must be an ISO 8601 string or epoch milliseconds", field=field)


def _with_models(step: Any, models: frozenset[str]) -> Any:
    return msgspec.structs.replace(step, models=models)


def _object(value: Any, twin_id: str, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"twin {twin_id!r}: '{field}' must be a JSON object", twin=twin_id, field=field,
                      rule="type")
    return dict(value)


class _Checker:
    """Checks each command's values against its twin's model (models resolved once per batch).

    ``models`` holds the model of each twin of the batch as the earlier commands left it (``None``
    when it does not exist), so a relationship may target a twin created earlier in the same batch.
    """

    def __init__(self, service: TwinService, read: Mapping[str, Twin], models: dict[str, str | None]) -> None:
        self.models = service.models
        self.store = service.store
        self.read = read
        self.model_of = models
        self._usable: dict[str, ResolvedModel] = {}
        self._checks: dict[type, Callable[[Any, Twin | None], Command]] = {
            CreateTwin: self._body, PutTwin: self._body, PatchTwin: self._patch, SetDesired: self._patch,
            SetRelationship: self._relationship, DeleteTwin: self._delete, MigrateTwin: self._migrate,
            RecordReported: _unchanged, DeleteRelationship: _unchanged,
        }

    def __call__(self, command: Command, state: Twin | None) -> Command:
        check = self._checks.get(type(command))
        if check is None:
            raise Invalid(f"unknown command {type(command).__name__}", twin=command.twin, rule="command_type")
        checked = check(command, state)
        if type(command) in _CREATES:
            self.model_of[command.twin] = command.model  # type: ignore[union-attr]
        elif type(command) is DeleteTwin:
            self.model_of[command.twin] = None
        elif type(command) is MigrateTwin:
            self.model_of[command.twin] = command.to
        return checked

    def _body(self, command: CreateTwin | PutTwin, state: Twin | None) -> Command:
        twin = command.twin
        model = self._usable.get(command.model)
        if model is None:
            model = self._usable[command.model] = self.models.ensure_usable(command.model, twin)
        check_json(command.attributes, field="attributes")
        return msgspec.structs.replace(
            command, attributes=dict(command.attributes),
            reported=self._section(model, twin, "reported", command.reported, drop_none=True),
            desired=self._section(model, twin, "desired", command.desired, drop_none=True))

    def _patch(self, command: PatchTwin | SetDesired, state: Twin | None) -> Command:
        if state is None:
            return command  # deciding says it does not exist
        model = self.models.resolve(state.model)
        changes: dict[str, Any] = {}
        if isinstance(command, PatchTwin):
            if command.attributes is not None:
                check_json(command.attributes, field="attributes")
            if command.reported is not None:
                changes["reported"] = self._section(model, command.twin, "reported", command.reported)
        if command.desired is not None:
            changes["desired"] = self._section(model, command.twin, "desired", command.desired)
        return msgspec.structs.replace(command, **changes) if changes else command

    def _relationship(self, command: SetRelationship, state: Twin | None) -> Command:
        if state is None:
            return command
        twin = command.twin
        if command.target in self.model_of:
            target_model = self.model_of[command.target]
        else:
            found = self.read.get(command.target)
            target_model = None if found is None else found.model
        if target_model is None:
            raise Invalid(f"twin {twin!r}: relationship {command.id!r} targets twin {command.target!r}, "
                          "which does not exist", twin=twin, field=f"relationships.{command.id}.target",
                          rule="target_exists")
        same_name = sum(1 for r in state.relationships.values() if r.name == command.name and r.id != command.id)
        props = validate_relationship(self.models.modelset, state.model, twin, command.name, command.target,
                                      target_model, command.properties, same_name)
        return msgspec.structs.replace(command, properties=dict(props))

    def _delete(self, command: DeleteTwin, state: Twin | None) -> Command:
        if state is None:
            return command
        incoming = self.store.incoming(command.twin)
        return msgspec.structs.replace(command, incoming=tuple(f"{src}/{rel.id}" for src, rel in incoming))

    def _migrate(self, command: MigrateTwin, state: Twin | None) -> Command:
        if state is None:
            return command
        twin = command.twin
        self.models.ensure_usable(command.to, twin)
        rels = []
        for rel in state.relationships.values():
            target = self.read.get(rel.target) or _get_or_none(self.store, rel.target)
            if target is not None:
                rels.append((rel.id, rel.name, target.model))
        report = migration_report(self.models.modelset, twin, state.reported, state.desired, rels, command.to,
                                  current_model=state.model)
        if report.problems:
            raise Invalid(f"twin {twin!r} cannot migrate to {command.to}: {report.problems[0]['message']}",
                          twin=twin, field="model", rule="migration")
        return msgspec.structs.replace(command, dropped=tuple(report.dropped),
                                       report={"problems": list(report.problems), "dropped": list(report.dropped)})

    def _section(self, model: ResolvedModel, twin: str, section: Literal["reported", "desired"],
                 values: Mapping[str, Any], *, drop_none: bool = False) -> dict[str, Any]:
        if not isinstance(values, Mapping):
            raise Invalid(f"twin {twin!r}: '{section}' must be a JSON object", twin=twin, field=section, rule="type")
        check_json(values, field=section)
        clean = validate_section(model, self.models.modelset, twin, section, values)
        return {k: v for k, v in clean.items() if v is not None} if drop_none else dict(clean)


_CREATES = (CreateTwin, PutTwin)


def _unchanged(command: Command, state: Twin | None) -> Command:
    return command


def _get_or_none(store: TwinStore, twin_id: str) -> Twin | None:
    try:
        return store.get(twin_id)
    except NotFound:
        return None


def _not_yet(twin_id: str, revision: int | None, at: datetime | None) -> str:
    if revision is not None:
        return f"twin {twin_id!r} has no revision {revision}"
    if at is not None:
        return f"twin {twin_id!r} did not exist at {at.isoformat()}"
    return f"twin {twin_id!r} does not exist"


def _now() -> datetime:
    return datetime.now(UTC)
