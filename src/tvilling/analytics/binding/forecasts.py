"""A forecast of one stored series: its newest readings through Holt's linear method, with an 80 % interval."""

from __future__ import annotations

from typing import Any

from tvilling.analytics.binding.frames import newest_points
from tvilling.analytics.forecast import holt


def forecast_series(history: Any, twin: str, prop: str, *, horizon: int, points: int) -> dict[str, Any]:
    """Forecast ``horizon`` steps of ``twin``'s ``prop`` from its newest ``points`` readings (NaNs left out)."""
    values = [x.value for x in newest_points(history, twin, prop, points) if x.value == x.value]
    fc = holt(values, horizon)
    return {"twin": twin, "property": prop, "points_used": len(values), "alpha": fc.alpha, "beta": fc.beta,
            "mean": fc.mean, "lower": fc.lower, "upper": fc.upper}
