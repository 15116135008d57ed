"""Reserved reported properties that the platform's analytics write on any twin.

Every twin model accepts these names in ``reported`` without declaring them, so a
detector or a remaining-useful-life predictor can be bound to any model; a model that
declares one of the names itself keeps its own definition. Values are checked here:

* ``anomaly_score`` — number ≥ 0, normalised so that the alarm threshold is 1.0;
* ``anomaly`` — boolean;
* ``contributions`` — object {signal path: share}, shares ≥ 0;
* ``fault_family`` — string or null;
* ``rul``, ``rul_p10``, ``rul_p90`` — numbers ≥ 0 in the analytic's time unit;
* ``health`` — number in [0, 1], 1 = as new;
* ``analytics`` — object {analytic name: {"version": …, …}}: which version produced the outputs;
* ``simulation`` — object {simulation name: {"residual": …, "score": …, "residual_norm": …, "worst": …}}:
  shadow mode's comparison of a behaviour model with the measurements (``tvilling.simulation.shadow``).

>>> check_output("health", 0.5, "reported.health").problems
[]
>>> check_output("health", 2.0, "reported.health").problems
['must be between 0 and 1']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: name → kind of the value; the kinds follow ``tvilling.ingest.specs`` (number, boolean, string, other)
OUTPUTS: dict[str, str] = {
    "anomaly_score": "number",
    "anomaly": "boolean",
    "contributions": "other",
    "fault_family": "string",
    "rul": "number",
    "rul_p10": "number",
    "rul_p90": "number",
    "health": "number",
    "analytics": "other",
    "simulation": "other",
}


@dataclass
class Checked:
    value: Any
    problems: list[str] = field(default_factory=list)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_output(name: str, value: Any, where: str) -> Checked:
    """Check the value of a reserved output; ``problems`` is empty when it is acceptable."""
    if value is None:
        return Checked(None)
    kind = OUTPUTS[name]
    if kind == "number":
        if not _number(value):
            return Checked(value, ["must be a finite number"])
        if name == "health" and not 0.0 <= value <= 1.0:
            return Checked(value, ["must be between 0 and 1"])
        if value < 0:
            return Checked(value, ["must not be negative"])
        return Checked(float(value))
    if kind == "boolean":
        return Checked(value, [] if isinstance(value, bool) else ["must be true or false"])
    if kind == "string":
        return Checked(value, [] if isinstance(value, str) else ["must be a string or null"])
    if not isinstance(value, dict):
        return Checked(value, ["must be an object"])
    if name == "contributions":
        bad = [k for k, v in value.items() if v is not None and not (_number(v) and v >= 0)]
        if bad:
            return Checked(value, [f"share of {bad[0]!r} must be a number ≥ 0"])
    return Checked(value)
