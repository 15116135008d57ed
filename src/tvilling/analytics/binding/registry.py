"""Versions of trained analytics: artifact, parameters, backtest and drift reports, promotion.

A version belongs to an analytic (its configured name) and a *scope*: the twin it was
fitted for (per-twin detectors) or ``*`` (a fleet model). Versions count up per
(analytic, scope) from 1. At most one version per scope is *promoted*: that is the one
the online engine runs; training adds a *candidate*; promoting a candidate retires the
previous one; a maintenance reset retires the promoted one of a twin, so that it learns afresh.
Stores: memory, SQLite (``tvilling.db`` in the data dir) and PostgreSQL.

Artifacts are pickles of the project's own analytic objects; they are loaded with an
unpickler that admits only NumPy's array reconstruction, a deque, a few builtin types and
classes defined in ``tvilling.analytics`` (by plain name, so a dotted name cannot walk to
another object), so a tampered row cannot call ``os.system`` or the like.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from tvilling.backend.sqlite import SqliteDatabase, sqlite_database
from tvilling.core.errors import Conflict, Invalid, NotFound

if TYPE_CHECKING:
    from tvilling.backend.postgres import PostgresDatabase

CANDIDATE, PROMOTED, RETIRED = "candidate", "promoted", "retired"


class Version(msgspec.Struct, kw_only=True):
    analytic: str
    scope: str
    version: int
    status: str
    created: str
    fingerprint: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    backtest: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# exactly what the project's analytic artifacts are made of: NumPy arrays, a deque, and classes of the
# analytics package (looked up as plain class names: a dotted name could walk to anything)
_ALLOWED = {("collections", "deque"), ("numpy", "dtype"), ("numpy", "ndarray"),
            ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
            ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.startswith("tvilling.analytics.") and name.isidentifier():
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"an analytic artifact may not load {module}.{name}")


def dump_artifact(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def load_artifact(blob: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(blob)).load()


class AnalyticRegistry(Protocol):
    def add(self, analytic: str, scope: str, artifact: bytes, *, fingerprint: str, params: dict[str, Any],
            metrics: dict[str, Any], promote: bool = False, backtest: dict[str, Any] | None = None) -> Version: ...
    def versions(self, analytic: str | None = None, scope: str | None = None) -> list[Version]: ...
    def get(self, analytic: str, scope: str, version: int) -> Version: ...
    def artifact(self, analytic: str, scope: str, version: int) -> bytes: ...
    def promoted(self, analytic: str, scope: str) -> Version | None: ...
    def promote(self, analytic: str, scope: str, version: int) -> Version: ...
    def retire(self, analytic: str, scope: str) -> Version | None: ...
    def annotate(self, analytic: str, scope: str, version: int, *, backtest: dict[str, Any] | None = None,
                 drift: dict[str, Any] | None = None) -> Version: ...
    def close(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class MemoryRegistry:
    """An :class:`AnalyticRegistry` in memory (tests, ``--store memory``)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, int], tuple[Version, bytes]] = {}
        self._lock = threading.Lock()

    def add(self, analytic: str, scope: str, artifact: bytes, *, fingerprint: str, params: dict[str, Any],
            metrics: dict[str, Any], promote: bool = False, backtest: dict[str, Any] | None = None) -> Version:
        with self._lock:
            n = 1 + max((k[2] for k in self._rows if k[:2] == (analytic, scope)), default=0)
            v = Version(analytic=analytic, scope=scope, version=n, status=CANDIDATE, created=_now(),
                        fingerprint=fingerprint, params=params, metrics=metrics, backtest=backtest)
            self._rows[(analytic, scope, n)] = (copy.deepcopy(v), artifact)  # the caller's dicts stay its own
        return self.promote(analytic, scope, n) if promote else v

    def versions(self, analytic: str | None = None, scope: str | None = None) -> list[Version]:
        with self._lock:
            return [copy.deepcopy(v) for k, (v, _) in sorted(self._rows.items())
                    if (analytic is None or k[0] == analytic) and (scope is None or k[1] == scope)]

    def _row(self, analytic: str, scope: str, version: int) -> tuple[Version, bytes]:
        row = self._rows.get((analytic, scope, version))
        if row is None:
            raise NotFound(f"analytic {analytic!r} has no version {version} for {scope!r}", rule="version")
        return row

    def get(self, analytic: str, scope: str, version: int) -> Version:
        with self._lock:
            return copy.deepcopy(self._row(analytic, scope, version)[0])

    def artifact(self, analytic: str, scope: str, version: int) -> bytes:
        with self._lock:
            return self._row(analytic, scope, version)[1]

    def promoted(self, analytic: str, scope: str) -> Version | None:
        with self._lock:
            for k, (v, _) in self._rows.items():
                if k[:2] == (analytic, scope) and v.status == PROMOTED:
                    return copy.deepcopy(v)
        return None

    def promote(self, analytic: str, scope: str, version: int) -> Version:
        with self._lock:
            target, _ = self._row(analytic, scope, version)
            if target.status == RETIRED:
                raise Conflict(f"version {version} of {analytic!r} is retired; train a new one", rule="retired")
            for k, (v, _) in self._rows.items():
                if k[:2] == (analytic, scope) and v.status == PROMOTED and v is not target:
                    v.status = RETIRED
            target.status = PROMOTED
            return copy.deepcopy(target)

    def retire(self, analytic: str, scope: str) -> Version | None:
        """Retire the promoted version of ``scope`` (none runs until one is fitted or promoted); it, or None."""
        with self._lock:
            for k, (v, _) in self._rows.items():
                if k[:2] == (analytic, scope) and v.status == PROMOTED:
                    v.status = RETIRED
                    return copy.deepcopy(v)
        return None

    def annotate(self, analytic: str, scope: str, version: int, *, backtest: dict[str, Any] | None = None,
                 drift: dict[str, Any] | None = None) -> Version:
        with self._lock:
            v, _ = self._row(analytic, scope, version)
            if backtest is not None:
                v.backtest = copy.deepcopy(backtest)
            if drift is not None:
                v.drift = copy.deepcopy(drift)
            return copy.deepcopy(v)

    def close(self) -> None:
        pass


