"""Shelves: a person silences a twin's alarms (and its subtree's) for a while, with a reason.

A :class:`Shelf` covers a fixed set of twins (the twin and, unless ``subtree`` is false, the
twins below it along relationships when it was made) from ``start`` until ``until``, or
until someone ends it early. While a shelf is in effect, conditions on a covered twin are
still evaluated and recorded as alarms, but those alarms carry the shelf (``shelf``,
``shelved_until``) and are *shelved*: left out of badges and counts, and not shown as new
active alarms. Alarms already open on a covered twin when the shelf is made are shelved
too. A shelf ends by itself at ``until``; nothing has to run for that.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 5, 1, 8, tzinfo=UTC)
>>> s = new_shelf(twin="M1", twins=["M1", "B1"], duration_s=parse_duration("30m"), reason="planned stop",
...               actor="ann", now=t0)
>>> (s.until - s.start, s.covers("B1", t0 + timedelta(minutes=10)), s.covers("B1", s.until))
(datetime.timedelta(seconds=1800), True, False)
>>> end(s, now=t0 + timedelta(minutes=5), actor="bob").in_effect(t0 + timedelta(minutes=6))
False
>>> parse_duration("1h30m"), parse_duration(90), parse_duration("2d")
(5400.0, 90.0, 172800.0)
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from tvilling.core.errors import Conflict, Invalid

MAX_SHELF_S: Final = 7 * 24 * 3600.0  # a week: a longer silence is a change of the rules, not a shelf
MAX_REASON: Final = 500
MAX_TWINS: Final = 10_000
MAX_LIST: Final = 1000
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)\s*([smhd]))+?", re.IGNORECASE)
_WHOLE = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*[smhd]\s*)+", re.IGNORECASE)


class Shelf(msgspec.Struct, frozen=True, kw_only=True):
    """One shelf. ``twins``: the twins it covers; ``ended``: set when someone ends it early."""

    id: str
    twin: str
    subtree: bool
    twins: tuple[str, ...]
    start: datetime
    until: datetime
    reason: str
    actor: str
    ended: datetime | None = None
    ended_by: str | None = None

    @property
    def end_time(self) -> datetime:
        """When it stops (or stopped) being in effect."""
        return self.until if self.ended is None else min(self.ended, self.until)

    def in_effect(self, at: datetime) -> bool:
        return self.start <= at < self.end_time

    def covers(self, twin: str, at: datetime) -> bool:
        return self.in_effect(at) and twin in self.twins

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The API representation; ``active`` is whether it is in effect at ``now`` (default: its start)."""
        from tvilling.decisions.alarms.record import iso, iso_or_none

        return {"id": self.id, "twin": self.twin, "subtree": self.subtree, "twins": list(self.twins),
                "start": iso(self.start), "until": iso(self.until), "reason": self.reason, "actor": self.actor,
                "ended": iso_or_none(self.ended), "ended_by": self.ended_by,
                "active": self.in_effect(now or self.start)}


def parse_duration(value: Any, *, field: str = "for") -> float:
    """Seconds from ``"30m"``, ``"1h30m"``, ``"45s"``, ``"2d"`` or a number of seconds; ``Invalid`` naming
    ``field`` unless it is between 1 second and a week."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 40:
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _WHOLE.fullmatch(text):
            seconds = sum(float(n) * _UNITS[u.lower()] for n, u in _DURATION.findall(text))
    if seconds is None or not math.isfinite(seconds):
        raise Invalid(f"{field} must be a duration such as \"30m\", \"2h\", \"1h30m\" or a number of seconds; "
                      f"got {value!r}", field=field, rule="duration")
    if not 1 <= seconds <= MAX_SHELF_S:
        raise Invalid(f"{field} must be between 1 s and 7 days; got {seconds:g} s", field=field, rule="range")
    return seconds


def check_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason is required: say why the alarms are shelved (e.g. \"planned stop\")",
                      field="reason", rule="required")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason is longer than {MAX_REASON} characters", field="reason", rule="length")
    return reason.strip()


def new_shelf(*, twin: str, twins: Iterable[str], duration_s: float, reason: str, actor: str, now: datetime,
              subtree: bool = True) -> Shelf:
    """A shelf from ``now`` for ``duration_s`` seconds over ``twins`` (the twin itself always included)."""
    covered = list(dict.fromkeys([twin, *twins]))
    if len(covered) > MAX_TWINS:
        raise Invalid(f"a shelf covers at most {MAX_TWINS} twins; {twin!r} has {len(covered)} below it",
                      field="twin", rule="range")
    return Shelf(id=str(uuid.uuid4()), twin=twin, subtree=subtree, twins=tuple(covered), start=now,
                 until=now + timedelta(seconds=parse_duration(duration_s)), reason=check_reason(reason),
                 actor=actor[:128] or "api")


def end(shelf: Shelf, *, now: datetime, actor: str) -> Shelf:
    """End a shelf early; ``Conflict`` (rule ``transition``) when it is over already."""
    if now >= shelf.end_time:
        raise Conflict(f"shelf {shelf.id} is over already", shelf=shelf.id, rule="transition")
    return msgspec.structs.replace(shelf, ended=max(now, shelf.start), ended_by=actor[:128])


def covering(shelves: Iterable[Shelf], twin: str, at: datetime) -> Shelf | None:
    """Of the shelves covering ``twin`` at ``at``, the one that lasts longest."""
    best: Shelf | None = None
    for s in shelves:
        if s.covers(twin, at) and (best is None or s.end_time > best.end_time):
            best = s
    return best


def descendants(root: str, children: Any, *, limit: int = MAX_TWINS) -> list[str]:
    """``root`` and the twins below it: ``children(twin)`` gives the targets of a twin's relationships
    (a twin that has vanished meanwhile may raise ``NotFound``: it has no children)."""
    from tvilling.core.errors import NotFound

    seen = {root}
    order = [root]
    frontier = [root]
    while frontier and len(order) <= limit:
        nxt: list[str] = []
        for twin in frontier:
            try:
                targets = children(twin)
            except NotFound:
                continue
            for t in targets:
                if t not in seen:
                    seen.add(t)
                    order.append(t)
                    nxt.append(t)
        frontier = nxt
    return order
