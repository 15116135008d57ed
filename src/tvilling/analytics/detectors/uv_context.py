"""Contextual novelty of a single stream: has this value level, after these last few levels, been seen before?

Values are quantised onto a fixed grid of ``levels`` steps spanning the warm-up range (learned once, at the
end of the warm-up; values beyond the range get levels below 0 or at/above ``levels``). The range is robust:
from the ``trim`` to the ``1 − trim`` quantile of the warm-up values, so that one or two outliers in the
warm-up do not stretch the grid until all ordinary values share a level (``trim=0`` spans min to max). For each row the
learner checks, for every context length ``k = 1..orders``, whether the pair (last ``k`` levels, current
level) was ever seen, and whether the level itself was ever seen. It reports

* ``new_level`` — the level was never seen (a value in a region the stream has never visited);
* ``novelty`` — the share of the ``orders`` contexts whose continuation is new (``0`` = fully familiar
  pattern, ``1`` = a sequence never seen at any context length).

Everything is learned from the past only: a row is checked and then remembered.

>>> c = ContextNovelty(levels=4, orders=2)
>>> c.start([0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0])
[0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
>>> c.step(0.0), c.step(2.0), c.step(9.0)
((False, 0.0), (False, 1.0), (True, 1.0))
>>> r = ContextNovelty(levels=4, trim=0.1)
>>> _ = r.start([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1000.0])  # grid over 1..9, step 2
>>> r.level(0.0), r.level(1.0), r.level(8.9), r.level(1000.0)
(-1, 0, 3, 499)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

__all__ = ["ContextNovelty"]


def _quantile(ordered: Sequence[float], p: float) -> float:
    """Linearly interpolated ``p``-quantile of sorted values."""
    pos = p * (len(ordered) - 1)
    i = min(int(pos), len(ordered) - 1)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (ordered[j] - ordered[i]) * (pos - i)


class ContextNovelty:
    """Variable-order context novelty over a coarse, fixed value grid (learned from the warm-up values)."""

    def __init__(self, levels: int = 8, orders: int = 4, trim: float = 0.0) -> None:
        if levels < 1 or orders < 1:
            raise ValueError("levels and orders must be positive")
        if not 0.0 <= trim < 0.5:
            raise ValueError("trim must lie in [0, 0.5)")
        self.levels = levels
        self.orders = orders
        self.trim = trim
        self._lo = 0.0
        self._step = 1.0
        self._seen: set[tuple[int, ...]] = set()
        self._recent: deque[int] = deque(maxlen=orders)
        self.ready = False

    def start(self, warmup: Sequence[float]) -> list[float]:
        """Fix the grid from the warm-up values, learn them, and return their novelty (for calibration)."""
        vals = [v for v in warmup if math.isfinite(v)]
        if not vals:
            raise ValueError("warm-up needs at least one finite value")
        ordered = sorted(vals)
        lo, hi = _quantile(ordered, self.trim), _quantile(ordered, 1.0 - self.trim)
        mean = sum(vals) / len(vals)
        # A flat warm-up still gets a usable step: 0.1 % of its level (and never zero).
        self._lo = lo
        self._step = max((hi - lo) / self.levels, 1e-3 * abs(mean), 1e-9)
        self.ready = True
        return [self.step(v)[1] for v in vals]

    def level(self, x: float) -> int:
        """Grid level of a value."""
        return math.floor((x - self._lo) / self._step)

    def step(self, x: float) -> tuple[bool, float]:
        """``(new_level, novelty)`` of ``x`` given everything seen so far; ``x`` is then learned."""
        q = self.level(x)
        seen = self._seen
        key0 = (q,)
        new_level = key0 not in seen
        if new_level:
            seen.add(key0)
        ctx = list(self._recent)
        novel = 0
        for k in range(1, len(ctx) + 1):
            key = (*ctx[-k:], q)  # lengths differ from the 1-tuples of levels, so no clash
            if key not in seen:
                novel += 1
                seen.add(key)
        self._recent.append(q)
        return new_level, novel / self.orders
