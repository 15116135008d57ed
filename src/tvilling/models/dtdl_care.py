"""Tvilling's DTDL extension for commands: which ones disrupt the asset, and what they change.

A model opts in by listing the extension's context after DTDL's own::

    "@context": ["dtmi:dtdl:context;3", "dtmi:tvilling:extension:commands;1"]

and then co-types its Commands:

* ``Disruptive`` — the command interrupts what the asset is doing (a stop, a restart, a
  maintenance reset). Clients must ask a person before sending it; the dashboard shows a
  confirmation dialog. Optional ``disruption``: what happens, in words, for that dialog
  (a string or a language map, at most 512 characters).
* ``Effect`` — for commands that are not disruptive but whose result should be watched.

Either co-type may carry ``affects``: the Properties or Telemetry (``name``, or
``component.name``) that the command changes, which a client watches after sending it.
The names are checked against the resolved model when it is registered.

>>> from tvilling.models.dtdl import parse_models
>>> [machine] = parse_models({
...     "@context": ["dtmi:dtdl:context;3", "dtmi:tvilling:extension:commands;1"],
...     "@id": "dtmi:com:example:Press;1", "@type": "Interface",
...     "contents": [
...         {"@type": "Property", "name": "state", "schema": "string"},
...         {"@type": ["Command", "Disruptive"], "name": "stop",
...          "disruption": "The press stops mid-stroke.", "affects": ["state"]}]})
>>> stop = machine.contents["stop"]
>>> (stop.disruptive, stop.disruption, stop.affects)
(True, 'The press stops mid-stroke.', ('state',))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tvilling.models.dtdl_syntax import MAX_DESCRIPTION, Ctx, child, localized

COMMANDS_CONTEXT = "dtmi:tvilling:extension:commands;1"
DISRUPTIVE = "Disruptive"
EFFECT = "Effect"
COTYPES = frozenset({DISRUPTIVE, EFFECT})
#: keys the co-types bring, with the co-types that allow each
KEYS: Mapping[str, frozenset[str]] = {
    "disruption": frozenset({DISRUPTIVE}),
    "affects": frozenset({DISRUPTIVE, EFFECT}),
}
MAX_AFFECTS = 32
_PATH = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?:\.[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)?")


@dataclass(frozen=True, slots=True)
class Care:
    """What the extension says about one Command."""

    disruptive: bool = False
    disruption: str | None = None
    affects: tuple[str, ...] = ()


def take_cotypes(ctx: Ctx, raw: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], frozenset[str]]:
    """Split the extension's co-types off ``raw['@type']``: ``(raw without them, the co-types)``.

    A co-type used without the extension's context is reported (and still returned, so that
    its keys are not reported a second time as unknown).
    """
    value = raw.get("@type")
    if not isinstance(value, list):
        if isinstance(value, str) and value in COTYPES:
            ctx.problems.add(child(path, "@type"), value,
                             f"{value!r} is a co-type: list it beside the element's type, "
                             f"e.g. [\"Command\", {value!r}]")
        return raw, frozenset()
    found = frozenset(t for t in value if isinstance(t, str) and t in COTYPES)
    if not found:
        return raw, found
    if not ctx.commands:
        for t in sorted(found):
            ctx.problems.add(child(path, "@type"), t,
                             f"co-type {t!r} needs the extension {COMMANDS_CONTEXT} in @context")
    rest = [t for t in value if t not in found]
    return {**raw, "@type": rest[0] if len(rest) == 1 else rest}, found


def check_care(ctx: Ctx, raw: Mapping[str, Any], path: str, kind: str, cotypes: frozenset[str]) -> Care:
    """Check the extension's keys of an element of ``kind``; returns what they say."""
    if kind != "Command":
        for t in sorted(cotypes):
            ctx.problems.add(child(path, "@type"), t, f"co-type {t!r} is only for a Command, not a {kind}")
        return Care()
    for key, allowed in KEYS.items():
        if key in raw and not cotypes & allowed:
            names = " or ".join(repr(t) for t in sorted(allowed))
            ctx.problems.add(child(path, key), key,
                             f"key {key!r} needs the co-type {names} in @type (extension {COMMANDS_CONTEXT})")
    disruption = None
    if "disruption" in raw and DISRUPTIVE in cotypes:
        disruption = localized(ctx, raw["disruption"], child(path, "disruption"), MAX_DESCRIPTION)
    affects = _affects(ctx, raw.get("affects"), child(path, "affects")) if "affects" in raw else ()
    return Care(DISRUPTIVE in cotypes, disruption, affects)


def _affects(ctx: Ctx, value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_AFFECTS:
        ctx.problems.add(path, "affects",
                         f"'affects' must be a list of 1 to {MAX_AFFECTS} property or telemetry names")
        return ()
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _PATH.fullmatch(name) or len(name) > 2 * ctx.max_name:
            ctx.problems.add(child(path, i), "affects",
                             f"{str(name)[:64]!r} is not a property name (\"speed\" or \"component.speed\")")
        elif name in out:
            ctx.problems.add(child(path, i), "affects", f"{name!r} is listed twice")
        else:
            out.append(name)
    return tuple(out)


def affect_problem(
    name: str, props: Mapping[str, object], components: Mapping[str, Mapping[str, object]]
) -> str | None:
    """Why ``name`` (an ``affects`` entry) names nothing in the resolved model, or ``None`` when it does.

    ``props`` holds the model's Properties and Telemetry by name; ``components`` those of
    each Component's Interface, by component name.
    """
    head, _, tail = name.partition(".")
    if not tail:
        return None if head in props else f"{name!r} is not a Property or Telemetry of the model"
    if head not in components:
        return f"{name!r}: the model has no Component {head!r}"
    return None if tail in components[head] else f"{name!r}: Component {head!r} has no Property or Telemetry {tail!r}"
