"""The alarm engine: twin events in, rules evaluated on the reported values they change, alarms out.

:meth:`AlarmEngine.process` reads each event's reported values (a patch, or the whole
state of a created/replaced twin), runs every rule that applies to the twin's model (a
rule on a model applies to the models extending it) and hands the verdicts to the
:class:`~tvilling.decisions.alarms.service.AlarmService`. Each reading is timed by its
property's metadata time (the data time the ingest pipeline or a patch's ``time``
recorded), else by the event's time, so evaluation is deterministic on replay.

Parents for propagation are the twins with a relationship *to* the alarmed twin,
transitively up to the roots; they are cached and the cache is dropped whenever a
relationship changes or a twin is deleted. When a rule's state for a twin is first
needed it resumes from the twin's last alarm of the rule's group: latched while that
alarm is open (or was cleared by an operator rather than by its rule), and readings
older than the last one the alarm recorded are ignored, and the re-raise guard
(``reraise_s``) runs from the data time of the rule's last clear. So a restarted engine,
or a batch evaluated twice, neither raises an alarm again nor forgets to clear it; a
``for_s`` (or ``clear_for_s``) timer that was running when the process stopped starts again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from tvilling.core import events as ev
from tvilling.core.errors import NotFound, TvillingError
from tvilling.core.events import Event
from tvilling.decisions.alarms.evaluate import RAISE, RuleState
from tvilling.decisions.alarms.record import RANK, RULE_ACTOR, alarm_key
from tvilling.decisions.alarms.rules import Rule, render
from tvilling.decisions.alarms.service import AlarmService
from tvilling.twins.service import TwinService

log = logging.getLogger("tvilling.alarms")
MAX_DEPTH = 32  # ancestors followed upwards
MAX_CACHE = 100_000
_STATE_EVENTS = frozenset({ev.TWIN_CREATED, ev.TWIN_REPLACED, ev.TWIN_PATCHED, ev.TWIN_MIGRATED})
_GRAPH_EVENTS = frozenset({ev.RELATIONSHIP_SET, ev.RELATIONSHIP_DELETED, ev.TWIN_DELETED})


class AlarmEngine:
    """Evaluates alarm rules on twin events (call :meth:`process` from one thread at a time)."""

    def __init__(self, twins: TwinService, rules: Sequence[Rule], alarms: AlarmService) -> None:
        self.twins = twins
        self.rules = tuple(rules)
        self.alarms = alarms
        self._groups: dict[str, list[Rule]] = {}
        for r in self.rules:
            self._groups.setdefault(r.group, []).append(r)
        self._models: dict[str, str | None] = {}  # twin -> model
        self._applies: dict[str, tuple[Rule, ...]] = {}  # model -> rules
        self._states: dict[tuple[str, str], RuleState] = {}  # (rule, twin)
        self._parents: dict[str, list[tuple[str, str | None]]] = {}

    def process(self, events: Iterable[Event]) -> int:
        """Evaluate the rules on a batch of events (in feed order); returns the number of verdicts."""
        events = list(events)
        if not self.rules:
            return 0
        self._learn_models(events)
        count = 0
        for e in events:
            if e.type in _GRAPH_EVENTS:
                self._parents.clear()
            if e.type == ev.TWIN_DELETED:
                self._forget(e)
                continue
            if e.type not in _STATE_EVENTS:
                continue
            reported = e.payload.get("reported")
            if not isinstance(reported, Mapping) or not reported:
                continue
            model = self._models.get(e.twin)
            fired: dict[str, list[tuple[Rule, str, float, datetime]]] = {}
            for rule in self._rules_for(model):
                value = _number(_lookup(reported, rule.path))
                if value is None:
                    continue
                state = self._state(rule, e.twin)
                ts = data_time(e, rule.property)
                verdict = state.observe(ts, value)
                if verdict is not None:
                    signal = state.signal if state.signal is not None else value
                    fired.setdefault(rule.group, []).append((rule, verdict, signal, ts))
            for group, verdicts in fired.items():
                count += self._apply(e.twin, model, group, verdicts)
        return count

    # -- evaluation ---------------------------------------------------------------------------
    def _apply(self, twin: str, model: str | None, group: str,
               fired: list[tuple[Rule, str, float, datetime]]) -> int:
        """One reading's verdicts for one rule group: one trigger (the most severe rule that fired),
        or one auto-clear once no rule of the group holds the alarm."""
        raised = [f for f in fired if f[1] == RAISE]
        if raised:
            rule, _, signal, ts = max(raised, key=lambda f: RANK[f[0].severity])
            message = render(rule, twin=twin, model=model, value=signal)
            parents = self._ancestors(twin) if rule.propagate else []
            self.alarms.trigger(twin=twin, model=model, rule=group, severity=rule.severity, message=message,
                                prop=rule.property, value=signal, now=ts, parents=parents)
            return 1
        rule, _, signal, ts = fired[-1]
        holding = (self._states.get((r.name, twin)) for r in self._groups[group])
        if not rule.auto_clear or any(s is not None and s.in_alarm for s in holding):
            return 0  # left to an operator, or another rule of the group still holds the alarm
        side = "below" if rule.rising else "above"
        level = rule.level if rule.clear is None else rule.clear
        note = f"cleared by rule {rule.name}: {rule.property} at {signal:.6g}, back {side} {level:.6g}"
        self.alarms.resolve(twin=twin, rule=group, now=ts, note=note)
        return 1

    def _state(self, rule: Rule, twin: str) -> RuleState:
        state = self._states.get((rule.name, twin))
        if state is None:
            state = self._states[(rule.name, twin)] = RuleState(rule)
            last = self.alarms.store.last_for(alarm_key(twin, rule.group))
            if last is not None:  # resume from the last alarm: latched unless its rule cleared it
                latched = last.is_open or last.cleared_by != RULE_ACTOR
                state.in_alarm = latched and RANK[rule.severity] <= RANK[last.severity]
                state.last_time = last.reading
                if not latched:
                    state.cleared_at = last.reading  # the re-raise guard runs from the rule's clear
        return state

    def _forget(self, event: Event) -> None:
        """A deleted twin: its open alarms clear (actor ``rule``), its rule states go."""
        for group in self._groups:
            self.alarms.resolve(twin=event.twin, rule=group, now=event.time, note="cleared: the twin was deleted")
        for rule in self.rules:
            self._states.pop((rule.name, event.twin), None)
        self._models.pop(event.twin, None)

    # -- models and rules ---------------------------------------------------------------------
    def _learn_models(self, events: Sequence[Event]) -> None:
        unknown: set[str] = set()
        for e in events:
            model = e.payload.get("to") if e.type == ev.TWIN_MIGRATED else e.payload.get("model") \
                if e.type in (ev.TWIN_CREATED, ev.TWIN_REPLACED) else None
            if isinstance(model, str):
                self._models[e.twin] = model
            elif e.twin not in self._models and e.type in _STATE_EVENTS:
                unknown.add(e.twin)
        if unknown:
            if len(self._models) > MAX_CACHE:
                self._models.clear()
            found = self.twins.store.get_many(sorted(unknown))
            for twin in unknown:
                self._models[twin] = found[twin].model if twin in found else None

    def _rules_for(self, model: str | None) -> tuple[Rule, ...]:
        if model is None:
            return ()
        rules = self._applies.get(model)
        if rules is None:
            registry = self.twins.models
            try:
                registry.reload_if_unknown(model)
                rules = tuple(r for r in self.rules if registry.modelset.is_a(model, r.model))
            except TvillingError as exc:
                log.warning("alarm rules skip twins of model %s: %s", model, exc.message)
                rules = ()
            self._applies[model] = rules
        return rules

    # -- propagation --------------------------------------------------------------------------
    def _ancestors(self, twin: str) -> list[tuple[str, str | None]]:
        """Twins with a relationship to ``twin``, and theirs, up to the roots (nearest first)."""
        cached = self._parents.get(twin)
        if cached is not None:
            return cached
        seen = {twin}
        order: list[str] = []
        frontier = [twin]
        for _ in range(MAX_DEPTH):
            nxt: list[str] = []
            for t in frontier:
                try:
                    incoming = self.twins.store.incoming(t)
                except NotFound:
                    continue
                for source, _rel in incoming:
                    if source not in seen:
                        seen.add(source)
                        order.append(source)
                        nxt.append(source)
            if not nxt:
                break
            frontier = nxt
        found = self.twins.store.get_many(order) if order else {}
        out: list[tuple[str, str | None]] = [(t, found[t].model) for t in order if t in found]
        if len(self._parents) > MAX_CACHE:
            self._parents.clear()
        self._parents[twin] = out
        return out


def _lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def data_time(event: Event, prop: str) -> datetime:
    """The time of the reading of ``prop`` in ``event``: its metadata time, else the event's time.

    Metadata is keyed by the dotted path (ingest) or by the top-level name (patches); the
    longest key that covers ``prop`` wins.
    """
    meta = event.payload.get("metadata")
    reported = meta.get("reported") if isinstance(meta, Mapping) else None
    if isinstance(reported, Mapping):
        parts = prop.split(".")
        for n in range(len(parts), 0, -1):
            stamp = reported.get(".".join(parts[:n]))
            if isinstance(stamp, Mapping) and isinstance(stamp.get("time"), str):
                try:
                    return datetime.fromisoformat(stamp["time"].replace("Z", "+00:00"))
                except ValueError:
                    break
    return event.time
