"""DuckDB-only behaviour: one writer process, and acknowledged appends surviving kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tvilling.core.errors import Unavailable
from tvilling.history import Readings, open_history
from tvilling.history.duckdb_store import DuckDBHistoryStore

T0 = 1_767_225_600_000_000

HOLD = """
import sys, time
from tvilling.history import open_history
h = open_history(sys.argv[1])
print("open", flush=True)
time.sleep(60)
"""

WRITER = """
import sys
import numpy as np
from tvilling.history import Readings, open_history
h = open_history(sys.argv[1])
n = 5_000
T0 = int(sys.argv[2])
for b in range(10_000):
    k = b * n + np.arange(n)
    h.append(Readings(np.full(n, "B1", dtype=object), np.full(n, "t", dtype=object),
                      (T0 + k).astype(np.int64), k.astype(float)))
    print(b, flush=True)  # the acknowledgement: printed only after append returned
"""


def test_second_process_gets_unavailable_naming_the_holder(tmp_path):
    path = tmp_path / "history.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(Unavailable) as info:
            DuckDBHistoryStore(path)
        assert info.value.fields["pid"] == holder.pid
        assert f"PID {holder.pid}" in info.value.message and "one writer process" in info.value.message
    finally:
        holder.kill()
        holder.wait()
    store = DuckDBHistoryStore(path)  # free again once the holder is gone
    store.close()


def test_acknowledged_appends_survive_kill_9(tmp_path):
    path = tmp_path / "history.duckdb"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(T0)],
                              stdout=subprocess.PIPE, text=True)
    acked = -1
    try:
        for line in writer.stdout:
            acked = int(line)
            if acked >= 40:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert acked >= 40
    store = open_history(path)
    try:
        n = store.count()
        assert n >= (acked + 1) * 5_000  # every acknowledged batch, maybe one more
        assert n % 5_000 == 0  # and no torn batch
        last = store.last("B1", "t")
        assert last is not None and last.value == n - 1
        (b,) = store.aggregate("B1", "t", T0, T0 + n, 1 << 40, aggs=["count"])
        assert b.count == n  # the rollups were written in the same transactions
    finally:
        store.close()


def test_a_directory_gets_a_file_inside_and_schema_is_created_once(tmp_path):
    store = open_history(tmp_path)
    store.append(Readings.from_rows([("B1", "t", T0, 1.0)]))
    store.close()
    assert (tmp_path / "history.duckdb").exists()
    assert open_history(tmp_path / "history.duckdb").count() == 1


NO_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # importing pyarrow now fails: the store must not need it
sys.modules["pandas"] = None
from tvilling.history import Readings, open_history
h = open_history(sys.argv[1])
h.append(Readings.from_rows([("B1", "t", 1, 1.5), ("B1", "t", 2, "x")]))
print(h.count(), h.last("B1", "t").text, h.aggregate("B1", "t", 0, 10, 10)[0].avg)
"""


def test_the_embedded_store_needs_no_pyarrow(tmp_path):
    out = subprocess.run([sys.executable, "-c", NO_PYARROW, str(tmp_path / "h.duckdb")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["2", '"x"', "1.5"]
