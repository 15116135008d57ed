"""The runtime: the background services of one Tvilling process, as ``async with`` units on one loop.

:class:`Runtime` owns them (see :mod:`tvilling.runtime.runtime`); :func:`hub_for` builds a
platform's change hub from the sources each capability registers.
"""

from tvilling.runtime.runtime import Runtime
from tvilling.runtime.sources import hub_for, source_registry
from tvilling.runtime.upkeep import apply_retention

__all__ = ["Runtime", "apply_retention", "hub_for", "source_registry"]
