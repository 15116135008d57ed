"""The demo plant's machine as a state-space model: the twin's own account of how a machine behaves.

The physics is the simulated plant's (speed lag, load and current, winding and bearing
temperatures, bearing wear and defect growth, vibration bands, throughput and quality), written
again from its equations so that the twin's model and the "real" plant are two things that can
disagree — after a calibration, or when the plant's parameters drift — as real ones do.

Per machine, with ``r = n/n₀`` (speed over nominal speed) and ``τ`` the process load (fraction of
rated, the spindle's load / 100), ``ρ = τ/τ₀``:

* speed ``n`` follows its target (the setpoint while running, 0 when stopped or failed) with a
  first-order lag ``tauSpeed``; below 0.5 rpm it stands still;
* motor load ``τ·r``; current ``I₀ + (I_r − I₀)·τ·r·(1 + 0.15·misalignment)`` while turning;
* winding temperature: a first-order lag (``tauMotor`` = thermal resistance × capacity) towards
  ``ambient + motorRise·(I/I_r)²·(1 + overheat)`` (``motorRise`` = thermal resistance × rated losses);
* bearing temperature: a lag (``tauBearing``) towards ``ambient + r·(bearingRiseSpeed·(½ + ½ρ)
  + bearingRiseDamage·min(D, 1.5) + bearingRiseMisalignment·misalignment)``;
* wear grows ``r·ρ³/wearLife`` per hour; a defect seeded with ``defectSeed`` > 0 grows like
  ``dd/dt = defectRate·r²·ρ²·(d + defectSeed)``; damage ``D = wear + d``, and ``D ≥ 1`` on either
  bearing fails the machine (it coasts to a stop and stays failed until the states are reset);
* vibration bands (g) per bearing: 1× ``(band1x + (imbalance + 0.3·misalignment)·share)·r²``, 2×
  ``(band2x + misalignment·share)·r``, BPFO ``(bandBpfo + defectBpfo·D)·r^1.5``, high
  ``(bandHigh + defectHigh·√(D + coupling·D_other))·r^1.5`` (``share`` = 1 at the drive end,
  ``ndeShare`` at the other); the overall level is their root sum of squares with a floor;
* throughput ``ratePerHour·r`` while running; quality falls with drive-end vibration above a
  healthy level and with misalignment (NaN while not running, as the plant reports nothing then).

Steps are the exact solution of the lags for inputs held over the step, so the model is stable
at any step — a 1-minute step for a month-long scenario as well as a 1-second shadow step.

>>> model = MachineModel()
>>> runs = model.start(2, start_values=model.steady_start(2, {"speedSetpoint": 1500.0, "spindle:load": 75.0}))
>>> y = model.step(runs, 60.0, {"speedSetpoint": np.array([1500.0, 900.0]), "spindle:load": 75.0})
>>> [round(float(v)) for v in y["throughput"]]
[120, 72]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tvilling.simulation.ports import Array, Signature, Variable
from tvilling.simulation.statespace import StateSpaceModel, Values

BEARINGS = ("de", "nde")
#: floor of the overall vibration level while the shaft stands still (sensor noise), g
_STILL_FLOOR = 0.004


def _p(name: str, default: float, lower: float, upper: float, unit: str | None, description: str) -> Variable:
    return Variable(name, unit, description, default, lower, upper)


PARAMETERS: tuple[Variable, ...] = (
    _p("nominalSpeed", 1500.0, 100.0, 10_000.0, "rpm", "nominal shaft speed"),
    _p("tauSpeed", 4.0, 0.1, 600.0, "s", "time constant of the speed following its target"),
    _p("noLoadCurrent", 5.0, 0.0, 1_000.0, "A", "motor current turning without load"),
    _p("ratedCurrent", 20.0, 0.1, 5_000.0, "A", "motor current at rated load"),
    _p("motorRise", 55.0, 1.0, 300.0, "K", "winding temperature rise at rated current (thermal resistance × "
       "rated losses)"),
    _p("tauMotor", 1200.0, 10.0, 100_000.0, "s", "winding thermal time constant (thermal resistance × capacity)"),
    _p("bearingRiseSpeed", 18.0, 0.0, 200.0, "K", "bearing temperature rise at nominal speed and reference load"),
    _p("bearingRiseDamage", 30.0, 0.0, 300.0, "K", "bearing temperature rise at damage 1, nominal speed"),
    _p("bearingRiseMisalignment", 8.0, 0.0, 100.0, "K/g", "bearing temperature rise per g of misalignment"),
    _p("tauBearing", 900.0, 10.0, 100_000.0, "s", "bearing thermal time constant"),
    _p("torqueBase", 0.75, 0.05, 2.0, None, "reference process load (fraction of rated)"),
    _p("wearLife", 20_000.0, 10.0, 1e7, "h", "hours to wear a bearing out at nominal speed and reference load"),
    _p("defectRate", 0.2, 0.0, 20.0, "1/h", "growth rate of a bearing defect at nominal speed and load"),
    _p("ratePerHour", 120.0, 0.0, 100_000.0, "1/h", "parts per hour at nominal speed"),
    _p("band1x", 0.10, 0.0, 10.0, "g", "1× band of a healthy machine at nominal speed"),
    _p("band2x", 0.05, 0.0, 10.0, "g", "2× band of a healthy machine at nominal speed"),
    _p("bandBpfo", 0.03, 0.0, 10.0, "g", "BPFO band of a healthy bearing at nominal speed"),
    _p("bandHigh", 0.04, 0.0, 10.0, "g", "high-frequency band of a healthy bearing at nominal speed"),
    _p("bandFloor", 0.05, 0.0, 10.0, "g", "broadband floor while turning"),
    _p("defectBpfo", 2.5, 0.0, 50.0, "g", "BPFO band at damage 1, nominal speed"),
    _p("defectHigh", 0.8, 0.0, 50.0, "g", "high band at damage 1, nominal speed (as √D)"),
    _p("coupling", 0.25, 0.0, 1.0, None, "share of one bearing's damage heard in the other's high band"),
    _p("ndeShare", 0.7, 0.0, 1.0, None, "share of imbalance and misalignment vibration at the non-drive end"),
    _p("vibrationOk", 0.35, 0.0, 10.0, "g", "drive-end vibration at nominal speed below which quality holds"),
    _p("imbalance", 0.0, 0.0, 10.0, "g", "imbalance: extra 1× vibration at nominal speed"),
    _p("misalignment", 0.0, 0.0, 10.0, "g", "misalignment: extra 2× vibration, heat and current"),
    _p("overheat", 0.0, 0.0, 10.0, None, "degraded cooling: the winding's rise is multiplied by 1 + overheat"),
    *(_p(f"{b}:defectSeed", 0.0, 0.0, 10.0, None, f"seed size of a defect on the {b} bearing (0: none)")
      for b in BEARINGS),
)

STATES: tuple[Variable, ...] = (
    Variable("speed", "rpm", "shaft speed", 1500.0, 0.0),
    Variable("motor.temperature", "°C", "winding temperature", 22.0),
    *(Variable(f"{b}:temperature", "°C", f"{b} bearing temperature", 22.0) for b in BEARINGS),
    *(Variable(f"{b}:wear", None, f"{b} bearing wear (1 = worn out)", 0.0, 0.0) for b in BEARINGS),
    *(Variable(f"{b}:defect", None, f"{b} bearing defect size", 0.0, 0.0) for b in BEARINGS),
    Variable("operatingHours", "h", "running time since the last maintenance", 0.0, 0.0),
    Variable("fault", None, "1 once a bearing has failed (damage ≥ 1), else 0", 0.0, 0.0, 1.0),
)

INPUTS: tuple[Variable, ...] = (
    Variable("speedSetpoint", "rpm", "the machine's speed setpoint"),
    Variable("spindle:load", "%", "process load, percent of rated (the spindle's load)"),
    Variable("running", None, "1 while the machine is commanded to run, 0 when stopped", 1.0, 0.0, 1.0),
    Variable("ambient", "°C", "ambient temperature", 22.0),
)

_BEARING_OUTPUTS = (("vibration", "g"), ("vibrationBand1x", "g"), ("vibrationBand2x", "g"),
                    ("vibrationBandBpfo", "g"), ("vibrationBandHigh", "g"), ("temperature", "°C"),
                    ("shaftSpeed", "rpm"))
OUTPUTS: tuple[Variable, ...] = (
    Variable("speed", "rpm"), Variable("throughput", "1/h"), Variable("quality"), Variable("operatingHours", "h"),
    Variable("motor.current", "A"), Variable("motor.temperature", "°C"), Variable("motor.load"),
    *(Variable(f"{b}:{name}", unit) for b in BEARINGS for name, unit in _BEARING_OUTPUTS),
    Variable("spindle:speed", "rpm"), Variable("spindle:load", "%"),
)

SIGNATURE = Signature(inputs=INPUTS, outputs=OUTPUTS, parameters=PARAMETERS, states=STATES)


class MachineModel(StateSpaceModel):
    """The demo plant's machine (plant-v4 twins: the machine, its motor, bearings and spindle).

    Output names are the twin properties they predict: ``speed``, ``motor.current`` on the machine
    twin, ``de:vibration`` on its drive-end bearing twin (``part:path``, as the plant names signals).
    """

    name = "machine"
    signature = SIGNATURE

    def update(self, t: float, dt: float, x: Values, u: Values, p: Values) -> dict[str, Array]:
        """One exact step of the lags, wear and defect growth, with the inputs held."""
        running = (u["running"] > 0.5) & (x["fault"] < 0.5)
        target = np.where(running, u["speedSetpoint"], 0.0)
        speed = target + (x["speed"] - target) * np.exp(-dt / p["tauSpeed"])
        speed[speed < 0.5] = 0.0
        hours = dt / 3600.0
        ratio = speed / p["nominalSpeed"]
        rel = u["spindle:load"] / (100.0 * p["torqueBase"])
        wear_step = (hours / p["wearLife"]) * ratio * rel**3
        growth = np.exp(p["defectRate"] * (ratio * rel) ** 2 * hours)
        new: dict[str, Array] = {"speed": speed}
        failed = x["fault"] > 0.5
        damage = []
        for b in BEARINGS:
            seed = p[f"{b}:defectSeed"]
            defect = x[f"{b}:defect"]
            defect = np.where(seed > 0.0, (defect + seed) * growth - seed, defect)
            wear = x[f"{b}:wear"] + wear_step
            new[f"{b}:wear"], new[f"{b}:defect"] = wear, defect
            damage.append(wear + defect)
            failed = failed | (damage[-1] >= 1.0)
        new["fault"] = failed.astype(np.float64)
        new["operatingHours"] = x["operatingHours"] + np.where(running, hours, 0.0)
        motor_ss, bearing_ss = self._targets(speed, damage, u, p)
        motor = x["motor.temperature"]
        new["motor.temperature"] = motor_ss + (motor - motor_ss) * np.exp(-dt / p["tauMotor"])
        decay = np.exp(-dt / p["tauBearing"])
        for b, ss in zip(BEARINGS, bearing_ss, strict=True):
            new[f"{b}:temperature"] = ss + (x[f"{b}:temperature"] - ss) * decay
        return new

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> dict[str, Array]:
        """The twin properties the state predicts (noise-free)."""
        speed = x["speed"]
        ratio = speed / p["nominalSpeed"]
        turning = speed > 1.0
        running = (u["running"] > 0.5) & (x["fault"] < 0.5)
        load = u["spindle:load"] / 100.0
        y: dict[str, Array] = {
            "speed": speed, "operatingHours": x["operatingHours"],
            "throughput": np.where(running, p["ratePerHour"] * ratio, 0.0),
            "motor.current": self._current(speed, ratio, u, p), "motor.temperature": x["motor.temperature"],
            "motor.load": load * ratio, "spindle:speed": speed, "spindle:load": np.where(turning, 100.0 * load, 0.0),
        }
        damage = [np.clip(x[f"{b}:wear"] + x[f"{b}:defect"], 0.0, 1.5) for b in BEARINGS]
        r2, r15 = ratio * ratio, ratio * np.sqrt(ratio)
        floor2 = np.where(turning, p["bandFloor"], _STILL_FLOOR) ** 2
        imbalance = p["imbalance"] + 0.3 * p["misalignment"]
        for k, b in enumerate(BEARINGS):
            share = 1.0 if b == "de" else p["ndeShare"]
            b1 = (p["band1x"] + imbalance * share) * r2
            b2 = (p["band2x"] + p["misalignment"] * share) * ratio
            bpfo = (p["bandBpfo"] + p["defectBpfo"] * damage[k]) * r15
            high = (p["bandHigh"] + p["defectHigh"] * np.sqrt(damage[k] + p["coupling"] * damage[1 - k])) * r15
            y[f"{b}:vibration"] = np.sqrt(b1 * b1 + b2 * b2 + bpfo * bpfo + high * high + floor2)
            y[f"{b}:vibrationBand1x"], y[f"{b}:vibrationBand2x"] = b1, b2
            y[f"{b}:vibrationBandBpfo"], y[f"{b}:vibrationBandHigh"] = bpfo, high
            y[f"{b}:temperature"], y[f"{b}:shaftSpeed"] = x[f"{b}:temperature"], speed
        excess = np.maximum(y["de:vibration"] - p["vibrationOk"] * np.maximum(ratio, 0.1) ** 1.5, 0.0)
        quality = np.clip(0.995 - 0.08 * excess - 0.02 * p["misalignment"], 0.0, 1.0)
        y["quality"] = np.where(running, quality, np.nan)
        return y

    @staticmethod
    def _current(speed: Array, ratio: Array, u: Values, p: Values) -> Array:
        load = u["spindle:load"] / 100.0 * ratio
        span = p["ratedCurrent"] - p["noLoadCurrent"]
        current = p["noLoadCurrent"] + span * load * (1.0 + 0.15 * p["misalignment"])
        return np.where(speed > 1.0, current, 0.0)

    def _targets(self, speed: Array, damage: list[Array], u: Values, p: Values) -> tuple[Array, list[Array]]:
        """The steady-state winding and bearing temperatures at this speed, load and damage."""
        ratio = speed / p["nominalSpeed"]
        rel = u["spindle:load"] / (100.0 * p["torqueBase"])
        current = self._current(speed, ratio, u, p)
        motor = u["ambient"] + p["motorRise"] * (current / p["ratedCurrent"]) ** 2 * (1.0 + p["overheat"])
        base = u["ambient"] + ratio * (p["bearingRiseSpeed"] * (0.5 + 0.5 * rel)
                                       + p["bearingRiseMisalignment"] * p["misalignment"])
        bearings = [base + p["bearingRiseDamage"] * np.minimum(d, 1.5) * ratio for d in damage]
        return motor, bearings

    def steady_start(self, n: int, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None,
                     start_values: Mapping[str, Any] | None = None) -> dict[str, Array]:
        """Start values of a machine that has run a long time at these inputs: at its target speed and
        warm (temperatures at their steady state). Wear, defects and hours come from ``start_values``."""
        probe = self.start(n, parameters, start_values)
        u = self._input_values(inputs, n, probe.data["defaults"])
        x = self.state_values(probe)
        running = (u["running"] > 0.5) & (x["fault"] < 0.5)
        x["speed"] = np.where(running, u["speedSetpoint"], 0.0)
        damage = [x[f"{b}:wear"] + x[f"{b}:defect"] for b in BEARINGS]
        x["motor.temperature"], bearings = self._targets(x["speed"], damage, u, probe.data["p"])
        for b, ss in zip(BEARINGS, bearings, strict=True):
            x[f"{b}:temperature"] = ss
        return x


__all__ = ["INPUTS", "OUTPUTS", "PARAMETERS", "SIGNATURE", "STATES", "MachineModel"]
