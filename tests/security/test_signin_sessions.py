"""One contract for every dashboard session store (memory, the embedded SQLite file, PostgreSQL), and the
session rules themselves: found by its secret only, only the hash stored, ended by sign-out, expired ones
refused and purged, kept across a reopen, served by the backend as ``backend.sessions``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.backend.sessions import MemorySessions, SessionStore, SqlSessions
from tvilling.core.errors import Conflict, Forbidden, Invalid, Unauthorized
from tvilling.core.principal import Principal
from tvilling.security.sessions import check_csrf, cookie_secret, hash_secret, open_session, usable

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
EVA = Principal(id="eva", kind="user", roles=("operator",), authenticated=True)


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SessionStore]]:
    """Opens (again) the same store; every store opened is closed, a PostgreSQL schema dropped, afterwards."""
    opened: list[SessionStore] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    memory = MemorySessions()

    def open_store() -> SessionStore:
        store: SessionStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqlSessions(tmp_path / "data" / "tvilling.db")
        else:
            store = SqlSessions(PG_DSN, schema=schema)
        opened.append(store)
        return store

    open_store.kind = request.param  # type: ignore[attr-defined]
    open_store.where = (tmp_path / "data" / "tvilling.db", schema)  # type: ignore[attr-defined]
    yield open_store
    for store in opened:
        store.close()
    if schemas is not None:
        next(schemas, None)


def test_a_session_is_found_by_its_secret_only_and_kept_across_a_reopen(opener: Callable[[], SessionStore]) -> None:
    store = opener()
    session, secret = open_session(EVA, now=T0, hours=8)
    store.add(session, hash_secret(secret))
    assert store.find(secret) == session
    assert store.find(hash_secret(secret)) is None and store.find(secret + "x") is None
    assert opener().find(secret) == session
    assert session.principal() == EVA and session.expires == T0 + timedelta(hours=8)
    with pytest.raises(Conflict):
        store.add(session, hash_secret(secret))


def test_only_the_hash_is_stored(opener: Callable[[], SessionStore]) -> None:
    store = opener()
    session, secret = open_session(EVA, now=T0, hours=8)
    store.add(session, hash_secret(secret))
    kind = opener.kind  # type: ignore[attr-defined]
    if kind == "memory":
        pytest.skip("nothing on disk")
    path, schema = opener.where  # type: ignore[attr-defined]
    if kind == "sqlite":
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT * FROM dashboard_sessions").fetchall()
    else:
        with psycopg.connect(PG_DSN) as conn:
            rows = conn.execute(f'SELECT * FROM "{schema}".dashboard_sessions').fetchall()
    text = repr(rows)
    assert secret not in text and hash_secret(secret) in text


def test_sign_out_ends_it_and_expired_ones_are_refused_then_purged(opener: Callable[[], SessionStore]) -> None:
    store = opener()
    short, short_secret = open_session(EVA, now=T0, hours=1)
    long, long_secret = open_session(EVA, now=T0, hours=8)
    ended, ended_secret = open_session(EVA, now=T0, hours=8)
    for session, secret in ((short, short_secret), (long, long_secret), (ended, ended_secret)):
        store.add(session, hash_secret(secret))
    assert store.delete(ended_secret) is True and store.delete(ended_secret) is False
    with pytest.raises(Unauthorized, match="unknown or has ended"):
        usable(store.find(ended_secret), T0)
    later = T0 + timedelta(hours=2)
    with pytest.raises(Unauthorized, match="expired"):
        usable(store.find(short_secret), later)
    assert usable(store.find(long_secret), later) == long
    assert store.purge(later) == 1
    assert store.find(short_secret) is None and store.find(long_secret) == long


def test_the_csrf_token_and_the_cookie() -> None:
    session, secret = open_session(EVA, now=T0, hours=8)
    other, _ = open_session(EVA, now=T0, hours=8)
    check_csrf(session, session.csrf)
    for wrong in (None, "", other.csrf, session.csrf + "x"):
        with pytest.raises(Forbidden):
            check_csrf(session, wrong)
    assert cookie_secret(f"theme=dark; tvilling_session={secret}; x=1") == secret
    assert cookie_secret("theme=dark") is None and cookie_secret("tvilling_session=") is None
    assert cookie_secret("tvilling_session=" + "a" * 1000) is None
    with pytest.raises(Invalid):
        open_session(EVA, now=T0, hours=0)


def test_the_backend_serves_the_store(tmp_path: Path) -> None:
    session, secret = open_session(EVA, now=T0, hours=8)
    with open_backend(tmp_path / "data") as backend:
        backend.sessions.add(session, hash_secret(secret))
    with open_backend(tmp_path / "data") as backend:
        assert backend.sessions.find(secret) == session
    with open_backend("memory") as backend:
        assert backend.sessions.find(secret) is None


def test_the_documented_examples_run() -> None:
    import doctest

    from tvilling.backend import sessions as stores
    from tvilling.security import sessions

    for module in (sessions, stores):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
