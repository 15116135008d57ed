"""The model and twin stores on one PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from tvilling.backend.postgres import PostgresDatabase
from tvilling.core.errors import Conflict, NotFound
from tvilling.core.events import Event
from tvilling.core.twin import Relationship, Twin
from tvilling.twins.adapters.postgres.dialect import PostgresDialect
from tvilling.twins.adapters.sql_query import CommitPlan, batch_ids, compile_query, events_until, plan_commit
from tvilling.twins.ports import ModelRecord, Page
from tvilling.twins.query import Query, page_of

_twin = msgspec.json.Decoder(Twin)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_DIALECT = PostgresDialect()
_EVENT_COLUMNS = "position, twin_id, revision, time, actor, type, payload"
_EVENT_SELECT = "position, twin_id, revision, time, actor, type, payload::text"
_MODEL_SELECT = "id, document::text, uploaded, decommissioned"


def _text(value: Any) -> str:
    return _encode(value).decode()


def _props(t: Twin) -> str:
    return _text({"attributes": t.attributes, "reported": t.reported, "desired": t.desired})


def _event(row: tuple[Any, ...]) -> Event:
    position, twin, revision, time, actor, type_, payload = row
    return Event(
        twin=twin,
        revision=revision,
        time=time,
        actor=actor,
        type=type_,
        payload=_decode(payload),
        position=position,
    )


def _model(row: tuple[Any, ...]) -> ModelRecord:
    return ModelRecord(id=row[0], document=_decode(row[1]), uploaded=row[2], decommissioned=row[3])


class PostgresModelStore:
    """The model store on a shared PostgreSQL database (its tables made by :func:`prepare`)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def add_models(self, records: Sequence[ModelRecord]) -> None:
        ids = [r.id for r in records]
        with self._db.write("adding models") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._db.lock_key("events"),))
            existing = {r[0] for r in conn.execute("SELECT id FROM models WHERE id = ANY(%s)", (ids,))}
            clash = [i for n, i in enumerate(ids) if i in existing or i in ids[:n]]
            if clash:
                raise Conflict(f"model {clash[0]} is registered already", model=clash[0], rule="exists")
            with (
                conn.cursor() as cur,
                cur.copy("COPY models (id, document, uploaded, decommissioned) FROM STDIN") as copy,
            ):
                for r in records:
                    copy.write_row((r.id, _text(r.document), r.uploaded, r.decommissioned))

    def get_model(self, model_id: str) -> ModelRecord:
        with self._db.connection("reading a model") as conn:
            row = conn.execute(f"SELECT {_MODEL_SELECT} FROM models WHERE id = %s", (model_id,)).fetchone()
        if row is None:
            raise NotFound(f"model {model_id} is not registered", model=model_id)
        return _model(row)

    def list_models(self) -> list[ModelRecord]:
        with self._db.connection("listing models") as conn:
            rows = conn.execute(f"SELECT {_MODEL_SELECT} FROM models ORDER BY id").fetchall()
        return [_model(r) for r in rows]

    def set_decommissioned(self, model_id: str, value: bool) -> ModelRecord:
        with self._db.write("updating a model") as conn:
            row = conn.execute(
                f"UPDATE models SET decommissioned = %s WHERE id = %s RETURNING {_MODEL_SELECT}",
                (value, model_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"model {model_id} is not registered", model=model_id)
        return _model(row)


class PostgresTwinStore:
    """The twin store on a shared PostgreSQL database; ``close`` closes the pool only when ``owns`` it."""

    def __init__(self, db: PostgresDatabase, *, owns: bool = False) -> None:
        self._db = db
        self._owns = owns

    # -- reads --
    def get(self, twin_id: str) -> Twin:
        with self._db.connection("reading a twin") as conn:
            row = conn.execute("SELECT doc::text FROM twins WHERE id = %s", (twin_id,)).fetchone()
        if row is None:
            raise NotFound(f"twin {twin_id!r} does not exist", twin=twin_id)
        return _twin.decode(row[0])

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin]:
        with self._db.connection("reading twins") as conn:
            rows = conn.execute("SELECT doc::text FROM twins WHERE id = ANY(%s)", (list(twin_ids),)).fetchall()
        found = {t.id: t for t in (_twin.decode(r[0]) for r in rows)}
        return {i: found[i] for i in twin_ids if i in found}

    def last_revision(self, twin_id: str) -> int:
        with self._db.connection("reading a revision") as conn:
            row = conn.execute(
                "SELECT coalesce(max(revision), 0) FROM events WHERE twin_id = %s", (twin_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def history(
        self,
        twin_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        until_revision: int | None = None,
        until_time: datetime | None = None,
    ) -> list[Event]:
        until = until_revision if until_revision is not None else 2**63 - 1
        with self._db.connection("reading history") as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_SELECT} FROM events WHERE twin_id = %s AND revision > %s "
                "AND revision <= %s ORDER BY revision LIMIT %s",
                (twin_id, after, until, max(limit, 0)),
            ).fetchall()
        return events_until((_event(row) for row in rows), until_time)

    def feed(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._db.connection("reading the feed") as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_SELECT} FROM events WHERE position > %s ORDER BY position LIMIT %s",
                (after, max(limit, 0)),
            ).fetchall()
        return [_event(r) for r in rows]

    def incoming(self, twin_id: str) -> list[tuple[str, Relationship]]:
        with self._db.connection("reading relationships") as conn:
            rows = conn.execute(
                "SELECT source, rel_id, name, target, properties::text FROM relationships "
                "WHERE target = %s ORDER BY source, rel_id",
                (twin_id,),
            ).fetchall()
        return [(s, Relationship(id=i, name=n, target=t, properties=_decode(p))) for s, i, n, t, p in rows]

    def count(self) -> int:
        with self._db.connection("counting twins") as conn:
            row = conn.execute("SELECT count(*) FROM twins").fetchone()
        return int(row[0]) if row else 0

    def query(self, query: Query) -> Page:
        compiled = compile_query(query, _DIALECT)
        if compiled is None:
            return Page([], None)
        statement, params = compiled
        with self._db.connection("running a query") as conn:
            rows = conn.execute(statement, params).fetchall()
        items, nxt = page_of([_twin.decode(r[0]) for r in rows], query.limit)
        return Page(items, nxt)

    # -- writes --
    def commit(self, events: Sequence[Event]) -> list[Event]:
        if not events:
            return []
        ids = batch_ids(events)
        with self._db.write("committing events") as conn, conn.cursor() as cur:
            # Held to the end of the transaction: positions are handed out and become visible
            # in order, so a feed reader that saw position N never later finds one below N.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._db.lock_key("events"),))
            cur.execute("SELECT twin_id, max(revision) FROM events WHERE twin_id = ANY(%s) GROUP BY twin_id", (ids,))
            revisions = {r[0]: r[1] for r in cur.fetchall()}
            cur.execute("SELECT doc::text FROM twins WHERE id = ANY(%s)", (ids,))
            snapshots = {t.id: t for t in (_twin.decode(r[0]) for r in cur.fetchall())}
            cur.execute("SELECT coalesce(max(position), 0) FROM events")
            row = cur.fetchone()
            def live(targets: Sequence[str]) -> set[str]:
                cur.execute("SELECT id FROM twins WHERE id = ANY(%s)", (list(targets),))
                return {r[0] for r in cur.fetchall()}

            def incoming(targets: Sequence[str]) -> list[tuple[str, str, str]]:
                cur.execute("SELECT source, target, rel_id FROM relationships WHERE target = ANY(%s)",
                            (list(targets),))
                return [(r[0], r[1], r[2]) for r in cur.fetchall()]

            plan = plan_commit(events, revisions, snapshots, row[0] if row else 0, live, incoming)
            _write(cur, plan)
        return plan.stored

    def close(self) -> None:
        if self._owns:
            self._db.close()


