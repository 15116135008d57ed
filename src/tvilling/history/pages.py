"""An in-memory mirror of the embedded store's rows, per series and page, for aggregates.

An aggregate is answered from partial rows: raw points at the ends of its range, 1-minute
rollup rows in the middle, 1-hour rollup rows in a long middle (see ``rollup.plan``). This
cache holds those rows exactly as the database holds them (the same columns, the same
rows, in the order of arrival), cut into pages:

* raw points: one page per series and minute (the ends of a planned range are always
  inside one minute when the 1-minute tier is used);
* 1-minute rollups: one page per series and hour;
* 1-hour rollups: one page per series and day.

A page is read from the database the first time a query needs it, then kept up to date by
every append (the embedded store has one writer process, and updates the cache under the
same lock, after its transaction committed). Because a page holds the very rows the
database holds, in the same order, an aggregate from the cache is identical to one from
the database, bit for bit. Compaction and retention rewrite rows: they clear the cache.

Bounded: at most ``max_rows`` rows in all (least recently used pages go first); a raw page
holding more than ``raw_limit`` points, or a rollup page grown past ``PAGE_ROWS`` rows, is
not kept (its queries go to the database).

>>> cache = PageCache()
>>> cache.needed(1, [("raw", 30, 60), ("1m", 60_000_000, 120_000_000)])
[('raw', 0), ('1m', 0)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from tvilling.history.ports import DAY_US, HOUR_US, MINUTE_US
from tvilling.history.rollup import Partials

PAGE_US = {"raw": MINUTE_US, "1m": HOUR_US, "1h": DAY_US}
MAX_ROWS = 500_000  # rows held in all (about 64 bytes each)
PAGE_ROWS = 8_192  # a rollup page with more rows than this (appends not yet compacted) is not kept
MAX_QUERY_PAGES = 512  # a query needing more pages than this goes to the database
# one page's rows: key (ts or bucket), min, max, sum, count, last, last_ts, seq
Rows = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64],
             npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]
Key = tuple[str, int, int]  # (source, series, page start)
# reads (source, lo, hi) ranges of one series: per range, its rows in any order (raw: numeric points only,
# at most raw_limit + 1 of them)
Loader = Callable[[int, Sequence[tuple[str, int, int]]], list[Rows]]
_TOO_BIG = object()


def rows_of(cols: Sequence[npt.ArrayLike]) -> Rows:
    """Eight columns as a page's rows, with their canonical dtypes."""
    k, mn, mx, sm, ct, la, lt, sq = (np.asarray(c) for c in cols)
    return (k.astype(np.int64, copy=False), mn.astype(np.float64, copy=False), mx.astype(np.float64, copy=False),
            sm.astype(np.float64, copy=False), ct.astype(np.int64, copy=False), la.astype(np.float64, copy=False),
            lt.astype(np.int64, copy=False), sq.astype(np.int64, copy=False))


def _floor(x: int, size: int) -> int:
    return x - x % size


