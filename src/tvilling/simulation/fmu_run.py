"""Run one FMU on its own, as engineers do with other FMI tools: start values, an input table, a result table.

:func:`run_fmu` runs one instance from ``start_time`` to ``stop_time`` in fixed communication steps and
returns a :class:`FmuResult` (a ``time`` column and one column per output variable, named as in the
model description); :func:`write_csv` writes it. Inputs come from a CSV table with a ``time`` column and
one column per input: each is interpolated linearly at the start of a step and held over that step.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.simulation.fmu import FmuModel
from tvilling.simulation.fmu_description import unknown_name
from tvilling.simulation.ports import Array

#: the most communication steps one run may take
MAX_STEPS = 10_000_000
#: steps per run when neither ``step`` nor the FMU's default experiment gives one
DEFAULT_STEPS = 500


@dataclass(frozen=True)
class FmuResult:
    """A run's result: the time points and each output's values at them."""

    time: Array
    outputs: dict[str, Array]

    @property
    def columns(self) -> list[str]:
        """The CSV header: ``time`` then the outputs in model-description order."""
        return ["time", *self.outputs]


@dataclass(frozen=True)
class InputTable:
    """Input signals sampled at increasing times, interpolated linearly between them."""

    time: Array
    signals: dict[str, Array]

    def at(self, t: float) -> dict[str, float]:
        """Every signal's value at ``t`` (the first or last value outside the table's range)."""
        return {name: float(np.interp(t, self.time, values)) for name, values in self.signals.items()}


def parse_start_values(text: str | None) -> dict[str, float]:
    """``k=v,k2=v2`` as a mapping of names to numbers (``true``/``false`` as 1/0); bad items name themselves."""
    values: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise Invalid(f"start value {item.strip()!r} is not NAME=VALUE", field="start_values")
        if value.lower() in ("true", "false"):
            values[name] = 1.0 if value.lower() == "true" else 0.0
            continue
        try:
            values[name] = float(value)
        except ValueError:
            raise Invalid(f"start value of {name} is not a number: {value!r}", field="start_values",
                          variable=name) from None
    return values


def read_inputs(path: str | Path) -> InputTable:
    """An input table from CSV: a ``time`` column (increasing) and one numeric column per input."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or "time" not in [c.strip() for c in rows[0]]:
        raise Invalid(f"input table {path.name} needs a header with a 'time' column", file=str(path))
    header = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise Invalid(f"input table {path.name} has no rows", file=str(path))
    data = np.empty((len(body), len(header)))
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise Invalid(f"input table {path.name}, line {i}: {len(row)} cells for {len(header)} columns",
                          file=str(path), line=i)
        for j, cell in enumerate(row):
            try:
                data[i - 2, j] = float(cell)
            except ValueError:
                raise Invalid(f"input table {path.name}, line {i}: {header[j]} is not a number: {cell!r}",
                              file=str(path), line=i, column=header[j]) from None
    time = data[:, header.index("time")]
    if np.any(np.diff(time) <= 0):
        raise Invalid(f"input table {path.name}: the time column must increase strictly", file=str(path))
    return InputTable(time=time, signals={h: data[:, j] for j, h in enumerate(header) if h != "time"})


def time_grid(start: float, stop: float, step: float) -> Array:
    """Communication points from ``start`` to ``stop`` every ``step`` (the last step shorter if need be)."""
    if not math.isfinite(stop) or stop <= start:
        raise Invalid(f"the stop time must be after the start time ({start:g}), not {stop:g}", field="stop_time")
    if not math.isfinite(step) or step <= 0:
        raise Invalid(f"the step must be a positive number, not {step:g}", field="step")
    count = (stop - start) / step
    if count > MAX_STEPS:
        raise Invalid(f"{count:.0f} steps exceed the limit of {MAX_STEPS}: use a larger step", field="step")
    whole = math.floor(count + 1e-9)
    grid = start + step * np.arange(whole + 1, dtype=np.float64)
    if stop - grid[-1] > 1e-9 * max(1.0, abs(stop)):
        grid = np.append(grid, stop)
    grid[-1] = stop if math.isclose(grid[-1], stop, rel_tol=1e-9, abs_tol=1e-12) else grid[-1]
    return grid


def run_fmu(path: str | Path, stop_time: float, step: float | None = None,
            start_values: Mapping[str, float] | None = None, inputs: InputTable | None = None,
            interface: str | None = None, start_time: float = 0.0) -> FmuResult:
    """Run one instance of the FMU at ``path`` and record its outputs at every communication point."""
    with FmuModel.open(path, interface) as model:
        input_names = set(model.signature.names("inputs"))
        for name in (inputs.signals if inputs is not None else {}):
            if name not in input_names:
                raise unknown_name(name, input_names, "input", model.description.path)
        if step is None:
            experiment = model.description.model_description.defaultExperiment
            declared = getattr(experiment, "stepSize", None) if experiment is not None else None
            step = float(declared) if declared else (stop_time - start_time) / DEFAULT_STEPS
        grid = time_grid(start_time, stop_time, step)
        values = {k: np.array([v]) for k, v in (start_values or {}).items()}
        if inputs is not None:  # inputs at t0 take part in initialisation
            values.update({k: np.array([v]) for k, v in inputs.at(start_time).items()})
        run = model.start(1, {}, values, t0=start_time)
        try:
            names = list(model.signature.names("outputs"))
            table = np.empty((len(grid), len(names)))
            table[0] = [model.outputs(run)[n][0] for n in names]
            for k in range(1, len(grid)):
                held = inputs.at(grid[k - 1]) if inputs is not None else {}
                out = model.step(run, float(grid[k] - grid[k - 1]), {n: np.array([v]) for n, v in held.items()})
                table[k] = [out[n][0] for n in names]
        finally:
            model.close(run)
    return FmuResult(time=grid, outputs={n: table[:, j] for j, n in enumerate(names)})


def write_csv(result: FmuResult, path: str | Path) -> None:
    """Write a result as CSV: the ``time`` column, then one column per output (``repr`` precision)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(result.columns)
        columns = [result.time, *result.outputs.values()]
        for i in range(len(result.time)):
            writer.writerow([repr(float(c[i])) for c in columns])