def _write(cur: Any, plan: CommitPlan) -> None:
    with cur.copy(f"COPY events ({_EVENT_COLUMNS}) FROM STDIN") as copy:
        for e in plan.stored:
            copy.write_row((e.position, e.twin, e.revision, e.time, e.actor, e.type, _text(e.payload)))
    if plan.deletes:
        cur.execute("DELETE FROM twins WHERE id = ANY(%s)", (plan.deletes,))
    if plan.inserts:
        with cur.copy("COPY twins (id, model, revision, doc, props) FROM STDIN") as copy:
            for t in plan.inserts:
                copy.write_row((t.id, t.model, t.revision, _text(t), _props(t)))
    if plan.updates:
        cur.execute(
            "UPDATE twins AS t SET model = u.model, revision = u.revision, doc = u.doc::json, "
            "props = u.props::jsonb "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[]) "
            "AS u(id, model, revision, doc, props) WHERE t.id = u.id",
            (
                [t.id for t in plan.updates],
                [t.model for t in plan.updates],
                [t.revision for t in plan.updates],
                [_text(t) for t in plan.updates],
                [_props(t) for t in plan.updates],
            ),
        )
    if plan.rel_clear:
        cur.execute("DELETE FROM relationships WHERE source = ANY(%s)", (plan.rel_clear,))
    if plan.rel_rows:
        with cur.copy("COPY relationships (source, rel_id, name, target, properties) FROM STDIN") as copy:
            for source, rel in plan.rel_rows:
                copy.write_row((source, rel.id, rel.name, rel.target, _text(rel.properties)))
