"""Ingest routes: envelope batches in (JSON or columnar), dead letters out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.twins import _obj
from tvilling.ingest import forms
from tvilling.ingest.deadletter import DeadLetter

router = APIRouter(tags=["ingest"])


@router.post("/api/ingest", openapi_extra=_obj(forms.__doc__ or "envelopes"),
             summary="Ingest a batch of envelopes (JSON or columnar) through the data-quality pipeline")
async def ingest(request: Request) -> dict[str, Any]:
    platform = request.app.state.platform
    body = await read_json(request, limit=platform.settings.max_ingest_bytes)
    parsed = forms.parse_body(body)
    received = datetime.now(UTC)
    return await run_in_threadpool(_run, platform, parsed, received)


def _run(platform: Any, parsed: forms.Parsed, received: datetime) -> dict[str, Any]:
    pipeline = platform.pipeline
    totals = {"accepted": 0, "rejected": 0, "duplicates": 0, "flagged": 0}
    if parsed.rejects:
        pipeline.dead_letters.add([
            DeadLetter(transport="http", address="/api/ingest", rule=rule, reason=reason, received=received,
                       payload=msgspec.json.encode(item),
                       twin=item.get("twin") if isinstance(item, dict) and isinstance(item.get("twin"), str) else None)
            for item, reason, rule in parsed.rejects
        ])
        totals["rejected"] += len(parsed.rejects)
    results = []
    if parsed.envelopes:
        results.append(pipeline.ingest_envelopes(parsed.envelopes, transport="http", now=received))
    for readings, source in parsed.columns:
        results.append(pipeline.ingest_readings(readings, source=source, transport="http", now=received))
    for res in results:
        for key in totals:
            totals[key] += getattr(res, key)
    return totals


@router.get("/api/dead-letters", summary="Rejected input, with the raw payload and the reason")
async def dead_letters(request: Request, after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                       twin: str | None = None, rule: str | None = None) -> dict[str, Any]:
    store = request.app.state.platform.dead_letters
    items = await run_in_threadpool(store.list, after=after, limit=limit, twin=twin, rule=rule)
    return {"items": [d.to_json() for d in items], "next": items[-1].id if len(items) == limit else None}
