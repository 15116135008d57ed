"""One running FMU instance (FMI 2.0 or 3.0, co-simulation or model exchange) behind fmpy.

:class:`FmuInstance` hides the four combinations behind one life cycle: ``open`` (instantiate, set
start values, initialise at ``t0``), ``set_inputs``, ``advance(t, dt)``, ``read`` and ``close``.
A co-simulation FMU steps itself (``doStep``); a model-exchange FMU is integrated here with fmpy's
CVODE (SUNDIALS) solver, which it ships, handling time, state and step events between steps. Inputs
are held over a step; when they change the solver is restarted at the step's start so that it does
not integrate across the jump.

Changing a running instance (what-if interventions): a tunable parameter is set in place (in event
mode for model exchange); a model-exchange state through ``setContinuousStates``. What FMI forbids
setting after initialisation — a fixed parameter, or any state of a co-simulation FMU — is done by
*restarting* the instance at the current time: a fresh instance initialised with the start values
given so far, every declared continuous state at its current value, and the change. What the FMU
keeps beyond its declared states (hidden memory) starts over then; a state that takes no start value
(``initial="calculated"``) makes the restart impossible, and the error names it.
:meth:`FmuInstance.snapshot`/:meth:`FmuInstance.restore` copy an instance's whole state into another
through FMI's serialised FMU state, where the FMU declares ``canGetAndSetFMUstate`` and
``canSerializeFMUstate``.

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
        self._given: dict[str, float] = {}  # start values and parameter changes: what a restart starts from
        self._held: dict[str, float] = {}  # the inputs last set

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
        self._given = dict(start_values)
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
            self._held.update(values)
            self._inputs_changed = True

    # -- changing a running instance ------------------------------------------------------------------------

    @property
    def state_names(self) -> list[str]:
        """The continuous states, in the order of the FMU's state vector (ModelStructure/Derivatives)."""
        md = self.description.model_description
        return [u.variable.derivative.name for u in md.derivatives
                if u.variable is not None and u.variable.derivative is not None]

    def set_parameters(self, values: Mapping[str, float], t: float) -> None:
        """Change parameters at ``t``: a tunable one in place, a fixed one by restarting (see the module text)."""
        d = self.description
        tunable: dict[str, float] = {}
        fixed: dict[str, float] = {}
        for name, value in values.items():
            v = d.variable(name, "parameter")
            if v.causality != "parameter" or v.variability not in ("fixed", "tunable"):
                raise Invalid(f"FMU {d.path.name}: {name} is not a parameter (causality {v.causality}, variability "
                              f"{v.variability}): it cannot be changed as one", fmu=str(d.path), variable=name)
            (tunable if v.variability == "tunable" else fixed)[name] = value
        if fixed:
            self.restart(t, fixed_parameters={**fixed, **tunable})
            return
        if not tunable:
            return
        if self.interface == CO_SIMULATION:
            self.write(tunable)
        else:
            with self._calling("enter event mode to set " + ", ".join(tunable)):
                self._fmu.setTime(t)
                self._fmu.enterEventMode()
            self.write(tunable)
            with self._calling("leave event mode"):
                self._event_iteration()
                self._fmu.enterContinuousTimeMode()
                self._solver.reset(t)
        self._given.update(tunable)

    def set_states(self, values: Mapping[str, float], t: float) -> None:
        """Overwrite continuous states at ``t``: through the state vector (model exchange) or by restarting
        (co-simulation, where FMI allows no state to be set after initialisation)."""
        d = self.description
        order = self.state_names
        for name in values:
            if name not in order:
                raise Invalid(f"FMU {d.path.name}: {name!r} is not a continuous state of the model; its states are "
                              f"{order}", fmu=str(d.path), variable=name)
        if not values:
            return
        if self.interface == CO_SIMULATION:
            self.restart(t, states=dict(values))
            return
        with self._calling("set the states " + ", ".join(values)):
            x = self._state_vector(len(order))
            for name, value in values.items():
                x[order.index(name)] = float(value)
            self._set_state_vector(x, t)

    def add_to_states(self, deltas: Mapping[int, float], t: float) -> None:
        """Add to entries of the state vector (process noise; model exchange only)."""
        with self._calling("perturb the states"):
            x = self._state_vector(len(self.state_names))
            for i, delta in deltas.items():
                x[i] += delta
            self._set_state_vector(x, t)

    def _state_vector(self, nx: int) -> Any:
        from ctypes import c_double

        x = (c_double * nx)()
        self._fmu.getContinuousStates(x, nx)
        return x

    def _set_state_vector(self, x: Any, t: float) -> None:
        self._fmu.setTime(t)
        self._fmu.setContinuousStates(x, len(x))
        self._solver.reset(t)

    def restart(self, t: float, *, states: Mapping[str, float] | None = None,
                fixed_parameters: Mapping[str, float] | None = None) -> None:
        """Replace the instance by a fresh one initialised at ``t`` from the start values given so far, the
        current continuous states and these changes (see the module text)."""
        d = self.description
        names = self.state_names
        current = dict(zip(names, self.read(names), strict=True)) if names else {}
        for name in names:
            if not settable_before_initialisation(d.variables[name]) and name not in (states or {}):
                v = d.variables[name]
                raise Invalid(f"FMU {d.path.name} ({self.interface}): cannot change "
                              f"{', '.join([*(states or {}), *(fixed_parameters or {})])} at t={t:g}: that needs a "
                              f"restart of the instance, and its state {name!r} takes no start value (initial "
                              f"{v.initial}) to carry its current value over", fmu=str(d.path), variable=name)
        for name in states or {}:
            if not settable_before_initialisation(d.variables[name]):
                raise Invalid(f"FMU {d.path.name} ({self.interface}): state {name!r} cannot be set at t={t:g}: "
                              f"FMI sets a co-simulation state only as a start value, and {name!r} takes none "
                              f"(initial {d.variables[name].initial})", fmu=str(d.path), variable=name)
        start = {**self._given, **current, **(states or {}), **(fixed_parameters or {})}
        held = dict(self._held)
        self.close()
        self.open(start, t)
        self.set_inputs(held)

    def snapshot(self) -> bytes:
        """The instance's whole state, serialised (FMI ``getFMUstate`` + ``serializeFMUstate``)."""
        self._require_state_capability()
        with self._calling("get and serialise its FMU state"):
            state = self._fmu.getFMUState()
            try:
                return bytes(self._fmu.serializeFMUState(state))
            finally:
                self._fmu.freeFMUState(state)

    def restore(self, data: bytes, t: float, inputs: Mapping[str, float], given: Mapping[str, float]) -> None:
        """Take over a state from :meth:`snapshot` (of any instance of this FMU) at ``t``."""
        self._require_state_capability()
        with self._calling("restore a serialised FMU state"):
            deserialise = (self._fmu.deSerializeFMUstate if self.description.major == 2
                           else self._fmu.deserializeFMUState)
            state = deserialise(data)
            try:
                self._fmu.setFMUState(state)
            finally:
                self._fmu.freeFMUState(state)
            if self.interface != CO_SIMULATION:
                self._fmu.setTime(t)
                self._solver.reset(t)
        self._given = dict(given)
        self._held = dict(inputs)
        self._inputs_changed = True

    def _require_state_capability(self) -> None:
        d = self.description
        md = d.model_description
        element = md.coSimulation if self.interface == CO_SIMULATION else md.modelExchange
        missing = [flag for flag in ("canGetAndSetFMUstate", "canSerializeFMUstate")
                   if not getattr(element, flag, False)]
        if missing:
            raise Invalid(f"FMU {d.path.name} ({self.interface}) does not declare {' and '.join(missing)}: its "
                          "instances cannot be copied (forked) from a running one", fmu=str(d.path),
                          capability=missing[0])

    @property
    def given(self) -> dict[str, float]:
        """The start values and parameter changes so far."""
        return dict(self._given)

    @property
    def held(self) -> dict[str, float]:
        """The inputs last set."""
        return dict(self._held)

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
