"""The work orders' change feed as the change stream's source ``workorders``.

Items are ``{"kind": "workorder", "id", "twin", "model", "task", "state", "previous", "version",
"firm", "planned_start", "planned_end", "by", "time"}``: one each time an order is proposed,
moves through its lifecycle or has its completion recorded (``previous`` is then its own
state). They carry ``twin`` (the asset) and ``model``, so the stream's twin and model filters
apply. :func:`register` adds the source to a registry, built from a context's
``backend.workorders``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvilling.backend.workorders import WorkOrderStore
    from tvilling.streams.registry import SourceRegistry


class WorkOrderFeedSource:
    """Source ``workorders``: reads :meth:`WorkOrderStore.changes` (blocking; run in a thread)."""

    name = "workorders"
    kind = "workorder"
    types = frozenset({"workorder"})

    def __init__(self, store: WorkOrderStore) -> None:
        self.store = store

    def read(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Work order change items after ``after``, at most ``limit``, in order."""
        return self.store.changes(after, limit)


def register(registry: SourceRegistry[Any]) -> None:
    """Register the work order feed as the source ``workorders``, from a context's ``backend.workorders``."""
    registry.register("workorders", lambda context: WorkOrderFeedSource(context.backend.workorders))
