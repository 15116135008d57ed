"""Series ids: each (twin, property) pair is stored as a small integer.

Turning the batch's two string columns into ids: telemetry arrives in runs of one series
(a device's message, a columnar item), so the rows are compared with their neighbours in
NumPy (identical strings compare by identity) and the dictionary is asked once per run —
1.4 ms for 100k rows in runs of 100, against 7.7 ms for a C-level ``map`` of ``dict.get``
over every pair (and 52 ms for ``np.unique`` on the string columns, 35 ms for letting
DuckDB join the strings). Short runs take the per-row ``map``.
New pairs are handed to the adapter to be given ids, once per pair, not per reading.

>>> idx = SeriesIndex()
>>> idx.add([(1, "B1", "t")])
>>> ids, new = idx.lookup(np.array(["B1", "B2"], dtype=object), np.array(["t", "t"], dtype=object))
>>> ids.tolist(), new
([1, -1], [('B2', 't')])
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid


class SeriesIndex:
    """An in-process cache of ``(twin, prop) -> id``; ids are never reused or changed."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._by_twin: dict[str, dict[str, int]] = {}

    def add(self, rows: Iterable[tuple[int, str, str]]) -> None:
        for sid, twin, prop in rows:
            self._ids[(twin, prop)] = sid
            self._by_twin.setdefault(twin, {})[prop] = sid

    def get(self, twin: str, prop: str) -> int | None:
        return self._ids.get((twin, prop))

    def of_twin(self, twin: str) -> dict[str, int]:
        return dict(self._by_twin.get(twin, {}))

    def items(self) -> list[tuple[int, str, str]]:
        return [(sid, twin, prop) for (twin, prop), sid in self._ids.items()]

    def __len__(self) -> int:
        return len(self._ids)

    def lookup(self, twin: npt.NDArray[np.object_],
               prop: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.int64], list[tuple[str, str]]]:
        """Ids per row (-1 where unknown) and the distinct unknown pairs, in first-seen order."""
        n = len(twin)
        if not n:
            return np.empty(0, dtype=np.int64), []
        # telemetry comes in runs of one series: one dictionary look-up per run, not per row
        starts = np.flatnonzero(np.concatenate([[True], (twin[1:] != twin[:-1]) | (prop[1:] != prop[:-1])]))
        if len(starts) * 4 < n:
            run_ids = np.fromiter(map(self._ids.get, zip(twin[starts].tolist(), prop[starts].tolist(), strict=True),
                                      repeat(-1)), dtype=np.int64, count=len(starts))
            ids = np.repeat(run_ids, np.diff(np.append(starts, n)))
        else:
            ids = np.fromiter(map(self._ids.get, zip(twin, prop, strict=True), repeat(-1)), dtype=np.int64, count=n)
        unknown = np.flatnonzero(ids < 0)
        if not len(unknown):
            return ids, []
        new = list(dict.fromkeys(zip(twin[unknown], prop[unknown], strict=True)))
        for twin_id, prop_name in new:
            if not isinstance(twin_id, str) or not isinstance(prop_name, str) or not twin_id or not prop_name:
                raise Invalid("a reading's twin and prop must be non-empty strings",
                              twin=repr(twin_id), prop=repr(prop_name), rule="series")
        return ids, new

    def encode(self, twin: npt.NDArray[np.object_], prop: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
        """Ids per row; every pair must be known (call ``lookup`` and register the new ones first)."""
        ids, new = self.lookup(twin, prop)
        if new:
            raise KeyError(f"unregistered series {new[:3]}")
        return ids
