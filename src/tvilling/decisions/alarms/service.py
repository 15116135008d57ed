"""Alarm steps with their side effects: de-duplication, propagation to parents, cascading lifecycle.

* A rule firing on a twin (:meth:`AlarmService.trigger`) folds into the open alarm of that
  (twin, rule group) if there is one (``count`` + 1, value refreshed, severity escalated),
  else raises a new alarm and, when the rule propagates, one **derived** alarm on each
  ancestor twin (``origin`` = the source twin, ``source`` = the source alarm's id), keyed by
  (ancestor, rule, origin) so an ancestor holds one open derived alarm per rule and origin.
* Derived alarms follow their source: re-triggers, acknowledgements and clears of the
  source are applied to them. Acknowledging or clearing a derived alarm acts on its
  source, and through it on every alarm derived from it.
* A condition back to normal (:meth:`AlarmService.resolve`) clears the alarm with actor
  ``"rule"`` and says so in ``note``; an acknowledged alarm clears the same way.
* Lists are one row per condition by default (:meth:`AlarmService.list`, ``grouped``): the
  source alarms, each shown (:meth:`AlarmService.view`) with ``affected``, the ancestors its
  copies are on; ``grouped=False`` gives the raw copies too.
* Shelving (:meth:`AlarmService.shelve`, :meth:`AlarmService.end_shelf`): an alarm raised on a
  twin a shelf covers, at the reading's time, carries the shelf (its copies too); so do the
  alarms open on those twins when the shelf is made. Ending a shelf early takes its alarms off
  it (onto another shelf covering them, if one is in effect).

Writes are compare-and-set: a step that lost a race re-reads and tries again.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from tvilling.core.errors import Conflict, NotFound
from tvilling.decisions.alarms import record as rec
from tvilling.decisions.alarms import shelves as sh
from tvilling.decisions.alarms.record import Alarm
from tvilling.decisions.alarms.shelves import Shelf
from tvilling.decisions.alarms.store import AlarmStore
from tvilling.security.audit_events import record as audit

RETRIES = 10
Move = Callable[[Alarm], tuple[Alarm, str]]


class AlarmService:
    """Read, acknowledge and clear alarms (API, CLI) and apply rule verdicts (the engine)."""

    def __init__(self, store: AlarmStore, *, clock: Callable[[], datetime] | None = None,
                 notify: Callable[[], None] | None = None, audit: Any = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.notify = notify
        #: where the operator steps are audited: a platform or twin service (None: the request's chain)
        self.audit = audit

    # -- reads ----------------------------------------------------------------------------
    def get(self, alarm_id: str) -> Alarm:
        return self.store.get(alarm_id)

    def list(self, *, state: str | None = None, twin: str | None = None, severity: str | None = None,
             rule: str | None = None, after: str | None = None, limit: int = 100, grouped: bool = True,
             shelved: bool | None = None) -> builtins.list[Alarm]:
        """Alarms newest first: one per condition (``grouped``), or every copy; ``shelved`` filters on
        whether a shelf holds them now."""
        return self.store.list(state=state, twin=twin, severity=severity, rule=rule, after=after, limit=limit,
                               grouped=grouped, shelved=shelved, now=self.clock())

    def view(self, alarms: Sequence[Alarm], *, grouped: bool = True) -> builtins.list[dict[str, Any]]:
        """The API representation of ``alarms`` (shelved as of now); ``grouped`` adds ``affected``: the
        twins the copies of each source alarm are on, nearest ancestor first."""
        now = self.clock()
        out = [a.to_json(now) for a in alarms]
        if grouped:
            affected = self.store.affected([a.id for a in alarms if a.source is None])
            for a, doc in zip(alarms, out, strict=True):
                doc["affected"] = affected.get(a.id, []) if a.source is None else []
        return out

    # -- shelving -------------------------------------------------------------------------
    def shelve(self, twin: str, *, twins: Sequence[str], duration_s: float, reason: str, actor: str = "api",
               subtree: bool = True) -> tuple[Shelf, int]:
        """Shelve the alarms of ``twins`` (``twin`` and, usually, its subtree) for ``duration_s`` seconds;
        returns the shelf and how many open conditions it took."""
        now = self.clock()
        shelf = sh.new_shelf(twin=twin, twins=twins, duration_s=duration_s, reason=reason, actor=actor, now=now,
                             subtree=subtree)
        self.store.add_shelf(shelf)
        taken = 0
        for alarm in self.store.open_on(shelf.twins):
            if alarm.source is not None or (alarm.shelved_at(now) and alarm.shelved_until is not None
                                            and alarm.shelved_until >= shelf.until):
                continue  # a copy (it follows its source), or held longer by another shelf
            self._cascade(alarm, lambda a: rec.shelve(a, shelf=shelf.id, until=shelf.until, now=now))
            taken += 1
        self._notify()
        audit(self.audit, actor, "alarm.shelve", f"twin:{twin}",
              {"shelf": shelf.id, "twins": len(shelf.twins), "duration_s": duration_s, "reason": reason[:300],
               "taken": taken})
        return shelf, taken

    def end_shelf(self, shelf_id: str, *, actor: str = "api") -> Shelf:
        """End a shelf now: its alarms count again (unless another shelf in effect covers them)."""
        now = self.clock()
        shelf = sh.end(self.store.get_shelf(shelf_id), now=now, actor=actor)
        self.store.update_shelf(shelf)
        others = [s for s in self.store.shelves(at=now) if s.id != shelf.id]
        for alarm in self.store.open_on(shelf.twins):
            if alarm.source is not None or alarm.shelf != shelf.id:
                continue
            other = sh.covering(others, alarm.twin, now)
            self._cascade(alarm, _reshelve(other, now))
        self._notify()
        audit(self.audit, actor, "alarm.unshelve", f"twin:{shelf.twin}", {"shelf": shelf.id})
        return shelf

    def shelves(self, *, active: bool | None = None, limit: int = 100) -> builtins.list[Shelf]:
        """Shelves newest first; ``active``: only those in effect now (True) or only the others (False)."""
        now = self.clock()
        if active:
            return self.store.shelves(at=now, limit=limit)
        found = self.store.shelves(limit=sh.MAX_LIST if active is False else limit)
        return found if active is None else [s for s in found if not s.in_effect(now)][:limit]

    # -- operator steps -------------------------------------------------------------------
    def acknowledge(self, alarm_id: str, *, actor: str = "api", note: str | None = None) -> Alarm:
        """``active → acknowledged`` for the alarm, its source and the source's derived alarms."""
        now = self.clock()
        done = self._operator_step(alarm_id, lambda a: rec.acknowledge(a, now=now, actor=actor, note=note))
        self._audit_step("alarm.ack", done, actor, note)
        return done

    def clear(self, alarm_id: str, *, actor: str = "api", note: str | None = None) -> Alarm:
        """``active | acknowledged → cleared`` for the alarm, its source and the source's derived alarms."""
        now = self.clock()
        done = self._operator_step(alarm_id, lambda a: rec.clear(a, now=now, actor=actor, note=note))
        self._audit_step("alarm.clear", done, actor, note)
        return done

    def _audit_step(self, action: str, alarm: Alarm, actor: str, note: str | None) -> None:
        audit(self.audit, actor, action, f"alarm:{alarm.id}",
              {"twin": alarm.twin, "rule": alarm.rule, "severity": alarm.severity, "state": alarm.state,
               "note": None if note is None else note[:300]})

    def _operator_step(self, alarm_id: str, move: Move) -> Alarm:
        alarm = self.store.get(alarm_id)
        move(alarm)  # raises Conflict (409) when illegal for the alarm asked for
        root = alarm if alarm.source is None else self._get_or(alarm.source, alarm)
        self._cascade(root, move)
        self._notify()
        return self.store.get(alarm_id)

    # -- rule verdicts ------------------------------------------------------------------------
    def trigger(self, *, twin: str, model: str | None, rule: str, severity: str, message: str, prop: str,
                value: Any, now: datetime, parents: Sequence[tuple[str, str | None]] = ()) -> Alarm:
        """A rule (group ``rule``) fired on ``twin``: fold into its open alarm, or raise a new one
        and its derived alarms on ``parents`` (ancestor id, model)."""
        key = rec.alarm_key(twin, rule)
        for _ in range(RETRIES):
            current = self.store.open_for(key)
            if current is not None:
                folded = self._fold(current, now=now, value=value, severity=severity, message=message)
                if folded is None:
                    continue
                self._follow(folded, parents)
                self._notify()
                return folded
            held = sh.covering(self.store.shelves(at=now), twin, now)
            alarm = rec.new_alarm(twin=twin, model=model, rule=rule, severity=severity, message=message,
                                  prop=prop, value=value, now=now, shelf=None if held is None else held.id,
                                  shelved_until=None if held is None else held.end_time)
            try:
                self.store.add(alarm)
            except Conflict as exc:
                if exc.fields.get("rule") == "open_exists":
                    continue  # raised by another worker meanwhile: fold into it
                raise
            self._follow(alarm, parents)
            self._notify()
            return alarm
        raise Conflict(f"alarm for {twin!r}/{rule!r} kept changing; try again", twin=twin, rule="contention")

    def resolve(self, *, twin: str, rule: str, now: datetime, note: str) -> Alarm | None:
        """The condition of rule group ``rule`` on ``twin`` is normal again: auto-clear its open alarm."""
        current = self.store.open_for(rec.alarm_key(twin, rule))
        if current is None:
            return None
        self._cascade(current, lambda a: rec.clear(a, now=now, actor=rec.RULE_ACTOR, note=note, reading=now))
        self._notify()
        return self.store.get(current.id)

    # -- helpers ------------------------------------------------------------------------------
    def _fold(self, alarm: Alarm, **kw: Any) -> Alarm | None:
        new, kind = rec.fold(alarm, **kw)
        try:
            self.store.update(new, kind)
        except Conflict as exc:
            if exc.fields.get("rule") == "stale_version":
                return None
            raise
        return new

    def _follow(self, source: Alarm, parents: Sequence[tuple[str, str | None]]) -> None:
        """Bring the derived alarms of ``source`` on ``parents`` in line with it (raise or fold)."""
        for parent, model in parents:
            if parent == source.twin:
                continue
            key = rec.alarm_key(parent, source.rule, source.origin)
            for _ in range(RETRIES):
                current = self.store.open_for(key)
                if current is not None:
                    if current.count == source.count and current.source == source.id \
                            and current.severity == source.severity:
                        break
                    new, kind = rec.fold(current, now=source.updated, value=source.value, severity=source.severity,
                                         message=source.message, count=source.count)
                    new = msgspec.structs.replace(new, source=source.id)
                    try:
                        self.store.update(new, kind)
                        break
                    except Conflict as exc:
                        if exc.fields.get("rule") != "stale_version":
                            raise
                        continue
                derived = rec.new_alarm(twin=parent, model=model, rule=source.rule, severity=source.severity,
                                        message=source.message, prop=source.property, value=source.value,
                                        now=source.updated, origin=source.origin, source=source.id,
                                        shelf=source.shelf, shelved_until=source.shelved_until)
                try:
                    self.store.add(derived)
                    break
                except Conflict as exc:
                    if exc.fields.get("rule") != "open_exists":
                        raise

    def _cascade(self, root: Alarm, move: Move) -> None:
        """Apply ``move`` to ``root`` and its derived alarms, skipping those where it is not legal."""
        for alarm in [root, *self.store.derived(root.id)]:
            for _ in range(RETRIES):
                try:
                    new, kind = move(alarm)
                except Conflict:
                    break  # already there (or beyond)
                try:
                    self.store.update(new, kind)
                    break
                except Conflict as exc:
                    if exc.fields.get("rule") != "stale_version":
                        raise
                    alarm = self.store.get(alarm.id)

    def _get_or(self, alarm_id: str, default: Alarm) -> Alarm:
        try:
            return self.store.get(alarm_id)
        except NotFound:
            return default

    def _notify(self) -> None:
        if self.notify is not None:
            self.notify()


def _reshelve(shelf: Shelf | None, now: datetime) -> Move:
    """The move putting an alarm on ``shelf`` (None: off any shelf)."""
    if shelf is None:
        return lambda a: rec.shelve(a, shelf=None, until=None, now=now)
    return lambda a: rec.shelve(a, shelf=shelf.id, until=shelf.end_time, now=now)
