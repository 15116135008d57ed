"""Stateful evaluation of one rule on one twin, on the readings' own timestamps.

:class:`RuleState` turns a stream of ``(time, value)`` readings into verdicts: ``RAISE``
when the raise condition has held for the rule's ``for_s`` and at least ``reraise_s`` have
passed since the last clear (a reading at the end of that span is needed: timers advance
with data time, never the wall clock), ``CLEAR`` when the signal has been back past the
clear (hysteresis) level for ``clear_for_s``, else ``None``. A reading older than the last
one seen is ignored (late data never re-orders a decision).

>>> from datetime import UTC, datetime, timedelta
>>> from tvilling.decisions.alarms.rules import parse_rule
>>> rule = parse_rule({"name": "hot", "model": "dtmi:a:B;1", "property": "t", "kind": "threshold",
...                    "severity": "major", "above": 90, "clear": 85, "for_s": 10})
>>> state, t0 = RuleState(rule), datetime(2024, 5, 1, tzinfo=UTC)
>>> [state.observe(t0 + timedelta(seconds=s), v) for s, v in [(0, 91), (5, 92), (10, 93), (11, 87), (12, 84)]]
[None, None, 'raise', None, 'clear']
>>> [state.observe(t0 + timedelta(seconds=s), v) for s, v in [(20, 95), (40, 95), (71, 95), (72, 95)]]
[None, None, None, 'raise']
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Final

from tvilling.decisions.alarms.rules import Rule

RAISE: Final = "raise"
CLEAR: Final = "clear"
MAX_WINDOW = 10_000  # readings kept for a rate window


class RuleState:
    """Where one rule stands for one twin: latched or not, the pending raise, the last readings."""

    __slots__ = ("_recent", "clear_since", "cleared_at", "in_alarm", "last_time", "pending_since", "rule", "signal")

    def __init__(self, rule: Rule, *, in_alarm: bool = False) -> None:
        self.rule = rule
        self.in_alarm = in_alarm
        self.pending_since: datetime | None = None
        self.clear_since: datetime | None = None  # since when the signal is back (for clear_for_s)
        self.cleared_at: datetime | None = None  # data time of the last clear (for reraise_s)
        self.last_time: datetime | None = None
        self.signal: float | None = None  # the last signal evaluated (the value, or the rate)
        self._recent: deque[tuple[datetime, float]] = deque()

    def observe(self, ts: datetime, value: float) -> str | None:
        """Feed one reading; returns ``"raise"``, ``"clear"`` or ``None``."""
        if self.last_time is not None and ts < self.last_time:
            return None
        signal = self._signal(ts, value)
        self.last_time = ts
        if signal is None:
            return None
        self.signal = signal
        rule = self.rule
        if self.in_alarm:
            if not rule.clears(signal):
                self.clear_since = None
                return None
            if self.clear_since is None:
                self.clear_since = ts
            if (ts - self.clear_since).total_seconds() < rule.clear_for_s:
                return None
            self.in_alarm = False
            self.pending_since = self.clear_since = None
            if rule.auto_clear:  # the guard is for alarms that cleared: an operator's stays open
                self.cleared_at = ts
            return CLEAR
        if not rule.raises(signal):
            self.pending_since = None
            return None
        if self.pending_since is None:
            self.pending_since = ts
        if (ts - self.pending_since).total_seconds() < rule.for_s:
            return None
        if self.cleared_at is not None and (ts - self.cleared_at).total_seconds() < rule.reraise_s:
            return None  # the re-raise guard: too soon after the last clear
        self.in_alarm = True
        self.pending_since = None
        return RAISE

    def _signal(self, ts: datetime, value: float) -> float | None:
        if self.rule.kind != "rate":
            return value
        recent = self._recent
        if recent and recent[-1][0] == ts:
            return None  # a duplicate time has no rate
        base: tuple[datetime, float] | None = None
        if recent:
            if self.rule.window_s:
                while len(recent) > 1 and (ts - recent[1][0]).total_seconds() >= self.rule.window_s:
                    recent.popleft()
                base = recent[0]
            else:
                base = recent[-1]
        recent.append((ts, value))
        if not self.rule.window_s:
            while len(recent) > 1:
                recent.popleft()
        elif len(recent) > MAX_WINDOW:
            recent.popleft()
        if base is None:
            return None
        return (value - base[1]) / (ts - base[0]).total_seconds()
