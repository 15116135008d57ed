"""One health picture: a twin's health index from its remaining life, anomaly state and open alarms, rolled up
along the twin graph (bearing → machine → line).

The index runs from 1.0 (as new, nothing found) to 0.0 (failed). A twin's own index is the lowest of
what it knows about itself:

* ``health`` written by a remaining-life analytic (wear and remaining life over its horizon, see
  ``rul-trend``) — the reason names the remaining life with its unit and clock;
* an anomaly the detector flags: at most ``ANOMALY_CAP`` (0.5) while the score is at or above its
  threshold, at most ``ANOMALY_EASING_CAP`` (0.7) while the flag is only held after the score fell back;
* its own open alarms (not shelved; propagated copies count at their origin only): at most
  ``SEVERITY_CAP[severity]`` — critical 0.1, major 0.4, minor 0.7, warning 0.9.

A twin's rolled-up index is the lower of its own and its children's (the targets of its relationships:
a machine's bearings, a line's machines), with the reason and the twin that set it. Statuses:
``good`` ≥ 0.8 > ``watch`` ≥ 0.5 > ``poor`` ≥ 0.2 > ``critical``; a twin with nothing known is
``unknown`` (index null), and counts as nothing in its parent's roll-up; a twin its analytics watch
without finding anything is 1.0, "no findings".

So "health 100 %" can no longer stand beside a critical alarm or a remaining life of hours: each of
these lowers the same number.

>>> twins = {"m": {"reported": {}, "children": ["b"]},
...          "b": {"reported": {"health": 0.9, "anomaly": True, "anomaly_score": 2.0}, "children": []}}
>>> out = health_index(twins, alarms=[])
>>> out["b"]["health"], out["b"]["status"], out["m"]["health"], out["m"]["source"]
(0.5, 'watch', 0.5, 'b')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ANOMALY_CAP = 0.5
ANOMALY_EASING_CAP = 0.7
SEVERITY_CAP = {"critical": 0.1, "major": 0.4, "minor": 0.7, "warning": 0.9}
STATUS = ((0.8, "good"), (0.5, "watch"), (0.2, "poor"), (0.0, "critical"))
UNIT_SYMBOL = {"second": "s", "minute": "min", "hour": "h", "day": "d"}


def status_of(h: float | None) -> str:
    if h is None:
        return "unknown"
    return next(name for floor, name in STATUS if h >= floor)


def _fmt(x: float) -> str:
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def rul_text(reported: Mapping[str, Any], unit: Mapping[str, Any] | None) -> str | None:
    rul = reported.get("rul")
    if not isinstance(rul, int | float) or isinstance(rul, bool):
        return None
    u = unit or {}
    sym = u.get("symbol", "")
    clock = f" {u['clock']}" if u.get("clock") == "plant" else ""
    band = ""
    p10 = reported.get("rul_p10")
    if isinstance(p10, int | float) and not isinstance(p10, bool):
        band = f" (p10 {_fmt(float(p10))})"
    return f"predicted to fail in {_fmt(float(rul))}{clock} {sym}{band}".replace("  ", " ").strip()


def own_health(reported: Mapping[str, Any], alarms: Iterable[Mapping[str, Any]],
               rul_unit: Mapping[str, Any] | None = None) -> tuple[float | None, str | None, list[dict[str, Any]]]:
    """A twin's own index, its reason, and every finding behind it (``{"health", "reason", "kind"}``)."""
    findings: list[dict[str, Any]] = []
    h = reported.get("health")
    if isinstance(h, int | float) and not isinstance(h, bool):
        text = rul_text(reported, rul_unit)
        if text is None:
            analytics = reported.get("analytics") or {}
            trendless = any(isinstance(v, dict) and v.get("trend") is False for v in analytics.values())
            text = "no failure trend" if trendless else "wear level"
        findings.append({"health": max(0.0, min(1.0, float(h))), "reason": text, "kind": "remaining life"})
    if reported.get("anomaly") is True:
        score = reported.get("anomaly_score")
        contributions = reported.get("contributions") or {}
        top = max(contributions, key=lambda k: contributions[k] or 0) if isinstance(contributions, dict) and \
            contributions else None
        driven = f", driven by {top}" if top else ""
        if isinstance(score, int | float) and score < 1.0:
            findings.append({"health": ANOMALY_EASING_CAP, "kind": "anomaly",
                             "reason": f"anomaly easing (score {score:.2f}, below 1){driven}"})
        else:
            shown = f" (score {score:.2f})" if isinstance(score, int | float) else ""
            findings.append({"health": ANOMALY_CAP, "kind": "anomaly", "reason": f"abnormal behaviour{shown}{driven}"})
    for a in alarms:
        cap = SEVERITY_CAP.get(str(a.get("severity")))
        if cap is not None:
            findings.append({"health": cap, "kind": "alarm", "alarm": a.get("id"),
                             "reason": f"{a.get('message') or a.get('rule')} (alarm {a.get('rule')})"})
    if not findings:
        if "anomaly_score" in reported or reported.get("analytics"):  # watched, and nothing found
            return 1.0, "no findings", []
        return None, None, []
    worst = min(findings, key=lambda f: f["health"])
    return worst["health"], worst["reason"], findings


def health_index(twins: Mapping[str, Mapping[str, Any]], alarms: Iterable[Mapping[str, Any]],
                 rul_units: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every twin's own and rolled-up health.

    ``twins``: id → ``{"reported": {...}, "children": [ids]}``; ``alarms``: open, unshelved alarms as
    mappings (``twin``, ``origin``, ``severity``, ``message``); ``rul_units``: twin id → ``{"symbol",
    "clock"}`` of its remaining-life analytic. Cycles in the graph are cut (a twin is rolled up once).
    """
    own_alarms: dict[str, list[Mapping[str, Any]]] = {}
    for a in alarms:
        if (a.get("origin") or a.get("twin")) == a.get("twin"):
            own_alarms.setdefault(str(a.get("twin")), []).append(a)
    units = rul_units or {}
    out: dict[str, dict[str, Any]] = {}
    for tid, t in twins.items():
        h, reason, findings = own_health(t.get("reported") or {}, own_alarms.get(tid, []), units.get(tid))
        out[tid] = {"own": h, "own_reason": reason, "findings": findings}
    done: dict[str, tuple[float | None, str | None, str | None]] = {}
    Rolled = tuple[float | None, str | None, str | None]

    def roll(tid: str, path: frozenset[str]) -> tuple[Rolled, bool]:
        """(worst of the twin and its subtree, whether a cycle was cut below it: then it is not memoised)."""
        if tid in done:
            return done[tid], False
        best: Rolled = (out[tid]["own"], out[tid]["own_reason"], tid)
        cut = False
        for child in twins[tid].get("children", ()):
            if child not in twins:
                continue
            if child in path:
                cut = True
                continue
            ch, below = roll(child, path | {child})
            cut |= below
            if ch[0] is not None and (best[0] is None or ch[0] < best[0]):
                best = ch
        if not cut:
            done[tid] = best
        return best, cut

    for tid in twins:
        (h, reason, source), _ = roll(tid, frozenset({tid}))
        out[tid].update(health=None if h is None else round(h, 4), status=status_of(h), reason=reason,
                        source=source if h is not None else None)
    return out
