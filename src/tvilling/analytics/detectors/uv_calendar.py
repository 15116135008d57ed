"""Calendar context of a single stream: has this value level been seen at this time of day (and week)?

Many monitored streams follow the clock: traffic, taxi demand and server load rise and fall with the hour
and the weekday. A value that is ordinary for the stream can still be out of place *for the hour*: a
weekday that looks like a Sunday (a holiday), a night as busy as a day. :class:`CalendarNovelty` keeps the
set of ``(slot, level)`` pairs seen so far, where a slot is the hour of the day (``day``) or the hour of
the week (``week``), and reports for each row the share of its calendar contexts that are new.

Timestamps are seconds since the Unix epoch (UTC or local, whichever the stream uses: only differences
within a day and a week matter). Rows are checked, then learned: the past only.

>>> c = CalendarNovelty(("day",))
>>> c.step(3, 0.0), c.step(3, 3600.0 * 24), c.step(5, 3600.0 * 24)
(1.0, 0.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CALENDARS", "CalendarNovelty"]

_HOUR = 3600.0
CALENDARS: dict[str, int] = {"day": 24, "week": 24 * 7}
"""Calendar contexts: name → number of hour slots in its cycle."""


class CalendarNovelty:
    """Share of never-seen ``(calendar slot, level)`` pairs among the chosen calendars."""

    def __init__(self, calendars: Sequence[str] = ("day", "week"), slot_hours: float = 1.0) -> None:
        unknown = [c for c in calendars if c not in CALENDARS]
        if unknown or not calendars:
            raise ValueError(f"calendars must be a non-empty subset of {sorted(CALENDARS)}")
        if slot_hours <= 0.0:
            raise ValueError("slot_hours must be positive")
        self.calendars = tuple(calendars)
        self.slot_hours = slot_hours
        self._cycles = [(i, int(CALENDARS[c] / slot_hours)) for i, c in enumerate(self.calendars)]
        self._seen: set[tuple[int, int, int]] = set()

    def step(self, level: int, t: float) -> float:
        """Share of the calendars in which ``level`` is new at time ``t`` (seconds); then learned."""
        slot = int(t // (_HOUR * self.slot_hours))
        novel = 0
        seen = self._seen
        for i, cycle in self._cycles:
            key = (i, slot % cycle, level)
            if key not in seen:
                novel += 1
                seen.add(key)
        return novel / len(self._cycles)
