"""Policies enforced on a running API: the caller's view of the twins, compiled once and kept current.

:class:`PolicyGuard` (one per app, :func:`guard_of`) holds the policies as of the store's revision
(re-read at once after a change through this process, and at most ``recheck_s`` late for a change
made by another process), the subgraph index (refreshed when the twin feed moved, at most every
``graph_ttl_s``), and one compiled :class:`View` per caller. A view answers, for one caller:

* :meth:`View.may` — may it do an action on a twin (a kind of data, a path), by its role, its token's
  twins scope and the policies;
* :meth:`View.twin` — a twin document with the paths it may not read removed (None: not visible);
* :meth:`View.item` — a list or stream item (twin event, command, alarm, work order) as it may see it.

Routes ask through :func:`view_of` (None when auth is off, so nothing changes then), :func:`require`
(``Forbidden`` that names no twin) and :func:`visible`. Streams ask for each event as it is sent, so
a policy change applies to the events after it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from tvilling.core.errors import Forbidden, NotFound
from tvilling.core.events import RELATIONSHIP_SET
from tvilling.core.principal import Principal
from tvilling.security.authn import Caller
from tvilling.security.policies import Decision, Evaluator, Policy, redact
from tvilling.streams.subscription import Change
from tvilling.twins.ports import Page
from tvilling.twins.query import Predicate, Query, Step, page_of, rel_matches

if TYPE_CHECKING:
    from tvilling.backend.policies import PolicyStore
    from tvilling.core.twin import Twin
    from tvilling.twins.service import TwinService

#: The kind of data each kind of stream/list item is about.
ITEM_KINDS = {"event": "twin", "command": "twin", "alarm": "alarms", "workorder": "workorders"}
#: (action, permissions resource) of a route addressing a twin → (policy action, kind of data).
ROUTE_KINDS = {"twins": "twin", "commands": "twin", "history": "history", "analytics": "analytics",
               "workorders": "workorders", "alarms": "alarms", "dead_letters": "dead-letters"}
SECTIONS = ("reported", "desired")
ID_CHUNK = 500  # ids per ``in`` predicate when a traversal is run for a caller (see run_query)
MAX_SUBGRAPH = 100_000


class SubgraphIndex:
    """``members(root)``: the twin and every twin reachable by its outgoing relationships, cached.

    The cache is dropped when ``version()`` (the twin feed's position) moved and ``ttl_s`` passed since
    the last build; ``generation`` grows whenever a rebuilt member set differs.
    """

    def __init__(self, children: Callable[[str], Iterable[str]], version: Callable[[], object] = lambda: None,
                 *, ttl_s: float = 1.0) -> None:
        self._children = children
        self._version = version
        self.ttl_s = ttl_s
        self._sets: dict[str, frozenset[str]] = {}
        self._built_at = 0.0
        self._built_version: object = None
        self.generation = 0
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Drop stale sets (rebuilt on next use); the current generation."""
        now = time.monotonic()
        if self._sets and now - self._built_at >= self.ttl_s:
            version = self._version()
            if version is None or version != self._built_version:
                rebuilt = {root: self._walk(root) for root in list(self._sets)}
                with self._lock:
                    if rebuilt != self._sets:
                        self.generation += 1
                    self._sets, self._built_version = rebuilt, version
            self._built_at = now
        return self.generation

    def members(self, root: str) -> frozenset[str]:
        found = self._sets.get(root)
        if found is None:
            if not self._sets:
                self._built_at, self._built_version = time.monotonic(), self._version()
            found = self._walk(root)
            with self._lock:
                self._sets[root] = found
        return found

    def _walk(self, root: str) -> frozenset[str]:
        seen = {root}
        todo = [root]
        while todo and len(seen) < MAX_SUBGRAPH:
            try:
                targets = list(self._children(todo.pop()))
            except NotFound:
                continue
            for t in targets:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)


