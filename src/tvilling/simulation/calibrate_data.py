"""The data a calibration reads: time stamps, input series and measured output series, checked.

A calibration is given, for one twin, ``T`` samples: time stamps ``t`` (seconds, any origin,
strictly increasing), one series per model input (``inputs``) and one per measured output
(``measured``), every series of length ``T``. Missing values are NaN:

* a gap in an **input** is held at the last value before it (zero-order hold, as a model step
  holds its inputs); a gap at the start takes the first value seen; an input with no value at
  all is refused;
* a gap in a **measured output** is left out of the residuals and the metrics.

Each output's residuals are divided by a *scale* so that outputs in different units (kelvin,
g, amperes) weigh comparably: the caller's value, or the output's **noise level estimated from
the data**: σ ≈ MAD(Δy) / (0.6745·√2), the median absolute deviation of consecutive differences
of the measured series (differences cancel the slow dynamics, the median ignores the few large
steps of a speed change). The scaled residuals are then in units of sensor noise, which makes the
fit a weighted least squares with weights 1/σ² per output.

>>> import numpy as np
>>> data = prepare_series(np.arange(4.0), {"u": [1.0, np.nan, 3.0, np.nan]}, {"y": [0.0, 1.0, np.nan, 3.0]},
...                       inputs_known=["u"], outputs_known=["y"])
>>> data.inputs["u"].tolist(), data.measured["y"].tolist()[:2]
([1.0, 1.0, 3.0, 3.0], [0.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.simulation.ports import Array

#: MAD of a normal sample = 0.6745 σ; consecutive differences of white noise have σ·√2
_MAD_TO_SIGMA = 1.0 / (0.6744897501960817 * math.sqrt(2.0))


@dataclass(frozen=True)
class Series:
    """Checked series of one twin: ``t`` (T,), inputs gap-filled, measured outputs with NaN gaps."""

    t: Array
    inputs: dict[str, Array]
    measured: dict[str, Array]

    def __len__(self) -> int:
        return len(self.t)


def _array(value: Any, field: str, length: int | None) -> Array:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Invalid(f"{field} must be a sequence of numbers", field=field, rule="type") from None
    if a.ndim != 1:
        raise Invalid(f"{field} must be one-dimensional, not of shape {a.shape}", field=field, rule="shape")
    if length is not None and len(a) != length:
        raise Invalid(f"{field} has {len(a)} values but t has {length}: every series needs one value per "
                      f"time stamp", field=field, rule="shape")
    return a


def _hold(a: Array, field: str) -> Array:
    """Fill NaN gaps with the last value before them (the first value at the start)."""
    finite = np.isfinite(a)
    if finite.all():
        return a
    if not finite.any():
        raise Invalid(f"{field} has no value at all in the data given", field=field, rule="required")
    index = np.where(finite, np.arange(len(a)), 0)
    np.maximum.accumulate(index, out=index)
    filled = a[index]
    filled[: int(np.argmax(finite))] = a[int(np.argmax(finite))]
    return filled


def prepare_series(t: Any, inputs: Mapping[str, Any], measured: Mapping[str, Any], *,
                   inputs_known: Iterable[str], outputs_known: Iterable[str]) -> Series:
    """Check and gap-fill the series; errors name the field (``t``, ``inputs.NAME``, ``measured.NAME``)."""
    times = _array(t, "t", None)
    if len(times) < 2:
        raise Invalid(f"t needs at least 2 time stamps, not {len(times)}", field="t", rule="range")
    if not np.isfinite(times).all():
        raise Invalid("t has a missing or infinite time stamp", field="t", rule="type")
    if not (np.diff(times) > 0).all():
        k = int(np.argmax(np.diff(times) <= 0))
        raise Invalid(f"t must increase strictly: t[{k + 1}] = {times[k + 1]:g} follows t[{k}] = {times[k]:g}",
                      field="t", rule="order")
    known_in, known_out = set(inputs_known), set(outputs_known)
    filled: dict[str, Array] = {}
    for name, value in inputs.items():
        field = f"inputs.{name}"
        if name not in known_in:
            raise Invalid(f"the model has no input {name!r}; its inputs are {sorted(known_in)}", field=field,
                          rule="unknown")
        filled[name] = _hold(_array(value, field, len(times)), field)
    if not measured:
        raise Invalid("measured names no output: give at least one measured output series", field="measured",
                      rule="required")
    outputs: dict[str, Array] = {}
    for name, value in measured.items():
        field = f"measured.{name}"
        if name not in known_out:
            raise Invalid(f"the model has no output {name!r}; its outputs are {sorted(known_out)}", field=field,
                          rule="unknown")
        a = _array(value, field, len(times)).copy()
        a[~np.isfinite(a)] = np.nan
        outputs[name] = a
    return Series(times, filled, outputs)


def window_indices(t: Array, window: tuple[float, float] | None, field: str) -> tuple[int, int]:
    """``(first, last + 1)``: the samples with ``start ≤ t ≤ end`` (``None``: all of them)."""
    if window is None:
        return 0, len(t)
    try:
        start, end = (float(v) for v in window)
    except (TypeError, ValueError):
        raise Invalid(f"{field} must be (start, end) in the units of t, not {window!r}", field=field,
                      rule="type") from None
    if not (math.isfinite(start) and math.isfinite(end) and start < end):
        raise Invalid(f"{field} ({start:g}, {end:g}) must have finite start < end", field=field, rule="range")
    first = int(np.searchsorted(t, start, side="left"))
    stop = int(np.searchsorted(t, end, side="right"))
    if stop - first < 2:
        raise Invalid(f"{field} ({start:g}, {end:g}) holds {max(stop - first, 0)} time stamps of the data "
                      f"(t runs from {t[0]:g} to {t[-1]:g}): it needs at least 2", field=field, rule="range")
    return first, stop


def noise_scale(y: Array) -> float:
    """The noise level of a measured series, from its consecutive differences (see the module docstring).

    Falls back to 1e-6 of the series' range (or 1) when the differences have no spread (a clean series)."""
    y = y[np.isfinite(y)]
    if len(y) < 3:
        return 1.0
    d = np.diff(y)
    sigma = float(np.median(np.abs(d - np.median(d)))) * _MAD_TO_SIGMA
    if sigma > 0.0:
        return sigma
    spread = float(y.max() - y.min())
    return spread * 1e-6 if spread > 0 else 1.0


__all__ = ["Series", "noise_scale", "prepare_series", "window_indices"]
