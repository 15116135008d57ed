"""Audit routes: the tamper-evident audit chain, listed and filtered, and its verification.

``GET /api/audit`` lists entries by sequence number, filtered by ``actor``, ``action``, ``target`` and a
time range ``[from, to)``; ``after`` is the ``next`` of the previous page. ``GET /api/audit/verify``
checks every entry and seal against the store's sealing key and answers the report: ``ok``, the
extent and sealing of the chain, and the first bad entry with why (edited, deleted, inserted,
reordered, a forged, unknown, mismatched or missing seal). A broken chain is a report (200), not an
error. Both read the backend's audit store; who may call them is the access policy's business.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tvilling.api.openapi import problems
from tvilling.backend.audit import MAX_LIST, AuditStore
from tvilling.planning.workorders import parse_time

router = APIRouter(tags=["audit"])


def audit_store(request: Request) -> AuditStore:
    """The app's audit store (the platform backend's)."""
    store: AuditStore = request.app.state.platform.backend.audit
    return store


def _time(value: str | None, field: str) -> datetime | None:
    return None if value is None else parse_time(value, field)


@router.get("/api/audit", responses=problems(400, 422, 503),
            summary="Audit entries by sequence number, filtered by actor, action, target and time")
async def list_audit(
        request: Request,
        actor: str | None = Query(None, max_length=512, description="only this actor's entries"),
        action: str | None = Query(None, max_length=512, description="only this action, e.g. twin.patch"),
        target: str | None = Query(None, max_length=512, description="only this target, e.g. twin:line-1-m01"),
        since: str | None = Query(None, alias="from", description="only entries at or after this time (ISO 8601)"),
        until: str | None = Query(None, alias="to", description="only entries before this time (ISO 8601)"),
        after: int = Query(0, ge=0, description="the `next` of the previous page (a sequence number)"),
        limit: int = Query(100, ge=1, le=MAX_LIST)) -> dict[str, Any]:
    store = audit_store(request)
    start, end = _time(since, "from"), _time(until, "to")
    items = await run_in_threadpool(store.list, actor=actor, action=action, target=target, since=start, until=end,
                                    after=after, limit=limit)
    return {"items": [e.to_json() for e in items], "next": items[-1].seq if len(items) == limit else None}


@router.get("/api/audit/verify", responses=problems(503),
            summary="Verify the audit chain and its seals: intact, or the first bad entry and why")
async def verify_audit(request: Request) -> dict[str, Any]:
    store = audit_store(request)
    report = await run_in_threadpool(store.verify)
    return report.to_json()
