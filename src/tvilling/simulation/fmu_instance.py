"""One running FMU instance (FMI 2.0 or 3.0, co-simulation or model exchange) behind fmpy.

:class:`FmuInstance` hides the four combinations behind one life cycle: ``open`` (instantiate, set
start values, initialise at ``t0``), ``set_inputs``, ``advance(t, dt)``, ``read`` and ``close``.
A co-simulation FMU steps itself (``doStep``); a model-exchange FMU is integrated here with fmpy's
CVODE (SUNDIALS) solver, which it ships, handling time, state and step events between steps. Inputs
are held over a step; when they change the solver is restarted at the step's start so that it does
not integrate across the jump.

Errors an FMU reports (a failed FMI call, a request to terminate) become
:class:`~tvilling.core.errors.Invalid` naming the FMU, the instance and the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tvilling.core.errors import Invalid, TvillingError
from tvilling.simulation.fmu_description import CO_SIMULATION, FmuDescription

#: the fmpy getter/setter suffix of each FMI type, by FMI major version
_ACCESSORS = {
    2: {"Real": "Real", "Integer": "Integer", "Enumeration": "Integer", "Boolean": "Boolean"},
    3: {"Enumeration": "Int64"},
}


def accessor(description: FmuDescription, fmi_type: str) -> str:
    """The fmpy ``get…``/``set…`` suffix for variables of this FMI type."""
    return _ACCESSORS[description.major].get(fmi_type, fmi_type)


def settable_before_initialisation(v: Any) -> bool:
    """Whether a start value is set right after instantiation (FMI: inputs, ``exact``/``approx`` initials)."""
    return bool(v.causality == "input" or (v.variability != "constant" and v.initial in ("exact", "approx")))


def settable(v: Any) -> bool:
    """Whether a start value may be given at all (before or during initialisation)."""
    return bool(settable_before_initialisation(v) or v.causality == "parameter"
                or (v.causality != "parameter" and v.variability == "tunable"))


class _HeldInputs:
    """What fmpy's CVODE wrapper calls to apply inputs; ours are already set and held over the step."""

    def apply(self, time: float, continuous: bool = True, discrete: bool = True, after_event: bool = False) -> None:
        """Nothing to do: inputs are set before the step and held."""


