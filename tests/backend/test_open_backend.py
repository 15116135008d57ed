"""open_backend: every store of a world from one URL, the embedded layout, lazy history, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from backend_helpers import T0, alarm, command, created, letter, model, patched

from tvilling.app import build_platform
from tvilling.backend import Backend, open_backend
from tvilling.config import Settings
from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings


def test_every_store_works_and_keeps_what_it_was_given(backend: Backend) -> None:
    backend.model_store.add_models([model()])
    backend.twin_store.commit([created("P1", speed=1)])
    backend.command_store.add(cmd := command())
    backend.alarm_store.add(al := alarm())
    backend.dead_letters.add([letter(b"x")])
    backend.analytics_registry.add("z", "P1", b"art", fingerprint="f", params={}, metrics={}, promote=True)
    us = int(T0.timestamp() * 1e6)
    backend.history.append(Readings.from_rows([("P1", "speed", us, 1.5)]))
    backend.cursors.set_cursor("reconciler", 4)

    assert [m.id for m in backend.model_store.list_models()] == [model().id]
    assert backend.twin_store.get("P1").reported == {"speed": 1}
    assert backend.command_store.get(cmd.id) == cmd
    assert backend.alarm_store.get(al.id) == al
    assert [d.payload for d in backend.dead_letters.list()] == [b"x"]
    assert backend.analytics_registry.promoted("z", "P1").version == 1  # type: ignore[union-attr]
    assert [p.value for p in backend.history.range("P1", "speed", us, us + 1)] == [1.5]
    assert backend.cursors.cursor("reconciler") == 4 and backend.cursors is backend.cursors


def test_embedded_keeps_relational_stores_in_one_sqlite_file_and_history_in_duckdb(tmp_path) -> None:
    data = tmp_path / "data"
    with open_backend(data) as b:
        b.twin_store.commit([created("P1")])
        b.command_store.add(command())
        b.alarm_store.add(alarm())
        b.dead_letters.add([letter()])
        b.analytics_registry.add("z", "P1", b"a", fingerprint="f", params={}, metrics={})
        b.history.append(Readings.from_rows([("P1", "speed", 1, 1.0)]))
        b.cursors.set_cursor("reconciler", 1)
        assert b.database is not None and b.database.path == data / "tvilling.db"
    files = sorted(p.name for p in data.iterdir())
    assert [f for f in files if not f.endswith(("-wal", "-shm"))] == ["history.duckdb", "tvilling.db"]
    with open_backend(data) as again:  # and all of it is there after a reopen
        assert again.twin_store.get("P1").revision == 1
        assert len(again.command_store.list()) == 1 and len(again.alarm_store.list()) == 1
        assert again.dead_letters.count() == 1 and len(again.analytics_registry.versions()) == 1
        assert again.history.count() == 1 and again.cursors.cursor("reconciler") == 1


def test_history_opens_only_when_first_used(tmp_path) -> None:
    data = tmp_path / "data"
    with open_backend(data) as b:
        b.twin_store.commit([created("P1")])
        b.command_store.list()
        assert not (data / "history.duckdb").exists()
        b.history.count()
        assert (data / "history.duckdb").exists()


def test_a_url_that_names_no_backend_is_refused_with_what_is_accepted() -> None:
    with pytest.raises(Invalid, match="'memory', postgresql://… or a data directory; got 'redis://x'"):
        open_backend("redis://x")


def test_the_platform_is_built_on_one_backend(tmp_path) -> None:
    with build_platform(Settings(data_dir=tmp_path / "d")) as p:
        assert p.backend.kind == "embedded"
        assert p.twin_store is p.backend.twin_store and p.model_store is p.backend.model_store
        assert p.command_store is p.backend.command_store and p.alarm_store is p.backend.alarm_store
        assert p.dead_letters is p.backend.dead_letters and p.analytics_registry is p.backend.analytics_registry
        assert p.history is p.backend.history
    with build_platform(Settings(store="memory")) as p:
        assert p.backend.kind == "memory" and p.backend.database is None


def test_threads_write_twins_commands_and_dead_letters_at_once(backend: Backend) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            twin = f"T{n}"
            backend.twin_store.commit([created(twin, i=0)])
            for i in range(1, 20):
                backend.twin_store.commit([patched(twin, i + 1, i, i=i)])
                backend.command_store.add(command(twin))
                backend.dead_letters.add([letter(f"{n}-{i}".encode(), twin=twin)])
                backend.command_store.changes(0, 5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert backend.twin_store.count() == 6
    assert all(backend.twin_store.get(f"T{n}").reported == {"i": 19} for n in range(6))
    assert len(backend.command_store.list(limit=1000)) == 6 * 19
    assert backend.dead_letters.count() == 6 * 19
    positions = [p for p, _ in backend.command_store.changes(0, 1000)]
    assert positions == sorted(positions) and len(positions) == 6 * 19
    assert np.all(np.diff([e.position for e in backend.twin_store.feed(limit=10_000)]) > 0)
