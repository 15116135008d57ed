"""The model and twin stores on one SQLite database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from tvilling.backend.sqlite import SqliteDatabase
from tvilling.core.errors import Conflict, NotFound
from tvilling.core.events import Event
from tvilling.core.twin import Relationship, Twin
from tvilling.twins.adapters.sql_query import CommitPlan, batch_ids, compile_query, events_until, plan_commit
from tvilling.twins.adapters.sqlite.dialect import SqliteDialect
from tvilling.twins.ports import ModelRecord, Page
from tvilling.twins.query import Query, page_of

_twin = msgspec.json.Decoder(Twin)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_DIALECT = SqliteDialect()
_EVENT_COLUMNS = "position, twin_id, revision, time, actor, type, payload"
_MODEL_COLUMNS = "id, document, uploaded, decommissioned"


def _time(ts: datetime) -> str:
    return _encode(ts)[1:-1].decode()


def _text(value: Any) -> str:
    return _encode(value).decode()


def _event(row: tuple[Any, ...]) -> Event:
    position, twin, revision, time, actor, type_, payload = row
    return Event(
        twin=twin,
        revision=revision,
        time=datetime.fromisoformat(time),
        actor=actor,
        type=type_,
        payload=_decode(payload),
        position=position,
    )


def _ids_json(ids: Sequence[str]) -> str:
    return _text(list(ids))


class SqliteModelStore:
    """The model store on a shared SQLite database (its tables made by :func:`prepare`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def add_models(self, records: Sequence[ModelRecord]) -> None:
        ids = [r.id for r in records]
        rows = [(r.id, _text(r.document), _time(r.uploaded), int(r.decommissioned)) for r in records]
        with self._db.write("adding models") as conn:
            existing = {
                row[0]
                for row in conn.execute(
                    "SELECT id FROM models WHERE id IN (SELECT value FROM json_each(?))", (_ids_json(ids),)
                )
            }
            clash = [i for n, i in enumerate(ids) if i in existing or i in ids[:n]]
            if clash:
                raise Conflict(f"model {clash[0]} is registered already", model=clash[0], rule="exists")
            conn.executemany(f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?)", rows)

    def get_model(self, model_id: str) -> ModelRecord:
        rows = self._db.rows("reading a model", f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,))
        if not rows:
            raise NotFound(f"model {model_id} is not registered", model=model_id)
        return _model(rows[0])

    def list_models(self) -> list[ModelRecord]:
        rows = self._db.rows("listing models", f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY id")
        return [_model(r) for r in rows]

    def set_decommissioned(self, model_id: str, value: bool) -> ModelRecord:
        with self._db.write("updating a model") as conn:
            row = conn.execute(
                f"UPDATE models SET decommissioned = ? WHERE id = ? RETURNING {_MODEL_COLUMNS}",
                (int(value), model_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"model {model_id} is not registered", model=model_id)
        return _model(row)


def _model(row: tuple[Any, ...]) -> ModelRecord:
    return ModelRecord(
        id=row[0],
        document=_decode(row[1]),
        uploaded=datetime.fromisoformat(row[2]),
        decommissioned=bool(row[3]),
    )


class SqliteTwinStore:
    """The twin store on a shared SQLite database; ``close`` closes the database only when ``owns`` it."""

    def __init__(self, db: SqliteDatabase, *, owns: bool = False) -> None:
        self._db = db
        self._owns = owns

    # -- reads --
    def get(self, twin_id: str) -> Twin:
        rows = self._db.rows("reading a twin", "SELECT doc FROM twins WHERE id = ?", (twin_id,))
        if not rows:
            raise NotFound(f"twin {twin_id!r} does not exist", twin=twin_id)
        return _twin.decode(rows[0][0])

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin]:
        rows = self._db.rows(
            "reading twins",
            "SELECT doc FROM twins WHERE id IN (SELECT value FROM json_each(?))",
            (_ids_json(twin_ids),),
        )
        found = {t.id: t for t in (_twin.decode(r[0]) for r in rows)}
        return {i: found[i] for i in twin_ids if i in found}

    def last_revision(self, twin_id: str) -> int:
        rows = self._db.rows(
            "reading a revision",
            "SELECT coalesce(max(revision), 0) FROM events WHERE twin_id = ?",
            (twin_id,),
        )
        return int(rows[0][0])

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
        rows = self._db.rows(
            "reading history",
            f"SELECT {_EVENT_COLUMNS} FROM events "
            "WHERE twin_id = ? AND revision > ? AND revision <= ? ORDER BY revision LIMIT ?",
            (twin_id, after, until, max(limit, 0)),
        )
        return events_until((_event(row) for row in rows), until_time)

    def feed(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._db.rows(
            "reading the feed",
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, max(limit, 0)),
        )
        return [_event(r) for r in rows]

    def incoming(self, twin_id: str) -> list[tuple[str, Relationship]]:
        rows = self._db.rows(
            "reading relationships",
            "SELECT source, rel_id, name, target, properties FROM relationships WHERE target = ? "
            "ORDER BY source, rel_id",
            (twin_id,),
        )
        return [(s, Relationship(id=i, name=n, target=t, properties=_decode(p))) for s, i, n, t, p in rows]

    def count(self) -> int:
        return int(self._db.rows("counting twins", "SELECT count(*) FROM twins")[0][0])

    def query(self, query: Query) -> Page:
        compiled = compile_query(query, _DIALECT)
        if compiled is None:
            return Page([], None)
        sql, params = compiled
        rows = self._db.rows("running a query", sql, params)
        items, nxt = page_of([_twin.decode(r[0]) for r in rows], query.limit)
        return Page(items, nxt)

    # -- writes --
    def commit(self, events: Sequence[Event]) -> list[Event]:
        if not events:
            return []
        ids = _ids_json(batch_ids(events))
        with self._db.write("committing events") as conn:
            revisions = dict(
                conn.execute(
                    "SELECT twin_id, max(revision) FROM events "
                    "WHERE twin_id IN (SELECT value FROM json_each(?)) GROUP BY twin_id",
                    (ids,),
                ).fetchall()
            )
            snapshots = {
                t.id: t
                for (doc,) in conn.execute("SELECT doc FROM twins WHERE id IN (SELECT value FROM json_each(?))", (ids,))
                for t in (_twin.decode(doc),)
            }
            base = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            def live(ids: Sequence[str]) -> set[str]:
                rows = conn.execute("SELECT id FROM twins WHERE id IN (SELECT value FROM json_each(?))",
                                    (_ids_json(ids),))
                return {r[0] for r in rows}

            def incoming(ids: Sequence[str]) -> list[tuple[str, str, str]]:
                rows = conn.execute("SELECT source, target, rel_id FROM relationships "
                                    "WHERE target IN (SELECT value FROM json_each(?))", (_ids_json(ids),))
                return [(r[0], r[1], r[2]) for r in rows]

            plan = plan_commit(events, revisions, snapshots, base, live, incoming)
            _write(conn, plan)
        return plan.stored

    def close(self) -> None:
        if self._owns:
            self._db.close()


def _write(conn: sqlite3.Connection, plan: CommitPlan) -> None:
    conn.executemany(
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.position, e.twin, e.revision, _time(e.time), e.actor, e.type, _text(e.payload)) for e in plan.stored],
    )
    if plan.deletes:
        conn.executemany("DELETE FROM twins WHERE id = ?", [(i,) for i in plan.deletes])
    if plan.inserts:
        conn.executemany(
            "INSERT INTO twins (id, model, revision, doc) VALUES (?, ?, ?, ?)",
            [(t.id, t.model, t.revision, _text(t)) for t in plan.inserts],
        )
    if plan.updates:
        conn.executemany(
            "UPDATE twins SET model = ?, revision = ?, doc = ? WHERE id = ?",
            [(t.model, t.revision, _text(t), t.id) for t in plan.updates],
        )
    if plan.rel_clear:
        conn.executemany("DELETE FROM relationships WHERE source = ?", [(i,) for i in plan.rel_clear])
    if plan.rel_rows:
        conn.executemany(
            "INSERT INTO relationships (source, rel_id, name, target, properties) VALUES (?, ?, ?, ?, ?)",
            [(s, r.id, r.name, r.target, _text(r.properties)) for s, r in plan.rel_rows],
        )
