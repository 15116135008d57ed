"""The in-memory history store: the reference adapter, NumPy arrays per series.

Nothing survives ``close``. Each series keeps its raw points and its rollup rows as lists
of array chunks (one per append), consolidated on first read.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Unavailable
from tvilling.core.readings import Readings
from tvilling.history.base import MESSAGE_IDS_KEPT, SEQ_BITS, Prepared, Recent, StoreBase, plan_feed
from tvilling.history.ports import TIERS, FeedBatch, Point, RetentionRule
from tvilling.history.rollup import Partials, combine, partials_of
from tvilling.history.series import SeriesIndex

RAW_COLS = ("ts", "value", "text", "quality", "flags", "seq")  # seq: (batch << SEQ_BITS) | row in its batch


@dataclass
class _Series:
    raw: list[dict[str, npt.NDArray[Any]]] = field(default_factory=list)
    rollups: dict[str, list[Partials]] = field(default_factory=lambda: {name: [] for name, _ in TIERS})

    def points(self) -> dict[str, npt.NDArray[Any]]:
        """All raw columns in (ts, append) order, consolidated into one chunk."""
        if len(self.raw) != 1:
            cols = {c: np.concatenate([ch[c] for ch in self.raw]) if self.raw else np.empty(0)
                    for c in RAW_COLS}
            order = np.argsort(cols["ts"], kind="stable")
            self.raw = [{c: v[order] for c, v in cols.items()}]
        return self.raw[0]


def _point(cols: dict[str, npt.NDArray[Any]], i: int) -> Point:
    return Point(int(cols["ts"][i]), float(cols["value"][i]), cols["text"][i], int(cols["quality"][i]),
                 int(cols["flags"][i]))


class MemoryHistoryStore(StoreBase):
    """``HistoryStore`` in process memory.

    >>> from tvilling.core.readings import Readings
    >>> h = MemoryHistoryStore()
    >>> h.append(Readings.from_rows([("B1", "t", 1_000_000, 2.5), ("B1", "t", 2_000_000, 3.5)]))
    2
    >>> [p.value for p in h.range("B1", "t", 0, 10_000_000)], h.last("B1", "t").value
    ([2.5, 3.5], 3.5)
    """

    def __init__(self) -> None:
        self.series = SeriesIndex()
        self._data: dict[int, _Series] = {}
        self._rules: list[RetentionRule] = []
        self._lock = threading.RLock()
        self._closed = False
        self._message_ids: collections.deque[tuple[str, str]] = collections.deque(maxlen=MESSAGE_IDS_KEPT)
        self._feed: list[tuple[int, int, bool]] = []  # the feed journal: (batch, rows, derived)
        self._batch = 1
        self._recent = Recent(floor=0)

    def _check(self) -> None:
        if self._closed:
            raise Unavailable("the history store is closed")

    def _register(self, pairs: list[tuple[str, str]]) -> None:
        start = len(self.series) + 1
        self.series.add((start + i, t, p) for i, (t, p) in enumerate(pairs))

    def _store(self, batch: Prepared | None, message_ids: Sequence[tuple[str, str]] = (),
               derived: bool = False) -> None:
        with self._lock:
            self._check()
            self._message_ids.extend(message_ids)
            if batch is None:
                return
            position, self._batch = self._batch, self._batch + 1
            r = batch.readings
            text = r.text if r.text is not None else np.full(len(r), None, dtype=object)
            order = np.lexsort((r.ts, batch.sid))  # each chunk in (ts, arrival) order
            sid = batch.sid[order]
            bounds = np.flatnonzero(np.append(True, sid[1:] != sid[:-1]))
            cols = {"ts": r.ts[order], "value": r.value[order], "text": text[order],
                    "quality": r.quality[order], "flags": r.flags[order],
                    "seq": (position << SEQ_BITS) + order.astype(np.int64)}
            for lo, hi in zip(bounds, np.append(bounds[1:], len(sid)), strict=True):  # per series, not per reading
                self._data.setdefault(int(sid[lo]), _Series()).raw.append({c: v[lo:hi] for c, v in cols.items()})
            for name, (psid, parts) in batch.rollups.items():
                if not len(psid):  # a batch of text values only: no numbers to roll up
                    continue
                pb = np.flatnonzero(np.append(True, psid[1:] != psid[:-1]))
                for lo, hi in zip(pb, np.append(pb[1:], len(psid)), strict=True):
                    self._data[int(psid[lo])].rollups[name].append(parts.take(np.arange(lo, hi)))
            self._feed.append((position, len(r), derived))
            self._fed(position, batch, derived)

    def _head(self) -> int:
        with self._lock:
            self._check()
            return self._feed[-1][0] if self._feed else 0

    def _feed_rows(self, after: int, max_rows: int) -> list[FeedBatch]:
        with self._lock:
            self._check()
            k = int(np.searchsorted(np.array([b for b, _, _ in self._feed], dtype=np.int64), after, side="right"))
            planned = plan_feed(self._feed[k:k + 1000], max_rows)
            if not planned:
                return []
            lo, hi = planned[0][0] << SEQ_BITS, (planned[-1][0] + 1) << SEQ_BITS
            names = {sid: (twin, prop) for sid, twin, prop in self.series.items()}
            parts: list[dict[str, npt.NDArray[Any]]] = []
            for sid, s in self._data.items():
                for chunk in s.raw:
                    inside = (chunk["seq"] >= lo) & (chunk["seq"] < hi)
                    if inside.any():
                        twin, prop = names[sid]
                        n = int(inside.sum())
                        parts.append({"twin": np.full(n, twin, dtype=object), "prop": np.full(n, prop, dtype=object),
                                      **{c: v[inside] for c, v in chunk.items()}})
        cols = {c: np.concatenate([p[c] for p in parts]) if parts else np.empty(0)
                for c in ("twin", "prop", *RAW_COLS)}
        order = np.argsort(cols["seq"], kind="stable")
        cols = {c: v[order] for c, v in cols.items()}
        of = cols["seq"].astype(np.int64) >> SEQ_BITS
        out = []
        for position, _n, derived in planned:
            a, b = np.searchsorted(of, [position, position + 1])
            text = cols["text"][a:b].astype(object)
            readings = Readings(cols["twin"][a:b].astype(object), cols["prop"][a:b].astype(object),
                                cols["ts"][a:b].astype(np.int64), cols["value"][a:b].astype(np.float64),
                                cols["quality"][a:b].astype(np.uint8), cols["flags"][a:b].astype(np.uint16),
                                text if any(t is not None for t in text) else None)
            out.append(FeedBatch(position, readings, derived))
        return out

    def _recent_ids(self, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            self._check()
            return list(itertools.islice(reversed(self._message_ids), limit))

    def _get(self, sid: int) -> _Series:
        self._check()
        return self._data.setdefault(sid, _Series())

    def _range_rows(self, sid: int, lo: int, hi: int, limit: int) -> list[Point]:
        with self._lock:
            cols = self._get(sid).points()
            a, b = np.searchsorted(cols["ts"], [lo, hi])
            return [_point(cols, i) for i in range(int(a), min(int(b), int(a) + limit))]

    def _points_at(self, sid: int, ts: int) -> list[Point]:
        return self._range_rows(sid, ts, ts + 1, 1 << 62)

    def _partials(self, sid: int, source: str, lo: int, hi: int, every: int) -> Partials:
        with self._lock:
            s = self._get(sid)
            if source == "raw":
                cols = s.points()
                a, b = np.searchsorted(cols["ts"], [lo, hi])
                return partials_of(cols["ts"][a:b], cols["value"][a:b], every)
            rows = combine(s.rollups[source], 1)  # all rows of the tier, in append order within a bucket
            s.rollups[source] = [rows]
            inside = np.flatnonzero((rows.bucket >= lo) & (rows.bucket < hi))
            return rows.take(inside)

    def _last(self, sids: Sequence[int]) -> dict[int, Point]:
        out: dict[int, Point] = {}
        with self._lock:
            for sid in sids:
                cols = self._get(sid).points()
                if len(cols["ts"]):
                    out[sid] = _point(cols, len(cols["ts"]) - 1)
        return out

    def _save_rules(self, rules: list[RetentionRule]) -> None:
        with self._lock:
            self._check()
            self._rules = list(rules)

    def _load_rules(self) -> list[RetentionRule]:
        with self._lock:
            self._check()
            return list(self._rules)

    def _delete_older(self, table: str, sids: npt.NDArray[np.int64], cutoffs: npt.NDArray[np.int64]) -> int:
        deleted = 0
        with self._lock:
            for sid, cut in zip(sids.tolist(), cutoffs.tolist(), strict=True):
                s = self._get(sid)
                if table == "raw":
                    cols = s.points()
                    keep = cols["ts"] >= cut
                    deleted += int((~keep).sum())
                    s.raw = [{c: v[keep] for c, v in cols.items()}]
                else:
                    rows = combine(s.rollups[table], 1)
                    keep_idx = np.flatnonzero(rows.bucket >= cut)
                    deleted += len(rows) - len(keep_idx)
                    s.rollups[table] = [rows.take(keep_idx)]
        return deleted

    def count(self) -> int:
        with self._lock:
            self._check()
            return sum(sum(len(ch["ts"]) for ch in s.raw) for s in self._data.values())

    def compact(self) -> int:
        merged = 0
        with self._lock:
            self._check()
            for s in self._data.values():
                for name, chunks in s.rollups.items():
                    before = sum(len(c) for c in chunks)
                    s.rollups[name] = [combine(chunks, 1)]
                    merged += before - len(s.rollups[name][0])
        return merged

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._data.clear()
