"""One contract for every API token store: memory, SQLite (the embedded ``tvilling.db``) and PostgreSQL.

A token is found by its secret and by nothing else (not by its hash, not by another secret); only the
hash is stored; names are unique among tokens not revoked; revocation and last use are kept; every
token is still there after a reopen; the backend serves the store as ``backend.tokens``.
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
from tvilling.backend.tokens import MemoryTokens, SqlTokens, TokenStore
from tvilling.core.errors import Conflict, Invalid, NotFound, Unauthorized
from tvilling.security.tokens import SECRET_PREFIX, hash_secret, issue, mint, usable

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], TokenStore]]:
    """Opens (again) the same store; every store opened is closed, a PostgreSQL schema dropped, afterwards."""
    opened: list[TokenStore] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    memory = MemoryTokens()

    def open_store() -> TokenStore:
        store: TokenStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqlTokens(tmp_path / "data" / "tvilling.db")
        else:
            store = SqlTokens(PG_DSN, schema=schema)
        opened.append(store)
        return store

    open_store.kind = request.param  # type: ignore[attr-defined]
    open_store.where = (tmp_path / "data" / "tvilling.db", schema)  # type: ignore[attr-defined]
    yield open_store
    for store in opened:
        store.close()
    if schemas is not None:
        next(schemas, None)


def test_a_token_is_found_by_its_secret_only(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    token, secret = issue(store, "ci", "operator", twins="line-1-*", expires_in="30d", by="alice", now=T0)
    assert secret.startswith(SECRET_PREFIX) and len(secret) >= len(SECRET_PREFIX) + 43
    found = store.find(secret)
    assert found == token
    assert (found.role, found.twins, found.created_by) == ("operator", "line-1-*", "alice")
    assert found.expires == T0 + timedelta(days=30)
    assert store.get(token.id) == token
    assert store.find(hash_secret(secret)) is None  # the stored hash is not a credential
    assert store.find(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.find(SECRET_PREFIX) is None


def test_only_the_hash_is_stored(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    _, secret = issue(store, "ci", "viewer", by="alice", now=T0)
    kind = opener.kind  # type: ignore[attr-defined]
    if kind == "memory":
        pytest.skip("nothing on disk")
    path, schema = opener.where  # type: ignore[attr-defined]
    if kind == "sqlite":
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT * FROM api_tokens").fetchall()
    else:
        with psycopg.connect(PG_DSN) as conn:
            rows = conn.execute(f'SELECT * FROM "{schema}".api_tokens').fetchall()
    text = repr(rows)
    assert secret not in text and secret[len(SECRET_PREFIX):] not in text
    assert hash_secret(secret) in text


def test_names_are_unique_among_tokens_not_revoked(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    first, _ = issue(store, "ci", "viewer", by="alice", now=T0)
    with pytest.raises(Conflict):
        issue(store, "ci", "admin", by="alice", now=T0)
    store.revoke(first.id, at=T0 + timedelta(minutes=1))
    second, secret = issue(store, "ci", "admin", by="alice", now=T0 + timedelta(minutes=2))
    assert store.find(secret) == second
    assert [t.id for t in store.list()] == [first.id, second.id]


def test_revocation_and_use_are_kept_across_a_reopen(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    token, secret = issue(store, "ci", "engineer", by="alice", now=T0)
    other, other_secret = issue(store, "backup", "viewer", by="bob", now=T0 + timedelta(seconds=1))
    revoked = store.revoke(token.id, at=T0 + timedelta(hours=1))
    assert revoked.revoked == T0 + timedelta(hours=1)
    assert store.revoke(token.id, at=T0 + timedelta(hours=2)).revoked == T0 + timedelta(hours=1)  # first time kept
    store.touch(other.id, at=T0 + timedelta(hours=3))
    store.touch("no-such-token", at=T0)  # nothing to record, no error
    again = opener()
    assert again.find(secret) is not None and again.find(secret).revoked == T0 + timedelta(hours=1)  # type: ignore[union-attr]
    assert again.get(other.id).last_used == T0 + timedelta(hours=3)
    assert again.find(other_secret) == again.get(other.id)
    with pytest.raises(Unauthorized, match="revoked"):
        usable(again.find(secret), T0 + timedelta(hours=4))


def test_unknown_ids_are_not_found(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.revoke("nope", at=T0)
    assert store.list() == []


def test_a_bad_token_is_refused_before_it_is_stored(opener: Callable[[], TokenStore]) -> None:
    store = opener()
    for name, role, twins, expires in (("", "viewer", "*", None), ("a b", "viewer", "*", None),
                                       ("ci", "root", "*", None), ("ci", "viewer", "", None),
                                       ("ci", "viewer", "*", "soon"), ("ci", "viewer", "*", "0d")):
        with pytest.raises(Invalid):
            issue(store, name, role, twins=twins, expires_in=expires, by="alice", now=T0)
    with pytest.raises(Invalid, match="future"):
        mint("ci", "viewer", expires=T0 - timedelta(seconds=1), by="alice", now=T0)
    assert store.list() == []


def test_usable_says_why_a_token_is_refused() -> None:
    token, _ = mint("ci", "viewer", expires=T0 + timedelta(days=1), by="alice", now=T0)
    assert usable(token, T0) is token
    with pytest.raises(Unauthorized, match="expired") as expired:
        usable(token, T0 + timedelta(days=1))
    assert expired.value.fields["rule"] == "expired_token"
    with pytest.raises(Unauthorized, match="unknown"):
        usable(None, T0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_backend_serves_the_store(kind: str, tmp_path: Path) -> None:
    url = "memory" if kind == "memory" else str(tmp_path / "data")
    with open_backend(url) as backend:
        _, secret = issue(backend.tokens, "ci", "viewer", by="alice", now=T0)
    if kind == "sqlite":
        with open_backend(url) as backend:
            assert backend.tokens.find(secret) is not None
