"""Policies beyond roles: grant or revoke actions on twins, subgraphs, models, paths and kinds of data.

A :class:`Policy` names its **subjects** and holds **entries**. A subject is ``role:<role>``, ``*``
(everyone), or a glob over principal ids (``alice@example.com``, ``token:ci-*`` for API tokens named
``ci-…``). An entry grants or revokes ``actions`` (``read``, ``write``, ``execute``, ``admin``) on
``resources``:

* ``twin:<glob>`` — twins whose id matches; ``model:<dtmi glob>`` — twins of a matching model;
  ``subgraph:<twin id>`` — that twin and every twin reachable from it by its relationships. A twin
  selector covers the twin and every kind of data about it (history, alarms, work orders, analytics);
* ``history``, ``alarms``, ``workorders``, ``analytics``, ``dead-letters`` — that kind of data for
  every twin, or, written ``history:<twin selector>`` (``alarms:subgraph:line-2``), for some twins;

optionally narrowed to ``paths`` inside a twin (``reported.temperature``, ``desired.*``,
``commands.setSpeed``; a path covers what lies under it).

Evaluation (:func:`evaluate`, or :class:`Evaluator` compiled once per principal):

1. the principal's role is the ceiling: what its role may not do, no policy lets it do;
2. a matching **revoke** denies (revoke beats grant, as in Eclipse Ditto);
3. when the policies that apply to the principal grant the action somewhere, the principal may do it
   only where a grant matches; when they grant nothing for that action, the role decides.

No policy for a principal means its role's rights, as without policies.

>>> from tvilling.core.principal import Principal
>>> viewer = Principal(id="token:ops", kind="service", roles=("viewer",), authenticated=True)
>>> p = Policy.from_json({"id": "line-1-only", "subjects": ["token:ops"], "entries": [
...     {"effect": "grant", "actions": ["read"], "resources": ["twin:line-1*"]},
...     {"effect": "revoke", "actions": ["read"], "resources": ["twin:*"], "paths": ["reported.temperature"]}]})
>>> evaluate([p], viewer, "read", "line-1-m01").allowed, evaluate([p], viewer, "read", "line-2-m01").allowed
(True, False)
>>> evaluate([p], viewer, "read", "line-1-m01", path="reported.temperature").reason
'revoked by policy line-1-only'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from tvilling.core.errors import Invalid
from tvilling.core.principal import Principal
from tvilling.security.permissions import ACTIONS, ROLES, rights

KINDS = ("twin", "history", "alarms", "workorders", "analytics", "dead-letters")
SELECTORS = ("twin", "model", "subgraph")
#: The permissions resource each kind of data is, per action, for the role ceiling.
_RESOURCE = {"twin": "twins", "history": "history", "alarms": "alarms", "workorders": "workorders",
             "analytics": "analytics", "dead-letters": "dead_letters"}
MAX_ENTRIES = 256
MAX_TEXT = 256
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
Members = Callable[[str], frozenset[str]]
"""The twins of a subgraph: ``members(root)`` is ``root`` and every twin reachable from it."""


class Entry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One grant or revoke of ``actions`` on ``resources`` (optionally only on ``paths`` inside a twin)."""

    effect: Literal["grant", "revoke"]
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    paths: tuple[str, ...] = ()


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named set of entries for some subjects (see the module docs)."""

    id: str
    subjects: tuple[str, ...]
    entries: tuple[Entry, ...]
    description: str = ""

    @classmethod
    def from_json(cls, doc: Any, *, policy_id: str | None = None) -> Policy:
        """A checked policy from its JSON form; ``Invalid`` naming the field otherwise.

        ``policy_id`` (the id in a URL) fills a missing ``id`` and must equal a given one.
        """
        if isinstance(doc, Mapping) and policy_id is not None:
            if "id" in doc and doc["id"] != policy_id:
                raise Invalid(f"the body's id {doc['id']!r} is not the id in the path", field="id", rule="match")
            doc = {**doc, "id": policy_id}
        try:
            policy = msgspec.convert(doc, cls)
        except msgspec.ValidationError as exc:
            raise Invalid(f"not a policy: {exc}", field=_field_of(str(exc)), rule="schema") from None
        policy.check()
        return policy

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON object."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def check(self) -> None:
        """``Invalid`` naming the field unless every id, subject, action, resource and path can be read."""
        if not ID_PATTERN.match(self.id):
            raise Invalid("a policy id is 1 to 128 letters, digits, '.', '_', ':' or '-'", field="id", rule="pattern")
        if not self.subjects:
            raise Invalid("a policy needs at least one subject", field="subjects", rule="required")
        for s in self.subjects:
            if not s or len(s) > MAX_TEXT or (s.startswith("role:") and s[5:] not in ROLES):
                raise Invalid(f"a subject is role:<{'|'.join(ROLES)}>, * or a principal id glob; got {s!r}",
                              field="subjects", rule="subject")
        if not self.entries or len(self.entries) > MAX_ENTRIES:
            raise Invalid(f"a policy has 1 to {MAX_ENTRIES} entries", field="entries", rule="size")
        for i, e in enumerate(self.entries):
            if not e.actions or any(a not in ACTIONS for a in e.actions):
                raise Invalid(f"entries[{i}].actions: each one of {list(ACTIONS)}", field="entries", rule="action")
            if not e.resources:
                raise Invalid(f"entries[{i}].resources: at least one", field="entries", rule="resource")
            for r in e.resources:
                _parse_resource(r, i)
            for p in e.paths:
                if not p or len(p) > MAX_TEXT or p.startswith(".") or p.endswith(".") or ".." in p:
                    raise Invalid(f"entries[{i}].paths: {p!r} is not a dotted path such as reported.temperature",
                                  field="entries", rule="path")


def _field_of(message: str) -> str:
    found = re.search(r"at `\$\.?([A-Za-z_]+)", message)
    return found.group(1) if found else "body"


def _parse_resource(text: str, index: int = 0) -> tuple[str, str | None, str | None]:
    """``(kind, selector, value)``: ``history:subgraph:L1`` → ``("history", "subgraph", "L1")``."""
    kind, selector, value = "twin", None, None
    head, _, rest = text.partition(":")
    if head in KINDS and head != "twin":
        kind = head
        if rest:
            head, _, rest = rest.partition(":")
        else:
            return kind, None, None
    if head in SELECTORS and rest and len(rest) <= MAX_TEXT:
        selector, value = head, rest
        return kind, selector, value
    raise Invalid(f"entries[{index}].resources: {text!r} is not twin:<glob>, model:<dtmi glob>, subgraph:<twin id>, "
                  f"or one of {list(KINDS[1:])} (optionally followed by :<twin selector>)",
                  field="entries", rule="resource")


def _glob(pattern: str, *, under: bool = False) -> re.Pattern[str]:
    """A compiled glob (``*`` any run, ``?`` one character); ``under``: also what lies below, after a dot."""
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    tail = r"(?:\..*)?" if under else ""
    return re.compile(f"^{body}{tail}$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an action is allowed, and why (a reason that never names a twin or a value)."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class _Rule:
    policy: str
    grant: bool
    actions: frozenset[str]
    kind: str | None  # None: the twin selector covers every kind
    selector: str | None  # twin | model | subgraph | None (every twin)
    match: re.Pattern[str] | None  # for twin and model selectors
    root: str | None  # for subgraph
    paths: tuple[re.Pattern[str], ...]


def _subject_applies(subject: str, principal: Principal) -> bool:
    if subject == "*":
        return True
    if subject.startswith("role:"):
        return subject[5:] in principal.roles
    return _glob(subject).match(principal.id) is not None


def applicable(policies: Iterable[Policy], principal: Principal) -> list[Policy]:
    """The policies naming ``principal`` among their subjects."""
    return [p for p in policies if any(_subject_applies(s, principal) for s in p.subjects)]


class Evaluator:
    """The policies that apply to one principal, compiled; :meth:`decide` is cached per question.

    ``members`` resolves a subgraph (only needed when a policy names one); ``model_of`` finds a twin's
    model when a question does not give it (only needed for ``model:`` selectors).
    """

    def __init__(self, policies: Iterable[Policy], principal: Principal, *, members: Members | None = None,
                 model_of: Callable[[str], str | None] | None = None) -> None:
        self.principal = principal
        self._members = members
        self._model_of = model_of
        self._rules: list[_Rule] = []
        #: the path globs of the revokes of ``read`` on twins: (the glob, its text before any wildcard)
        self._hiding: list[tuple[re.Pattern[str], str]] = []
        for policy in applicable(policies, principal):
            for e in policy.entries:
                paths = tuple(_glob(p, under=True) for p in e.paths)
                for r in e.resources:
                    kind, selector, value = _parse_resource(r)
                    if e.effect == "revoke" and "read" in e.actions and kind == "twin":
                        self._hiding += [(g, _fixed(p)) for g, p in zip(paths, e.paths, strict=True)]
                    self._rules.append(_Rule(
                        policy.id, e.effect == "grant", frozenset(e.actions),
                        None if selector is not None and kind == "twin" else kind, selector,
                        _glob(value) if selector in ("twin", "model") and value is not None else None,
                        value if selector == "subgraph" else None, paths))
        self.granting = frozenset(a for r in self._rules if r.grant for a in r.actions)
        self.revokes_paths = any(not r.grant and r.paths for r in self._rules)
        self.uses_models = any(r.selector == "model" for r in self._rules)
        ceilings = [rights(role) for role in principal.roles if role in ROLES]
        self._all = any(c is None for c in ceilings)
        self._rights = frozenset().union(*(c for c in ceilings if c is not None))
        self._cache: dict[tuple[str, str, str | None, str | None, str | None], Decision] = {}

    @property
    def unrestricted(self) -> bool:
        """True when no policy applies: the role alone decides."""
        return not self._rules

    def role_allows(self, action: str, kind: str = "twin") -> bool:
        """Whether the principal's role allows ``action`` on ``kind`` (commands are ``execute`` on twins)."""
        if self._all:
            return True
        resource = "commands" if action == "execute" and kind == "twin" else _RESOURCE.get(kind, kind)
        return (action, resource) in self._rights

    def decide(self, action: str, twin: str | None, *, kind: str = "twin", path: str | None = None,
               model: str | None = None) -> Decision:
        """May the principal do ``action`` on ``twin`` (its ``kind`` of data, at ``path`` when given)?"""
        key = (action, kind, twin, path, model)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 65_536:
                self._cache.clear()
            hit = self._cache[key] = self._decide(action, twin, kind, path, model)
        return hit

    def _decide(self, action: str, twin: str | None, kind: str, path: str | None, model: str | None) -> Decision:
        if not self.role_allows(action, kind):
            return Decision(False, f"the role may not {action} {kind}")
        if not self._rules:
            return Decision(True, "role")
        if model is None and twin is not None and self.uses_models and self._model_of is not None:
            model = self._model_of(twin)
        granted: str | None = None
        limited = action in self.granting
        for rule in self._rules:
            if action not in rule.actions or not self._covers(rule, twin, kind, path, model):
                continue
            if not rule.grant:
                return Decision(False, f"revoked by policy {rule.policy}")
            granted = granted or rule.policy
        if granted is not None:
            return Decision(True, f"granted by policy {granted}")
        if limited:
            return Decision(False, f"no policy grants {action} here")
        return Decision(True, "role")

    def _covers(self, rule: _Rule, twin: str | None, kind: str, path: str | None, model: str | None) -> bool:
        if rule.kind is not None and rule.kind != kind:
            return False
        if rule.paths and (path is None or not any(p.match(path) for p in rule.paths)):
            return False
        if rule.selector is None:
            return True
        if twin is None:
            return False
        if rule.selector == "twin":
            return rule.match is not None and rule.match.match(twin) is not None
        if rule.selector == "model":
            return model is not None and rule.match is not None and rule.match.match(model) is not None
        return self._members is not None and rule.root is not None and twin in self._members(rule.root)

    def may_hide(self, path: str) -> bool:
        """Whether a policy revokes reading ``path``, something under it or something it lies under, on
        any twin: decided from the policies alone, never from the data (see :func:`enforce.check_query`).

        >>> from tvilling.core.principal import Principal
        >>> who = Principal(id="u", kind="user", roles=("viewer",), authenticated=True)
        >>> e = Evaluator([Policy.from_json({"id": "p", "subjects": ["*"], "entries": [{"effect": "revoke",
        ...     "actions": ["read"], "resources": ["twin:line-2*"], "paths": ["reported.motor.temp*"]}]})], who)
        >>> [e.may_hide(p) for p in ("reported.motor.temperature", "reported.motor", "reported.speed")]
        [True, True, False]
        """
        below = path + "."
        return any(glob.match(path) is not None or below.startswith(fixed) or fixed.startswith(below)
                   for glob, fixed in self._hiding)

    def hidden_paths(self, twin: str, model: str | None, sections: Mapping[str, Any]) -> list[tuple[str, ...]]:
        """The paths of ``sections`` (``{"reported": {...}, "desired": {...}}``) the principal may not read."""
        if not self.revokes_paths:
            return []
        out: list[tuple[str, ...]] = []

        def walk(prefix: tuple[str, ...], node: Any) -> None:
            for key, value in node.items():
                here = (*prefix, str(key))
                if not self.decide("read", twin, path=".".join(here), model=model):
                    out.append(here)
                elif isinstance(value, Mapping):
                    walk(here, value)

        for section, values in sections.items():
            if isinstance(values, Mapping):
                walk((section,), values)
        return out


