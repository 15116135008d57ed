"""One contract for every policy store: memory, SQLite (the embedded ``tvilling.db``) and PostgreSQL.

Put creates or replaces by id, get/list/delete, NotFound for an unknown id, a revision that grows with
every change (and is shared by two stores on the same database), everything kept across a reopen, and
the backend serving the store as ``backend.policies``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgtest import PG_DSN, fresh_schema
from tvilling.backend import open_backend
from tvilling.backend.policies import MemoryPolicies, PolicyStore, SqlPolicies
from tvilling.core.errors import NotFound
from tvilling.security.policies import Policy

ADAPTERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def make(pid: str, *twins: str, effect: str = "grant") -> Policy:
    entry = {"effect": effect, "actions": ["read"], "resources": [f"twin:{t}" for t in twins],
             "paths": ["reported.temperature"]}
    return Policy.from_json({"id": pid, "subjects": ["role:viewer", "token:ci-*"], "description": "test",
                             "entries": [entry]})


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], PolicyStore]]:
    """Opens (again) the same store; every store opened is closed, a PostgreSQL schema dropped, afterwards."""
    opened: list[PolicyStore] = []
    schemas = fresh_schema() if request.param == "postgres" else None
    schema = next(schemas) if schemas is not None else ""
    memory = MemoryPolicies()

    def open_store() -> PolicyStore:
        store: PolicyStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqlPolicies(tmp_path / "data" / "tvilling.db")
        else:
            store = SqlPolicies(PG_DSN, schema=schema)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
    if schemas is not None:
        next(schemas, None)


def test_put_creates_then_replaces_and_get_returns_it_whole(opener: Callable[[], PolicyStore]) -> None:
    store = opener()
    assert isinstance(store, PolicyStore)
    first = make("line-1", "line-1-*")
    assert store.put(first) is True
    assert store.get("line-1") == first
    second = make("line-1", "line-1-m01", effect="revoke")
    assert store.put(second) is False
    assert store.get("line-1") == second and store.get("line-1").entries[0].effect == "revoke"


def test_list_is_by_id_and_delete_removes_and_returns(opener: Callable[[], PolicyStore]) -> None:
    store = opener()
    for pid in ("b", "a", "c"):
        store.put(make(pid, "*"))
    assert [p.id for p in store.list()] == ["a", "b", "c"]
    assert store.delete("b").id == "b"
    assert [p.id for p in store.list()] == ["a", "c"]
    with pytest.raises(NotFound):
        store.get("b")
    with pytest.raises(NotFound):
        store.delete("b")


def test_the_revision_grows_with_every_change_and_not_with_reads(opener: Callable[[], PolicyStore]) -> None:
    store = opener()
    seen = [store.revision()]
    store.put(make("a", "*"))
    seen.append(store.revision())
    store.put(make("a", "x"))  # a replace is a change
    seen.append(store.revision())
    store.list()
    store.get("a")
    assert store.revision() == seen[-1]
    store.delete("a")
    seen.append(store.revision())
    store.put(make("a", "*"))  # back to the same content: still a new revision
    seen.append(store.revision())
    assert seen == sorted(set(seen)) and len(seen) == 5


def test_policies_survive_a_reopen_and_another_store_sees_the_revision(opener: Callable[[], PolicyStore]) -> None:
    store = opener()
    store.put(make("keep", "line-*"))
    again = opener()
    assert again.get("keep") == make("keep", "line-*")
    before = again.revision()
    store.put(make("other", "*"))
    assert again.revision() > before and {p.id for p in again.list()} == {"keep", "other"}


def test_the_embedded_backend_serves_the_store(tmp_path: Path) -> None:
    backend = open_backend(tmp_path / "data")
    try:
        backend.policies.put(make("p", "*"))
        with backend.transaction():
            pass
    finally:
        backend.close()
    backend = open_backend(tmp_path / "data")
    try:
        assert [p.id for p in backend.policies.list()] == ["p"]
    finally:
        backend.close()


def test_the_cli_puts_lists_and_deletes_policies_in_the_data_dir(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from tvilling.cli import main

    data = ["--data-dir", str(tmp_path / "data")]
    file = tmp_path / "p.json"
    file.write_text(json.dumps([make("a", "line-1-*").to_json(), make("b", "*").to_json()]))
    runner = CliRunner()
    r = runner.invoke(main, ["policies", "put", str(file), *data])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [{"id": "a", "created": True}, {"id": "b", "created": True}]
    r = runner.invoke(main, ["policies", "list", *data])
    assert [p["id"] for p in json.loads(r.output)] == ["a", "b"]
    assert runner.invoke(main, ["policies", "delete", "a", *data]).exit_code == 0
    r = runner.invoke(main, ["policies", "delete", "a", *data])
    assert r.exit_code == 1 and "no policy 'a'" in r.output
    file.write_text('{"id": "c", "subjects": ["role:root"], "entries": []}')
    r = runner.invoke(main, ["policies", "put", str(file), *data])
    assert r.exit_code == 1 and "error:" in r.output
