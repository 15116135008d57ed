"""Staged appends of the embedded store: rows written in its own thread, durable only on commit, nothing
stored on abort; the ingest pipeline commits history only after the twins' state."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, Unavailable
from tvilling.core.readings import Readings
from tvilling.history import duckdb_store
from tvilling.history.base import Staged
from tvilling.history.duckdb_store import STAGE_ROWS, DuckDBHistoryStore
from tvilling.models.builtin import builtin_documents

T0 = 1_767_225_600_000_000
BEARING = "dtmi:tvilling:example:Bearing;1"


def _batch(n: int, twin: str = "B1") -> Readings:
    return Readings(np.full(n, twin, dtype=object), np.full(n, "temperature", dtype=object),
                    T0 + np.arange(n, dtype=np.int64) * 1_000_000, np.linspace(20, 30, n))


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """Staged appends take the store's thread where the process has two cores or more: here, always."""
    monkeypatch.setattr(duckdb_store, "_cores", lambda: 2)


def test_a_staged_append_is_stored_on_commit_and_not_at_all_on_abort(tmp_path):
    store = DuckDBHistoryStore(tmp_path / "h.duckdb")
    try:
        staged = store.stage(_batch(STAGE_ROWS), message_ids=[("B1", "m1")])
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(store.count()))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not seen  # the store is held until the caller decides
        staged.abort()
        reader.join(5)
        assert seen == [0] and store.count() == 0 and store.recent_message_ids(10) == []
        assert store.stage(_batch(STAGE_ROWS), message_ids=[("B1", "m2")]).commit() == STAGE_ROWS
        assert store.count() == STAGE_ROWS and store.recent_message_ids(10) == [("B1", "m2")]
        [bucket] = store.aggregate("B1", "temperature", T0, T0 + 60_000_000, 60_000_000, ["count", "max"])
        assert (bucket.count, bucket.max) == (60, pytest.approx(20 + 59 * 10 / (STAGE_ROWS - 1)))
        bad = _batch(STAGE_ROWS)
        bad = Readings(bad.twin, bad.prop, bad.ts, bad.value, np.full(len(bad), 7, dtype=np.uint8), bad.flags)
        with pytest.raises(Invalid):  # what storing raises reaches the caller at commit
            store.stage(bad).commit()
        assert store.append(_batch(10, "B2")) == 10  # and the store is free again
        assert store.count() == STAGE_ROWS + 10
    finally:
        store.close()


def test_the_pipeline_commits_history_after_the_state_and_stores_none_of_a_batch_whose_state_failed(tmp_path):
    platform = build_platform(Settings(data_dir=tmp_path))
    try:
        platform.models.add(builtin_documents("plant"))
        platform.twins.put("B1", {"model": BEARING})
        pipe = platform.pipeline
        history = platform.history
        order: list[str] = []
        commit_state, stage = pipe._commit_patches, history.stage

        def state(*args, **kwargs):
            commit_state(*args, **kwargs)
            order.append("state")

        def staged(readings, *, message_ids=()):
            inner = stage(readings, message_ids=message_ids)
            order.append("history staged")
            return Staged(lambda: order.append("history committed") or inner.commit(), inner.abort)

        pipe._commit_patches = state
        history.stage = staged
        now = datetime.fromtimestamp(T0 / 1e6 + 10_000, tz=UTC)
        assert pipe.ingest_readings(_batch(2 * STAGE_ROWS), now=now).accepted == 2 * STAGE_ROWS
        assert order == ["history staged", "state", "history committed"]
        assert history.count() == 2 * STAGE_ROWS

        def down(*args, **kwargs):
            raise Unavailable("twin store is down (test)")

        pipe._commit_patches = down
        later = Readings(*(getattr(_batch(2 * STAGE_ROWS), f) for f in ("twin", "prop")),
                         T0 + (10_000 + np.arange(2 * STAGE_ROWS, dtype=np.int64)) * 1_000_000,
                         np.full(2 * STAGE_ROWS, 25.0))
        with pytest.raises(Unavailable):
            pipe.ingest_readings(later, now=now)
        assert history.count() == 2 * STAGE_ROWS  # the staged append was rolled back
        assert order[3:] == ["history staged"]  # staged, never committed: its state failed
    finally:
        platform.close()
