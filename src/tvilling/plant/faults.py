"""Injectable faults and scenarios (schedules of faults in plant time).

Each fault starts at ``at`` plant seconds with a ``severity`` and, where it makes sense, a
``growth`` per plant hour:

* ``bearing_defect`` — a spall on a bearing race (``bearing`` "de" or "nde"). Its damage
  ``D`` grows like ``dD/dt = 0.2/h · growth · (n/n0)² · (τ/τ0)² · (D + 0.15 · severity)``:
  at nominal speed and load it shows as a clear vibration rise after ~2.5 plant hours and
  fails the bearing (``D + wear ≥ 1``) after ~10; slowing the machine slows it down;
* ``imbalance`` — extra 1× vibration, ``severity`` g at nominal speed, + ``growth`` g/h;
* ``misalignment`` — extra 2× vibration, bearing heat and motor current; same units;
* ``overheating`` — degraded motor cooling: the winding's temperature rise is multiplied
  by ``1 + severity`` (+ ``growth`` per hour);
* ``sensor_drift`` — a bias on one signal (``signal`` = "part:path", default the DE bearing
  temperature) starting at ``severity`` and growing by ``growth`` units per plant hour;
* ``sensor_dropout`` — each reading of the machine's signals (or of ``signal`` only) is
  missing with probability ``severity`` (1.0 = the device falls silent).

>>> Injection(machine=2, fault="bearing_defect", at=300.0).bearing
'de'
>>> Injection(machine=2, fault="rust", at=0.0)
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: unknown fault 'rust'; one of ['bearing_defect', 'imbalance', 'misalignment', \
'overheating', 'sensor_drift', 'sensor_dropout']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tvilling.core.errors import Invalid
from tvilling.plant.signals import BEARINGS, signal_column

FAULTS = ("bearing_defect", "imbalance", "misalignment", "overheating", "sensor_drift", "sensor_dropout")
DEFAULT_DRIFT_SIGNAL = "de:temperature"
#: fault → default (severity, growth per plant hour)
DEFAULTS: dict[str, tuple[float, float]] = {
    "bearing_defect": (1.0, 1.0),
    "imbalance": (0.3, 0.0),
    "misalignment": (0.3, 0.0),
    "overheating": (0.5, 0.0),
    "sensor_drift": (0.0, 1.0),
    "sensor_dropout": (0.2, 0.0),
}


def parse_signal(signal: str) -> int:
    """``"part:path"`` (part "" or "machine" for the machine twin) → column."""
    part, sep, path = signal.partition(":")
    if not sep:
        part, path = "", signal
    if part == "machine":
        part = ""
    try:
        return signal_column(part, path)
    except KeyError as exc:
        raise Invalid(str(exc.args[0]), field="signal", rule="signal") from None


@dataclass(frozen=True, slots=True)
class Injection:
    """One scheduled fault; ``machine`` is the station number (1-based)."""

    machine: int
    fault: str
    at: float = 0.0
    severity: float | None = None  # None: the fault's default (DEFAULTS)
    growth: float | None = None
    bearing: str = "de"
    signal: str | None = None

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise Invalid(f"unknown fault {self.fault!r}; one of {list(FAULTS)}", field="fault", rule="enum")
        severity, growth = DEFAULTS[self.fault]
        if self.severity is None:
            object.__setattr__(self, "severity", severity)
        if self.growth is None:
            object.__setattr__(self, "growth", growth)
        if isinstance(self.machine, bool) or not isinstance(self.machine, int) or self.machine < 1:
            raise Invalid(f"machine must be a station number ≥ 1, not {self.machine!r}", field="machine",
                          rule="range")
        for name in ("at", "severity", "growth"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise Invalid(f"{name} must be a finite number, not {value!r}", field=name, rule="type")
        if self.at < 0 or (self.severity or 0.0) < 0:
            raise Invalid("at and severity must be ≥ 0", field="at" if self.at < 0 else "severity", rule="range")
        if self.bearing not in BEARINGS:
            raise Invalid(f"bearing must be one of {list(BEARINGS)}, not {self.bearing!r}", field="bearing",
                          rule="enum")
        if self.fault == "sensor_dropout" and (self.severity or 0.0) > 1:
            raise Invalid("a dropout's severity is a probability (0..1)", field="severity", rule="range")
        if self.signal is not None:
            parse_signal(self.signal)

    @property
    def column(self) -> int | None:
        """The signal's column (drift: the default signal when none is named; dropout: None = all)."""
        if self.signal is not None:
            return parse_signal(self.signal)
        if self.fault == "sensor_drift":
            return parse_signal(DEFAULT_DRIFT_SIGNAL)
        return None


@dataclass
class Scenario:
    """Faults to inject, kept sorted by start time."""

    injections: list[Injection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.injections.sort(key=lambda i: i.at)

    def add(self, injection: Injection) -> None:
        self.injections.append(injection)
        self.injections.sort(key=lambda i: i.at)

    def due(self, until: float) -> Iterator[Injection]:
        """Remove and yield the injections whose start time is ≤ ``until``, in order."""
        while self.injections and self.injections[0].at <= until:
            yield self.injections.pop(0)

    def __len__(self) -> int:
        return len(self.injections)

    @classmethod
    def of(cls, injections: Iterable[Injection]) -> Scenario:
        return cls(list(injections))


def default_scenario(machines: int) -> Scenario:
    """The demo's story: a bearing defect starts on machine 2's drive end (machine 1 if alone) after 5 plant minutes.

    At the demo's default speed (60: a plant minute per wall second) its vibration rise is
    clear after ~2–3 wall minutes and the bearing fails after ~10, unless the machine is
    slowed down or maintained.
    """
    return Scenario([Injection(machine=2 if machines >= 2 else 1, fault="bearing_defect", at=300.0,
                               severity=1.0, growth=1.0, bearing="de")])
