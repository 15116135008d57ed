"""A columnar batch of readings: the unit in which telemetry moves from ingest into history.

One row is one value of one property of one twin at one instant. Columns are NumPy
arrays of equal length, so the hot path never loops over readings in Python.

>>> r = Readings.from_rows([("B1", "temperature", 1_767_225_600_000_000, 71.5)])
>>> len(r), r.value.tolist(), r.quality.tolist()
(1, [71.5], [0])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

# quality codes (the `quality` column)
GOOD, UNCERTAIN, BAD = 0, 1, 2
QUALITY_NAMES = ("good", "uncertain", "bad")

# flag bits (the `flags` column): why a reading was marked, never dropped
SPIKE = 1 << 0  # far outside the recent distribution of its series
LATE = 1 << 1  # arrived after newer readings of its series (re-ordered into place)
STALE = 1 << 2  # the series had been silent longer than expected before this reading
CONVERTED = 1 << 3  # the value was converted from another unit
FLAG_NAMES = {SPIKE: "spike", LATE: "late", STALE: "stale", CONVERTED: "converted"}


def flag_names(bits: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if bits & bit]


@dataclass(frozen=True)
class Readings:
    """Equal-length columns. ``ts`` is microseconds since the Unix epoch (UTC).

    ``value`` holds numbers; a non-numeric reading (string, boolean, enum) has ``value``
    NaN and its JSON text in ``text`` (``text`` is None when the batch is all numeric).
    """

    twin: npt.NDArray[np.object_]
    prop: npt.NDArray[np.object_]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8] = field(default=None)  # type: ignore[arg-type]
    flags: npt.NDArray[np.uint16] = field(default=None)  # type: ignore[arg-type]
    text: npt.NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = len(self.ts)
        if self.quality is None:
            object.__setattr__(self, "quality", np.zeros(n, dtype=np.uint8))
        if self.flags is None:
            object.__setattr__(self, "flags", np.zeros(n, dtype=np.uint16))
        for name in ("twin", "prop", "value", "quality", "flags"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Readings column {name!r} has {len(getattr(self, name))} rows, ts has {n}")
        if self.text is not None and len(self.text) != n:
            raise ValueError(f"Readings column 'text' has {len(self.text)} rows, ts has {n}")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> Readings:
        return cls.from_rows([])

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Readings:
        """From ``(twin, prop, ts_us, value[, quality[, flags]])`` tuples; a str/bool value goes to ``text``."""
        rows = list(rows)
        n = len(rows)
        twin = np.empty(n, dtype=object)
        prop = np.empty(n, dtype=object)
        ts = np.empty(n, dtype=np.int64)
        value = np.full(n, np.nan)
        quality = np.zeros(n, dtype=np.uint8)
        flags = np.zeros(n, dtype=np.uint16)
        text = None
        for i, row in enumerate(rows):
            twin[i], prop[i], ts[i] = row[0], row[1], row[2]
            v = row[3]
            if isinstance(v, int | float) and not isinstance(v, bool):
                value[i] = v
            else:
                if text is None:
                    text = np.full(n, None, dtype=object)
                import json

                text[i] = json.dumps(v)
            if len(row) > 4:
                quality[i] = row[4]
            if len(row) > 5:
                flags[i] = row[5]
        return cls(twin, prop, ts, value, quality, flags, text)

    def take(self, index: npt.NDArray[Any]) -> Readings:
        """The rows at ``index`` (an integer or boolean array), in that order."""
        return Readings(self.twin[index], self.prop[index], self.ts[index], self.value[index],
                        self.quality[index], self.flags[index],
                        None if self.text is None else self.text[index])

    @staticmethod
    def concat(parts: Sequence[Readings]) -> Readings:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Readings.empty()
        text = None
        if any(p.text is not None for p in parts):
            text = np.concatenate([p.text if p.text is not None else np.full(len(p), None, dtype=object)
                                   for p in parts])
        return Readings(
            np.concatenate([p.twin for p in parts]), np.concatenate([p.prop for p in parts]),
            np.concatenate([p.ts for p in parts]), np.concatenate([p.value for p in parts]),
            np.concatenate([p.quality for p in parts]), np.concatenate([p.flags for p in parts]), text,
        )
