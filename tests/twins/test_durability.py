"""An acknowledged commit survives ``kill -9`` of the writing process (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pgtest import PG_DSN
from tvilling.core.events import fold
from tvilling.twins.adapters.postgres import open_postgres
from tvilling.twins.adapters.sqlite import open_sqlite

SRC = Path(__file__).resolve().parents[2] / "src"
ACKS_BEFORE_KILL = 150

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from tvilling.core.events import Event

    kind, target, dsn = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "sqlite":
        from tvilling.twins.adapters.sqlite import open_sqlite
        _, store = open_sqlite(target)
    else:
        from tvilling.twins.adapters.postgres import open_postgres
        _, store = open_postgres(dsn, schema=target)
    revisions = {}
    i = 0
    while True:
        batch = []
        for twin in (f"w{i % 7}", f"v{i % 3}"):
            rev = revisions.get(twin, 0) + 1
            if rev == 1:
                payload = {"model": "dtmi:test:W;1", "reported": {"n": i}}
                kind_ = "TwinCreated"
            else:
                payload = {"reported": {"n": i, "last": twin}, "metadata": {"i": i}}
                kind_ = "TwinPatched"
            batch.append(Event(twin=twin, revision=rev, time=datetime.now(UTC), actor="writer",
                               type=kind_, payload=payload))
            revisions[twin] = rev
        store.commit(batch)
        for e in batch:
            print(f"ACK {e.twin} {e.revision}", flush=True)
        i += 1
    """
)


def run_and_kill(kind: str, target: str) -> list[tuple[str, int]]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, target, PG_DSN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acks: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acks) < ACKS_BEFORE_KILL:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer stopped early: {proc.stderr.read() if proc.stderr else ''}")
            if line.startswith("ACK "):
                _, twin, rev = line.split()
                acks.append((twin, int(rev)))
            assert time.monotonic() < deadline, "the writer is too slow"
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # lines the writer printed before it died were acknowledged too
    acks += [(w.split()[1], int(w.split()[2])) for w in rest.splitlines() if w.startswith("ACK ")]
    return acks


def check_consistent(twins, acks: list[tuple[str, int]]) -> None:
    acked: dict[str, int] = {}
    for twin, rev in acks:
        acked[twin] = max(acked.get(twin, 0), rev)
    feed = twins.feed(limit=1_000_000)
    positions = [e.position for e in feed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for twin, rev in acked.items():
        history = twins.history(twin, limit=1_000_000)
        assert [e.revision for e in history] == list(range(1, len(history) + 1))
        assert len(history) >= rev, f"acknowledged {twin} revision {rev} is lost"
        assert twins.last_revision(twin) == len(history)
        assert twins.get(twin) == fold(history)
    assert twins.count() == len({e.twin for e in feed})


def test_sqlite_acknowledged_commits_survive_kill_9(tmp_path):
    path = tmp_path / "data" / "tvilling.db"
    acks = run_and_kill("sqlite", str(path))
    _, twins = open_sqlite(path)
    try:
        check_consistent(twins, acks)
    finally:
        twins.close()


@pytest.mark.postgres
def test_postgres_acknowledged_commits_survive_kill_9(pg_schema):
    acks = run_and_kill("postgres", pg_schema)
    _, twins = open_postgres(PG_DSN, schema=pg_schema)
    try:
        check_consistent(twins, acks)
    finally:
        twins.close()