_enc = msgspec.json.encode


class SqlRegistry:
    """An :class:`AnalyticRegistry` on a SQL database: the backend's (SQLite or PostgreSQL, shared) or one of
    its own, opened from a SQLite path or a ``postgresql://`` DSN (tables then in ``schema``)."""

    def __init__(self, target: SqliteDatabase | PostgresDatabase | str | os.PathLike[str], *,
                 schema: str = "tvilling") -> None:
        self._db: SqliteDatabase | PostgresDatabase
        if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
            from tvilling.backend.postgres import PostgresDatabase as _Pg

            if not schema.replace("_", "").isalnum():
                raise Invalid(f"schema name {schema!r} is not a plain identifier", field="pg_schema", rule="name")
            self._db, self._owns = _Pg(target, schema), True
        elif isinstance(target, SqliteDatabase | str | os.PathLike):
            self._db, self._owns = sqlite_database(target)
        else:
            self._db, self._owns = target, False
        self._pg = self._db.dialect == "postgresql"
        if self._pg:
            self._table = f'"{self._db.schema}".analytic_versions'  # type: ignore[union-attr]
            blob = "bytea"
        else:
            self._table = "analytic_versions"
            blob = "blob"
        try:
            self._db.ensure([
                f"CREATE TABLE IF NOT EXISTS {self._table} (analytic text NOT NULL, scope text NOT NULL,"
                f" version integer NOT NULL, status text NOT NULL, doc text NOT NULL, artifact {blob} NOT NULL,"
                " PRIMARY KEY (analytic, scope, version))"], "preparing the analytics registry")
        except BaseException:
            self.close()
            raise

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return list(self._db.read(_FAILED, self._q(sql), args))

    @contextmanager
    def _tx(self, lock: str | None = None) -> Iterator[Callable[[str, tuple[Any, ...]], list[Any]]]:
        """A write transaction; yields ``run(sql, args) -> rows``."""
        with self._db.write(_FAILED) as conn:
            if self._pg and lock is not None:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))

            def run(sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
                cur = conn.execute(self._q(sql), args)
                return list(cur.fetchall()) if cur.description else []

            yield run

    def add(self, analytic: str, scope: str, artifact: bytes, *, fingerprint: str, params: dict[str, Any],
            metrics: dict[str, Any], promote: bool = False, backtest: dict[str, Any] | None = None) -> Version:
        with self._tx(f"{self._table}:{analytic}:{scope}") as run:
            rows = run(f"SELECT coalesce(max(version), 0) FROM {self._table} WHERE analytic=? AND scope=?",
                       (analytic, scope))
            n = int(rows[0][0]) + 1
            v = Version(analytic=analytic, scope=scope, version=n, status=CANDIDATE, created=_now(),
                        fingerprint=fingerprint, params=params, metrics=metrics, backtest=backtest)
            run(f"INSERT INTO {self._table} VALUES (?, ?, ?, ?, ?, ?)",
                (analytic, scope, n, CANDIDATE, _enc(v).decode(), artifact))
        return self.promote(analytic, scope, n) if promote else v

    def versions(self, analytic: str | None = None, scope: str | None = None) -> list[Version]:
        where = [f"{col} = ?" for col, value in (("analytic", analytic), ("scope", scope)) if value is not None]
        args = tuple(v for v in (analytic, scope) if v is not None)
        rows = self._read(f"SELECT doc, status FROM {self._table}"
                          + (f" WHERE {' AND '.join(where)}" if where else "")
                          + " ORDER BY analytic, scope, version", args)
        return [self._version(doc, status) for doc, status in rows]

    @staticmethod
    def _version(doc: str, status: str) -> Version:
        v = msgspec.json.decode(doc, type=Version)
        v.status = status
        return v

    def _one(self, run: Callable[[str, tuple[Any, ...]], list[Any]], analytic: str, scope: str, version: int,
             column: str) -> Any:
        rows = run(f"SELECT {column} FROM {self._table} WHERE analytic=? AND scope=? AND version=?",
                   (analytic, scope, version))
        if not rows:
            raise NotFound(f"analytic {analytic!r} has no version {version} for {scope!r}", rule="version")
        return rows[0]

    def get(self, analytic: str, scope: str, version: int) -> Version:
        doc, status = self._one(self._read, analytic, scope, version, "doc, status")
        return self._version(doc, status)

    def artifact(self, analytic: str, scope: str, version: int) -> bytes:
        return bytes(self._one(self._read, analytic, scope, version, "artifact")[0])

    def promoted(self, analytic: str, scope: str) -> Version | None:
        rows = self._read(f"SELECT doc, status FROM {self._table} WHERE analytic=? AND scope=? AND status=?",
                          (analytic, scope, PROMOTED))
        return self._version(*rows[0]) if rows else None

    def promote(self, analytic: str, scope: str, version: int) -> Version:
        with self._tx(f"{self._table}:{analytic}:{scope}") as run:
            doc, status = self._one(run, analytic, scope, version, "doc, status")
            if status == RETIRED:
                raise Conflict(f"version {version} of {analytic!r} is retired; train a new one", rule="retired")
            run(f"UPDATE {self._table} SET status=? WHERE analytic=? AND scope=? AND status=? AND version<>?",
                (RETIRED, analytic, scope, PROMOTED, version))
            run(f"UPDATE {self._table} SET status=? WHERE analytic=? AND scope=? AND version=?",
                (PROMOTED, analytic, scope, version))
        return self._version(doc, PROMOTED)

    def retire(self, analytic: str, scope: str) -> Version | None:
        """Retire the promoted version of ``scope`` (none runs until one is fitted or promoted); it, or None."""
        with self._tx(f"{self._table}:{analytic}:{scope}") as run:
            rows = run(f"SELECT doc FROM {self._table} WHERE analytic=? AND scope=? AND status=?",
                       (analytic, scope, PROMOTED))
            if not rows:
                return None
            run(f"UPDATE {self._table} SET status=? WHERE analytic=? AND scope=? AND status=?",
                (RETIRED, analytic, scope, PROMOTED))
        return self._version(rows[0][0], RETIRED)

    def annotate(self, analytic: str, scope: str, version: int, *, backtest: dict[str, Any] | None = None,
                 drift: dict[str, Any] | None = None) -> Version:
        with self._tx(f"{self._table}:{analytic}:{scope}") as run:
            doc, status = self._one(run, analytic, scope, version, "doc, status")
            v = self._version(doc, status)
            if backtest is not None:
                v.backtest = backtest
            if drift is not None:
                v.drift = drift
            run(f"UPDATE {self._table} SET doc=? WHERE analytic=? AND scope=? AND version=?",
                (_enc(v).decode(), analytic, scope, version))
        return v

    def close(self) -> None:
        if self._owns:
            self._db.close()


_FAILED = "the analytics registry cannot be read or written"


def open_registry(store: str | None, data_dir: Path, schema: str = "tvilling") -> AnalyticRegistry:
    """The registry the settings name: memory, PostgreSQL, or the embedded database in the data dir.

    Chosen by :func:`tvilling.backend.open_store`, like every store; the registry owns its database.
    """
    from tvilling.backend import open_store

    registry: AnalyticRegistry = open_store("analytics_registry", store, data_dir=data_dir, schema=schema)
    return registry
