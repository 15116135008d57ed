"""The health picture of every twin (``tvilling.twins.health``): own and rolled up along the graph."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.openapi import problems
from tvilling.twins.health import UNIT_SYMBOL, health_index

router = APIRouter(tags=["twins"])
PAGE = 1000
FRESH_S = 1.0  # how long one snapshot answers every caller
MAX_ALARMS = 1000  # per state: the store pages at most this many


def rul_units(platform: Any) -> dict[str, dict[str, Any]]:
    """Per remaining-life analytic: its unit's symbol and whether its time is the plant's (accelerated) or
    the wall clock's."""
    from tvilling.analytics.binding import parse_specs

    out: dict[str, dict[str, Any]] = {}
    for spec in parse_specs(platform.settings.analytics):
        if spec.kind != "rul":
            continue
        p = spec.params
        unit = str(p.get("unit", "hour")) if spec.method == "rul-trend" else str(p.get("unit", "cycle"))
        scale = float(p.get("time_scale", 1.0))
        out[spec.name] = {"unit": unit, "symbol": UNIT_SYMBOL.get(unit, unit),
                          "clock": "plant" if scale != 1.0 else "wall", "time_scale": scale}
    return out


def snapshot(platform: Any) -> dict[str, Any]:
    from tvilling.decisions.alarms.record import OPEN
    from tvilling.twins.query import Query, Step

    twins: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:  # every twin, a page at a time
        page = platform.twins.store.query(Query(steps=(Step(),), limit=PAGE, after=after))
        for t in page.items:
            twins[t.id] = {"reported": dict(t.reported),
                           "children": sorted({r.target for r in t.relationships.values()})}
        if page.next is None:
            break
        after = page.next
    alarms = [a for state in sorted(OPEN)
              for a in platform.alarm_store.list(state=state, limit=MAX_ALARMS, shelved=False)]
    units = rul_units(platform)
    per_twin: dict[str, dict[str, Any]] = {}
    for tid, t in twins.items():
        names = (t["reported"].get("analytics") or {}).keys()
        found = next((units[n] for n in names if n in units), None)
        if found is not None:
            per_twin[tid] = found
    index = health_index(twins, [{"id": a.id, "twin": a.twin, "origin": a.origin, "severity": a.severity,
                                  "message": a.message, "rule": a.rule} for a in alarms], per_twin)
    for tid, unit in per_twin.items():
        index[tid]["rul_unit"] = unit
    return {"items": index}


@router.get("/api/health", responses=problems(400),
            summary="Every twin's health index (1 = as new), own and rolled up along the graph, with the reason")
async def health(request: Request) -> dict[str, Any]:
    # every open page polls this: one snapshot a second serves them all (it reads every twin and open alarm)
    state = request.app.state
    cached = getattr(state, "health_snapshot", None)
    if cached is not None and time.monotonic() - cached[0] < FRESH_S:
        return dict(cached[1])
    out = await run_in_threadpool(snapshot, state.platform)
    state.health_snapshot = (time.monotonic(), out)
    return out
