"""The twins a replayed public data set needs (SKAB, NAB, C-MAPSS), created in this process's platform.

:func:`ensure_series_twins` is the local form of :func:`tvilling.connect.replay.ensure_twins` (which works
through a running server): it registers the built-in ``datasets`` models and creates each series' twin
where it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from tvilling.connect.replay import Series
from tvilling.core.errors import NotFound
from tvilling.models.builtin import builtin_documents
from tvilling.models.service import ModelRegistry
from tvilling.twins.service import TwinService


def ensure_series_twins(models: ModelRegistry, twins: TwinService, series: Sequence[Series], *,
                        actor: str = "replay") -> int:
    """Register the data-set models and create the missing twins of ``series``; returns how many were created."""
    models.add(builtin_documents("datasets"))
    created = 0
    for s in series:
        try:
            twins.get(s.twin)
        except NotFound:
            twins.put(s.twin, {"model": s.model, "attributes": {"origin": s.origin}}, actor=actor)
            created += 1
    return created
