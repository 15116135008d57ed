"""The simulated plant: one production line of N machines, stepped together, obeying commands.

>>> plant = Plant(machines=2, seed=7, speed=60.0, scenario=None)
>>> frame = plant.step(1.0, now_ms=1_767_225_600_000)   # one wall second = one plant minute
>>> plant.plant_time
60.0
>>> values = frame.twin_values()
>>> sorted(values)
['line-1', 'line-1-m01', 'line-1-m01-de', 'line-1-m01-nde', 'line-1-m01-spindle', 'line-1-m02', \
'line-1-m02-de', 'line-1-m02-nde', 'line-1-m02-spindle']
>>> values["line-1-m01"]["state"], abs(values["line-1-m01"]["speed"] - 1500) < 10
('running', True)
>>> plant.handle("line-1-m01", "setSpeed", 1000.0).status
200
>>> plant.handle("line-1-m01", "fly", None).status
404
>>> answer = plant.handle("line-1-m01", "runJob", {"order": "PO-7", "op": 0, "quantity": 5})
>>> answer.status, answer.payload["job"], answer.payload["position"]
(200, 'PO-7/0', 0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from tvilling.core.errors import Conflict, Invalid, NotFound, TvillingError
from tvilling.plant.faults import Injection, Scenario, default_scenario
from tvilling.plant.jobs import IDLE_JOB, JobBook, parse_job
from tvilling.plant.physics import F64, MachineArrays, Params
from tvilling.plant.signals import BEARINGS, FAULT, PARTS, RUNNING, STATES, STOPPED, part_columns

MODELS = {
    "line": "dtmi:tvilling:example:ProductionLine;3",
    "machine": "dtmi:tvilling:example:Machine;4",
    "bearing": "dtmi:tvilling:example:Bearing;5",
    "spindle": "dtmi:tvilling:example:Spindle;2",
}
#: the built-in model set holding :data:`MODELS` (``tvilling.models.builtin``)
MODEL_SET = "plant-v5"
COMMANDS = ("setSpeed", "stop", "start", "maintenanceDone", "runJob")
#: the catalogue number of the bearings fitted at each end (a part number adds the unit's serial)
BEARING_TYPES = {"de": "6205-2RS", "nde": "6204-2RS"}
_PART_COLUMNS = [(part, part_columns(part)) for part in PARTS]
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A command's answer, HTTP-like: 200 done, 400 bad request, 404 unknown, 409 not now."""

    status: int
    payload: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Frame:
    """One step's readings of every machine (NaN = missing), stamped with the wall clock."""

    ts_ms: int
    plant_time: float
    values: F64  # machines × signals
    states: np.ndarray  # machines, state codes
    ids: tuple[tuple[str, ...], ...]  # per machine: the twin id of each part (PARTS order)
    line: str
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)  # machine → its job properties, if not idle
    fitted: tuple[tuple[dict[str, str], dict[str, str]], ...] = ()  # machine → (de, nde) partNumber, installDate

    def line_values(self) -> dict[str, float | int]:
        """The line's throughput (series line: the slowest machine sets the pace) and machines running."""
        from tvilling.plant.signals import COL

        rates = self.values[:, COL["", "throughput"]]
        rates = np.where(np.isnan(rates), 0.0, rates)
        throughput = float(rates.min()) if len(rates) else 0.0
        return {"throughput": round(throughput, 4), "machinesRunning": int((self.states == RUNNING).sum())}

    def records(self) -> Iterable[tuple[str, dict[str, Any]]]:
        """``(twin, values)`` for every twin with something to report (a silent device reports nothing)."""
        rows = np.round(self.values, 4).tolist()
        states = self.states.tolist()
        jobs, fitted = self.jobs, self.fitted
        for i, row in enumerate(rows):
            twins = self.ids[i]
            for k, (_part, cols) in enumerate(_PART_COLUMNS):
                values = {path: row[c] for c, path in cols if row[c] == row[c]}  # NaN != NaN: dropped out
                if not values:
                    continue
                if k == 0:
                    values["state"] = STATES[states[i]]
                    values.update(jobs.get(i, IDLE_JOB))
                elif k <= 2 and fitted:
                    values.update(fitted[i][k - 1])
                yield twins[k], values
        yield self.line, self.line_values()

    def twin_values(self) -> dict[str, dict[str, Any]]:
        return dict(self.records())

    def payloads(self) -> list[tuple[str, bytes]]:
        """``(twin, JSON)`` telemetry messages per the contracts: ``{"ts": epoch ms, "values": {...}}``."""
        ts = self.ts_ms
        return [(twin, _json.encode({"ts": ts, "values": values})) for twin, values in self.records()]