def _fixed(pattern: str) -> str:
    """The text a path glob's matches start with: before its first wildcard (a literal path: itself and a dot)."""
    head = re.split(r"[*?]", pattern, maxsplit=1)[0]
    return head if head != pattern else pattern + "."


def redact(doc: Mapping[str, Any], hidden: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of a twin document (or an event payload) without the ``hidden`` paths.

    A hidden ``reported.x`` or ``desired.x`` is removed from that section, from ``metadata``'s same
    section, and (for both) from ``delta``.
    """
    out = dict(doc)
    for path in hidden:
        section, rest = path[0], path[1:]
        targets = [(section,), ("metadata", section)] + ([("delta",)] if section in ("reported", "desired") else [])
        for base in targets:
            _drop(out, (*base, *rest))
    return out


def _drop(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    if path[-1] not in node:
        return
    node = doc
    for key in path[:-1]:  # copy the branch before changing it: the source is shared
        node[key] = dict(node[key])
        node = node[key]
    del node[path[-1]]


def evaluate(policies: Iterable[Policy], principal: Principal, action: str, twin: str | None, path: str | None = None,
             *, kind: str = "twin", model: str | None = None, members: Members | None = None) -> Decision:
    """One decision, compiling the policies for it (use :class:`Evaluator` to decide many)."""
    return Evaluator(policies, principal, members=members).decide(action, twin, kind=kind, path=path, model=model)


__all__ = ["KINDS", "Decision", "Entry", "Evaluator", "Members", "Policy", "applicable", "evaluate", "redact"]
