"""In-memory adapter of the model and twin stores: the reference for the others, and for tests."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from tvilling.core.errors import Conflict, NotFound
from tvilling.core.events import Event, fold_batch
from tvilling.core.links import check_links
from tvilling.core.twin import Relationship, Twin
from tvilling.twins.ports import ModelRecord, Page
from tvilling.twins.query import Query, Step, page_of, rel_matches, twin_matches


class MemoryModelStore:
    def __init__(self) -> None:
        self._models: dict[str, ModelRecord] = {}
        self._lock = threading.Lock()

    def add_models(self, records: Sequence[ModelRecord]) -> None:
        with self._lock:
            ids = [r.id for r in records]
            clash = [i for n, i in enumerate(ids) if i in self._models or i in ids[:n]]
            if clash:
                raise Conflict(f"model {clash[0]} is registered already", model=clash[0], rule="exists")
            for r in records:
                self._models[r.id] = r

    def get_model(self, model_id: str) -> ModelRecord:
        try:
            return self._models[model_id]
        except KeyError:
            raise NotFound(f"model {model_id} is not registered", model=model_id) from None

    def list_models(self) -> list[ModelRecord]:
        return [self._models[k] for k in sorted(self._models)]

    def set_decommissioned(self, model_id: str, value: bool) -> ModelRecord:
        with self._lock:
            rec = self.get_model(model_id)
            new = ModelRecord(id=rec.id, document=rec.document, uploaded=rec.uploaded, decommissioned=value)
            self._models[model_id] = new
            return new


class MemoryTwinStore:
    def __init__(self) -> None:
        self._twins: dict[str, Twin] = {}
        self._ids: list[str] = []  # sorted ids of live twins, for ordered pages
        self._revisions: dict[str, int] = {}
        self._logs: dict[str, list[Event]] = defaultdict(list)
        self._feed: list[Event] = []
        self._incoming: dict[str, set[tuple[str, str]]] = defaultdict(set)  # target -> {(source, rel id)}
        self._lock = threading.RLock()

    # -- reads --
    def get(self, twin_id: str) -> Twin:
        try:
            return self._twins[twin_id]
        except KeyError:
            raise NotFound(f"twin {twin_id!r} does not exist", twin=twin_id) from None

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin]:
        return {i: self._twins[i] for i in twin_ids if i in self._twins}

    def last_revision(self, twin_id: str) -> int:
        return self._revisions.get(twin_id, 0)

    def history(
        self,
        twin_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        until_revision: int | None = None,
        until_time: datetime | None = None,
    ) -> list[Event]:
        out = []
        for e in self._logs.get(twin_id, ()):
            if e.revision <= after:
                continue
            if until_revision is not None and e.revision > until_revision:
                break
            if until_time is not None and e.time > until_time:
                break
            out.append(e)
            if len(out) >= limit:
                break
        return out

    def feed(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        return self._feed[after : after + limit]  # positions are 1-based and dense

    def incoming(self, twin_id: str) -> list[tuple[str, Relationship]]:
        out = []
        for source, rel_id in sorted(self._incoming.get(twin_id, ())):
            twin = self._twins.get(source)
            if twin is not None and rel_id in twin.relationships:
                out.append((source, twin.relationships[rel_id]))
        return out

    def _incoming_rows(self, targets: Sequence[str]) -> list[tuple[str, str, str]]:
        rows = []
        for target in targets:
            for source, rel_id in self._incoming.get(target, ()):
                twin = self._twins.get(source)
                if twin is not None and rel_id in twin.relationships and twin.relationships[rel_id].target == target:
                    rows.append((source, target, rel_id))
        return rows

    def count(self) -> int:
        return len(self._twins)

    # -- writes --
    def commit(self, events: Sequence[Event]) -> list[Event]:
        with self._lock:
            states, revs = fold_batch(events, self._revisions, self._twins)
            check_links(events, states, lambda ids: {i for i in ids if i in self._twins}, self._incoming_rows)
            stored = []
            for e in events:
                pos = len(self._feed) + 1
                e = Event(
                    twin=e.twin, revision=e.revision, time=e.time, actor=e.actor, type=e.type,
                    payload=e.payload, position=pos,
                )
                self._feed.append(e)
                self._logs[e.twin].append(e)
                stored.append(e)
            for twin_id, state in states.items():
                self._revisions[twin_id] = revs[twin_id]
                old = self._twins.get(twin_id)
                if old is not None:
                    for rel in old.relationships.values():
                        self._incoming[rel.target].discard((twin_id, rel.id))
                if state is None:
                    if old is not None:
                        del self._twins[twin_id]
                        del self._ids[bisect.bisect_left(self._ids, twin_id)]
                    continue
                if old is None:
                    bisect.insort(self._ids, twin_id)
                self._twins[twin_id] = state
                for rel in state.relationships.values():
                    self._incoming[rel.target].add((twin_id, rel.id))
            return stored

    # -- query --
    def query(self, query: Query) -> Page:
        first = query.steps[0]
        if len(query.steps) == 1:
            candidates = self._ids[bisect.bisect_right(self._ids, query.after) :] if query.after else self._ids
            items: list[Twin] = []
            for twin_id in candidates:
                twin = self._twins[twin_id]
                if self._select(twin, first):
                    items.append(twin)
                    if len(items) > query.limit:
                        break
            return Page(*page_of(items, query.limit))
        current = {t.id for t in self._twins.values() if self._select(t, first)}
        for step in query.steps[1:]:
            current = self._follow(current, step)
        ids = sorted(i for i in current if query.after is None or i > query.after)
        return Page(*page_of([self._twins[i] for i in ids[: query.limit + 1]], query.limit))

    def _follow(self, sources: set[str], step: Step) -> set[str]:
        found: set[str] = set()
        if step.direction == "out":
            for source_id in sources:
                for rel in self._twins[source_id].relationships.values():
                    if rel.name == step.via and rel_matches(rel.properties, step.rel_where):
                        target = self._twins.get(rel.target)
                        if target is not None and self._select(target, step):
                            found.add(target.id)
        else:
            for target_id in sources:
                for source_id, rel in self.incoming(target_id):
                    if rel.name == step.via and rel_matches(rel.properties, step.rel_where):
                        source = self._twins[source_id]
                        if self._select(source, step):
                            found.add(source_id)
        return found

    @staticmethod
    def _select(twin: Twin, step: Step) -> bool:
        if step.models is not None and twin.model not in step.models:
            return False
        return twin_matches(twin, step.where)

    def close(self) -> None:
        pass
