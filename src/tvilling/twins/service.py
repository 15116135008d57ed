"""The twin service: validated commands on twins in, events out, state read back.

Every write is validated against the twin's model, turned into one event whose
revision follows the twin's last one, and committed; a concurrent writer that got
there first makes the commit fail (optimistic concurrency), never a lost update.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tvilling.core import events as ev
from tvilling.core.errors import Conflict, Invalid, Malformed, NotFound, PreconditionFailed, TooLarge
from tvilling.core.events import Event, apply, fold
from tvilling.core.ids import check_twin_id
from tvilling.core.patch import check_json
from tvilling.core.twin import Relationship, Twin
from tvilling.models.service import ModelRegistry
from tvilling.models.validate import migration_report, validate_relationship, validate_section
from tvilling.twins.ports import Page, TwinStore
from tvilling.twins.query import Query, parse_query

RETRY_BASE_S = 0.002
PATCH_KEYS = frozenset({"attributes", "reported", "desired", "source", "quality", "time"})
QUALITIES = frozenset({"good", "uncertain", "bad"})
MAX_RETRIES = 25
HISTORY_PAGE = 10_000


class TwinService:
    """Create, read, patch, relate, query and time-travel twins."""

    def __init__(self, store: TwinStore, models: ModelRegistry, *, default_limit: int = 100,
                 max_limit: int = 1000) -> None:
        self.store = store
        self.models = models
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

    # -- writes ---------------------------------------------------------------------------
    def put(self, twin_id: str, body: Mapping[str, Any], *, actor: str = "api",
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
        model = self.models.ensure_usable(model_id, twin_id)
        when, source, quality = self._provenance(twin_id, body)
        payload: dict[str, Any] = {"model": model_id, "metadata": {}}
        attributes = _object(body.get("attributes"), twin_id, "attributes")
        check_json(attributes, field="attributes")
        payload["attributes"] = attributes
        for section in ("reported", "desired"):
            values = _object(body.get(section), twin_id, section)
            check_json(values, field=section)
            clean = validate_section(model, self.models.modelset, twin_id, section, values)
            clean = {k: v for k, v in clean.items() if v is not None}
            payload[section] = clean
            payload["metadata"][section] = _meta(clean, when, source, quality)
        last = self.store.last_revision(twin_id)
        try:
            current = self.store.get(twin_id)
        except NotFound:
            current = None
        if create_only and current is not None:
            raise PreconditionFailed(f"twin {twin_id!r} exists already (If-None-Match: *)", twin=twin_id,
                                     revision=current.revision, rule="if_none_match")
        if if_match is not None and (current is None or current.revision != if_match):
            raise _stale(twin_id, if_match, 0 if current is None else current.revision)
        kind = ev.TWIN_CREATED if current is None else ev.TWIN_REPLACED
        if current is not None and current.model != model_id:
            raise Conflict(
                f"twin {twin_id!r} has model {current.model}; change it with a migration, not a replace",
                twin=twin_id, field="model", rule="model_change",
            )
        event = Event(twin=twin_id, revision=last + 1, time=_now(), actor=actor, type=kind, payload=payload)
        self._commit(event, if_match)
        state = apply(current, event)
        assert state is not None  # a create/replace always yields a twin
        return state, current is None

    def patch(self, twin_id: str, body: Mapping[str, Any], *, actor: str = "api",
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
        when, source, quality = self._provenance(twin_id, body)
        for attempt in range(MAX_RETRIES):
            _backoff(attempt)
            twin = self.get(twin_id)
            if if_match is not None and twin.revision != if_match:
                raise _stale(twin_id, if_match, twin.revision)
            model = self.models.resolve(twin.model)
            payload: dict[str, Any] = {}
            meta: dict[str, Any] = {}
            if "attributes" in body:
                attrs = _object(body["attributes"], twin_id, "attributes")
                check_json(attrs, field="attributes")
                payload["attributes"] = attrs
            for section in ("reported", "desired"):
                if section in body:
                    values = _object(body[section], twin_id, section)
                    check_json(values, field=section)
                    clean = validate_section(model, self.models.modelset, twin_id, section, values)
                    payload[section] = clean
                    meta[section] = _meta(clean, when, source, quality)
            if meta:
                payload["metadata"] = meta
            if not payload:
                return twin  # nothing to change: no new revision
            event = Event(twin=twin_id, revision=twin.revision + 1, time=_now(), actor=actor,
                          type=ev.TWIN_PATCHED, payload=payload)
            if self._commit(event, if_match, retry=True):
                state = apply(twin, event)
                assert state is not None
                return state
        raise Conflict(f"twin {twin_id!r} changed {MAX_RETRIES} times while patching; try again",
                       twin=twin_id, rule="contention")

    def delete(self, twin_id: str, *, actor: str = "api", if_match: int | None = None) -> None:
        twin = self.get(twin_id)
        if if_match is not None and twin.revision != if_match:
            raise _stale(twin_id, if_match, twin.revision)
        incoming = self.store.incoming(twin_id)
        if incoming:
            names = ", ".join(f"{src}/{rel.id}" for src, rel in incoming[:5])
            raise Conflict(
                f"twin {twin_id!r} is the target of {len(incoming)} relationship(s) ({names}); "
                "delete them first",
                twin=twin_id, rule="has_incoming", relationships=[f"{s}/{r.id}" for s, r in incoming],
            )
        event = Event(twin=twin_id, revision=twin.revision + 1, time=_now(), actor=actor,
                      type=ev.TWIN_DELETED, payload={})
        self._commit(event, if_match)

    def set_relationship(self, twin_id: str, rel_id: str, body: Mapping[str, Any], *,
                         actor: str = "api", if_match: int | None = None) -> Relationship:
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
        check_json(props, field="properties")
        for attempt in range(MAX_RETRIES):
            _backoff(attempt)
            twin = self.get(twin_id)
            if if_match is not None and twin.revision != if_match:
                raise _stale(twin_id, if_match, twin.revision)
            try:
                target = self.store.get(target_id)
            except NotFound:
                raise Invalid(
                    f"twin {twin_id!r}: relationship {rel_id!r} targets twin {target_id!r}, which does not exist",
                    twin=twin_id, field=f"relationships.{rel_id}.target", rule="target_exists",
                ) from None
            same_name = sum(1 for r in twin.relationships.values() if r.name == name and r.id != rel_id)
            clean = validate_relationship(self.models.modelset, twin.model, twin_id, name, target_id,
                                          target.model, props, same_name)
            rel = Relationship(id=rel_id, name=name, target=target_id, properties=dict(clean))
            event = Event(twin=twin_id, revision=twin.revision + 1, time=_now(), actor=actor,
                          type=ev.RELATIONSHIP_SET,
                          payload={"id": rel_id, "name": name, "target": target_id,
                                   "properties": rel.properties})
            if self._commit(event, if_match, retry=True):
                return rel
        raise Conflict(f"twin {twin_id!r} changed {MAX_RETRIES} times; try again", twin=twin_id,
                       rule="contention")

    def delete_relationship(self, twin_id: str, rel_id: str, *, actor: str = "api",
                            if_match: int | None = None) -> None:
        for attempt in range(MAX_RETRIES):
            _backoff(attempt)
            twin = self.get(twin_id)
            if if_match is not None and twin.revision != if_match:
                raise _stale(twin_id, if_match, twin.revision)
            if rel_id not in twin.relationships:
                raise NotFound(f"twin {twin_id!r} has no relationship {rel_id!r}", twin=twin_id,
                               relationship=rel_id)
            event = Event(twin=twin_id, revision=twin.revision + 1, time=_now(), actor=actor,
                          type=ev.RELATIONSHIP_DELETED, payload={"id": rel_id})
            if self._commit(event, if_match, retry=True):
                return
        raise Conflict(f"twin {twin_id!r} changed {MAX_RETRIES} times; try again", twin=twin_id,
                       rule="contention")

    def migrate(self, twin_id: str, new_model: str, *, actor: str = "api", dry_run: bool = False,
                if_match: int | None = None) -> dict[str, Any]:
        """Move a twin to another model version; returns the validation report."""
        twin = self.get(twin_id)
        if if_match is not None and twin.revision != if_match:
            raise _stale(twin_id, if_match, twin.revision)
        self.models.ensure_usable(new_model, twin_id)
        rels = []
        for rel in twin.relationships.values():
            try:
                rels.append((rel.id, rel.name, self.store.get(rel.target).model))
            except NotFound:
                continue
        report = migration_report(self.models.modelset, twin_id, twin.reported, twin.desired, rels, new_model,
                                  current_model=twin.model)
        problems = list(report.problems) + self._incoming_problems(twin_id, new_model)
        out = {"twin": twin_id, "from": twin.model, "to": new_model, "ok": not problems,
               "problems": problems, "dropped": list(report.dropped), "applied": False}
        if problems:
            if dry_run:
                return out
            raise Invalid(
                f"twin {twin_id!r} cannot migrate to {new_model}: {problems[0]['message']}",
                twin=twin_id, field="model", rule="migration", report=out,
            )
        if dry_run:
            return out
        dropped = {name: None for name in report.dropped}
        payload = {
            "from": twin.model,
            "to": new_model,
            "reported": {k: None for k in dropped if k in twin.reported},
            "desired": {k: None for k in dropped if k in twin.desired},
            "report": {"problems": out["problems"], "dropped": out["dropped"]},
        }
        event = Event(twin=twin_id, revision=twin.revision + 1, time=_now(), actor=actor,
                      type=ev.TWIN_MIGRATED, payload=payload)
        self._commit(event, if_match)
        out["applied"] = True
        out["revision"] = event.revision
        return out

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
    def _commit(self, event: Event, if_match: int | None, *, retry: bool = False) -> bool:
        try:
            self.store.commit([event])
            return True
        except Conflict as exc:
            if exc.fields.get("rule") not in (None, "stale_revision", "exists"):
                raise
            if if_match is not None:
                raise _stale(event.twin, if_match, self.store.last_revision(event.twin)) from exc
            if retry:
                return False
            raise Conflict(
                f"twin {event.twin!r} was changed by someone else at the same time; read it and retry",
                twin=event.twin, rule="stale_revision",
            ) from exc

    def _provenance(self, twin_id: str, body: Mapping[str, Any]) -> tuple[datetime, str | None, str]:
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
        return when, source, quality

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
    import msgspec

    return msgspec.structs.replace(step, models=models)


def _object(value: Any, twin_id: str, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"twin {twin_id!r}: '{field}' must be a JSON object", twin=twin_id, field=field,
                      rule="type")
    return dict(value)


def _meta(values: Mapping[str, Any], when: datetime, source: str | None, quality: str) -> dict[str, Any]:
    stamp: dict[str, Any] = {"time": when.isoformat().replace("+00:00", "Z"), "quality": quality}
    if source is not None:
        stamp["source"] = source
    return {k: (None if v is None else stamp) for k, v in values.items()}


def _stale(twin_id: str, expected: int, actual: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"twin {twin_id!r} is at revision {actual}, not {expected} (If-Match); read it again",
        twin=twin_id, expected=expected, revision=actual, rule="if_match",
    )


def _not_yet(twin_id: str, revision: int | None, at: datetime | None) -> str:
    if revision is not None:
        return f"twin {twin_id!r} has no revision {revision}"
    if at is not None:
        return f"twin {twin_id!r} did not exist at {at.isoformat()}"
    return f"twin {twin_id!r} does not exist"


def _now() -> datetime:
    return datetime.now(UTC)
