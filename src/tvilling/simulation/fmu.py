"""The FMU kind of behaviour model: an FMI 2.0 or 3.0 FMU behind the behaviour-model port, run with fmpy.

``n`` instances of the model are ``n`` FMU instances of one extracted archive; the port's arrays are
spread over them entry by entry. Names are those of the FMU's ``modelDescription.xml``.

For what-if scenarios it also reads and changes running instances (the rest of
:class:`~tvilling.simulation.scenario_runner.ScenarioModel`): :meth:`FmuModel.read_outputs`,
:meth:`FmuModel.state_values` (the continuous states ModelStructure declares), and
:meth:`FmuModel.set_states`/:meth:`FmuModel.set_parameters` on the instances a mask selects — in place
where FMI allows it, else by restarting the instance at the current time with its states carried over
(:mod:`.fmu_instance` says which and what a restart loses). :meth:`FmuModel.fork` copies one running
instance into new ones through FMI's serialised FMU state, where the FMU can do that.

>>> from tvilling.simulation.fmu import FmuModel                             # doctest: +SKIP
>>> with FmuModel.open("lag.fmu") as model:                                  # doctest: +SKIP
...     run = model.start(2, {"T": np.array([1.0, 2.0])})
...     outputs = model.step(run, 0.1, {"u": np.array([1.0, 1.0])})
...     model.close(run)
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid
from tvilling.simulation.fmu_description import (
    CO_SIMULATION,
    FmuDescription,
    read_fmu,
    require_fmpy,
    unknown_name,
)
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
        # the extracted archive goes with the model, also when no one calls dispose()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._unzipdir, ignore_errors=True)
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
        self._cleanup()

    # -- the port -----------------------------------------------------------------------------------------

    def start(self, n: int, parameters: Mapping[str, Any] | None = None,
              start_values: Mapping[str, Any] | None = None, t0: float = 0.0, *,
              noise: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None) -> Instances:
        """``n`` FMU instances initialised at ``t0``; a value is a scalar or an array of ``n`` entries.

        ``noise``: process noise per continuous state (standard deviation per √second), drawn from
        ``rng`` and added to the state vector after each step — model exchange only (a co-simulation
        FMU's states can only be set by restarting it, which a step-by-step perturbation cannot afford)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise Invalid(f"the number of instances must be an integer, at least 1, not {n!r}", field="n")
        parameters = parameters or {}
        known = set(self.signature.names("parameters"))
        for name in parameters:
            if name not in known:
                raise unknown_name(name, known, "parameter", self.description.path)
        sigma = self._noise(noise, rng, n)
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
        return self._instances(n, t0, fmus, sigma, rng)

    def _instances(self, n: int, t0: float, fmus: list[FmuInstance], sigma: dict[int, Array] | None,
                   rng: np.random.Generator | None) -> Instances:
        instances = Instances(n=n, t=t0, data={"fmus": fmus})
        if sigma:
            instances.data["noise"] = (sigma, rng)
        # FMU instances hold native memory: free them when the run is dropped without close()
        weakref.finalize(instances, _close_all, list(fmus))
        return instances

    def _noise(self, noise: Mapping[str, Any] | None, rng: np.random.Generator | None,
               n: int) -> dict[int, Array] | None:
        if not noise:
            return None
        if self.interface == CO_SIMULATION:
            raise Invalid(f"FMU {self.description.path.name}: process noise needs model exchange (its states are "
                          "set through the state vector); this run uses co-simulation", field="noise",
                          fmu=str(self.description.path))
        if rng is None:
            raise Invalid("process noise needs a numpy Generator (rng=) so runs are reproducible", field="rng")
        order = self._state_order()
        out: dict[int, Array] = {}
        for name, value in _spread(noise, n).items():
            if name not in order:
                raise unknown_name(name, order, "continuous state", self.description.path)
            if (value < 0).any():
                raise Invalid(f"the noise of state {name!r} must be ≥ 0", field=f"noise.{name}")
            out[order.index(name)] = value
        return out

    def _state_order(self) -> list[str]:
        md = self.description.model_description
        return [u.variable.derivative.name for u in md.derivatives
                if u.variable is not None and u.variable.derivative is not None]

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
        noise = instances.data.get("noise")
        if noise is not None:
            sigma, rng = noise
            draws = {j: s * math.sqrt(dt) * rng.standard_normal(instances.n) for j, s in sigma.items()}
            for i, fmu in enumerate(_fmus(instances)):
                fmu.add_to_states({j: float(d[i]) for j, d in draws.items()}, instances.t)
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

    # -- reading and changing running instances (what-if scenarios) ---------------------------------------

    def read_outputs(self, instances: Instances, inputs: Mapping[str, Any]) -> dict[str, Array]:
        """The outputs now with these inputs set (held for the next step), without stepping."""
        known = set(self.signature.names("inputs"))
        for name in inputs:
            if name not in known:
                raise unknown_name(name, known, "input", self.description.path)
        columns = _spread(inputs, instances.n)
        for i, fmu in enumerate(_fmus(instances)):
            fmu.set_inputs({name: float(column[i]) for name, column in columns.items()})
        return self.outputs(instances)

    def state_values(self, instances: Instances) -> dict[str, Array]:
        """Every continuous state (ModelStructure's derivatives name them) of every instance now, by name."""
        names = list(self.signature.names("states"))
        return self.read(instances, names) if names else {}

    def set_states(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        """Overwrite continuous states of the instances ``where`` selects (all when None) from now on:
        through the state vector (model exchange) or by restarting the instance (co-simulation)."""
        known = self._state_order()
        for name in values:
            if name not in known:
                raise unknown_name(name, known, "continuous state", self.description.path)
        self._change(instances, values, where, "set_states")

    def set_parameters(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        """Change parameters of the instances ``where`` selects (all when None) from now on: a tunable one
        in place, a fixed one by restarting the instance with it as its start value. Values are checked
        against the parameter's bounds."""
        params = {v.name: v for v in self.signature.parameters}
        for name in values:
            if name not in params:
                raise unknown_name(name, params, "parameter", self.description.path)
        self._change(instances, values, where, "set_parameters", check=params)

    def _change(self, instances: Instances, values: Mapping[str, Any], where: Any, method: str,
                check: Mapping[str, Any] | None = None) -> None:
        columns = _spread(values, instances.n)
        mask = _mask(where, instances.n)
        for name, column in columns.items():
            chosen = column[mask]
            if not np.isfinite(chosen).all():
                raise Invalid(f"the new value of {name} must be finite", variable=name)
            var = None if check is None else check[name]
            if var is not None and ((var.lower is not None and (chosen < var.lower).any())
                                    or (var.upper is not None and (chosen > var.upper).any())):
                raise Invalid(f"FMU {self.description.path.name}: the new value of {name} lies outside its bounds "
                              f"[{var.lower}, {var.upper}]", variable=name, lower=var.lower, upper=var.upper)
        for i, fmu in enumerate(_fmus(instances)):
            if mask[i] and columns:
                getattr(fmu, method)({name: float(column[i]) for name, column in columns.items()}, instances.t)

    def fork(self, instances: Instances, n: int, index: int = 0) -> Instances:
        """``n`` new instances, each a copy of the running instance ``index`` (its states, parameters, held
        inputs and time) through FMI's serialised FMU state; the FMU must declare ``canGetAndSetFMUstate``
        and ``canSerializeFMUstate``. The new run is independent of the old one (close both)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise Invalid(f"the number of instances must be an integer, at least 1, not {n!r}", field="n")
        fmus = _fmus(instances)
        if not 0 <= index < len(fmus):
            raise Invalid(f"no instance {index}: the run has {len(fmus)}", field="index")
        source = fmus[index]
        data = source.snapshot()
        given, held = source.given, source.held
        copies: list[FmuInstance] = []
        try:
            for i in range(n):
                fmu = FmuInstance(self.description, self._unzipdir, self.interface, f"{self.name}[fork {i}]",
                                  self._tolerance)
                copies.append(fmu)
                fmu.open(given, instances.t)
                fmu.restore(data, instances.t, held, given)
                fmu.set_inputs(held)
        except BaseException:
            for fmu in copies:
                fmu.close()
            raise
        noise = instances.data.get("noise")
        sigma = None if noise is None else {j: np.full(n, float(s[index])) for j, s in noise[0].items()}
        return self._instances(n, instances.t, copies, sigma, None if noise is None else noise[1])

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


def _close_all(fmus: list[FmuInstance]) -> None:
    for fmu in fmus:
        fmu.close()


def _mask(where: Any, n: int) -> npt.NDArray[np.bool_]:
    if where is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(where)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise Invalid(f"where must be a boolean array of shape ({n},), one entry per instance", field="where")
    return mask


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
