"""Scenario options written on a command line, and the KPI table a terminal shows.

An option is ``NAME`` (no interventions: the baseline) or ``NAME:ITEM,ITEM,…``, each item
``WORD[/PART][=VALUE]@AT[+DURATION]``, read against a twin's vocabulary (what
``GET /api/scenarios/vocabulary`` answers): a command (``setSpeed=900@0m``, ``stop@2h``), a
maintenance action (``replaceBearing/de@4h+1h``), a fault (``de:bearingDefect=0.2@2h``) or a parameter
(``defectRate=0.3@1h``). A JSON list of interventions after the colon is taken as it is. Names of
options cannot hold a colon.

>>> vocab = {"commands": [{"name": "setSpeed"}], "maintenance": [{"name": "replaceBearing"}],
...          "faults": ["de:bearingDefect"], "parameters": [{"name": "defectRate"}]}
>>> parse_option("replace:replaceBearing/de@4h+1h", vocab)
{'name': 'replace', 'interventions': [{'at': '4h', 'maintenance': 'replaceBearing', 'part': 'de', 'duration': '1h'}]}
>>> parse_option("slow:setSpeed=900@0m", vocab)["interventions"]
[{'at': '0m', 'command': 'setSpeed', 'value': 900.0}]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tvilling.core.errors import Invalid

_ITEM = re.compile(r"(?P<word>[^/=@]+)(?:/(?P<part>[^=@]+))?(?:=(?P<value>[^@]+))?@(?P<at>[^+]+)(?:\+(?P<dur>.+))?")


def _names(vocabulary: Mapping[str, Any], key: str) -> set[str]:
    return {v if isinstance(v, str) else str(v["name"]) for v in vocabulary.get(key, [])}


def _value(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Invalid(f"--option {where}: {text!r} is not a number", field="option", rule="type") from None


def parse_item(text: str, vocabulary: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One intervention of the short form, as the API's JSON."""
    m = _ITEM.fullmatch(text.strip())
    if m is None:
        raise Invalid(f"--option {where}: {text!r} is not WORD[/PART][=VALUE]@AT[+DURATION]", field="option",
                      rule="format")
    word, part, value, at, duration = (m.group(g) for g in ("word", "part", "value", "at", "dur"))
    if word in _names(vocabulary, "commands"):
        out: dict[str, Any] = {"at": at, "command": word}
        if value is not None:
            out["value"] = _value(value, where)
        return out
    if word in _names(vocabulary, "maintenance"):
        out = {"at": at, "maintenance": word}
        if part is not None:
            out["part"] = part
        if duration is not None:
            out["duration"] = duration
        return out
    if word in _names(vocabulary, "faults"):
        if value is None:
            raise Invalid(f"--option {where}: the fault {word!r} needs a size (={word}=SIZE)", field="option",
                          rule="required")
        return {"at": at, "fault": word, "size": _value(value, where)}
    if word in _names(vocabulary, "parameters"):
        if value is None:
            raise Invalid(f"--option {where}: the parameter {word!r} needs a value", field="option", rule="required")
        return {"at": at, "parameters": {word: _value(value, where)}}
    known = sorted(_names(vocabulary, "commands") | _names(vocabulary, "maintenance") | _names(vocabulary, "faults"))
    raise Invalid(f"--option {where}: {word!r} is no command, maintenance action, fault or parameter of this twin; "
                  f"some that are: {known}", field="option", rule="unknown")


def parse_option(text: str, vocabulary: Mapping[str, Any]) -> dict[str, Any]:
    """``NAME[:ITEMS]`` as the API's option (see the module text)."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise Invalid(f"--option {text!r} needs a name before the colon", field="option", rule="required")
    rest = rest.strip()
    if rest.startswith("["):
        try:
            items = json.loads(rest)
        except ValueError as exc:
            raise Invalid(f"--option {name}: the interventions are not valid JSON ({exc})", field="option",
                          rule="format") from None
        return {"name": name, "interventions": items}
    return {"name": name, "interventions": [parse_item(i, vocabulary, name) for i in rest.split(",") if i.strip()]}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _triple(k: Mapping[str, Any], key: str, missing: str) -> str:
    return "/".join(_fmt(k.get(f"{key}_{q}_h")) if k.get(f"{key}_{q}_h") is not None else missing
                    for q in ("p10", "p50", "p90"))


def kpi_table(kpis: Mapping[str, Mapping[str, Any]], horizon: str = "the horizon") -> str:
    """The KPIs of each option as a text table (``>`` time to failure: beyond the horizon). Where the twin's
    analytics ran on the simulated series, the time to failure is shown by source (physics, and the
    remaining-life analytic's), with the first anomaly flag and the remaining life at the start and end."""
    analytics = any("ttf_rul_p50_h" in k or "p_anomaly_horizon" in k for k in kpis.values())
    rul = any("ttf_rul_p50_h" in k for k in kpis.values())
    anomaly = any("p_anomaly_horizon" in k for k in kpis.values())
    head = ["option", "TTF physics p10/p50/p90 h" if analytics else "TTF p10/p50/p90 h", "P(fail) horizon",
            "P(fail) shift", "production", "lost", "energy kWh"]
    if rul:
        head += ["TTF RUL p10/p50/p90 h", "RUL start/end p50 h"]
    if anomaly:
        head += ["anomaly p10/p50/p90 h", "P(anomaly)"]
    rows = [head]
    for option, k in kpis.items():
        row = [option, _triple(k, "ttf", ">"), _fmt(k.get("p_fail_horizon"), 2), _fmt(k.get("p_fail_shift"), 2),
               _fmt(k.get("production")), _fmt(k.get("lost_production")), _fmt(k.get("energy_kwh"))]
        if rul:
            row += [_triple(k, "ttf_rul", "—"), f"{_fmt(k.get('rul_start_p50_h'))}/{_fmt(k.get('rul_end_p50_h'))}"]
        if anomaly:
            row += [_triple(k, "anomaly", ">"), _fmt(k.get("p_anomaly_horizon"), 2)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    notes = [f"(> : no failure within {horizon}" + ("; no anomaly flagged within it" if anomaly else "") + ")"]
    if rul:
        notes.append("(TTF RUL: the twin's remaining-life analytic on the simulated series; — : no credible trend)")
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], *notes])


__all__ = ["kpi_table", "parse_item", "parse_option"]
