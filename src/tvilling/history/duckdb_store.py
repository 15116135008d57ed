"""The embedded history store: one DuckDB file in the data directory.

DuckDB allows ONE process to open a database file for writing (it holds an OS lock on the
file while open); a second process gets ``Unavailable`` naming the process that holds it.
Within the process, one store object serves every thread (calls are serialised by a lock).

Batches go in as NumPy columns through DuckDB's own NumPy scan (``register`` of a dict of
arrays), without pyarrow: measured on 100k-row batches, 3.6M rows/s for the integer
columns against 3.4M rows/s through ``pa.table``; with string columns 1.5M vs 0.9M rows/s.
Each append is one transaction (raw rows and both rollups) and is in the write-ahead log
when it returns.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid, TvillingError, Unavailable
from tvilling.core.readings import Readings
from tvilling.history.base import (
    MAX_BATCH,
    MESSAGE_IDS_KEPT,
    SEQ_BITS,
    Prepared,
    Recent,
    SqlStoreBase,
    Staged,
    rule_from_row,
    rule_to_row,
)
from tvilling.history.pages import MAX_ROWS, PageCache, Rows, rows_of
from tvilling.history.ports import DEFAULT_AGGS, Point, RetentionRule
from tvilling.history.rollup import Partials, combine, to_columns
from tvilling.history.series import SeriesIndex

SCHEMA_VERSION = 1
# DuckDB folds its write-ahead log into the file when the log passes this size. Its default
# (16 MB) checkpoints every few 100k-row appends and made commits cost 35-66 ms a batch; 64 MB
# appended as fast as 256 MB did (2,000-message batches, 4,000 readings each) while holding a
# quarter of the un-checkpointed data in memory.
CHECKPOINT_MB = 64
# DuckDB's buffer pool defaults to 80 % of the machine's memory and keeps every page it read or
# wrote: an ingesting server grew by ~16 MB/s under load. Bounded, it evicts clean pages (and
# spills to <file>.tmp if it must); 128 MB appended as fast as no limit at all on 2,000-message
# batches. bench/chaos.py --cases overload measures the server's RSS with it.
MEMORY_MB = 128
ROLLUP_COLS = "series INTEGER NOT NULL, bucket BIGINT NOT NULL, min DOUBLE, max DOUBLE, sum DOUBLE, " \
              "count BIGINT, last DOUBLE, last_ts BIGINT, seq BIGINT"
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, twin VARCHAR NOT NULL, prop VARCHAR NOT NULL)",
    """CREATE TABLE IF NOT EXISTS raw (series INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE,
        text VARCHAR, quality UTINYINT, flags USMALLINT, seq BIGINT)""",
    f"CREATE TABLE IF NOT EXISTS r1m ({ROLLUP_COLS})",
    f"CREATE TABLE IF NOT EXISTS r1h ({ROLLUP_COLS})",
    """CREATE TABLE IF NOT EXISTS retention (kind VARCHAR, scope VARCHAR, prop VARCHAR,
        raw_us BIGINT, minute_us BIGINT, hour_us BIGINT, PRIMARY KEY (kind, scope, prop))""",
    "CREATE TABLE IF NOT EXISTS message_ids (twin VARCHAR NOT NULL, id VARCHAR NOT NULL, seq BIGINT NOT NULL)",
    # the readings feed: one entry per appended batch (its rows carry seq >> SEQ_BITS = batch); a file from
    # before the feed gets the table empty, so its older rows are not in the feed (analysed already)
    "CREATE TABLE IF NOT EXISTS feed (batch BIGINT NOT NULL, rows BIGINT NOT NULL, derived BOOLEAN NOT NULL)",
]
TABLE = {"raw": "raw", "1m": "r1m", "1h": "r1h"}
RAW_FETCH = 2_000  # raw points of one aggregate piece fetched and merged in NumPy; more are grouped by DuckDB
# a raw piece wider than this holds more than RAW_FETCH points at 1 Hz or faster: grouped by DuckDB at once, not
# fetched first to find out (a slower series then takes the grouped path, as every series did before the cache)
RAW_SPAN_US = RAW_FETCH * 1_000_000
STAGE_ROWS = 1_000  # smaller staged appends are done in the caller's thread, at commit (a thread hop costs more)
FEED_KEPT = 1_000_000  # feed journal entries kept by compact(): the newest
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


def _cores() -> int:
    """CPU cores this process may run on (a staged append's thread only pays where it gets one of its own)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Withdrawn(Exception):
    """A staged append its caller aborted: the transaction rolls back."""


def bucket_of(col: str, every: int) -> str:
    """SQL for the floor of ``col`` to a multiple of ``every`` (DuckDB's ``//`` and ``%`` truncate)."""
    return f"({col} - ((({col} % {every}) + {every}) % {every}))"


class DuckDBHistoryStore(SqlStoreBase):
    """``HistoryStore`` in one DuckDB file (created if missing).

    >>> import tempfile, pathlib
    >>> from tvilling.core.readings import Readings
    >>> h = DuckDBHistoryStore(pathlib.Path(tempfile.mkdtemp()) / "history.duckdb")
    >>> h.append(Readings.from_rows([("B1", "t", 1_000_000, 2.5)]))
    1
    >>> h.last("B1", "t").value
    2.5
    >>> h.close()
    """

    def __init__(self, path: str | Path, *, checkpoint_mb: int = CHECKPOINT_MB,
                 memory_mb: int = MEMORY_MB, cache_rows: int = MAX_ROWS) -> None:
        self.path = Path(path)
        self.series = SeriesIndex()
        # aggregates read their rows from memory (kept up to date by appends); 0 rows: always from the file
        self._cache = PageCache(max_rows=cache_rows, raw_limit=RAW_FETCH) if cache_rows > 0 else None
        self._lock = threading.RLock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tvilling-history")  # staged appends
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn: duckdb.DuckDBPyConnection | None = duckdb.connect(
                str(self.path), config={"checkpoint_threshold": f"{int(checkpoint_mb)}MB",
                                        "memory_limit": f"{int(memory_mb)}MB"})
        except duckdb.IOException as exc:
            holder = _LOCK_HOLDER.search(str(exc))
            if holder:
                raise Unavailable(
                    f"the history file {self.path} is open in another process (PID {holder['pid']}, "
                    f"{holder['exe']}); DuckDB allows one writer process: stop it, or use PostgreSQL "
                    "for several processes", path=str(self.path), pid=int(holder["pid"]),
                    holder=holder["exe"]) from exc
            raise Unavailable(f"cannot open the history file {self.path}: {exc}", path=str(self.path)) from exc
        except duckdb.Error as exc:
            raise Unavailable(f"cannot open the history file {self.path}: {exc}", path=str(self.path)) from exc
        with self._tx("opening the history store") as c:
            for stmt in SCHEMA:
                c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            elif int(row[0]) > SCHEMA_VERSION:
                raise Unavailable(f"{self.path} has history schema {row[0]}, newer than this Tvilling "
                                  f"({SCHEMA_VERSION}); upgrade Tvilling", path=str(self.path))
            self.series.add(c.execute("SELECT id, twin, prop FROM series").fetchall())
            top = c.execute("SELECT greatest((SELECT max(seq) FROM raw), (SELECT max(seq) FROM r1m), "
                            "(SELECT max(seq) FROM r1h), (SELECT max(seq) FROM message_ids), "
                            f"(SELECT max(batch) << {SEQ_BITS} FROM feed))").fetchone()
            head = c.execute("SELECT max(batch) FROM feed").fetchone()
        # batch numbers start at 1 (feed position 0 is "before everything") and never go back, even when
        # retention deleted the newest rows (the feed journal keeps the newest batch numbers)
        self._batch = max(1, ((top[0] if top and top[0] is not None else -1) >> SEQ_BITS) + 1)
        self._head_pos = int(head[0]) if head and head[0] is not None else 0
        self._recent = Recent(floor=self._head_pos)

    # ----- plumbing -----
    @contextmanager
    def _db(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._conn is None:
                raise Unavailable(f"{what}: the history store is closed", path=str(self.path))
            try:
                yield self._conn
            except TvillingError:
                raise
            except (duckdb.ConversionException, duckdb.InvalidInputException, OverflowError) as exc:
                raise Invalid(f"{what}: {exc}", rule="storable") from exc
            except duckdb.Error as exc:
                raise Unavailable(f"{what}: the history database failed: {exc}", path=str(self.path)) from exc

    @contextmanager
    def _tx(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._db(what) as c:
            c.execute("BEGIN TRANSACTION")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    # ----- primitives -----
    def _register(self, pairs: list[tuple[str, str]]) -> None:
        with self._tx("registering series") as c:
            start = len(self.series) + 1
            rows = [(start + i, t, p) for i, (t, p) in enumerate(pairs)]
            c.executemany("INSERT INTO series VALUES (?, ?, ?)", rows)
        self.series.add(rows)

    def stage(self, readings: Readings, *, message_ids: Sequence[tuple[str, str]] = (),
              derived: bool = False) -> Staged:
        """A batch of at least ``STAGE_ROWS`` readings is prepared and inserted by the store's writer thread
        (DuckDB works without the GIL) while the caller goes on (the ingest pipeline commits the twins'
        state meanwhile); its transaction commits only when ``commit`` is called, and rolls back on
        ``abort``. The store's lock is held from the start until then. On one core (a process pinned
        to it) the thread would only add switches: the append is then done at commit, in the caller."""
        derived = derived or self.is_deriving()
        if len(readings) < STAGE_ROWS or len(readings) > MAX_BATCH or _cores() < 2:
            return super().stage(readings, message_ids=message_ids, derived=derived)
        decision: Future[bool] = Future()
        done = self._writer.submit(self._append_decided, readings, message_ids, decision, derived)

        def commit() -> int:
            decision.set_result(True)
            return done.result()

        def abort() -> None:
            decision.set_result(False)
            with suppress(_Withdrawn, TvillingError):  # nothing was stored, as asked
                done.result()

        return Staged(commit, abort)

    def _append_decided(self, readings: Readings, message_ids: Sequence[tuple[str, str]],
                        decision: Future[bool], derived: bool = False) -> int:
        """``append``, with the commit waiting for ``decision`` (False: roll back)."""
        with self._lock:
            try:
                batch = self._batch_of(readings)
            except BaseException:
                decision.result()  # the caller's decision still ends this append: wait for it, then fail
                raise
            self._store(batch, message_ids, derived, decision.result)
        return len(readings)

    def _store(self, batch: Prepared | None, message_ids: Sequence[tuple[str, str]] = (),
               derived: bool = False, decide: Callable[[], bool] | None = None) -> None:
        with self._lock:  # the batch number, the feed and the cache move in commit order
            with self._tx("appending readings") as c:
                base = self._batch << SEQ_BITS
                if message_ids:
                    _tvilling_ids = {"twin": np.array([t for t, _ in message_ids], dtype=object),  # read by DuckDB
                                     "id": np.array([i for _, i in message_ids], dtype=object),
                                     "seq": base + np.arange(len(message_ids), dtype=np.int64)}
                    c.execute("INSERT INTO message_ids SELECT twin, id, seq FROM _tvilling_ids")
                if batch is not None:
                    self._store_rows(c, batch, base)
                    c.execute("INSERT INTO feed VALUES (?, ?, ?)", [self._batch, len(batch.readings), derived])
                if decide is not None and not decide():
                    raise _Withdrawn("the append was aborted by its caller")
            if batch is not None:
                self._head_pos = self._batch
                self._fed(self._batch, batch, derived)
            self._batch += 1
            if batch is not None and self._cache is not None:  # committed: the cached pages take the rows too
                r = batch.readings
                self._cache.appended(batch.sid, r.ts, r.value, batch.rollups, base)

    @staticmethod
    def _store_rows(c: duckdb.DuckDBPyConnection, batch: Prepared, base: int) -> None:
        r = batch.readings
        cols: dict[str, npt.NDArray[Any]] = {
            "series": batch.sid.astype(np.int32), "ts": r.ts, "value": r.value, "quality": r.quality,
            "flags": r.flags, "seq": base + np.arange(len(r), dtype=np.int64)}
        if r.text is not None:
            cols["text"] = r.text
        # The dicts of arrays are read by name from this frame (DuckDB's replacement scan): the same
        # NumPy scan as register(), without register/unregister, which cost as much as the inserts
        # (3 small batches: ~11 ms CPU registered, ~7 ms by name). Keep these local names unique.
        _tvilling_batch = cols  # read by DuckDB, by name
        # DuckDB's NumPy scan reads NaN as NULL: store NaN, as given
        text = "text" if r.text is not None else "NULL"
        c.execute(f"INSERT INTO raw SELECT series, ts, coalesce(value, 'NaN'::DOUBLE), {text}, quality, flags, "
                  "seq FROM _tvilling_batch")
        for name, (sid, p) in batch.rollups.items():
            if not len(sid):
                continue
            _tvilling_part = {"series": sid.astype(np.int32), "bucket": p.bucket,  # read by DuckDB
                              "min": p.min, "max": p.max, "sum": p.sum, "count": p.count, "last": p.last,
                              "last_ts": p.last_ts}
            c.execute(f"INSERT INTO {TABLE[name]} SELECT series, bucket, min, max, sum, count, last, "
                      f"last_ts, {base} FROM _tvilling_part")

    def _head(self) -> int:
        with self._lock:
            return self._head_pos

    def _recent_ids(self, limit: int) -> list[tuple[str, str]]:
        with self._db("reading the message-id journal") as c:
            return [(t, i) for t, i in c.execute("SELECT twin, id FROM message_ids ORDER BY seq DESC LIMIT ?",
                                                 [limit]).fetchall()]

    def _rows(self, what: str, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._db(what) as c:
            return c.execute(sql, list(args)).fetchall()

    def _partials(self, sid: int, source: str, lo: int, hi: int, every: int) -> Partials:
        if source == "raw":
            sql = (f"SELECT {bucket_of('ts', every)} AS b, min(value), max(value), sum(value), count(*), "
                   "arg_max(value, {'t': ts, 's': seq}), max(ts) FROM raw "
                   "WHERE series = ? AND ts >= ? AND ts < ? AND NOT isnan(value) GROUP BY b ORDER BY b")
        else:
            sql = (f"SELECT {bucket_of('bucket', every)} AS b, min(min), max(max), sum(sum), sum(count), "
                   "arg_max(last, {'t': last_ts, 's': seq}), max(last_ts) "
                   f"FROM {TABLE[source]} WHERE series = ? AND bucket >= ? AND bucket < ? GROUP BY b ORDER BY b")
        with self._db("aggregating history") as c:
            cols = c.execute(sql, [sid, lo, hi]).fetchnumpy()
        return Partials.from_columns([np.asarray(v) for v in cols.values()])

    def _pieces(self, sid: int, pieces: Sequence[tuple[str, int, int]], every: int) -> list[Partials]:
        """Every piece in one query: the rollup rows and up to ``RAW_FETCH`` raw points each, merged in NumPy.

        Fetching the rows and merging them here takes a third of the time of DuckDB's grouped
        aggregates (measured on 2M points, 1,000 series: 1.3 ms against 3.9 ms for 33 minutes of one
        series). A raw piece with more points than that is aggregated by DuckDB instead.
        """
        if not pieces:
            return []
        wide = {k for k, (source, lo, hi) in enumerate(pieces) if source == "raw" and hi - lo > RAW_SPAN_US}
        if wide:
            rest = [p for k, p in enumerate(pieces) if k not in wide]
            return [self._partials(sid, "raw", pieces[k][1], pieces[k][2], every) for k in sorted(wide)] + \
                self._pieces(sid, rest, every)
        if self._cache is not None:
            with self._lock:  # the pages and the file seen at one moment
                cached = self._cache.partials(sid, pieces, self._load_pages)
            if cached is not None:
                return cached
        cols = self._fetch_pieces(sid, pieces, "aggregating history")
        piece = cols[8]
        out = []
        over = [k for k, (source, _, _) in enumerate(pieces)
                if source == "raw" and np.count_nonzero(piece == k) > RAW_FETCH]
        if over:
            keep = ~np.isin(piece, over)
            cols = [c[keep] for c in cols]
            out = [self._partials(sid, "raw", pieces[k][1], pieces[k][2], every) for k in over]
        order = np.argsort(cols[7], kind="stable")  # arrival order: a later row wins a tie of 'last'
        out.append(Partials.from_columns([c[order] for c in cols[:7]]))
        return out

    def aggregate_now(self, twin: str, prop: str, start_us: int, end_us: int, every_us: int,
                      aggs: Sequence[str] = DEFAULT_AGGS) -> dict[str, list[Any]] | None:
        """The aggregate from the cache's pages alone, if they hold it and no append holds the store."""
        if self._cache is None or not self._lock.acquire(blocking=False):
            return None
        try:
            planned = self._plan(twin, prop, start_us, end_us, every_us, aggs)
            if planned is None:
                return to_columns(Partials.empty(), aggs)
            parts = self._cache.partials(*planned, None)
        finally:
            self._lock.release()
        return None if parts is None else to_columns(combine(parts, every_us), aggs)

    def _fetch_pieces(self, sid: int, pieces: Sequence[tuple[str, int, int]], doing: str) -> list[Any]:
        """Per (source, lo, hi) piece of one series, in one query: its rows as partials' columns (raw: numeric
        points, at most ``RAW_FETCH + 1``), their arrival order (seq) and the piece's index, as arrays."""
        selects, args = [], []
        for k, (source, lo, hi) in enumerate(pieces):
            if source == "raw":
                selects.append(f"(SELECT ts, value, value, value, 1::BIGINT, value, ts, seq, {k} FROM raw "
                               "WHERE series = ? AND ts >= ? AND ts < ? AND NOT isnan(value) LIMIT ?)")
                args += [sid, lo, hi, RAW_FETCH + 1]
            else:
                selects.append(f"(SELECT bucket, min, max, sum, count, last, last_ts, seq, {k} "
                               f"FROM {TABLE[source]} WHERE series = ? AND bucket >= ? AND bucket < ?)")
                args += [sid, lo, hi]
        with self._db(doing) as c:
            return [np.asarray(v) for v in c.execute(" UNION ALL ".join(selects), args).fetchnumpy().values()]

    def _load_pages(self, sid: int, ranges: Sequence[tuple[str, int, int]]) -> list[Rows]:
        """The cache's pages read: per (source, lo, hi) range, its rows (raw: numeric points, at most
        ``RAW_FETCH + 1``), with their arrival order (seq), in one query."""
        cols = self._fetch_pieces(sid, ranges, "reading history into the cache")
        tag = cols[8]
        return [rows_of([col[tag == k] for col in cols[:8]]) for k in range(len(ranges))]

    def _last(self, sids: Sequence[int]) -> dict[int, Point]:
        if not sids:
            return {}
        ids = ",".join(str(int(s)) for s in sids)
        with self._db("reading the last values") as c:
            rows = c.execute(
                "SELECT series, arg_max(struct_pack(ts, value, text, quality, flags), struct_pack(ts, seq)) "
                f"FROM raw WHERE series IN ({ids}) GROUP BY series").fetchall()
        return {s: Point(p["ts"], p["value"], p["text"], p["quality"], p["flags"]) for s, p in rows}

    def _save_rules(self, rules: list[RetentionRule]) -> None:
        with self._tx("saving retention rules") as c:
            c.execute("DELETE FROM retention")
            c.executemany("INSERT INTO retention VALUES (?, ?, ?, ?, ?, ?)", [rule_to_row(r) for r in rules])

    def _load_rules(self) -> list[RetentionRule]:
        with self._db("reading retention rules") as c:
            rows = c.execute("SELECT kind, scope, prop, raw_us, minute_us, hour_us FROM retention "
                             "ORDER BY kind, scope, prop").fetchall()
        return [rule_from_row(r) for r in rows]

    def _delete_older(self, table: str, sids: npt.NDArray[np.int64], cutoffs: npt.NDArray[np.int64]) -> int:
        col = "ts" if table == "raw" else "bucket"
        with self._tx("applying retention") as c:
            if self._cache is not None:  # under the lock: no page is read again until the rows are gone
                self._cache.clear()
            c.register("_cut", {"s": sids.astype(np.int32), "c": cutoffs})
            try:
                row = c.execute(f"DELETE FROM {TABLE[table]} t USING _cut WHERE t.series = _cut.s "
                                f"AND t.{col} < _cut.c").fetchone()
            finally:
                c.unregister("_cut")
        return int(row[0]) if row else 0

    # ----- the rest of the port -----
    def count(self) -> int:
        with self._db("counting history") as c:
            row = c.execute("SELECT count(*) FROM raw").fetchone()
        return int(row[0]) if row else 0

    def compact(self) -> int:
        merged = 0
        for table in ("r1m", "r1h"):
            with self._tx("compacting rollups") as c:
                if self._cache is not None:  # rollup rows are merged: their pages are read again when asked for
                    self._cache.clear()  # (under the lock: nothing is read into it before the merge commits)
                c.execute(
                    "CREATE TEMP TABLE _merged AS SELECT series, bucket, min(min) AS min, max(max) AS max, "
                    "sum(sum) AS sum, sum(count)::BIGINT AS count, arg_max(last, {'t': last_ts, 's': seq}) AS last, "
                    f"max(last_ts) AS last_ts, max(seq) AS seq, count(*) AS n FROM {table} "
                    "GROUP BY series, bucket HAVING count(*) > 1")
                row = c.execute("SELECT coalesce(sum(n - 1), 0) FROM _merged").fetchone()
                merged += int(row[0]) if row else 0
                c.execute(f"DELETE FROM {table} t USING _merged m WHERE t.series = m.series AND t.bucket = m.bucket")
                c.execute(f"INSERT INTO {table} SELECT series, bucket, min, max, sum, count, last, last_ts, seq "
                          "FROM _merged")
                c.execute("DROP TABLE _merged")
        with self._tx("pruning the message-id journal") as c:
            row = c.execute("SELECT seq FROM message_ids ORDER BY seq DESC LIMIT 1 OFFSET ?",
                            [MESSAGE_IDS_KEPT]).fetchone()
            if row is not None:
                c.execute("DELETE FROM message_ids WHERE seq <= ?", [row[0]])
        with self._tx("pruning the readings feed journal") as c:  # the newest entries keep the batch numbers
            c.execute("DELETE FROM feed WHERE batch <= ?", [self._head_pos - FEED_KEPT])
        return merged

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file (DuckDB also does this by itself as the log grows)."""
        with self._db("checkpointing history") as c:
            c.execute("CHECKPOINT")

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
