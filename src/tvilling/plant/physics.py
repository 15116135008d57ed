"""Vectorised, physics-informed state of N machines: one ``advance(dt)`` steps them all.

Per machine (arrays of length N; bearings N×2, drive end first):

* speed follows its setpoint with a first-order lag (``tau_speed``); a stopped or faulted
  machine coasts to 0;
* motor load = process torque τ (a slow random walk around each machine's base) × n/n0;
  current = no-load current + (rated − no-load) × load, a little more with misalignment;
* motor and bearing temperatures are first-order lags (``tau_motor``, ``tau_bearing``)
  towards a steady state set by I² (motor) and by speed, load and damage (bearings),
  discretised exactly (``T += (T_ss − T)(1 − e^(−dt/τ))``), so large accelerated steps
  stay stable;
* bearing wear grows with speed and load³ (rolling-contact fatigue); a bearing defect
  grows exponentially at a rate ∝ (n/n0)²(τ/τ0)²; damage = wear + defect, ≥ 1 = failed;
* vibration band levels (1×, 2×, BPFO, high frequency) rise with speed, imbalance,
  misalignment and damage; the overall RMS is their root sum of squares.

All randomness comes from one ``numpy.random.Generator`` drawn in a fixed order, so a
seed and the same sequence of steps, commands and injections give the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tvilling.plant.signals import COL, FAULT, IDLE, NSIG, RUNNING, STOPPED

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Params:
    """Physical constants of the simulated machines (SI-ish units, hours for wear)."""

    nominal_rpm: float = 1500.0
    max_rpm: float = 3000.0
    tau_speed: float = 4.0  # s
    noload_current: float = 5.0  # A
    rated_current: float = 20.0  # A
    ambient: float = 22.0  # °C
    motor_rise: float = 55.0  # K at rated current
    tau_motor: float = 1200.0  # s
    bearing_rise_speed: float = 18.0  # K at nominal speed and base torque
    bearing_rise_damage: float = 30.0  # K at damage 1, nominal speed
    bearing_rise_misalignment: float = 8.0  # K per g of misalignment
    tau_bearing: float = 900.0  # s
    torque_base: float = 0.75  # process torque of reference (fraction of rated)
    torque_tau: float = 600.0  # s, the process torque's random walk
    torque_sigma: float = 0.03
    wear_life_h: float = 20_000.0  # hours to wear 1.0 at nominal speed and torque
    defect_rate_h: float = 0.2  # 1/h, bearing defect growth at nominal
    defect_offset: float = 0.15  # D grows like (D + offset·severity)
    rate_per_h: float = 120.0  # parts per hour at nominal speed
    band_1x: float = 0.10  # g at nominal speed, healthy
    band_2x: float = 0.05
    band_bpfo: float = 0.03
    band_high: float = 0.04
    band_floor: float = 0.05  # broadband floor while turning
    defect_bpfo_g: float = 2.5  # BPFO g at damage 1, nominal speed
    defect_high_g: float = 0.8  # high-band g at damage 1 (as √D: early wear shows here first)
    coupling: float = 0.25  # share of one bearing's defect vibration seen at the other (in its high band)
    nde_share: float = 0.7  # share of imbalance/misalignment vibration seen at the non-drive end
    vibration_ok: float = 0.35  # g overall at nominal speed below which quality does not suffer


class MachineArrays:
    """The physical state of ``n`` machines, advanced together."""

    def __init__(self, n: int, rng: np.random.Generator, params: Params | None = None) -> None:
        p = self.p = params or Params()
        self.n = n
        self.rng = rng
        self.state = np.full(n, RUNNING, dtype=np.int8)
        self.setpoint = np.full(n, p.nominal_rpm)
        self.speed = self.setpoint.copy()
        self.torque_mean = rng.uniform(0.6, 0.85, n)
        self.torque = self.torque_mean.copy()
        self.wear = rng.uniform(0.0, 0.01, (n, 2))
        self.defect = np.zeros((n, 2))
        self.defect_offset = np.zeros((n, 2))  # > 0 while a defect is active
        self.defect_growth = np.zeros((n, 2))
        self.imbalance = np.zeros(n)
        self.imbalance_growth = np.zeros(n)
        self.misalignment = np.zeros(n)
        self.misalignment_growth = np.zeros(n)
        self.overheat = np.zeros(n)
        self.overheat_growth = np.zeros(n)
        self.drift = np.zeros((n, NSIG))
        self.drift_rate = np.zeros((n, NSIG))
        self.dropout = np.zeros((n, NSIG))
        self.operating_h = rng.uniform(0.0, 500.0, n)
        self.current = np.zeros(n)
        self.load = np.zeros(n)
        self.motor_temp = np.zeros(n)
        self.bearing_temp = np.zeros((n, 2))
        self._steady()

    # ------------------------------------------------------------------ physics

    @property
    def damage(self) -> F64:
        """Wear + defect per bearing (N×2); 1.0 = failed."""
        return np.asarray(self.wear + self.defect, dtype=np.float64)

    def _targets(self) -> tuple[F64, F64, F64, F64]:
        """Load, current, and the motor and bearing steady-state temperatures for the present speed."""
        p = self.p
        ratio = self.speed / p.nominal_rpm
        load = self.torque * ratio
        current = np.where(self.speed > 1.0, p.noload_current + (p.rated_current - p.noload_current) * load
                           * (1.0 + 0.15 * self.misalignment), 0.0)
        motor_ss = p.ambient + p.motor_rise * (current / p.rated_current) ** 2 * (1.0 + self.overheat)
        torque_rel = (0.5 + 0.5 * self.torque / p.torque_base)[:, None]
        bearing_ss = (p.ambient + p.bearing_rise_speed * ratio[:, None] * torque_rel
                      + p.bearing_rise_damage * np.minimum(self.damage, 1.5) * ratio[:, None]
                      + p.bearing_rise_misalignment * self.misalignment[:, None] * ratio[:, None])
        return load, current, motor_ss, bearing_ss

    def _steady(self) -> None:
        """Start warm: temperatures at their steady state (no warm-up transient in a fresh run)."""
        self.load, self.current, self.motor_temp, self.bearing_temp = self._targets()

    def advance(self, dt: float) -> None:
        """Advance every machine by ``dt`` plant seconds."""
        p = self.p
        hours = dt / 3600.0
        turning_target = np.where(self.state == RUNNING, self.setpoint, 0.0)
        self.speed = turning_target + (self.speed - turning_target) * np.exp(-dt / p.tau_speed)
        self.speed[self.speed < 0.5] = 0.0
        # process torque: Ornstein-Uhlenbeck around each machine's base, exact in dt
        decay = np.exp(-dt / p.torque_tau)
        spread = p.torque_sigma * np.sqrt(1.0 - decay * decay)
        self.torque = (self.torque_mean + (self.torque - self.torque_mean) * decay
                       + spread * self.rng.standard_normal(self.n))
        np.clip(self.torque, 0.05, 1.2, out=self.torque)
        ratio = self.speed / p.nominal_rpm
        torque_rel = self.torque / p.torque_base
        # wear and defect growth
        self.wear += hours / p.wear_life_h * (ratio * torque_rel**3)[:, None]
        rate = p.defect_rate_h * self.defect_growth * (ratio**2 * torque_rel**2)[:, None]
        active = self.defect_offset > 0
        grown = (self.defect + self.defect_offset) * np.exp(rate * hours) - self.defect_offset
        self.defect = np.where(active, grown, self.defect)
        self.imbalance += self.imbalance_growth * hours
        self.misalignment += self.misalignment_growth * hours
        self.overheat += self.overheat_growth * hours
        self.drift += self.drift_rate * hours
        self.operating_h += np.where(self.state == RUNNING, hours, 0.0)
        failed = (self.damage >= 1.0).any(axis=1) & (self.state != FAULT)
        self.state[failed] = FAULT
        # thermal lags towards the new steady state
        self.load, self.current, motor_ss, bearing_ss = self._targets()
        self.motor_temp = motor_ss + (self.motor_temp - motor_ss) * np.exp(-dt / p.tau_motor)
        self.bearing_temp = bearing_ss + (self.bearing_temp - bearing_ss) * np.exp(-dt / p.tau_bearing)

    # ------------------------------------------------------------------ measurement

    def bands(self) -> tuple[F64, F64, F64, F64]:
        """True (noise-free) band levels, N×2 each: 1×, 2×, BPFO, high."""
        p = self.p
        ratio = (self.speed / p.nominal_rpm)[:, None]
        share = np.array([1.0, p.nde_share])
        d = np.clip(self.damage, 0.0, 1.5)
        # a race defect rings at its own bearing's ball-pass frequency; the two bearings differ in geometry, so
        # what travels through the shaft to the other one shows in that one's broadband high band, not its BPFO band
        heard = d + p.coupling * d[:, ::-1]
        b1 = (p.band_1x + (self.imbalance[:, None] + 0.3 * self.misalignment[:, None]) * share) * ratio**2
        b2 = (p.band_2x + self.misalignment[:, None] * share) * ratio
        bpfo = (p.band_bpfo + p.defect_bpfo_g * d) * ratio**1.5
        high = (p.band_high + p.defect_high_g * np.sqrt(heard)) * ratio**1.5
        return b1, b2, bpfo, high

    def measure(self) -> F64:
        """One reading of every signal (N × NSIG), with noise, drift and dropout (NaN = missing)."""
        p, n, rng = self.p, self.n, self.rng
        out = np.empty((n, NSIG))
        noise = rng.standard_normal((n, NSIG))
        running = self.state == RUNNING
        turning = self.speed > 1.0
        out[:, COL["", "speed"]] = self.speed * (1.0 + 0.001 * noise[:, COL["", "speed"]])
        out[:, COL["", "speedSetpoint"]] = self.setpoint
        rate = np.where(running, p.rate_per_h * self.speed / p.nominal_rpm, 0.0)
        out[:, COL["", "throughput"]] = np.maximum(rate + 0.8 * noise[:, COL["", "throughput"]] * running, 0.0)
        out[:, COL["", "operatingHours"]] = self.operating_h
        out[:, COL["", "motor.current"]] = np.maximum(
            self.current * (1.0 + 0.01 * noise[:, COL["", "motor.current"]]), 0.0)
        out[:, COL["", "motor.temperature"]] = self.motor_temp + 0.15 * noise[:, COL["", "motor.temperature"]]
        out[:, COL["", "motor.load"]] = np.maximum(self.load * (1.0 + 0.01 * noise[:, COL["", "motor.load"]]), 0.0)
        b1, b2, bpfo, high = self.bands()
        lognormal = np.exp(0.05 * rng.standard_normal((n, 2, 4)))
        floor = np.where(turning, p.band_floor, 0.004)[:, None]
        levels = np.stack([b1, b2, bpfo, high], axis=2) * lognormal  # N×2×4
        overall = np.sqrt((levels**2).sum(axis=2) + floor**2)
        for k, part in enumerate(("de", "nde")):
            out[:, COL[part, "vibration"]] = overall[:, k]
            out[:, COL[part, "vibrationBand1x"]] = levels[:, k, 0]
            out[:, COL[part, "vibrationBand2x"]] = levels[:, k, 1]
            out[:, COL[part, "vibrationBandBpfo"]] = levels[:, k, 2]
            out[:, COL[part, "vibrationBandHigh"]] = levels[:, k, 3]
            out[:, COL[part, "temperature"]] = self.bearing_temp[:, k] + 0.15 * noise[:, COL[part, "temperature"]]
            out[:, COL[part, "shaftSpeed"]] = out[:, COL["", "speed"]]  # the sensor's tachometer channel
        # quality: good parts fall with drive-end vibration above a healthy level, and with misalignment
        excess = np.maximum(overall[:, 0] - p.vibration_ok * np.maximum(self.speed / p.nominal_rpm, 0.1) ** 1.5, 0.0)
        quality = 0.995 - 0.08 * excess - 0.02 * self.misalignment + 0.002 * noise[:, COL["", "quality"]]
        out[:, COL["", "quality"]] = np.where(running, np.clip(quality, 0.0, 1.0), np.nan)
        out[:, COL["spindle", "speed"]] = out[:, COL["", "speed"]]
        out[:, COL["spindle", "load"]] = np.maximum(
            100.0 * self.torque * turning * (1.0 + 0.01 * noise[:, COL["spindle", "load"]]), 0.0)
        out += self.drift
        if self.dropout.any():
            out[rng.random((n, NSIG)) < self.dropout] = np.nan
        return out

    # ------------------------------------------------------------------ state changes

    def reset_wear(self, i: int) -> None:
        """Bearings replaced and mechanical faults repaired on machine ``i``."""
        self.wear[i] = 0.0
        self.defect[i] = 0.0
        self.defect_offset[i] = 0.0
        self.defect_growth[i] = 0.0
        self.imbalance[i] = self.imbalance_growth[i] = 0.0
        self.misalignment[i] = self.misalignment_growth[i] = 0.0
        self.overheat[i] = self.overheat_growth[i] = 0.0
        self.operating_h[i] = 0.0
        if self.state[i] == FAULT:
            self.state[i] = STOPPED


__all__ = ["F64", "FAULT", "IDLE", "RUNNING", "STOPPED", "MachineArrays", "Params"]
