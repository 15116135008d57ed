"""The FMU kind of behaviour model: an FMI 2.0 or 3.0 FMU behind the behaviour-model port, run with fmpy.

``n`` instances of the model are ``n`` FMU instances of one extracted archive; the port's arrays are
spread over them entry by entry. Names are those of the FMU's ``modelDescription.xml``.

>>> from tvilling.simulation.fmu import FmuModel                             # doctest: +SKIP
>>> with FmuModel.open("lag.fmu") as model:                                  # doctest: +SKIP
...     run = model.start(2, {"T": np.array([1.0, 2.0])})
...     outputs = model.step(run, 0.1, {"u": np.array([1.0, 1.0])})
...     model.close(run)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from tvilling.core.errors import Invalid
from tvilling.simulation.fmu_description import FmuDescription, read_fmu, require_fmpy, unknown_name
from tvilling.simulation.fmu_instance import FmuInstance
from tvilling.simulation.ports import Array, Instances, Signature


class FmuModel:
    """An FMU as a :class:`~tvilling.simulation.ports.BehaviourModel` (co-simulation or model exchange)."""

    def __init__(self, description: FmuDescription, interface: str | None = None,
                 relative_tolerance: float = 1e-6) -> None:
        self.description = description
        self.interface = description.interface(interface)
        self.name: str = description.model_name
        self.signature: Signature = description.signature
        self._tolerance = relative_tolerance
        fmpy = require_fmpy()
        self._unzipdir = tempfile.mkdtemp(prefix="tvilling-fmu-")
        fmpy.extract(str(description.path), self._unzipdir)

    @classmethod
    def open(cls, path: str | Path, interface: str | None = None, relative_tolerance: float = 1e-6) -> FmuModel:
        """Read, check and extract the FMU at ``path``; ``interface`` picks co-simulation or model exchange
        (default: co-simulation when the FMU offers it). The relative tolerance is model exchange's."""
        return cls(read_fmu(path), interface, relative_tolerance)

    def __enter__(self) -> FmuModel:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Remove the extracted archive (close every run first)."""
        shutil.rmtree(self._unzipdir, ignore_errors=True)

    # -- the port -----------------------------------------------------------------------------------------

    def start(self, n: int, parameters: Mapping[str, Array], start_values: Mapping[str, Array] | None = None,
              t0: float = 0.0) -> Instances:
        """``n`` FMU instances initialised at ``t0``; a value is a scalar or an array of ``n`` entries."""
        if n < 1:
            raise Invalid(f"the number of instances must be at least 1, not {n}", field="n")
        known = set(self.signature.names("parameters"))
        for name in parameters:
            if name not in known:
                raise unknown_name(name, known, "parameter", self.description.path)
        values = {**_spread(parameters, n), **_spread(start_values or {}, n)}
        fmus: list[FmuInstance] = []
        try:
            for i in range(n):
                fmu = FmuInstance(self.description, self._unzipdir, self.interface, f"{self.name}[{i}]",
                                  self._tolerance)
                fmus.append(fmu)
                fmu.open({name: float(column[i]) for name, column in values.items()}, t0)
        except BaseException:
            for fmu in fmus:
                fmu.close()
            raise
        return Instances(n=n, t=t0, data={"fmus": fmus})

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Advance every instance by ``dt`` with these inputs held; the outputs at the end of the step."""
        if not dt > 0:
            raise Invalid(f"the step must be positive, not {dt}", field="dt")
        known = set(self.signature.names("inputs"))
        for name in inputs:
            if name not in known:
                raise unknown_name(name, known, "input", self.description.path)
        columns = _spread(inputs, instances.n)
        for i, fmu in enumerate(_fmus(instances)):
            fmu.set_inputs({name: float(column[i]) for name, column in columns.items()})
            fmu.advance(instances.t, dt)
        instances.t += dt
        return self.outputs(instances)

    def outputs(self, instances: Instances) -> dict[str, Array]:
        """The outputs of every instance now (at ``instances.t``), by output name."""
        names = list(self.signature.names("outputs"))
        table = np.array([fmu.read(names) for fmu in _fmus(instances)], dtype=np.float64).reshape(instances.n,
                                                                                                   len(names))
        return {name: table[:, j].copy() for j, name in enumerate(names)}

    def read(self, instances: Instances, names: list[str]) -> dict[str, Array]:
        """Any numeric variables of every instance now, by name (states, locals, parameters …)."""
        for name in names:
            self.description.variable(name)
        table = np.array([fmu.read(names) for fmu in _fmus(instances)], dtype=np.float64).reshape(instances.n,
                                                                                                   len(names))
        return {name: table[:, j].copy() for j, name in enumerate(names)}

    def close(self, instances: Instances) -> None:
        """Terminate and free every FMU instance of the run; closing a closed run does nothing."""
        fmus: list[FmuInstance] = instances.data.get("fmus", [])
        instances.data["fmus"] = []
        for fmu in fmus:
            fmu.close()


def _fmus(instances: Instances) -> list[FmuInstance]:
    fmus: list[FmuInstance] = instances.data.get("fmus", [])
    if len(fmus) != instances.n:
        raise Invalid("these FMU instances are closed (or not from FmuModel.start)", field="instances")
    return fmus


def _spread(values: Mapping[str, Any], n: int) -> dict[str, Array]:
    """Each value as an array of ``n`` floats: a scalar is repeated; any other shape is an error naming it."""
    out: dict[str, Array] = {}
    for name, value in values.items():
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise Invalid(f"the value of {name} is not a number or an array of numbers: {value!r}",
                          variable=name) from None
        if array.ndim == 0:
            array = np.full(n, float(array))
        if array.shape != (n,):
            raise Invalid(f"the value of {name} has shape {array.shape}; expected a scalar or ({n},), one per "
                          "instance", variable=name)
        out[name] = array
    return out
