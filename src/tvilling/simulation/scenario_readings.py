"""A scenario's simulated series as the readings its twins would have reported.

The analytics bound to a twin's model run on readings (:func:`tvilling.analytics.binding.step.process`);
:func:`readings` turns one option's series — one Monte-Carlo sample, or the p50 band — into
:class:`~tvilling.core.readings.Readings` of the forked twins, so the same detectors and RUL
estimators score the simulated future exactly as they score the live past. An output named
``part:property`` belongs to the twin ``twins[part]``; one without a part to ``twins[""]`` (the
machine twin). Outputs whose part has no twin are left out. Values that are not numbers (quality
while stopped) are left out too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.core.readings import Readings
from tvilling.simulation.scenario_kpis import bands
from tvilling.simulation.scenario_runner import ScenarioResult


def readings(result: ScenarioResult, option: str, *, twins: Mapping[str, str], start_us: int,
             sample: int | None = None, machine: int = 0) -> Readings:
    """The recorded outputs of ``option`` (for ``machine``) as readings from ``start_us`` (microseconds
    since the epoch: the fork's time) on: sample number ``sample``, or the p50 band when None."""
    o = result.index(option)
    samples = next(iter(result.series.values())).shape[3] if result.series else 0
    if sample is not None and not 0 <= sample < samples:
        raise Invalid(f"scenario: sample must be an index below {samples}, not {sample!r}", field="sample",
                      rule="range")
    ts = start_us + np.round(result.times * 1e6).astype(np.int64)
    cols: list[tuple[str, str, np.ndarray]] = []
    for output in result.series:
        part, _, prop = output.rpartition(":")
        twin = twins.get(part)
        if twin is None:
            continue
        if sample is None:
            values = bands(result, output, option, machine)[1]
        else:
            values = result.series[output][:, o, machine, sample].astype(np.float64)
        cols.append((twin, prop, values))
    if not cols:
        raise Invalid(f"scenario: no recorded output belongs to the twins given ({sorted(twins)})", field="twins",
                      rule="empty")
    twin_col = np.concatenate([np.full(ts.size, t, dtype=object) for t, _, _ in cols])
    prop_col = np.concatenate([np.full(ts.size, p, dtype=object) for _, p, _ in cols])
    value = np.concatenate([v for _, _, v in cols])
    keep = np.isfinite(value)
    out = Readings(twin_col[keep], prop_col[keep], np.tile(ts, len(cols))[keep], value[keep])
    order = np.argsort(out.ts, kind="stable")
    return out.take(order)


__all__ = ["readings"]
