"""The demo's planning setup: its maintenance windows and crews, its production orders, and production planned on
the plant's clock.

The demo's plant runs ``speed`` times faster than the clock its readings carry (60: a plant hour is a minute of
readings). Maintenance planning knows that (``time_scale``), and so does production planning
(``ProductionService(platform, time_scale=speed)``): a machine making 120 parts a plant hour makes them in a
minute of the readings' clock, the clock plans, work orders and the dispatcher use.

:func:`demo_maintenance` is the ``[maintenance]`` table of a demo run: planning hours are plant hours counted from
the plant's first reading (``clock_origin``), so the windows sit at the same plant steps in every run. A
maintenance window of ``stop_h`` opens every ``stop_every_h`` plant hours from ``first_stop_h``; two mechanics
cover the day in twelve-hour shifts; replacing a bearing takes ``repair_h``; the horizon is 12 plant hours.

>>> doc = demo_maintenance(speed=60.0, first_stop_h=3.0, stop_every_h=4.0, stop_h=1.0, repair_h=1.0)
>>> [w["daily"] for w in doc["windows"]]
['03:00-04:00', '07:00-08:00', '11:00-12:00', '15:00-16:00', '19:00-20:00', '23:00-24:00']
>>> window_spans(first_stop_h=0.9, stop_every_h=12.0, stop_h=0.5)
['00:54-01:24', '12:54-13:24']
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.planning.maintenance_service_config import DEFAULTS
from tvilling.planning.production_orders import iso

#: the demo's maintenance horizon, plant hours: long enough for the bearing's predicted life, short for the what-if
HORIZON_H = 12.0
WINDOW_KIND = "maintenance-window"
PRODUCTS = ("shaft", "flange", "hub")
#: parts of one operation at the nominal rate (120 parts a plant hour): one or two plant hours of work
QUANTITIES = (120, 240)


def _hm(hours: float) -> str:
    minutes = round(hours * 60.0)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def window_spans(*, first_stop_h: float, stop_every_h: float, stop_h: float) -> list[str]:
    """The daily spans (``HH:MM-HH:MM`` on the plant clock) of a window of ``stop_h`` every ``stop_every_h`` plant
    hours from ``first_stop_h``; ``Invalid`` naming the setting that makes no such pattern."""
    for name, value in (("first_stop_h", first_stop_h), ("stop_every_h", stop_every_h), ("stop_h", stop_h)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise Invalid(f"demo maintenance: {name} must be a number ≥ 0 (plant hours), not {value!r}", field=name,
                          rule="range")
    if not 0 < stop_h < stop_every_h:
        raise Invalid(f"demo maintenance: stop_h ({stop_h:g}) must be > 0 and shorter than stop_every_h "
                      f"({stop_every_h:g})", field="stop_h", rule="range")
    per_day = 24.0 / stop_every_h
    if stop_every_h > 24.0 or abs(per_day - round(per_day)) > 1e-9:
        raise Invalid(f"demo maintenance: stop_every_h ({stop_every_h:g}) must divide the 24-hour day (1, 2, 3, 4, "
                      "6, 8, 12 or 24)", field="stop_every_h", rule="divides_day")
    first = first_stop_h % stop_every_h
    out = []
    for k in range(round(per_day)):
        start = first + k * stop_every_h
        out.append(f"{_hm(start)}-{_hm(min(start + stop_h, 24.0))}")
    return out


def demo_maintenance(*, speed: float, first_stop_h: float, stop_every_h: float, stop_h: float, repair_h: float,
                     origin: datetime | None = None, slow_rpm: float = 900.0, seed: int | None = 12) -> dict[str, Any]:
    """The ``[maintenance]`` table of a demo run (see the module text); ``origin``: the plant's first reading."""
    if isinstance(repair_h, bool) or not isinstance(repair_h, int | float) or not 0 < repair_h <= stop_h:
        raise Invalid(f"demo maintenance: repair_h must be > 0 and fit its window of {stop_h:g} plant h, not "
                      f"{repair_h!r}", field="repair_h", rule="range")
    task = {**DEFAULTS["tasks"][0], "duration_h": float(repair_h)}
    windows = [{"id": f"mw-{span[:5].replace(':', '')}", "kind": WINDOW_KIND, "daily": span}
               for span in window_spans(first_stop_h=first_stop_h, stop_every_h=stop_every_h, stop_h=stop_h)]
    doc: dict[str, Any] = {
        "horizon_h": HORIZON_H, "time_scale": float(speed), "tasks": [task],
        "technicians": [{"id": "tech-a", "skills": ["mechanic"], "shifts": ["00:00-12:00"]},
                        {"id": "tech-b", "skills": ["mechanic", "electrician"], "shifts": ["12:00-24:00"]}],
        "windows": windows,
        # the predictive alarm decides (the anomaly alone says something is wrong, not how long it lasts)
        "decision": {"rules": ["bearing-rul"], "slow_rpm": float(slow_rpm), "samples": 40, "max_windows": 4,
                     "seed": seed},
    }
    if origin is not None:
        doc["clock_origin"] = iso(origin)
    return doc


def demo_orders(line: str, machines: list[str], now: datetime, speed: float) -> list[dict[str, Any]]:
    """Production orders for the demo's line, released ``now``: two per machine, each a routing over two machines
    next to each other (one step on a one-machine line), one or two plant hours of work a step, due one plant
    hour apart from three plant hours on, priorities 1 to 3."""
    if not machines:
        raise Invalid("the demo's line has no machines to plan production on", field="machines", rule="required")
    n = len(machines)
    out = []
    for k in range(max(4, 2 * n)):
        steps = [[machines[k % n]], [machines[(k + 1) % n]]] if n > 1 else [[machines[0]]]
        due = now + timedelta(hours=(3.0 + k) / speed)
        out.append({"id": f"PO-{k + 1:03d}", "line": line, "product": PRODUCTS[k % len(PRODUCTS)],
                    "quantity": QUANTITIES[k % len(QUANTITIES)], "routing": steps, "due": iso(due),
                    "release": iso(now), "priority": 1 + k % 3})
    return out


#: the KPIs counted in hours of the readings' clock, and the one per hour of it
_HOURS = ("makespan_h", "total_tardiness_h", "weighted_tardiness_h", "downtime_h", "downtime_avoided_h")
_PER_HOUR = ("throughput_per_h",)


def plant_kpis(kpis: dict[str, Any], time_scale: float) -> dict[str, Any]:
    """A plan's KPIs in plant hours (``time_scale`` plant hours per hour of the readings' clock).

    >>> plant_kpis({"makespan_h": 0.1, "throughput_per_h": 3600.0, "parts": 360.0}, 60.0)
    {'makespan_h': 6.0, 'throughput_per_h': 60.0, 'parts': 360.0}
    """
    out: dict[str, Any] = {}
    for name, value in kpis.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if name in _HOURS:
                value = value * time_scale
            elif name in _PER_HOUR:
                value = value / time_scale
        out[name] = value
    return out


__all__ = ["HORIZON_H", "WINDOW_KIND", "demo_maintenance", "demo_orders", "plant_kpis",
           "window_spans"]
