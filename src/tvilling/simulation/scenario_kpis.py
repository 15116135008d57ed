"""What a scenario's run means: bands, KPIs per option, the comparison, and the score afterwards.

* :func:`bands` — p10/p50/p90 of an output over the samples at each time;
* :func:`kpis` — per option, for one machine or the whole set (``machine=None``: the line fails when
  any of its machines fails; production and energy add up): time to failure (p10/p50/p90 of the
  first failure; ``inf`` where fewer samples failed within the horizon than the quantile needs),
  probability of failure within the horizon and within the next shift, production and energy (mean
  and p10/p50/p90), and lost production versus the baseline (the mean over samples of baseline
  minus option: the samples share their parameters, so the difference is paired);
* :func:`compare` — the KPI rows as a text table, the baseline first;
* :func:`score` — once the horizon has passed, the bands of an option against what actually
  happened: per output, the share of actual points inside [p10, p90] (0.8 when the bands are
  honest) and the error of p50 (mean absolute, root mean square).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Array
from tvilling.simulation.scenario_runner import ScenarioResult

QUANTILES = (10.0, 50.0, 90.0)
Triple = tuple[float, float, float]


def _triple(values: Array) -> Triple:
    q = np.percentile(values, QUANTILES)
    return float(q[0]), float(q[1]), float(q[2])


def _machines(result: ScenarioResult, machine: int | None) -> slice:
    k = result.failed_at.shape[1]
    if machine is None:
        return slice(None)
    if isinstance(machine, bool) or not isinstance(machine, int) or not 0 <= machine < k:
        raise Invalid(f"scenario: machine must be an index below {k}, not {machine!r}", field="machine",
                      rule="range")
    return slice(machine, machine + 1)


def bands(result: ScenarioResult, output: str, option: str, machine: int = 0) -> Array:
    """p10, p50 and p90 of ``output`` for ``option`` and ``machine`` at each time: shape ``(3, steps + 1)``.
    Values that are not numbers (a quality while stopped) are left out; a time with none gives NaN."""
    if output not in result.series:
        raise Invalid(f"scenario: output {output!r} was not recorded; recorded: {sorted(result.series)}",
                      field="output", rule="unknown")
    data = result.series[output][:, result.index(option), _machines(result, machine), :]
    flat = data.reshape(data.shape[0], -1).astype(np.float64)
    out = np.full((3, flat.shape[0]), np.nan)
    valid = ~np.isnan(flat).all(axis=1)
    if valid.any():
        out[:, valid] = np.nanpercentile(flat[valid], QUANTILES, axis=1)
    return out


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one option (hours, parts, kWh; ``inf`` time to failure: beyond the horizon)."""

    option: str
    time_to_failure_h: Triple
    failure_probability: float  # within the horizon
    failure_probability_shift: float  # within the next shift
    production_mean: float
    production: Triple
    lost_production: float  # mean of (baseline − option), paired samples
    energy_kwh_mean: float | None
    energy_kwh: Triple | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``inf`` becomes None: beyond the horizon)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float):
                return None if math.isinf(value) else round(value, 6)
            if isinstance(value, tuple):
                return [clean(v) for v in value]
            return value
        return {k: clean(v) for k, v in asdict(self).items()}


def kpis(result: ScenarioResult, machine: int | None = None) -> list[Kpis]:
    """The KPIs of every option, the baseline first, for ``machine`` (an index) or all machines."""
    sel = _machines(result, machine)
    failed_at = result.failed_at[:, sel, :].min(axis=1)  # (options, samples): the first machine to fail
    production = result.production[:, sel, :].sum(axis=1)
    energy = None if result.energy is None else result.energy[:, sel, :].sum(axis=1)
    shift = min(result.shift, result.horizon)
    out = []
    for o, name in enumerate(result.options):
        # a sample's own value, no interpolation: inf where too few failed (beyond the horizon)
        ttf = np.percentile(failed_at[o], QUANTILES, method="inverted_cdf") / 3600.0
        out.append(Kpis(
            option=name, time_to_failure_h=(float(ttf[0]), float(ttf[1]), float(ttf[2])),
            failure_probability=float(np.mean(failed_at[o] <= result.horizon)),
            failure_probability_shift=float(np.mean(failed_at[o] <= shift)),
            production_mean=float(production[o].mean()), production=_triple(production[o]),
            lost_production=float(np.mean(production[0] - production[o])),
            energy_kwh_mean=None if energy is None else float(energy[o].mean()),
            energy_kwh=None if energy is None else _triple(energy[o])))
    return out


def compare(rows: Sequence[Kpis], shift_h: float = 8.0) -> str:
    """The KPIs side by side as a text table (what a narrator prints)."""
    def hours(v: float) -> str:
        return "> horizon" if math.isinf(v) else f"{v:.1f} h"

    head = ("option", "TTF p10", "TTF p50", "P(fail) horizon", f"P(fail) {shift_h:g} h", "production",
            "lost", "energy kWh")
    lines = [head]
    for r in rows:
        lines.append((r.option, hours(r.time_to_failure_h[0]), hours(r.time_to_failure_h[1]),
                      f"{r.failure_probability:.0%}", f"{r.failure_probability_shift:.0%}",
                      f"{r.production_mean:.0f}", f"{r.lost_production:.0f}",
                      "-" if r.energy_kwh_mean is None else f"{r.energy_kwh_mean:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


@dataclass(frozen=True)
class Score:
    """How one output's bands did against what happened: ``coverage`` (share of points in [p10, p90]),
    ``mae`` and ``rmse`` of p50, over ``points`` actual points inside the horizon."""

    output: str
    points: int
    coverage: float
    mae: float
    rmse: float


def score(result: ScenarioResult, actual: Mapping[str, tuple[Sequence[float], Sequence[float]]],
          option: str | None = None, machine: int = 0) -> dict[str, Score]:
    """Score ``option`` (default: the baseline) against ``actual``: per output, ``(times, values)`` with
    times in seconds from the scenario's start. The bands are interpolated to the actual times; points
    outside the horizon or not numbers are left out. An output with no point left is an error."""
    name = result.baseline if option is None else option
    out: dict[str, Score] = {}
    for output, (times, values) in actual.items():
        t = np.asarray(times, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if t.shape != v.shape or t.ndim != 1:
            raise Invalid(f"scenario: the actual series of {output!r} needs as many times as values",
                          field=f"actual.{output}", rule="shape")
        b = bands(result, output, name, machine)
        keep = (t >= 0) & (t <= result.horizon) & np.isfinite(v) & np.isfinite(t)
        if not keep.any():
            raise Invalid(f"scenario: the actual series of {output!r} has no point inside the horizon",
                          field=f"actual.{output}", rule="empty")
        t, v = t[keep], v[keep]
        lo, mid, hi = (np.interp(t, result.times, row) for row in b)
        err = v - mid
        out[output] = Score(output, int(t.size), float(np.mean((v >= lo) & (v <= hi))),
                            float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err * err))))
    return out


__all__ = ["QUANTILES", "Kpis", "Score", "bands", "compare", "kpis", "score"]