class PageCache:
    """Pages of partial rows per (source, series), least recently used first out."""

    def __init__(self, *, max_rows: int = MAX_ROWS, raw_limit: int = 2_000) -> None:
        self.max_rows = max_rows
        self.raw_limit = raw_limit
        self._pages: OrderedDict[Key, Rows | object] = OrderedDict()
        self._rows = 0
        self._per_series: dict[int, int] = {}  # series -> pages held
        self._mask = np.zeros(0, dtype=bool)  # indexed by series id: does it hold any page

    def __len__(self) -> int:
        return len(self._pages)

    @property
    def rows(self) -> int:
        """Rows held in all."""
        return self._rows

    def clear(self) -> None:
        """Forget every page (after the database rewrote rows: compaction, retention)."""
        self._pages.clear()
        self._per_series.clear()
        self._mask = np.zeros(0, dtype=bool)
        self._rows = 0

    # ----- reading -----
    def needed(self, sid: int, pieces: Sequence[tuple[str, int, int]]) -> list[tuple[str, int]] | None:
        """The (source, page start) pages that answer ``pieces``, or None when the cache cannot."""
        out: list[tuple[str, int]] = []
        for source, lo, hi in pieces:
            size = PAGE_US.get(source)
            if size is None or hi <= lo:
                return None
            first, last = _floor(lo, size), _floor(hi - 1, size)
            if source == "raw" and first != last:  # a raw piece longer than an edge: the database groups it
                return None
            if (last - first) // size + 1 + len(out) > MAX_QUERY_PAGES:
                return None
            out.extend((source, start) for start in range(first, last + 1, size))
        return out

    def partials(self, sid: int, pieces: Sequence[tuple[str, int, int]],
                 load: Loader | None) -> list[Partials] | None:
        """Each piece's partial rows, from the cache (missing pages read through ``load`` first);
        None when the cache cannot answer (the caller asks the database), or when pages are
        missing and there is no ``load``."""
        pages = self.needed(sid, pieces)
        if pages is None:
            return None
        missing = [(source, start) for source, start in pages if (source, sid, start) not in self._pages]
        if missing:
            if load is None:
                return None
            self._fill(sid, missing, load)
        out = []
        for source, lo, hi in pieces:
            size = PAGE_US[source]
            parts = []
            for start in range(_floor(lo, size), _floor(hi - 1, size) + 1, size):
                page = self._pages.get((source, sid, start))
                if page is None or page is _TOO_BIG:
                    return None
                self._pages.move_to_end((source, sid, start))
                assert isinstance(page, tuple)
                key = page[0]
                inside = (key >= lo) & (key < hi)
                parts.append(page if inside.all() else tuple(c[inside] for c in page))
            if parts:
                cols = [np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(7)]
                out.append(Partials(*cols))
        return out

    def _fill(self, sid: int, missing: Sequence[tuple[str, int]], load: Loader) -> None:
        """Read the missing pages (contiguous pages of a source in one range) and keep them."""
        runs: list[tuple[str, int, int]] = []
        for source, start in missing:
            size = PAGE_US[source]
            if runs and runs[-1][0] == source and runs[-1][2] == start and source != "raw":
                runs[-1] = (source, runs[-1][1], start + size)
            else:
                runs.append((source, start, start + size))
        for (source, lo, hi), rows in zip(runs, load(sid, runs), strict=True):
            size = PAGE_US[source]
            if source == "raw" and len(rows[0]) > self.raw_limit:
                self._put((source, sid, lo), _TOO_BIG, 1)
                continue
            page = rows[0] - np.mod(rows[0], size)
            order = np.lexsort((rows[7], page))  # by page, then in the order of arrival
            rows = rows_of([c[order] for c in rows])
            page = page[order]
            for start in range(lo, hi, size):
                a, b = np.searchsorted(page, [start, start + size])
                self._put((source, sid, start), tuple(c[a:b] for c in rows), int(b - a))

    # ----- keeping up with appends -----
    def appended(self, sid: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], value: npt.NDArray[np.float64],
                 rollups: dict[str, tuple[npt.NDArray[np.int64], Partials]], base: int) -> None:
        """A committed batch: its raw rows (series, ts, value: row ``i`` has seq ``base + i``) and its rollup rows
        (seq ``base``) are added to the pages that hold their times; pages not held are left to be read."""
        if not self._pages or not len(sid):
            return
        mask = self._mask
        if int(sid.max()) >= len(mask):
            mask = np.concatenate([mask, np.zeros(int(sid.max()) + 1 - len(mask), dtype=bool)])
        rows = np.flatnonzero(mask[sid])
        if len(rows):
            rows = rows[~np.isnan(value[rows])]
            t, v = ts[rows], value[rows]
            self._add("raw", sid[rows], t, (t, v, v, v, np.ones(len(rows), dtype=np.int64), v, t, base + rows))
        for source, (psid, p) in rollups.items():
            hit = np.flatnonzero(mask[psid])  # the rollup rows' series are the batch's
            if len(hit):
                q = p.take(hit)
                self._add(source, psid[hit], q.bucket, (q.bucket, q.min, q.max, q.sum, q.count, q.last, q.last_ts,
                                                        np.full(len(hit), base, dtype=np.int64)))

    def _add(self, source: str, sid: npt.NDArray[np.int64], key: npt.NDArray[np.int64],
             cols: tuple[npt.NDArray[np.int64] | npt.NDArray[np.float64], ...]) -> None:
        """Append rows (given in the order of arrival) to the held pages they fall in."""
        if not len(sid):
            return
        size = PAGE_US[source]
        page = key - np.mod(key, size)
        order = np.lexsort((np.arange(len(sid)), page, sid))  # grouped, arrival order kept within a group
        s, pg = sid[order], page[order]
        starts = np.flatnonzero(np.concatenate([[True], (s[1:] != s[:-1]) | (pg[1:] != pg[:-1])]))
        ends = np.append(starts[1:], len(s))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            k = (source, int(s[a]), int(pg[a]))
            held = self._pages.get(k)
            if held is None or held is _TOO_BIG:
                continue
            assert isinstance(held, tuple)
            idx = order[a:b]
            grown = rows_of([np.concatenate([old, new[idx]]) for old, new in zip(held, cols, strict=True)])
            n = len(grown[0])
            if n > (self.raw_limit if source == "raw" else PAGE_ROWS):
                self._drop(k)
                if source == "raw":
                    self._put(k, _TOO_BIG, 1)
                continue
            self._rows += max(n, 1) - max(len(held[0]), 1)
            self._pages[k] = grown
        self._evict()

    # ----- bookkeeping -----
    def _put(self, key: Key, page: Rows | object, n: int) -> None:
        self._drop(key)
        self._pages[key] = page
        self._rows += max(n, 1)
        sid = key[1]
        self._per_series[sid] = self._per_series.get(sid, 0) + 1
        if sid >= len(self._mask):
            self._mask = np.concatenate([self._mask, np.zeros(sid + 1 - len(self._mask), dtype=bool)])
        self._mask[sid] = True
        self._evict()

    def _drop(self, key: Key) -> None:
        page = self._pages.pop(key, None)
        if page is None:
            return
        self._rows -= max(len(page[0]), 1) if isinstance(page, tuple) else 1
        sid = key[1]
        left = self._per_series[sid] - 1
        if left:
            self._per_series[sid] = left
        else:
            del self._per_series[sid]
            self._mask[sid] = False

    def _evict(self) -> None:
        while self._rows > self.max_rows and self._pages:
            self._drop(next(iter(self._pages)))
