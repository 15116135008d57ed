"""What the SQL adapters share: compiling a :class:`Query` to one SQL statement, and planning a commit.

The statement reproduces :func:`tvilling.twins.query.matches` exactly; each dialect
supplies how one predicate reads a JSON value (:class:`Dialect`). User values never
enter the SQL text: every value, path and id is a named parameter.

The twin tables the statement reads are ``twins(id, model, revision, doc, ...)`` and
``relationships(source, rel_id, name, target, properties)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from tvilling.core.events import Event, fold_batch
from tvilling.core.links import check_links
from tvilling.core.twin import Relationship, Twin
from tvilling.twins.query import SCALAR_ROOTS, Predicate, Query, Step

MAX_UNION_MODELS = 16  # model sets up to this size run as one ordered index scan per model
_ORDERING = ("<", "<=", ">", ">=")


class Params:
    """Collects named parameters; ``ref`` returns the placeholder for a new one."""

    def __init__(self, style: str) -> None:
        self.style = style  # "named" (:p0, sqlite3) or "pyformat" (%(p0)s, psycopg)
        self.values: dict[str, Any] = {}

    def ref(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}" if self.style == "named" else f"%({name})s"


class Dialect(Protocol):
    """How one SQL dialect reads the twin tables."""

    param_style: str
    # The join from a step's relationships to its twins; SQLite's "CROSS JOIN" keeps the
    # relationships (reached through their index from the previous step) as the outer loop.
    step_join: str

    def doc(self, alias: str) -> str:
        """The expression selecting a twin's snapshot as JSON text."""

    def json_predicate(self, pred: Predicate, alias: str, ps: Params, *, rel: bool) -> str:
        """A predicate on a JSON path of a twin (``alias`` of twins) or relationship's properties."""

    def starts_with(self, expr: str, prefix: str, ps: Params) -> str:
        """A condition: the text ``expr`` starts with ``prefix``."""


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def compile_query(query: Query, d: Dialect) -> tuple[str, dict[str, Any]] | None:
    """One statement returning the docs of the page's twins (``limit + 1`` rows at most), in id order.

    ``None`` when the query selects nothing whatever the data (an empty model set).
    """
    if any(s.models is not None and not s.models for s in query.steps):
        return None
    ps = Params(d.param_style)
    lim = ps.ref(query.limit + 1)
    first = query.steps[0]
    if len(query.steps) == 1:
        after = f" AND t.id > {ps.ref(query.after)}" if query.after is not None else ""
        where = _conds(_where(first, "t", d, ps)) + after
        models = sorted(first.models) if first.models is not None else None
        if models is not None and 1 < len(models) <= MAX_UNION_MODELS:
            arms = " UNION ALL ".join(
                f"SELECT id, doc FROM (SELECT t.id AS id, {d.doc('t')} AS doc FROM twins t "
                f"WHERE t.model = {ps.ref(m)} AND {where} ORDER BY t.id LIMIT {lim}) AS a{i}"
                for i, m in enumerate(models)
            )
            return f"SELECT doc FROM ({arms}) AS u ORDER BY id LIMIT {lim}", ps.values
        model = _models(first.models, "t", ps)
        sql = f"SELECT {d.doc('t')} FROM twins t WHERE {_conds([*model, where])} ORDER BY t.id LIMIT {lim}"
        return sql, ps.values
    ctes = [f"s0 AS (SELECT t.id AS id FROM twins t WHERE {_conds(_step_conds(first, 't', d, ps))})"]
    for i, step in enumerate(query.steps[1:], start=1):
        near, far = ("source", "target") if step.direction == "out" else ("target", "source")
        conds = [
            f"r.{near} IN (SELECT id FROM s{i - 1})",
            f"r.name = {ps.ref(step.via)}",
            *(d.json_predicate(p, "r", ps, rel=True) for p in step.rel_where),
            *_step_conds(step, "t", d, ps),
        ]
        ctes.append(
            f"s{i} AS (SELECT t.id AS id FROM relationships r {d.step_join} twins t ON t.id = r.{far} "
            f"WHERE {_conds(conds)})"
        )
    # The page's ids are settled first, so the planner never walks all twins in id order
    # looking for the few that the traversal reached.
    after = f" WHERE id > {ps.ref(query.after)}" if query.after is not None else ""
    ctes.append(
        f"page AS MATERIALIZED (SELECT DISTINCT id FROM s{len(query.steps) - 1}{after} ORDER BY id LIMIT {lim})"
    )
    sql = f"WITH {', '.join(ctes)} SELECT {d.doc('t')} FROM page JOIN twins t ON t.id = page.id ORDER BY t.id"
    return sql, ps.values


