"""Ingest routes: envelope batches in (JSON or columnar), dead letters out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import read_json
from tvilling.api.openapi import json_body, problems
from tvilling.ingest import forms
from tvilling.ingest.deadletter import DeadLetter

router = APIRouter(tags=["ingest"])

_TS = {"type": ["string", "number"], "description": "ISO 8601 with a zone, or epoch milliseconds"}
ENVELOPE = {
    "type": "object", "required": ["twin", "ts", "values"], "additionalProperties": False,
    "properties": {"twin": {"type": "string"}, "ts": _TS,
                   "values": {"type": "object", "description": "property → value"},
                   "source": {"type": "string"}, "id": {"type": ["string", "integer"]},
                   "quality": {"type": "string", "enum": ["good", "uncertain", "bad"]}},
}
COLUMNAR = {
    "type": "object", "required": ["twin", "ts", "values"], "additionalProperties": False,
    "properties": {"twin": {"type": "string"}, "ts": {"type": "array", "items": _TS},
                   "values": {"type": "object", "description": "property → list of values as long as ts (null: none)",
                              "additionalProperties": {"type": "array"}},
                   "source": {"type": "string"}},
}
INGEST_BODY = {
    "description": (forms.__doc__ or "envelopes") + "\nItems that cannot be read are counted as rejected "
    "and kept as dead letters: the answer is still 200.",
    "anyOf": [ENVELOPE, COLUMNAR, {"type": "array", "items": {"anyOf": [ENVELOPE, COLUMNAR]}}],
}


@router.post("/api/ingest", openapi_extra=json_body(INGEST_BODY), responses=problems(400, 413, 422),
             summary="Ingest a batch of envelopes (JSON or columnar) through the data-quality pipeline")
async def ingest(request: Request) -> dict[str, Any]:
    platform = request.app.state.platform
    body = await read_json(request, limit=platform.settings.max_ingest_bytes)
    parsed = forms.parse_body(body)
    received = datetime.now(UTC)
    return await run_in_threadpool(_run, platform, parsed, received)


def _text(item: Any, key: str) -> str | None:
    """A string field of a rejected item, if it has one (an integer id counts, as in the envelope)."""
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value[:256] if isinstance(value, str) else None


def _run(platform: Any, parsed: forms.Parsed, received: datetime) -> dict[str, Any]:
    pipeline = platform.pipeline
    totals = {"accepted": 0, "rejected": 0, "duplicates": 0, "flagged": 0}
    if parsed.rejects:
        pipeline.dead_letters.add([
            DeadLetter.of(msgspec.json.encode(item), transport="http", address="/api/ingest", rule=rule,
                          reason=reason, received=received, twin=_text(item, "twin"), message_id=_text(item, "id"))
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


@router.get("/api/dead-letters", responses=problems(400), summary="Rejected input, with the raw payload and the reason")
async def dead_letters(request: Request, after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                       twin: str | None = None, rule: str | None = None) -> dict[str, Any]:
    store = request.app.state.platform.dead_letters
    items = await run_in_threadpool(store.list, after=after, limit=limit, twin=twin, rule=rule)
    return {"items": [d.to_json() for d in items], "next": items[-1].id if len(items) == limit else None}
