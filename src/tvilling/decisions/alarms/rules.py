"""Alarm rules: configuration (a list of tables in ``tvilling.toml``, or dicts) parsed and checked.

A rule watches one reported property (a dotted path such as ``motor.temperature``) of
every twin of a model, or of a model extending it. Three kinds reduce to one level
test on a signal:

* ``threshold``: the signal is the property's value; raise when it is ``≥ above`` (or
  ``≤ below``), clear once it is back ``< clear`` (or ``> clear``). ``clear`` is the
  hysteresis level; it defaults to the threshold itself.
* ``rate``: the signal is the property's rate of change in units per second, between
  the reading and the previous one (or the last one at least ``window_s`` earlier); ``above``
  / ``below`` / ``clear`` are rates.
* ``rul``: raise when the value is ``≤ horizon`` (remaining useful life within the
  horizon), clear when it is ``> clear``. ``clear`` defaults to ``horizon × 1.25``
  (:data:`RUL_CLEAR_MARGIN`): an estimate that wanders just above the horizon does not
  clear the alarm; set ``clear = horizon`` for the old behaviour.

``for_s`` is how long (in the readings' own time) the raise condition must hold
before the alarm is raised; ``clear_for_s`` (default 0) how long the signal must stay
back past the clear level before the alarm clears by itself.

**Re-raise guard.** ``reraise_s`` (default 60 s, :data:`DEFAULT_RERAISE_S`) is the least
time, in the readings' own time, between a rule's condition clearing on a twin and that
rule raising again on the same twin: a condition that returns sooner is held back, and
raises once it still holds (for ``for_s``) when the guard has run out. So a condition
hovering at its threshold raises at most once per ``reraise_s``. ``reraise_s = 0``
turns the guard off; rules with ``auto_clear = false`` have none (their alarm stays open
and a re-trigger folds into it). ``group`` names rules that share one alarm per twin (for
example a ``warning`` at 80 °C and a ``critical`` at 95 °C on one property): the alarm
takes the highest severity that fired and clears when every rule of the group is
normal again. ``auto_clear = false`` leaves clearing to an operator; a condition that
returns and fires again then folds into the open alarm (``count`` + 1).

>>> [r] = parse_rules([{"name": "bearing-hot", "model": "dtmi:tvilling:example:Bearing;1",
...                     "property": "temperature", "kind": "threshold", "severity": "major",
...                     "above": 90, "clear": 85, "for_s": 10}])
>>> (r.group, r.clear, r.propagate)
('bearing-hot', 85.0, True)
>>> parse_rules([{"name": "x", "model": "dtmi:a:B;1", "property": "t", "kind": "threshold",
...               "severity": "major"}])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: alarm rule 'x': a threshold rule needs 'above' or 'below'...
"""

from __future__ import annotations

import builtins
import math
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from tvilling.core.errors import Invalid, TvillingError
from tvilling.core.ids import parse_dtmi