class Plant:
    """A production line of ``machines`` machines (ids per the contracts), stepped together.

    ``speed`` is the acceleration: ``step(dt)`` advances ``dt × speed`` plant seconds.
    ``scenario`` is ``"default"`` (:func:`~tvilling.plant.faults.default_scenario`), ``None``
    (no faults) or a :class:`Scenario` / list of :class:`Injection`.
    """

    def __init__(self, machines: int = 3, *, seed: int | None = None, speed: float = 1.0,
                 scenario: Scenario | Iterable[Injection] | str | None = "default", line: str = "line-1",
                 params: Params | None = None) -> None:
        if isinstance(machines, bool) or not isinstance(machines, int) or not 1 <= machines <= 1_000_000:
            raise Invalid(f"machines must be an integer between 1 and 1,000,000, not {machines!r}",
                          field="machines", rule="range")
        if not line or any(c in line for c in "/+#\x00 "):
            raise Invalid(f"line id {line!r} cannot be an MQTT topic level", field="line", rule="format")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.speed = speed
        self.line = line
        self.n = machines
        width = max(2, len(str(machines)))
        self.machine_ids = [f"{line}-m{i + 1:0{width}d}" for i in range(machines)]
        self.part_ids = tuple(tuple(m if not part else f"{m}-{part}" for part in PARTS) for m in self.machine_ids)
        self._machine_index = {m: i for i, m in enumerate(self.machine_ids)}
        self._twins = {twin for ids in self.part_ids for twin in ids} | {line}
        self.m = MachineArrays(machines, self.rng, params)
        self.plant_time = 0.0
        self.jobs = JobBook(machines)
        # bearings: serial numbers of the units fitted, and when they were installed (epoch ms; -1: not stamped
        # yet, -2: replaced, stamped by the next frame's clock)
        self.bearing_serial = np.arange(1, 2 * machines + 1, dtype=np.int64).reshape(machines, 2)
        self._serials_issued = 2 * machines
        self.install_ms = np.full((machines, 2), -1, dtype=np.int64)
        self._fitted: list[tuple[dict[str, str], dict[str, str]]] = []
        if scenario == "default":
            self.scenario = default_scenario(machines)
        elif scenario is None:
            self.scenario = Scenario()
        elif isinstance(scenario, Scenario):
            self.scenario = Scenario(list(scenario.injections))
        elif isinstance(scenario, str):
            raise Invalid(f"scenario {scenario!r}: 'default', None or a list of injections", field="scenario",
                          rule="enum")
        else:
            self.scenario = Scenario.of(scenario)
        for inj in self.scenario.injections:
            self._check_machine(inj.machine)

    # ------------------------------------------------------------------ properties

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e6 \
                or not math.isfinite(value):
            raise Invalid(f"speed (acceleration) must be a number > 0, not {value!r}", field="speed", rule="range")
        self._speed = float(value)

    @property
    def params(self) -> Params:
        return self.m.p

    def owns(self, twin: str) -> bool:
        """Whether ``twin`` is one of this plant's twins."""
        return twin in self._twins

    def machine_index(self, machine: int | str) -> int:
        """0-based index of a machine given by station number (1-based) or twin id."""
        if isinstance(machine, str):
            try:
                return self._machine_index[machine]
            except KeyError:
                raise NotFound(f"no machine {machine!r} in {self.line} (commands go to machine twins, "
                               f"{self.machine_ids[0]}…)", twin=machine) from None
        self._check_machine(machine)
        return machine - 1

    def _check_machine(self, number: int) -> None:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= self.n:
            raise Invalid(f"machine {number!r}: station numbers run from 1 to {self.n}", field="machine",
                          rule="range")

    # ------------------------------------------------------------------ time

    def step(self, dt: float = 1.0, *, now_ms: int | None = None) -> Frame:
        """Advance ``dt`` wall seconds (``dt × speed`` plant seconds) and read every sensor."""
        if not dt > 0 or not math.isfinite(dt):
            raise Invalid(f"dt must be > 0 seconds, not {dt!r}", field="dt", rule="range")
        plant_dt = dt * self._speed
        for inj in self.scenario.due(self.plant_time + plant_dt):
            self._apply(inj)
        before = self.m.speed
        self.m.advance(plant_dt)
        self.plant_time += plant_dt
        self._produce(before, plant_dt)
        values = self.m.measure()
        ts = int(time.time() * 1000) if now_ms is None else now_ms
        self._stamp_installs(ts)
        return Frame(ts, self.plant_time, values, self.m.state.copy(), self.part_ids, self.line,
                     self.jobs.snapshot(), tuple(self._fitted))

    def _produce(self, speed_before: F64, plant_dt: float) -> None:
        """Parts made in the step by the running machines (the throughput at the mean speed) go to their jobs."""
        p = self.m.p
        mean_speed = 0.5 * (speed_before + self.m.speed)
        parts = np.where(self.m.state == RUNNING, p.rate_per_h * mean_speed / p.nominal_rpm * plant_dt / 3600.0, 0.0)
        self.jobs.produce(parts)

    def _stamp_installs(self, ts_ms: int) -> None:
        """Date the bearings fitted since the last frame: a replacement by this frame's clock; the first units
        by their running hours before it (at this plant's acceleration: the twins' time)."""
        todo = self.install_ms < 0
        if not todo.any():
            return
        first = self.install_ms == -1
        back_ms = np.round(self.m.operating_h * 3_600_000.0 / self._speed).astype(np.int64)[:, None]
        self.install_ms = np.where(first, ts_ms - back_ms, np.where(todo, ts_ms, self.install_ms))
        if not self._fitted:
            self._fitted = [(self._fitted_part(i, 0), self._fitted_part(i, 1)) for i in range(self.n)]
            return
        for i in np.flatnonzero(todo.any(axis=1)).tolist():
            self._fitted[i] = (self._fitted_part(i, 0), self._fitted_part(i, 1))

    def _fitted_part(self, i: int, b: int) -> dict[str, str]:
        bearing = BEARINGS[b]
        installed = datetime.fromtimestamp(int(self.install_ms[i, b]) / 1000, UTC)
        return {"partNumber": f"{BEARING_TYPES[bearing]}-S{int(self.bearing_serial[i, b]):07d}",
                "installDate": installed.isoformat(timespec="seconds").replace("+00:00", "Z")}

    # ------------------------------------------------------------------ faults

    def inject(self, machine: int | str, fault: str, *, at: float | None = None, severity: float | None = None,
               growth: float | None = None, bearing: str = "de", signal: str | None = None) -> Injection:
        """Schedule a fault (``at`` plant seconds; default now). See :mod:`tvilling.plant.faults`."""
        number = self.machine_index(machine) + 1
        inj = Injection(machine=number, fault=fault, at=self.plant_time if at is None else at, severity=severity,
                        growth=growth, bearing=bearing, signal=signal)
        self.scenario.add(inj)
        return inj

    def _apply(self, inj: Injection) -> None:
        m, i = self.m, inj.machine - 1
        sev, growth = float(inj.severity or 0.0), float(inj.growth or 0.0)
        if inj.fault == "bearing_defect":
            b = BEARINGS.index(inj.bearing)
            m.defect_offset[i, b] = max(m.defect_offset[i, b], m.p.defect_offset * max(sev, 1e-3))
            m.defect_growth[i, b] = max(m.defect_growth[i, b], growth)
        elif inj.fault == "imbalance":
            m.imbalance[i] += sev
            m.imbalance_growth[i] += growth
        elif inj.fault == "misalignment":
            m.misalignment[i] += sev
            m.misalignment_growth[i] += growth
        elif inj.fault == "overheating":
            m.overheat[i] += sev
            m.overheat_growth[i] += growth
        elif inj.fault == "sensor_drift":
            col = inj.column
            m.drift[i, col] += sev
            m.drift_rate[i, col] += growth
        else:  # sensor_dropout
            col = inj.column
            if col is None:
                m.dropout[i, :] = sev
            else:
                m.dropout[i, col] = sev

    # ------------------------------------------------------------------ commands

    def _answer(self, i: int, accepted: bool = True, message: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": accepted, "state": STATES[int(self.m.state[i])],
                               "speedSetpoint": float(self.m.setpoint[i])}
        if message:
            out["message"] = message
        return out

    def set_speed(self, machine: int | str, rpm: Any) -> dict[str, Any]:
        """New speed setpoint (rpm, 0 < rpm ≤ max); the machine ramps to it if running."""
        i = self.machine_index(machine)
        if isinstance(rpm, Mapping):
            rpm = rpm.get("rpm")
        limit = self.m.p.max_rpm
        if isinstance(rpm, bool) or not isinstance(rpm, int | float) or not math.isfinite(rpm) \
                or not 0 < rpm <= limit:
            raise Invalid(f"rpm must be a number with 0 < rpm ≤ {limit:g}, not {rpm!r}", field="rpm", rule="range")
        self.m.setpoint[i] = float(rpm)
        return self._answer(i)

    def stop(self, machine: int | str) -> dict[str, Any]:
        i = self.machine_index(machine)
        if self.m.state[i] != FAULT:
            self.m.state[i] = STOPPED
        return self._answer(i)

    def start(self, machine: int | str) -> dict[str, Any]:
        i = self.machine_index(machine)
        if self.m.state[i] == FAULT:
            raise Conflict(f"{self.machine_ids[i]} is in fault: maintenance first", twin=self.machine_ids[i],
                           state="fault")
        self.m.state[i] = RUNNING
        return self._answer(i)

    def maintenance_done(self, machine: int | str) -> dict[str, Any]:
        """Bearings replaced, mechanical faults repaired: wear resets; a faulted machine becomes stopped.

        The new bearings get new serial numbers (their part numbers) and are dated by the next frame."""
        i = self.machine_index(machine)
        self.m.reset_wear(i)
        for b in range(len(BEARINGS)):
            self._serials_issued += 1
            self.bearing_serial[i, b] = self._serials_issued
            self.install_ms[i, b] = -2
        return self._answer(i)

    def run_job(self, machine: int | str, request: Any) -> dict[str, Any]:
        """Give a machine a production job (``{"order", "op", "quantity"}``): it starts at once when the machine
        has none, waits in the machine's FIFO queue otherwise, and is held while the machine is stopped.
        ``Conflict`` in fault, when the queue is full or the job was completed already; ``Invalid`` for a bad
        request. The answer says where the job stands: ``position`` (jobs ahead) and ``jobsCompleted``."""
        i = self.machine_index(machine)
        job = parse_job(request)
        state = int(self.m.state[i])
        if state == FAULT:
            raise Conflict(f"{self.machine_ids[i]} is in fault: maintenance first", twin=self.machine_ids[i],
                           state="fault", reason="fault")
        info = self.jobs.submit(i, job.order, job.op, job.quantity, running=state == RUNNING)
        reason = info.get("reason")
        if reason == "stopped":
            message = "the machine is stopped: the job starts when the machine is started"
        elif reason == "queued":
            message = f"queued behind {info['position']} job(s)"
        else:
            message = "running"
        return {**self._answer(i, message=message), **info}

    def handle(self, twin: str, name: str, request: Any = None) -> CommandResult:
        """Run command ``name`` on ``twin``; errors become 400/404/409 results, never exceptions."""
        try:
            if name == "setSpeed":
                return CommandResult(200, self.set_speed(twin, request))
            if name == "runJob":
                return CommandResult(200, self.run_job(twin, request))
            if name not in COMMANDS:
                raise NotFound(f"no command {name!r}; the machines take {list(COMMANDS)}", command=name)
            action = {"stop": self.stop, "start": self.start, "maintenanceDone": self.maintenance_done}[name]
            return CommandResult(200, action(twin))
        except TvillingError as exc:
            status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
            payload: dict[str, Any] = {"accepted": False, "message": exc.message}
            if name == "runJob" and status != 404:
                payload["reason"] = str(exc.fields.get("reason", "invalid"))
            return CommandResult(status, payload)

    def apply_desired(self, twin: str, desired: Mapping[str, Any]) -> CommandResult | None:
        """Obey a desired state (``speedSetpoint``); ``None`` when it asks nothing of this plant."""
        if "speedSetpoint" not in desired or twin not in self._machine_index:
            return None
        return self.handle(twin, "setSpeed", desired["speedSetpoint"])

    # ------------------------------------------------------------------ description

    def state_of(self, machine: int | str) -> dict[str, Any]:
        """The ground truth of one machine (what no sensor shows directly: wear, defect size)."""
        i, m = self.machine_index(machine), self.m
        return {
            "id": self.machine_ids[i], "state": STATES[int(m.state[i])], "speed": float(m.speed[i]),
            "speedSetpoint": float(m.setpoint[i]), "torque": float(m.torque[i]),
            "wear": {b: float(m.wear[i, k]) for k, b in enumerate(BEARINGS)},
            "defect": {b: float(m.defect[i, k]) for k, b in enumerate(BEARINGS)},
            "damage": {b: float(m.damage[i, k]) for k, b in enumerate(BEARINGS)},
            "imbalance": float(m.imbalance[i]), "misalignment": float(m.misalignment[i]),
            "overheat": float(m.overheat[i]), "motorTemperature": float(m.motor_temp[i]),
            "operatingHours": float(m.operating_h[i]), "plantTime": self.plant_time,
            "jobs": {**self.jobs.reported(i), "queue": [j.label for j in self.jobs.queue.get(i, ())]},
            "bearings": {b: {"serial": int(self.bearing_serial[i, k]), "installMs": int(self.install_ms[i, k])}
                         for k, b in enumerate(BEARINGS)},
        }

    def twins(self) -> list[dict[str, Any]]:
        """The twins to create (``tvilling.twins.importer`` items), leaves first, per the contracts."""
        out: list[dict[str, Any]] = []
        for number, (machine, de, nde, spindle) in enumerate(self.part_ids, start=1):
            for bearing, location in ((de, "de"), (nde, "nde")):
                out.append({"id": bearing, "model": MODELS["bearing"], "reported": {"location": location}})
            out.append({"id": spindle, "model": MODELS["spindle"]})
            out.append({"id": machine, "model": MODELS["machine"],
                        "reported": {"serialNumber": f"SIM-{self.line}-{number:04d}", "manufacturer": "Tvilling sim"},
                        "relationships": [
                            {"id": f"{machine}-hasBearing-de", "name": "hasBearing", "target": de,
                             "properties": {"location": "de"}},
                            {"id": f"{machine}-hasBearing-nde", "name": "hasBearing", "target": nde,
                             "properties": {"location": "nde"}},
                            {"id": f"{machine}-hasSpindle", "name": "hasSpindle", "target": spindle}]})
        out.append({"id": self.line, "model": MODELS["line"],
                    "relationships": [{"id": f"{self.line}-hasMachine-{k}", "name": "hasMachine", "target": m,
                                       "properties": {"position": k}}
                                      for k, m in enumerate(self.machine_ids, start=1)]})
        return out
