"""Scoring a scenario once its horizon has passed: its bands against what the twin then measured.

A scenario's record keeps, per shown output and option, the p10/p50/p90 bands on a time grid in model
seconds from the fork (``series``). Once ``at + horizon`` (in the twin's time: model seconds divided by
the simulation's ``time_scale``) lies in the past, :func:`score_scenario` reads each output's bound
property from history over that span — resolved through the simulation's binding, as shadow mode and
calibration resolve it — and scores the option (default: the baseline, *do nothing*, which is what
happened unless someone acted) with :func:`score_bands`:

* ``coverage``: the share of the actual points inside [p10, p90] (about 0.8 when the bands are honest);
* ``mae`` / ``rmse``: the error of p50 at the actual points (bands interpolated to their times).

>>> import numpy as np
>>> bands = {"p10": [0.0, 0.0, 0.0], "p50": [1.0, 1.0, 1.0], "p90": [2.0, 2.0, 2.0]}
>>> s = score_bands([0.0, 10.0, 20.0], bands, np.array([5.0, 15.0]), np.array([1.5, 3.0]))
>>> s["points"], s["coverage"], s["mae"]
(2, 0.5, 1.25)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.simulation.binding import Binder
from tvilling.simulation.calibrate_history import read_points
from tvilling.simulation.spec import SimulationSpec

Array = np.ndarray


def score_bands(t_s: Sequence[float], bands: Mapping[str, Sequence[float | None]], t: Array,
                values: Array) -> dict[str, Any]:
    """Coverage of [p10, p90] and the p50 error at the actual points ``(t, values)`` (model seconds from
    the fork) inside the bands' grid ``t_s``; ``points`` 0 (and the rest None) when none falls inside."""
    grid = np.asarray(t_s, dtype=np.float64)
    lo, mid, hi = (np.asarray([math.nan if v is None else v for v in bands[q]], dtype=np.float64)
                   for q in ("p10", "p50", "p90"))
    keep = np.isfinite(t) & np.isfinite(values) & (t >= grid[0]) & (t <= grid[-1])
    t, values = t[keep], values[keep]
    if not t.size:
        return {"points": 0, "coverage": None, "mae": None, "rmse": None}
    lo_t, mid_t, hi_t = (np.interp(t, grid, row) for row in (lo, mid, hi))
    err = values - mid_t
    return {"points": int(t.size), "coverage": round(float(np.mean((values >= lo_t) & (values <= hi_t))), 4),
            "mae": round(float(np.mean(np.abs(err))), 6), "rmse": round(float(np.sqrt(np.mean(err * err))), 6)}


def score_scenario(record: Mapping[str, Any], spec: SimulationSpec, *, twins: Any, modelset: Any, history: Any,
                   option: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Score a finished scenario's ``option`` against the history of its twin (see the module text).

    Raises :class:`Conflict` while the scenario is not done or its horizon has not passed yet, and
    :class:`Invalid` for an option it does not have or when history holds no point of any output."""
    if record.get("status") != "done":
        raise Conflict(f"scenario {record.get('id')!r} is {record.get('status')}; only a finished one is scored",
                       field="status", rule="not_done")
    series = record.get("series") or {}
    t_s = [float(t) for t in series.get("t_s") or []]
    outputs: Mapping[str, Mapping[str, Any]] = series.get("outputs") or {}
    options = list(record.get("options") or [])
    chosen = option if option is not None else (str(options[0]) if options else "")
    if chosen not in options:
        raise Invalid(f"scenario {record.get('id')!r} has no option {option!r}; its options are {options}",
                      field="option", rule="unknown")
    if len(t_s) < 2 or not outputs:
        raise Invalid(f"scenario {record.get('id')!r} recorded no series to score", field="series", rule="empty")
    at = datetime.fromisoformat(str(record["at"]))
    scale = spec.time_scale or 1.0
    start_us = int(at.timestamp() * 1e6)
    end_us = start_us + int(t_s[-1] / scale * 1e6)
    now_us = int((now or datetime.now(UTC)).timestamp() * 1e6)
    if now_us < end_us:
        ends = datetime.fromtimestamp(end_us / 1e6, UTC).isoformat()
        raise Conflict(f"scenario {record.get('id')!r}: its horizon ends at {ends}; score it after that",
                       field="horizon", rule="not_passed")
    twin_id = str(record["twin"])
    try:
        twin = twins.get(twin_id)
    except NotFound:
        raise NotFound(f"scenario {record.get('id')!r}: its twin {twin_id!r} no longer exists", field="twin",
                       rule="exists") from None
    bound = Binder(spec, twins, modelset).bind(twin_id, twin)
    scores: dict[str, Any] = {}
    for name, by_option in outputs.items():
        source = spec.outputs.get(name)
        target = None if source is None else bound.twin_of(source)
        if source is None or target is None:
            scores[name] = {"points": 0, "coverage": None, "mae": None, "rmse": None,
                            "why": "not bound to a measured property of the twin"}
            continue
        ts, values = read_points(history, target, source, start_us, end_us + 1)
        t = (ts - start_us) / 1e6 * scale
        scores[name] = {**score_bands(t_s, by_option[chosen], t, values), "property": f"{target}/{source.path}"}
    if not any(s["points"] for s in scores.values()):
        raise Invalid(f"scenario {record.get('id')!r}: history holds no reading of its outputs between "
                      f"{at.isoformat()} and the end of its horizon", field="history", rule="empty")
    return {"id": record.get("id"), "twin": twin_id, "option": chosen, "from": at.isoformat(),
            "to": datetime.fromtimestamp(end_us / 1e6, UTC).isoformat(), "outputs": scores}


__all__ = ["score_bands", "score_scenario"]