class FmuInstance:
    """One instance of an FMU, initialised at ``t0`` with start values, stepped by :meth:`advance`."""

    def __init__(self, description: FmuDescription, unzipdir: str, interface: str, name: str,
                 relative_tolerance: float = 1e-6) -> None:
        self.description = description
        self.interface = interface
        self.name = name
        self._unzipdir = unzipdir
        self._tolerance = relative_tolerance
        self._fmu: Any = None
        self._solver: Any = None
        self._inputs_changed = False
        self._next_event: float | None = None

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except TvillingError:
            raise
        except Exception as exc:  # fmpy raises plain exceptions: translate them here, at the boundary
            raise Invalid(f"FMU {self.description.path.name} (instance {self.name}) failed to {what}: {exc}",
                          fmu=str(self.description.path), instance=self.name) from exc

    # -- life cycle ---------------------------------------------------------------------------------------

    def open(self, start_values: Mapping[str, float], t0: float) -> None:
        """Instantiate, set the start values and initialise at ``t0``."""
        d = self.description
        variables = {name: d.variable(name, "variable") for name in start_values}
        for name, v in variables.items():
            if not settable(v):
                raise Invalid(f"FMU {d.path.name}: {name} cannot be given a start value (causality "
                              f"{v.causality}, variability {v.variability}, initial {v.initial})",
                              fmu=str(d.path), variable=name)
        early = {n: start_values[n] for n, v in variables.items() if settable_before_initialisation(v)}
        late = {n: start_values[n] for n in variables if n not in early}
        with self._calling("start"):
            self._instantiate()
            self.write(early)
            if d.major == 2:
                self._fmu.setupExperiment(startTime=t0)
                self._fmu.enterInitializationMode()
            else:
                self._fmu.enterInitializationMode(startTime=t0)
            self.write(late)
            self._fmu.exitInitializationMode()
            if self.interface != CO_SIMULATION:
                self._event_iteration()
                self._fmu.enterContinuousTimeMode()
                self._solver = self._make_solver(t0)

    def _instantiate(self) -> None:
        from fmpy import fmi2, fmi3

        d = self.description
        co = self.interface == CO_SIMULATION
        cls = {(2, True): fmi2.FMU2Slave, (2, False): fmi2.FMU2Model,
               (3, True): fmi3.FMU3Slave, (3, False): fmi3.FMU3Model}[(d.major, co)]
        self._fmu = cls(guid=d.guid, unzipDirectory=self._unzipdir, instanceName=self.name,
                        modelIdentifier=d.interfaces[self.interface])
        self._fmu.instantiate()

    def _make_solver(self, t0: float) -> Any:
        from fmpy.sundials import CVodeSolver

        fmu, md = self._fmu, self.description.model_description
        get_dx = fmu.getContinuousStateDerivatives if self.description.major == 3 else fmu.getDerivatives
        return CVodeSolver(nx=md.numberOfContinuousStates, nz=md.numberOfEventIndicators,
                           get_x=fmu.getContinuousStates, set_x=fmu.setContinuousStates, get_dx=get_dx,
                           get_z=fmu.getEventIndicators, get_nominals=fmu.getNominalsOfContinuousStates,
                           set_time=fmu.setTime, input=_HeldInputs(), startTime=t0,
                           relativeTolerance=self._tolerance, maxNumSteps=100_000)

    def _event_iteration(self) -> None:
        """Update discrete states until the FMU is done (model exchange, in event mode)."""
        update: Callable[[], tuple[Any, ...]] = (self._fmu.newDiscreteStates if self.description.major == 2
                                                 else self._fmu.updateDiscreteStates)
        again = True
        while again:
            again, terminate, _, _, defined, next_time = update()
            if terminate:
                raise Invalid(f"FMU {self.description.path.name} (instance {self.name}) asked to terminate",
                              fmu=str(self.description.path), instance=self.name)
        self._next_event = float(next_time) if defined else None

    def close(self) -> None:
        """Terminate and free the instance (and fmpy's handle on the library); safe to call twice."""
        fmu, self._fmu, self._solver = self._fmu, None, None
        if fmu is None:
            return
        try:
            fmu.terminate()
        finally:
            fmu.freeInstance()

    # -- values -------------------------------------------------------------------------------------------

    def write(self, values: Mapping[str, float]) -> None:
        """Set these variables (by name) to these values, converted to each variable's FMI type."""
        d = self.description
        with self._calling("set " + ", ".join(values)):
            for name, value in values.items():
                v = d.variables[name]
                kind = accessor(d, v.type)
                converted: Any
                if kind == "Boolean":
                    converted = bool(value)
                elif kind.startswith(("Int", "UInt", "Integer")):
                    converted = round(float(value))
                else:
                    converted = float(value)
                getattr(self._fmu, "set" + kind)([v.valueReference], [converted])

    def read(self, names: list[str]) -> list[float]:
        """The current values of these variables, as floats (booleans as 0/1)."""
        d = self.description
        with self._calling("read " + ", ".join(names)):
            out: list[float] = []
            for name in names:
                v = d.variables[name]
                got = getattr(self._fmu, "get" + accessor(d, v.type))([v.valueReference])
                out.append(float(got[0]))
            return out

    def set_inputs(self, values: Mapping[str, float]) -> None:
        """Set inputs for the next step (held over it)."""
        if values:
            self.write(values)
            self._inputs_changed = True

    # -- time ---------------------------------------------------------------------------------------------

    def advance(self, t: float, dt: float) -> None:
        """Advance the instance from ``t`` to ``t + dt``."""
        with self._calling(f"step from t={t:g} by {dt:g}"):
            if self.interface == CO_SIMULATION:
                self._do_step(t, dt)
            else:
                self._integrate(t, t + dt)
        self._inputs_changed = False

    def _do_step(self, t: float, dt: float) -> None:
        result = self._fmu.doStep(currentCommunicationPoint=t, communicationStepSize=dt)
        if self.description.major == 3 and result[1]:
            raise Invalid(f"FMU {self.description.path.name} (instance {self.name}) asked to terminate at "
                          f"t={t + dt:g}", fmu=str(self.description.path), instance=self.name)

    def _integrate(self, t: float, t_end: float) -> None:
        fmu = self._fmu
        if self._inputs_changed:
            fmu.setTime(t)
            self._solver.reset(t)
        needs_step_call = bool(self.description.model_description.modelExchange.needsCompletedIntegratorStep)
        while t < t_end and not math.isclose(t, t_end, rel_tol=1e-12, abs_tol=1e-12):
            target = t_end
            if self._next_event is not None and t < self._next_event < t_end:
                target = self._next_event
            state_event, _, t = self._solver.step(t, target)
            fmu.setTime(t)
            step_event = False
            if needs_step_call:
                step_event, terminate = fmu.completedIntegratorStep()
                if terminate:
                    raise Invalid(f"FMU {self.description.path.name} (instance {self.name}) asked to terminate "
                                  f"at t={t:g}", fmu=str(self.description.path), instance=self.name)
            time_event = self._next_event is not None and math.isclose(t, self._next_event, abs_tol=1e-12)
            if state_event or step_event or time_event:
                fmu.enterEventMode()
                self._event_iteration()
                fmu.enterContinuousTimeMode()
                self._solver.reset(t)
