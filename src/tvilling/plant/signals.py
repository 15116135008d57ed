"""The signals every simulated machine emits: one column each in the plant's value matrix.

A machine's readings are spread over four twins (contracts): the machine itself (with its
``motor`` component, dotted paths), its drive-end and non-drive-end bearings, and its
spindle. ``PARTS`` names the twin-id suffix of each part; ``SIGNALS`` lists ``(part, path)``
in column order.

>>> SIGNALS[COL["de", "vibration"]]
('de', 'vibration')
>>> PARTS
('', 'de', 'nde', 'spindle')
"""

from __future__ import annotations

#: twin-id suffix of each part of a machine ("" = the machine twin itself)
PARTS: tuple[str, ...] = ("", "de", "nde", "spindle")

MACHINE_SIGNALS = ("speed", "speedSetpoint", "throughput", "quality", "operatingHours",
                   "motor.current", "motor.temperature", "motor.load")
BEARING_SIGNALS = ("vibration", "vibrationBand1x", "vibrationBand2x", "vibrationBandBpfo", "vibrationBandHigh",
                   "temperature", "shaftSpeed")
SPINDLE_SIGNALS = ("speed", "load")

SIGNALS: tuple[tuple[str, str], ...] = (
    *(("", s) for s in MACHINE_SIGNALS),
    *(("de", s) for s in BEARING_SIGNALS),
    *(("nde", s) for s in BEARING_SIGNALS),
    *(("spindle", s) for s in SPINDLE_SIGNALS),
)
#: (part, path) → column
COL: dict[tuple[str, str], int] = {sig: i for i, sig in enumerate(SIGNALS)}
NSIG = len(SIGNALS)

#: the bearings, in the order of the plant's bearing arrays (axis 1)
BEARINGS: tuple[str, ...] = ("de", "nde")

#: the machine's states, by code
STATES: tuple[str, ...] = ("idle", "running", "stopped", "fault")
IDLE, RUNNING, STOPPED, FAULT = range(4)


def part_columns(part: str) -> list[tuple[int, str]]:
    """``(column, path)`` of one part's signals."""
    return [(i, path) for i, (p, path) in enumerate(SIGNALS) if p == part]


def signal_column(part: str, path: str) -> int:
    """The column of ``part``'s signal ``path``; ``KeyError`` names the signals that exist."""
    try:
        return COL[part, path]
    except KeyError:
        names = [f"{p or 'machine'}:{s}" for p, s in SIGNALS]
        raise KeyError(f"no signal {path!r} on part {part or 'machine'!r}; there are {names}") from None