class View:
    """One caller's view: its role, its token's twins scope and the policies that apply to it."""

    def __init__(self, caller: Caller, evaluator: Evaluator) -> None:
        self.caller = caller
        self.evaluator = evaluator

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    def may(self, action: str, twin: str | None, *, kind: str = "twin", path: str | None = None,
            model: str | None = None) -> Decision:
        """Whether the caller may do ``action`` on ``twin``'s ``kind`` of data (at ``path``)."""
        if twin is not None and not self.caller.covers(twin):
            return Decision(False, "outside the credential's twins scope")
        return self.evaluator.decide(action, twin, kind=kind, path=path, model=model)

    @property
    def restricted(self) -> bool:
        """Whether some twin may be out of the caller's sight (a policy applies, or its token's scope)."""
        return not self.evaluator.unrestricted or self.caller.twins != "*"

    def reads(self, twin: str) -> bool:
        """Whether the caller may read the twin ``twin`` (the target or source of a relationship)."""
        return not self.restricted or bool(self.may("read", twin))

    def twin(self, doc: Mapping[str, Any], *, kind: str = "twin") -> dict[str, Any] | None:
        """A twin document as the caller may read it: None when it may not, else without hidden paths and
        without the relationships to twins it may not read."""
        twin_id, model = doc.get("id"), doc.get("model")
        if not isinstance(twin_id, str) or not self.may("read", twin_id, kind=kind, model=_str(model)):
            return None
        out = self._redacted(twin_id, _str(model), doc)
        rels = out.get("relationships")
        if self.restricted and isinstance(rels, list):
            kept = [r for r in rels if not isinstance(r, Mapping) or self.reads(str(r.get("target")))]
            if len(kept) != len(rels):
                out = {**out, "relationships": kept}
        return out

    def item(self, item: Mapping[str, Any], *, twin_key: str = "twin", kind: str | None = None
             ) -> Mapping[str, Any] | None:
        """A list or stream item as the caller may see it (None: not at all). ``kind`` is the kind of data
        it is (default: by its ``kind`` field: events and commands are the twin's, alarms, work orders)."""
        twin = item.get(twin_key)
        if not isinstance(twin, str):
            return item
        model = _str(item.get("model"))
        what = kind or ITEM_KINDS.get(str(item.get("kind")), "twin")
        if not self.may("read", twin, kind=what, model=model):
            return None
        payload = item.get("payload")
        if item.get("type") == RELATIONSHIP_SET and isinstance(payload, Mapping) and self.restricted \
                and not self.reads(str(payload.get("target"))):
            return None  # a link to a twin the caller may not read: that twin's id is not shown
        if item.get("kind", "event") == "event" and isinstance(payload, Mapping) and self.evaluator.revokes_paths:
            shown = self._redacted(twin, model, payload)
            if shown is not payload:
                return {**item, "payload": shown}
        return item

    def _redacted(self, twin: str, model: str | None, doc: Mapping[str, Any]) -> dict[str, Any]:
        if not self.evaluator.revokes_paths:
            return doc if isinstance(doc, dict) else dict(doc)
        hidden = self.evaluator.hidden_paths(twin, model, {s: doc.get(s) for s in SECTIONS})
        if not hidden:
            return doc if isinstance(doc, dict) else dict(doc)
        return redact(doc, hidden)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class PolicyGuard:
    """The policies of one API process, compiled per caller (see the module docs)."""

    def __init__(self, store: Callable[[], PolicyStore], *, children: Callable[[str], Iterable[str]],
                 model_of: Callable[[str], str | None] | None = None,
                 version: Callable[[], object] = lambda: None, recheck_s: float = 0.25,
                 graph_ttl_s: float = 1.0) -> None:
        self._store = store
        self.index = SubgraphIndex(children, version, ttl_s=graph_ttl_s)
        self._model_of = model_of
        self.recheck_s = recheck_s
        self._policies: list[Policy] = []
        self._revision: int | None = None
        self._checked = 0.0
        self._views: OrderedDict[tuple[Any, ...], View] = OrderedDict()
        self._lock = threading.Lock()

    def changed(self) -> None:
        """Policies changed through this process: read them again before the next decision."""
        self._checked = 0.0
        self._revision = None

    def policies(self) -> list[Policy]:
        """The policies as of the store's latest revision (checked at most every ``recheck_s``)."""
        now = time.monotonic()
        if self._revision is None or now - self._checked >= self.recheck_s:
            store = self._store()
            revision = store.revision()
            if revision != self._revision:
                listed = store.list()
                with self._lock:
                    self._policies, self._revision = listed, revision
                    self._views.clear()
            self._checked = now
        return self._policies

    def view(self, caller: Caller) -> View:
        """``caller``'s compiled view as of now."""
        policies = self.policies()
        generation = self.index.refresh()
        p = caller.principal
        key = (p.id, p.kind, p.roles, caller.twins, self._revision, generation)
        found = self._views.get(key)
        if found is None:
            found = View(caller, Evaluator(policies, p, members=self.index.members, model_of=self._model_of))
            with self._lock:
                self._views[key] = found
                if len(self._views) > 4096:
                    self._views.popitem(last=False)
        return found