def _conds(conds: Sequence[str]) -> str:
    return " AND ".join(conds) if conds else "TRUE"


def _models(models: frozenset[str] | None, alias: str, ps: Params) -> list[str]:
    if models is None:
        return []
    if len(models) == 1:
        return [f"{alias}.model = {ps.ref(next(iter(models)))}"]
    return [f"{alias}.model IN ({', '.join(ps.ref(m) for m in sorted(models))})"]


def _step_conds(step: Step, alias: str, d: Dialect, ps: Params) -> list[str]:
    return [*_models(step.models, alias, ps), *_where(step, alias, d, ps)]


def _where(step: Step, alias: str, d: Dialect, ps: Params) -> list[str]:
    out = []
    for p in step.where:
        if p.path[0] in SCALAR_ROOTS and len(p.path) == 1:
            out.append(scalar_predicate(f"{alias}.{p.path[0]}", p, d, ps))
        else:
            out.append(d.json_predicate(p, alias, ps, rel=False))
    return out


def scalar_predicate(column: str, pred: Predicate, d: Dialect, ps: Params) -> str:
    """A predicate on a column that always holds a value: ``id``/``model`` (text), ``revision`` (int)."""
    is_text = not column.endswith(".revision")

    def fits(v: Any) -> bool:
        return isinstance(v, str) if is_text else is_number(v)

    op, value = pred.op, pred.value
    if op == "exists":
        return "TRUE" if value else "FALSE"
    if op == "=":
        return f"{column} = {ps.ref(value)}" if fits(value) else "FALSE"
    if op == "!=":
        return f"{column} <> {ps.ref(value)}" if fits(value) else "TRUE"
    if op == "in":
        ok = [v for v in value if fits(v)]
        return f"{column} IN ({', '.join(ps.ref(v) for v in ok)})" if ok else "FALSE"
    if op == "startswith":
        return d.starts_with(column, value, ps) if is_text else "FALSE"
    if op in _ORDERING and fits(value):
        return f"{column} {op} {ps.ref(value)}"
    return "FALSE"


# -- commit planning: the fold and the rows it changes, the same for every SQL adapter --


@dataclass
class CommitPlan:
    stored: list[Event]  # the events with their positions, in the order given
    inserts: list[Twin] = field(default_factory=list)  # twins that had no snapshot before
    updates: list[Twin] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # ids whose snapshot goes away
    rel_clear: list[str] = field(default_factory=list)  # sources whose relationship rows are dropped
    rel_rows: list[tuple[str, Relationship]] = field(default_factory=list)  # (source, rel) rows to add


def batch_ids(events: Sequence[Event]) -> list[str]:
    """The distinct twin ids of a batch, in first-seen order."""
    return list(dict.fromkeys(e.twin for e in events))


def plan_commit(
    events: Sequence[Event],
    revisions: Mapping[str, int],
    snapshots: Mapping[str, Twin],
    base_position: int,
    live: Callable[[Sequence[str]], set[str]],
    incoming: Callable[[Sequence[str]], list[tuple[str, str, str]]],
) -> CommitPlan:
    """Check and fold a batch against the stored revisions and snapshots of its twins.

    Raises ``Conflict`` (or what :func:`apply` raises) before anything is written.
    """
    states, _ = fold_batch(events, revisions, snapshots)
    check_links(events, states, live, incoming)
    plan = CommitPlan(stored=[msgspec.structs.replace(e, position=base_position + i) for i, e in enumerate(events, 1)])
    for twin_id, new in states.items():
        old = snapshots.get(twin_id)
        if new is None:
            if old is not None:
                plan.deletes.append(twin_id)
                if old.relationships:
                    plan.rel_clear.append(twin_id)
            continue
        (plan.inserts if old is None else plan.updates).append(new)
        if old is not None and old.relationships == new.relationships:
            continue
        if old is not None and old.relationships:
            plan.rel_clear.append(twin_id)
        plan.rel_rows.extend((twin_id, rel) for rel in new.relationships.values())
    return plan


def events_until(events: Iterable[Event], until_time: datetime | None) -> list[Event]:
    """The events up to ``until_time``; the log is read in revision order, so it stops at the first later one."""
    out = []
    for event in events:
        if until_time is not None and event.time > until_time:
            break
        out.append(event)
    return out
