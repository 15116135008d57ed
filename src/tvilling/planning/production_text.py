"""Production plans for the terminal: a compact Gantt chart per machine, the KPIs, a comparison table.

Works on the JSON form of a plan (:func:`tvilling.planning.production_json.plan_to_json`), so that the CLI
shows a plan read from a server the same way as one made here.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tvilling.planning.production_json import when

_SYMBOLS = string.ascii_uppercase + string.ascii_lowercase + string.digits
DOWN = "#"
KPI_UNITS = {"makespan_h": "h", "total_tardiness_h": "h", "weighted_tardiness_h": "h", "throughput_per_h": "parts/h",
             "downtime_h": "h", "lost_production": "parts", "parts": "parts", "solve_seconds": "s"}


def gantt(plan: Mapping[str, Any], width: int = 72) -> str:
    """One row per machine: each order's operations as its letter, downtimes as ``#``, idle as ``.``."""
    ops = plan.get("operations") or []
    downs = plan.get("downtimes") or []
    start = when(plan["created"])
    ends = [when(o["end"]) for o in ops] + [when(d["end"]) for d in downs]
    end = max(ends, default=start)
    if end <= start:
        return "(nothing planned)"
    machines = sorted({o["machine"] for o in ops} | {d["machine"] for d in downs})
    letters: dict[str, str] = {}
    for o in sorted(ops, key=lambda o: (o["start"], o["order"])):
        letters.setdefault(o["order"], _SYMBOLS[len(letters) % len(_SYMBOLS)])
    span = (end - start).total_seconds()
    pad = max((len(m) for m in machines), default=0)

    def cells(a: datetime, b: datetime) -> range:
        lo = int(max(0.0, (a - start).total_seconds()) / span * width)
        hi = int(min(span, (b - start).total_seconds()) / span * width + 0.999)
        return range(max(0, lo), min(width, max(hi, lo + 1)))

    lines = [f"{'':{pad}}  {_label(start)}{' ' * max(1, width - 2 * 16)}{_label(end)}"]
    for m in machines:
        row = ["."] * width
        for d in downs:
            if d["machine"] == m:
                for i in cells(when(d["start"]), when(d["end"])):
                    row[i] = DOWN
        for o in ops:
            if o["machine"] == m:
                for i in cells(when(o["start"]), when(o["end"])):
                    row[i] = letters[o["order"]]
        lines.append(f"{m:{pad}}  {''.join(row)}")
    legend = "  ".join(f"{sym}={oid}" for oid, sym in letters.items())
    lines.append(f"{'':{pad}}  {legend}{'  #=down' if downs else ''}")
    return "\n".join(lines)


def kpi_lines(kpis: Mapping[str, Any]) -> str:
    """The KPIs, one per line with their units."""
    return "\n".join(f"  {k:<22} {_num(v)} {KPI_UNITS.get(k, '')}".rstrip() for k, v in kpis.items())


def comparison_table(comparison: Mapping[str, Any]) -> str:
    """KPI before / after / delta, then how many operations moved."""
    rows = [f"  {'kpi':<22} {'before':>10} {'after':>10} {'delta':>10}"]
    for name, v in comparison.get("kpis", {}).items():
        rows.append(f"  {name:<22} {_num(v['before']):>10} {_num(v['after']):>10} {_signed(v['delta']):>10}")
    if comparison.get("downtime_avoided_h"):
        rows.append(f"  work moved out of new downtime: {_num(comparison['downtime_avoided_h'])} machine-h")
    moved = comparison.get("moved") or []
    rows.append(f"  {len(moved)} operation(s) moved, {comparison.get('unchanged', 0)} unchanged "
                f"(stability {comparison.get('stability', 1.0):.0%})")
    for m in moved[:20]:
        where = m["machine_after"] if m["machine_before"] == m["machine_after"] else \
            f"{m['machine_before']} → {m['machine_after']}"
        rows.append(f"    {m['order']}/{m['op']}  {where}  {m['shift_min']:+g} min")
    return "\n".join(rows)


def show(plan: Mapping[str, Any], width: int = 72) -> str:
    """The plan's heading, Gantt chart, downtimes and KPIs."""
    head = (f"plan {plan['id']}  line {plan['line']}  {plan.get('reason') or ''}  at {plan['created']}"
            + (f"  (replaces {plan['previous']})" if plan.get("previous") else ""))
    parts = [head, gantt(plan, width)]
    for d in plan.get("downtimes") or []:
        extra = f" work order {d['work_order']}" if d.get("work_order") else ""
        parts.append(f"  down {d['machine']} {d['start']} → {d['end']} ({d.get('reason', '')}{extra})")
    parts.append(kpi_lines(plan.get("kpis") or {}))
    return "\n".join(parts)


def _label(ts: datetime) -> str:
    return ts.strftime("%m-%d %H:%M").ljust(16)


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def _signed(value: Any) -> str:
    return ("+" if value > 0 else "") + _num(value)


__all__ = ["comparison_table", "gantt", "kpi_lines", "show"]
