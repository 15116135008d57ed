"""Ingest routes: envelope batches in (JSON or columnar), dead letters out.

The answer to ``POST /api/ingest`` counts what happened to the batch's readings and, when
some were rejected, says why: ``rejections`` holds one entry per rule with its count and its
first reasons (the dead letters keep every one of them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.body import decode_json, read_bytes
from tvilling.api.openapi import json_body, problems
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.ingest import forms
from tvilling.ingest.deadletter import DeadLetter, summarise

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
    "and kept as dead letters: the answer is still 200, and its `rejections` say why (per rule: the count "
    "and the first reasons). The body may hold at most `max_ingest_bytes` (default: `max_body_bytes`, "
    "1 MiB); a larger one gets 413.",
    "anyOf": [ENVELOPE, COLUMNAR, {"type": "array", "items": {"anyOf": [ENVELOPE, COLUMNAR]}}],
}


def ingest_limit(settings: Settings) -> int:
    """The largest ``POST /api/ingest`` body: ``max_ingest_bytes`` where it is set, else ``max_body_bytes``."""
    if "max_ingest_bytes" in settings.model_fields_set:
        return int(settings.max_ingest_bytes)
    return int(settings.max_body_bytes)


@router.post("/api/ingest", openapi_extra=json_body(INGEST_BODY), responses=problems(400, 413, 422),
             summary="Ingest a batch of envelopes (JSON or columnar) through the data-quality pipeline")
async def ingest(request: Request) -> dict[str, Any]:
    platform = request.app.state.platform
    limit = ingest_limit(platform.settings)
    setting = "max_ingest_bytes" if "max_ingest_bytes" in platform.settings.model_fields_set else "max_body_bytes"
    raw = await read_bytes(request, limit=limit, setting=setting)
    received = datetime.now(UTC)
    return await run_in_threadpool(_read_and_run, platform, raw, received)


def _read_and_run(platform: Any, raw: bytes, received: datetime) -> dict[str, Any]:
    """Numeric columnar bodies straight to columns; any other body decoded and read item by item."""
    parsed = forms.parse_numeric_columns(raw)
    if parsed is None:
        parsed = forms.parse_body(decode_json(raw))
    return _run(platform, parsed, received)


def _text(item: Any, key: str) -> str | None:
    """A string field of a rejected item, if it has one (an integer id counts, as in the envelope)."""
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value[:256] if isinstance(value, str) else None


def _run(platform: Any, parsed: forms.Parsed, received: datetime) -> dict[str, Any]:
    pipeline = platform.pipeline
    totals: dict[str, Any] = {"accepted": 0, "rejected": 0, "duplicates": 0, "flagged": 0}
    letters = [DeadLetter.of(msgspec.json.encode(item), transport="http", address="/api/ingest", rule=rule,
                             reason=reason, received=received, twin=_text(item, "twin"),
                             message_id=_text(item, "id"))
               for item, reason, rule in parsed.rejects]
    if letters:
        pipeline.dead_letters.add(letters)
        totals["rejected"] += len(letters)
    results = []
    if parsed.envelopes:
        results.append(pipeline.ingest_envelopes(parsed.envelopes, transport="http", now=received))
    if parsed.columns:  # every columnar item of the body in one batch: one transaction, not one per item
        readings, sources = _merged(parsed.columns)
        results.append(pipeline.ingest_readings(readings, source=sources, transport="http", now=received))
    for res in results:
        for key in ("accepted", "rejected", "duplicates", "flagged"):
            totals[key] += getattr(res, key)
    totals["rejections"] = summarise([*letters, *(d for res in results for d in res.letters)])
    return totals


def _merged(columns: list[tuple[Readings, str | None]]) -> tuple[Readings, Any]:
    """The columnar items as one batch, with their source: one for all, or one per reading."""
    if len(columns) == 1:
        return columns[0]
    readings = Readings.concat([r for r, _ in columns])
    sources = {s for _, s in columns}
    if len(sources) == 1:
        return readings, sources.pop()
    per_row = np.empty(len(columns), dtype=object)
    per_row[:] = [s for _, s in columns]
    return readings, np.repeat(per_row, [len(r) for r, _ in columns])


@router.get("/api/dead-letters", responses=problems(400), summary="Rejected input, with the raw payload and the reason")
async def dead_letters(request: Request, after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                       twin: str | None = None, rule: str | None = None) -> dict[str, Any]:
    store = request.app.state.platform.dead_letters
    items = await run_in_threadpool(store.list, after=after, limit=limit, twin=twin, rule=rule)
    return {"items": [d.to_json() for d in items], "next": items[-1].id if len(items) == limit else None}
