"""Upkeep: stale series, history rollups, analytics refresh and history retention, on a schedule."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tvilling.app import Platform

log = logging.getLogger("tvilling.server")
RETENTION_EVERY_S = 3600.0


async def maintain(platform: Platform) -> None:
    """Every ``settings.maintenance_s``: mark silent series stale, merge history rollups, reload
    analytics whose promoted versions changed and apply simulation parameter versions promoted since;
    hourly, delete history older than its retention
    rules allow. A failed round is logged and the next one tries again (cancel to stop)."""
    last_retention: float | None = None
    while True:
        await asyncio.sleep(platform.settings.maintenance_s)
        try:
            await asyncio.to_thread(platform.pipeline.check_stale)
            await asyncio.to_thread(platform.history.compact)
            if platform.settings.analytics:
                reloaded = await asyncio.to_thread(platform.analytics.refresh)
                if reloaded:
                    log.info("analytics: promoted versions changed for %s; reloaded", ", ".join(reloaded))
            if platform.settings.simulations:  # a version promoted by another process (tvilling sim calibrate)
                changed = await asyncio.to_thread(platform.simulations.refresh)
                if changed:
                    log.info("simulations: promoted parameter versions applied to %s", ", ".join(changed))
            loop_now = asyncio.get_running_loop().time()
            if last_retention is None or loop_now - last_retention >= RETENTION_EVERY_S:
                deleted = await asyncio.to_thread(apply_retention, platform)
                last_retention = loop_now
                if any(deleted.values()):
                    log.info("retention: deleted %s", deleted)
        except Exception:  # upkeep must not stop the server; the next round tries again
            log.exception("maintenance round failed")


def apply_retention(platform: Platform) -> dict[str, int]:
    """Apply the history retention rules now (model rules need each twin's model)."""
    rules = platform.history.retention_rules()
    if not rules:
        return {}
    models: dict[str, str] = {}
    if any(r.model is not None for r in rules):
        from tvilling.twins.query import Query, Step

        after: str | None = None
        while True:  # every twin's model, a page at a time
            page = platform.twins.store.query(Query(steps=(Step(),), limit=1000, after=after))
            models.update((t.id, t.model) for t in page.items)
            if page.next is None:
                break
            after = page.next
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    result: dict[str, int] = platform.history.apply_retention(now_us, models)
    return result
