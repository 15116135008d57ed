"""What the twin knows in the maintenance study: each bearing's remaining life, from its readings only.

The live twin's remaining-life analytic is the demo's ``bearing-rul`` (:func:`tvilling.demo.demo_analytics`:
the ``rul-trend`` method on the bearing's BPFO band, judged at its shaft speed, extrapolated to the
band's level at failure). :class:`TwinRul` runs that configuration with the analytics step the
platform runs on every stored batch (:func:`tvilling.analytics.binding.step.process`): the readings
of each planning period go in as :class:`~tvilling.core.readings.Readings` of the bearing twins, the
``rul``/``rul_p10``/``rul_p90`` outputs come out. Only two changes to the demo's configuration:
``time_scale`` is 1 (the study stamps readings in plant time, the demo in accelerated wall time), and
``max_rul`` is a year (the study plans weeks ahead, the demo's 1,000 h cap was chosen for minutes).

When a machine gets new bearings the twin forgets what its analytics learned of the old ones: the
new bearing is learned from its own first rows (its work order is done; the twin knows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding import parse_specs
from tvilling.analytics.binding.spec import AnalyticSpec
from tvilling.analytics.binding.step import AnalyticsState, Batch, process
from tvilling.core.readings import Readings
from tvilling.plant.plant import MODELS
from tvilling.plant.signals import BEARINGS, COL

F64 = npt.NDArray[np.float64]
US_PER_H = 3_600_000_000
#: plant hour 0 on the readings' clock: Monday 2026-01-05 00:00 UTC
EPOCH_US = 1_767_571_200_000_000


def rul_spec(max_rul_h: float = 8_760.0) -> AnalyticSpec:
    """The demo's bearing remaining-life analytic, on plant-time readings."""
    from tvilling.demo import demo_analytics

    doc = next(d for d in demo_analytics(1.0) if d["method"] == "rul-trend")
    params = {**doc["params"], "time_scale": 1.0, "max_rul": max_rul_h, "health_horizon": max_rul_h}
    return parse_specs([{**doc, "params": params}])[0]


@dataclass(frozen=True)
class Prediction:
    """A bearing's remaining life (hours after ``at_h``), as the twin reports it."""

    rul: float
    p10: float
    p90: float
    at_h: float


class TwinRul:
    """The twin's ``bearing-rul`` analytic over ``machines`` machines (two bearing twins each)."""

    def __init__(self, machines: int, spec: AnalyticSpec | None = None) -> None:
        self.spec = spec or rul_spec()
        self.machines = machines
        self.state = AnalyticsState([self.spec])
        self.twins = [f"m{i:03d}-{b}" for i in range(machines) for b in BEARINGS]
        self.model = MODELS["bearing"]
        self._models = {t: self.model for t in self.twins}
        inputs = [*self.spec.inputs, *self.spec.context]
        # per bearing twin: the sensor matrix column of each input (the bearing's own channels)
        self._cols = np.array([[COL[b, name] for name in inputs] for b in BEARINGS], dtype=np.int64)
        self._props = np.array(inputs, dtype=object)
        self._ts: list[int] = []
        self._rows: list[F64] = []
        self.latest: dict[str, Prediction | None] = {}
        self.rows_seen = 0

    def observe(self, time_h: float, values: F64) -> None:
        """Keep one step's readings (the machines × signals matrix of the plant's sensors)."""
        self._ts.append(EPOCH_US + round(time_h * US_PER_H))
        self._rows.append(values[:, self._cols])  # machines × bearings × inputs

    def update(self) -> None:
        """Run the analytics step on the readings kept since the last update; the twins' outputs move on."""
        if not self._ts:
            return
        block = np.stack(self._rows)  # steps × machines × bearings × inputs
        steps, n, nb, k = block.shape
        ts = np.repeat(np.asarray(self._ts, dtype=np.int64), n * nb * k)
        twin = np.tile(np.repeat(np.asarray(self.twins, dtype=object), k), steps)
        prop = np.tile(self._props, steps * n * nb)
        value = block.reshape(-1)
        keep = ~np.isnan(value)
        readings = Readings(twin[keep], prop[keep], ts[keep], value[keep])
        self._ts, self._rows = [], []
        self.rows_seen += steps
        out = process(Batch(readings, self._models), self.state)
        derived = out.derived()
        if derived is None:
            return
        self._take(derived[0])

    def _take(self, r: Readings) -> None:
        """The newest ``rul``/``rul_p10``/``rul_p90`` of each twin; a null ``rul`` (no credible trend) clears it."""
        for twin in np.unique(r.twin[r.prop == "rul"]).tolist():
            found: dict[str, tuple[int, float]] = {}
            for name in ("rul", "rul_p10", "rul_p90"):
                sel = np.flatnonzero((r.twin == twin) & (r.prop == name))
                if sel.size:
                    last = sel[np.argmax(r.ts[sel])]
                    found[name] = (int(r.ts[last]), float(r.value[last]))
            ts, rul = found["rul"]
            if not math.isfinite(rul):
                self.latest[twin] = None
                continue
            p10 = found.get("rul_p10", (ts, rul))[1]
            p90 = found.get("rul_p90", (ts, rul))[1]
            self.latest[twin] = Prediction(rul, min(p10, rul), max(p90, rul), (ts - EPOCH_US) / US_PER_H)

    def forget(self, machine: int) -> None:
        """New bearings on ``machine``: its bearing twins learn again from their next readings."""
        self.update()  # what the old bearings showed is analysed as theirs
        for b in BEARINGS:
            twin = f"m{machine:03d}-{b}"
            key = (self.spec.name, twin)
            for table in (self.state.runners, self.state.last, self.state.seen, self.state.markers,
                          self.state.failures):
                table.pop(key, None)
            self.latest.pop(twin, None)

    def machine(self, machine: int) -> Prediction | None:
        """The machine's remaining life: that of its bearing predicted to fail first (None: no trend on either)."""
        preds = [p for b in BEARINGS if (p := self.latest.get(f"m{machine:03d}-{b}")) is not None]
        return min(preds, key=lambda p: p.at_h + p.rul, default=None)


__all__ = ["EPOCH_US", "Prediction", "TwinRul", "rul_spec"]