Kind = Literal["threshold", "rate", "rul"]
DEFAULT_RERAISE_S = 60.0
RUL_CLEAR_MARGIN = 1.25
Severity = Literal["critical", "major", "minor", "warning"]
DEFAULT_MESSAGE = "{rule}: {property} is {value:.4g} on {twin}"
TEMPLATE_KEYS = frozenset({"rule", "twin", "model", "property", "value", "severity", "level", "kind"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}(?:\.[A-Za-z][A-Za-z0-9_\-]{0,63}){0,7}")  # keys may hold "-"


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One alarm rule (see the module docstring for the meaning of each field)."""

    name: str
    model: str
    property: str
    kind: Kind
    severity: Severity
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    for_s: float = 0.0
    clear_for_s: float = 0.0
    reraise_s: float = DEFAULT_RERAISE_S
    window_s: float = 0.0
    horizon: float | None = None
    propagate: bool = True
    auto_clear: bool = True
    group: str = ""
    message: str = DEFAULT_MESSAGE

    @builtins.property
    def path(self) -> tuple[str, ...]:
        return tuple(self.property.split("."))

    @builtins.property
    def rising(self) -> bool:
        """True when the alarm is on a high level (``above``), False on a low one (``below``/``horizon``)."""
        return self.above is not None

    @builtins.property
    def level(self) -> float:
        """The raise level."""
        level = self.above if self.above is not None else self.below
        assert level is not None  # parse_rules guarantees one
        return level

    def raises(self, signal: float) -> bool:
        return bool(signal >= self.level if self.rising else signal <= self.level)

    def clears(self, signal: float) -> bool:
        level = self.level if self.clear is None else self.clear
        return bool(signal < level if self.rising else signal > level)


def parse_rules(docs: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Parse and check rule configs; ``Invalid`` naming the rule and the field at the first problem."""
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        rule = parse_rule(doc, index=i)
        if rule.name in seen:
            raise Invalid(f"alarm rule {rule.name!r} is defined twice", rule_name=rule.name, field="name",
                          rule="unique")
        seen.add(rule.name)
        rules.append(rule)
    groups: dict[str, Rule] = {}
    for r in rules:
        first = groups.setdefault(r.group, r)
        if first.property != r.property or first.model != r.model or first.propagate != r.propagate:
            raise Invalid(f"alarm rule {r.name!r}: group {r.group!r} mixes rules on different models, properties "
                          "or propagation; give them distinct groups", rule_name=r.name, field="group",
                          rule="group")
    return rules


def parse_rule(doc: Mapping[str, Any], *, index: int = 0) -> Rule:
    """One rule from a mapping (see :func:`parse_rules`)."""
    if not isinstance(doc, Mapping):
        raise Invalid(f"alarm rule #{index + 1} must be a table/object", field=f"alarm_rules[{index}]",
                      rule="type")
    label = doc.get("name") if isinstance(doc.get("name"), str) else f"#{index + 1}"
    try:
        rule = msgspec.convert(dict(doc), Rule, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`float | null`", "a number").replace("`float`", "a number")
        m = re.search(r"at `\$\.([A-Za-z_]+)`", text)
        field = m.group(1) if m else None
        if field is None:
            m = re.search(r"[Oo]bject contains unknown field `([^`]+)`|required field `([^`]+)`", text)
            field = next((g for g in m.groups() if g), None) if m else None
        raise Invalid(f"alarm rule {label!r}: {text}", rule_name=label, field=field, rule="config") from None

    def bad(field: str, why: str) -> Invalid:
        return Invalid(f"alarm rule {label!r}: {why}", rule_name=label, field=field, rule="config")

    if not _NAME.fullmatch(rule.name):
        raise bad("name", "name must be 1–128 letters, digits or _ . : -, starting with a letter or digit")
    try:
        parse_dtmi(rule.model, field="model")
    except TvillingError as exc:
        raise bad("model", exc.message) from None
    if not _PATH.fullmatch(rule.property):
        raise bad("property", f"property {rule.property!r} is not a property name or dotted path")
    for field in ("above", "below", "clear", "horizon", "for_s", "clear_for_s", "reraise_s", "window_s"):
        value = getattr(rule, field)
        if value is not None and not math.isfinite(value):
            raise bad(field, f"{field} must be a finite number")
    for field in ("for_s", "clear_for_s", "reraise_s", "window_s"):
        if getattr(rule, field) < 0:
            raise bad(field, f"{field}: durations must be ≥ 0 seconds")
    if rule.kind == "rul":
        if rule.horizon is None:
            raise bad("horizon", "a rul rule needs 'horizon' (raise when the property is ≤ horizon)")
        if rule.above is not None or rule.below is not None:
            raise bad("above" if rule.above is not None else "below",
                      "a rul rule takes 'horizon', not 'above'/'below'")
        horizon = rule.horizon
        rule = msgspec.structs.replace(rule, below=horizon)
        if rule.clear is None and horizon > 0:
            rule = msgspec.structs.replace(rule, clear=horizon * RUL_CLEAR_MARGIN)
    else:
        if rule.horizon is not None:
            raise bad("horizon", f"'horizon' is for rul rules, not {rule.kind}")
        if (rule.above is None) == (rule.below is None):
            raise bad("above", f"a {rule.kind} rule needs 'above' or 'below' (exactly one)")
    if rule.window_s and rule.kind != "rate":
        raise bad("window_s", "'window_s' is for rate rules")
    if rule.clear is not None and (rule.clear > rule.level if rule.rising else rule.clear < rule.level):
        side = "at or below 'above'" if rule.rising else "at or above the raise level"
        raise bad("clear", f"the clear (hysteresis) level must be {side}; got {rule.clear} vs {rule.level}")
    _check_template(rule.message, bad)
    if not rule.group:
        rule = msgspec.structs.replace(rule, group=rule.name)
    elif not _NAME.fullmatch(rule.group):
        raise bad("group", "group must be 1–128 letters, digits or _ . : -")
    return rule


def _check_template(text: str, bad: Any) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise bad("message", f"message template is malformed: {exc}") from None
    unknown = sorted({f.split(".")[0].split("[")[0] for f in fields} - TEMPLATE_KEYS)
    if unknown or any(f == "" for f in fields):
        raise bad("message", f"message template may use {{{'}, {'.join(sorted(TEMPLATE_KEYS))}}}, "
                             f"not {unknown or ['{}']}")
    if len(text) > 500:
        raise bad("message", "message template is longer than 500 characters")


def render(rule: Rule, *, twin: str, model: str | None, value: Any) -> str:
    """The rule's message for one alarm (a bad format spec falls back to the default message)."""
    values = {"rule": rule.name, "twin": twin, "model": model, "property": rule.property, "value": value,
              "severity": rule.severity, "level": rule.level, "kind": rule.kind}
    try:
        return rule.message.format(**values)[:1000]
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return DEFAULT_MESSAGE.format(**values)