def guard_of(app: Any) -> PolicyGuard:
    """The app's policy guard, made on first use from its platform (twins, backend) and change hub."""
    guard = getattr(app.state, "policy_guard", None)
    if isinstance(guard, PolicyGuard):
        return guard
    platform = app.state.platform
    twins = platform.twins

    def children(twin_id: str) -> list[str]:
        return [r.target for r in twins.relationships(twin_id)]

    def model_of(twin_id: str) -> str | None:
        try:
            return str(twins.get(twin_id).model)
        except NotFound:
            return None

    def version() -> object:
        hub = getattr(app.state, "hub", None)
        positions = getattr(hub, "positions", None)
        return positions.get("events") if isinstance(positions, dict) else None

    guard = PolicyGuard(lambda: platform.backend.policies, children=children, model_of=model_of, version=version)
    app.state.policy_guard = guard
    return guard


def view_of(request: HTTPConnection) -> View | None:
    """The caller's view when auth is required (None when it is off: nothing is filtered then)."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        return None
    return guard_of(request.app).view(caller)


def require(request: HTTPConnection, action: str, twin: str | None, *, kind: str = "twin",
            path: str | None = None) -> None:
    """``Forbidden`` (naming neither the twin nor the path) unless the caller may; nothing with auth off."""
    view = view_of(request)
    if view is not None and not view.may(action, twin, kind=kind, path=path):
        raise Forbidden("the caller's role or policies do not allow this", rule="policy")


def visible(request: HTTPConnection, items: Iterable[Mapping[str, Any]], *, docs: bool = False,
            twin_key: str = "twin", kind: str | None = None) -> list[Any]:
    """``items`` as the caller may see them: twin documents when ``docs``, else list or feed items whose
    twin is at ``twin_key`` (see :meth:`View.item`). With auth off, all of them."""
    view = view_of(request)
    if view is None:
        return list(items)
    shown = (view.twin(i) if docs else view.item(i, twin_key=twin_key, kind=kind) for i in items)
    return [i for i in shown if i is not None]


def linked(request: HTTPConnection, items: Iterable[Mapping[str, Any]], *, key: str = "target") -> list[Any]:
    """The relationships among ``items`` whose twin at ``key`` (the target; the source of an incoming one)
    the caller may read: the others are left out, so that a list names no twin the caller may not read.
    With auth off, all of them."""
    view = view_of(request)
    if view is None or not view.restricted:
        return list(items)
    return [i for i in items if view.reads(str(i.get(key)))]


def check_query(request: HTTPConnection, paths: Iterable[str]) -> None:
    """``Forbidden`` when a query filters on a property (``paths``: those of its ``where`` predicates) that
    a policy hides from the caller on some twin; nothing with auth off.

    Why refuse rather than filter as if the property were absent: the predicates run inside the store (SQL
    on the embedded and PostgreSQL stores), which knows nothing of the caller, and a filter on the results
    afterwards cannot stand in for it: ``["reported.temperature", "exists", false]`` would still tell which
    twins have the property, and the twins matched by the earlier steps of a traversal are never seen. The
    refusal is decided from the query's text and the caller's policies alone, so it tells nothing the
    caller did not know (which twins exist, match, or hold which value); its body names neither a twin,
    nor the path, nor a value. It is conservative: a path hidden on some twins is refused for all of them.
    """
    view = view_of(request)
    if view is not None and any(view.evaluator.may_hide(p) for p in paths):
        raise Forbidden("the query filters on a property the caller may not read", rule="policy")


def run_query(request: HTTPConnection, twins: TwinService, query: Query) -> Page:
    """Run ``query`` for the caller: as the store runs it, except for a traversal (more than one step) by a
    caller some twins may be hidden from, which is run here over only the twins the caller may read.

    The store would follow relationships through any twin, so the twins it returns could tell of a twin
    the caller may not read (that it exists, is linked, or matches a ``where``). Here each step selects
    through the store (its ``where`` and ``model``, among the ids the step before reached, a page at a
    time), keeps the twins the caller may read, and follows their relationships: the answer is the one
    the query would give if the hidden twins did not exist. Single steps need none of this: their
    results are filtered afterwards (:func:`visible`).
    """
    view = view_of(request)
    if view is None or not view.restricted or len(query.steps) == 1:
        return twins.run_query(query)

    def select(step: Step, among: set[str] | None) -> dict[str, Twin]:
        found: dict[str, Twin] = {}
        ids = None if among is None else sorted(among)
        for at in [0] if ids is None else range(0, len(ids), ID_CHUNK):
            where = step.where if ids is None else (*step.where, Predicate(("id",), "in", ids[at:at + ID_CHUNK]))
            one = Query(steps=(Step(model=step.model, exact=step.exact, where=where),), limit=twins.max_limit)
            while True:
                page = twins.run_query(one)
                found.update((t.id, t) for t in page.items if view.may("read", t.id, model=t.model))
                if page.next is None:
                    break
                one = Query(steps=one.steps, limit=one.limit, after=page.next)
        return found

    current = select(query.steps[0], None)
    for step in query.steps[1:]:
        reached: set[str] = set()
        for twin in current.values():
            pairs = ([(r.target, r) for r in twin.relationships.values()] if step.direction == "out"
                     else twins.store.incoming(twin.id))
            reached.update(other for other, r in pairs if r.name == step.via and rel_matches(r.properties,
                                                                                           step.rel_where))
        current = select(step, reached) if reached else {}
    ids = sorted(i for i in current if query.after is None or i > query.after)
    return Page(*page_of([current[i] for i in ids[:query.limit + 1]], query.limit))


def shown(request: HTTPConnection, doc: dict[str, Any]) -> dict[str, Any]:
    """One twin document the caller may read (the route checked that), without the paths it may not."""
    view = view_of(request)
    if view is None:
        return doc
    out = view.twin(doc)
    if out is None:
        raise Forbidden("the caller's role or policies do not allow this", rule="policy")
    return out


def screener(conn: HTTPConnection) -> Callable[[Change], Change | None] | None:
    """For a stream's subscriber, a function showing each change as the caller may see it *as it is sent*
    (None: skip it), with the policies of that moment; None when auth is off."""
    caller = getattr(conn.state, "caller", None)
    if not isinstance(caller, Caller):
        return None
    guard = guard_of(conn.app)

    def screen(change: Change) -> Change | None:
        shown = guard.view(caller).item(change.item)
        if shown is None:
            return None
        return change if shown is change.item else Change(change.cursor, dict(shown))

    return screen


def check_route(app: Any, caller: Caller, action: str, resource: str, twin: str | None) -> None:
    """The middleware's policy check of a route addressing ``twin`` (or dead letters); ``Forbidden``."""
    kind = ROUTE_KINDS.get(resource)
    if kind is None or (twin is None and kind != "dead-letters") or (action, resource) == ("execute", "commands"):
        return  # a command is checked by its route, on its path (commands.<name>)
    if not guard_of(app).view(caller).may(action, twin, kind=kind):
        raise Forbidden("the caller's role or policies do not allow this", rule="policy")


__all__ = ["PolicyGuard", "SubgraphIndex", "View", "check_query", "check_route", "guard_of", "linked", "require",
           "run_query", "screener", "shown", "view_of", "visible"]
