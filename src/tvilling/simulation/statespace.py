"""Python state-space models: written once, run vectorised over ``n`` instances.

A model declares its variables in a :class:`~tvilling.simulation.ports.Signature` — states
(``default`` = start value, bounds = physical limits), parameters (default, bounds, unit),
inputs (a ``default`` makes an input optional) and outputs — and gives either

* ``derivatives(t, x, u, p) -> dx`` — a continuous model, integrated by a fixed-step
  vectorised RK4 (the default: fast) or by SciPy's ``solve_ivp`` (adaptive: every instance
  stacked into one system), or
* ``update(t, dt, x, u, p) -> x`` — a discrete model: the state after a step of ``dt`` seconds,

and ``outputs(t, x, u, p) -> y``. ``x``, ``u``, ``p`` and the returned mappings are dicts of
arrays of shape ``(n,)``, one entry per instance (twin or Monte-Carlo sample): the model computes
every instance in one NumPy call, never in a Python loop per instance.

>>> class Lag(StateSpaceModel):
...     name = "lag"
...     signature = Signature(states=(Variable("x", default=0.0),), inputs=(Variable("u"),),
...                           outputs=(Variable("y"),),
...                           parameters=(Variable("tau", "s", default=10.0, lower=0.1, upper=1e4),))
...     def derivatives(self, t, x, u, p):
...         return {"x": (u["u"] - x["x"]) / p["tau"]}
...     def outputs(self, t, x, u, p):
...         return {"y": x["x"]}
>>> model = Lag(max_step=0.1)      # RK4 in sub-steps of at most 0.1 s
>>> runs = model.start(3, {"tau": np.array([1.0, 10.0, 100.0])})
>>> y = model.step(runs, 10.0, {"u": np.ones(3)})["y"]
>>> [round(float(v), 3) for v in y]
[1.0, 0.632, 0.095]
>>> model.start(1, {"tau": 0.0})
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: lag: parameter 'tau' = 0 is below its lower bound 0.1

Process noise (for Monte-Carlo runs) is given per state as a standard deviation per √second
and drawn from a ``numpy.random.Generator`` passed to :meth:`StateSpaceModel.start`: after each
step ``x += σ·√dt·N(0, 1)``, then states with bounds are clipped into them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.errors import Invalid, TvillingError, Unavailable
from tvilling.simulation.ports import Array, Instances, Signature, Variable

#: the integrators a continuous model can run under; "discrete" runs ``update``
INTEGRATORS = ("rk4", "solve_ivp", "discrete")
#: ``solve_ivp`` methods that take a Jacobian sparsity pattern (the instances are independent)
_SPARSE_METHODS = ("BDF", "Radau")
Values = dict[str, Array]


def _solve_ivp() -> Any:
    """SciPy's ``solve_ivp``, imported only when a model asks for it."""
    try:
        from scipy.integrate import solve_ivp
    except ImportError:
        raise Unavailable("the solve_ivp integrator needs SciPy: pip install 'tvilling[sim]'",
                          dependency="scipy") from None
    return solve_ivp


def _number(value: float) -> str:
    return f"{value:g}"


class StateSpaceModel:
    """Base of a Python state-space model (a :class:`~tvilling.simulation.ports.BehaviourModel`).

    A subclass sets ``name`` and ``signature`` and defines ``outputs`` and ``derivatives`` or
    ``update`` (or both: the integrator picks). Options:

    * ``integrator``: ``"rk4"`` (fixed step, the default for a continuous model), ``"solve_ivp"``
      (adaptive) or ``"discrete"`` (the default when ``update`` is defined);
    * ``max_step``: the longest internal step in seconds (RK4 splits a longer ``dt`` into equal
      sub-steps; ``solve_ivp`` passes it on); ``None``: one RK4 step per ``dt``;
    * ``ivp_method``, ``rtol``, ``atol``: passed to ``solve_ivp``.
    """

    name: str = "model"
    signature: Signature = Signature()

    def __init__(self, *, integrator: str | None = None, max_step: float | None = None, ivp_method: str = "RK45",
                 rtol: float = 1e-6, atol: float = 1e-9) -> None:
        cls = type(self)
        sig = self.signature
        continuous = cls.derivatives is not StateSpaceModel.derivatives
        discrete = cls.update is not StateSpaceModel.update
        if not continuous and not discrete:
            raise Invalid(f"{self.name}: a state-space model defines derivatives() or update()", model=self.name)
        if cls.outputs is StateSpaceModel.outputs:
            raise Invalid(f"{self.name}: a state-space model defines outputs()", model=self.name)
        if not sig.states:
            raise Invalid(f"{self.name}: a state-space model has at least one state", model=self.name)
        for kind in ("states", "parameters", "inputs", "outputs"):
            names = sig.names(kind)
            dup = sorted({v for v in names if names.count(v) > 1})
            if dup:
                raise Invalid(f"{self.name}: {kind} named more than once: {dup}", model=self.name, field=kind)
        chosen = integrator or ("discrete" if discrete else "rk4")
        if chosen not in INTEGRATORS:
            raise Invalid(f"{self.name}: integrator {chosen!r} is not one of {list(INTEGRATORS)}",
                          model=self.name, field="integrator", rule="enum")
        if chosen == "discrete" and not discrete:
            raise Invalid(f"{self.name}: the discrete integrator needs update(); this model has derivatives()",
                          model=self.name, field="integrator")
        if chosen != "discrete" and not continuous:
            raise Invalid(f"{self.name}: integrator {chosen!r} needs derivatives(); this model has update()",
                          model=self.name, field="integrator")
        if max_step is not None and not (math.isfinite(max_step) and max_step > 0):
            raise Invalid(f"{self.name}: max_step must be > 0 seconds, not {max_step!r}", model=self.name,
                          field="max_step", rule="range")
        self.integrator = chosen
        self.max_step = max_step
        self.ivp_method = ivp_method
        self.rtol = rtol
        self.atol = atol
        self._states = sig.names("states")
        self._index = {name: i for i, name in enumerate(self._states)}
        self._inputs = sig.inputs
        self._input_names = frozenset(sig.names("inputs"))
        self._params = {v.name: v for v in sig.parameters}
        lo = np.array([-np.inf if v.lower is None else v.lower for v in sig.states])
        hi = np.array([np.inf if v.upper is None else v.upper for v in sig.states])
        self._bounded = np.flatnonzero(np.isfinite(lo) | np.isfinite(hi))
        self._lo, self._hi = lo[self._bounded, None], hi[self._bounded, None]
        self._sparsity: dict[int, Any] = {}

    # ------------------------------------------------------------------ what a model defines

    def derivatives(self, t: float, x: Values, u: Values, p: Values) -> Mapping[str, Any]:
        """The time derivative of every state (continuous models)."""
        raise Invalid(f"{self.name}: the model defines no derivatives()", model=self.name)

    def update(self, t: float, dt: float, x: Values, u: Values, p: Values) -> Mapping[str, Any]:
        """Every state after a step of ``dt`` seconds from ``t`` with inputs ``u`` held (discrete models)."""
        raise Invalid(f"{self.name}: the model defines no update()", model=self.name)

    def outputs(self, t: float, x: Values, u: Values, p: Values) -> Mapping[str, Any]:
        """Every output at time ``t`` from the state, the inputs and the parameters."""
        raise Invalid(f"{self.name}: the model defines no outputs()", model=self.name)

    # ------------------------------------------------------------------ the port

    def start(self, n: int, parameters: Mapping[str, Any] | None = None,
              start_values: Mapping[str, Any] | None = None, t0: float = 0.0, *,
              noise: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None) -> Instances:
        """``n`` instances at ``t0``. Parameters and start values are scalars or arrays of shape ``(n,)``;
        what is not given takes its declared default. ``noise``: process noise per state (standard
        deviation per √second, scalar or per instance), drawn from ``rng``."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise Invalid(f"{self.name}: the number of instances must be an integer ≥ 1, not {n!r}",
                          model=self.name, field="n", rule="range")
        n = int(n)
        if not math.isfinite(t0):
            raise Invalid(f"{self.name}: t0 must be a finite number of seconds, not {t0!r}", model=self.name,
                          field="t0", rule="type")
        given = dict(parameters or {})
        self._unknown(given, self._params, "parameter")
        p: Values = {}
        for name, var in self._params.items():
            if name in given:
                p[name] = self._checked(given[name], n, var, "parameter")
            elif var.default is None:
                raise Invalid(f"{self.name}: parameter {name!r} has no default: give its value", model=self.name,
                              field=name, rule="required")
            else:
                p[name] = np.full(n, float(var.default))
        starts = dict(start_values or {})
        self._unknown(starts, self._index, "state")
        x = np.empty((len(self._states), n))
        for i, var in enumerate(self.signature.states):
            if var.name in starts:
                x[i] = self._checked(starts[var.name], n, var, "start value of state")
            elif var.default is None:
                raise Invalid(f"{self.name}: state {var.name!r} has no default start value: give it",
                              model=self.name, field=var.name, rule="required")
            else:
                x[i] = float(var.default)
        data: dict[str, Any] = {"x": x, "p": p, "defaults": self._input_defaults(n)}
        if noise:
            if rng is None:
                raise Invalid(f"{self.name}: process noise needs a numpy Generator (rng=) so runs are reproducible",
                              model=self.name, field="rng", rule="required")
            self._unknown(dict(noise), self._index, "state")
            sigma = np.zeros((len(self._states), n))
            for name, value in noise.items():
                sigma[self._index[name]] = self._checked(value, n, Variable(name, lower=0.0), "noise of state")
            rows = np.flatnonzero(sigma.any(axis=1))
            data["noise"] = (rows, sigma[rows], rng)
        return Instances(n=n, t=float(t0), data=data)

    def step(self, instances: Instances, dt: float, inputs: Mapping[str, Any]) -> dict[str, Array]:
        """Advance every instance by ``dt`` seconds with ``inputs`` held; the outputs at the end of the step."""
        if not isinstance(dt, int | float) or isinstance(dt, bool) or not (math.isfinite(dt) and dt > 0):
            raise Invalid(f"{self.name}: dt must be a number of seconds > 0, not {dt!r}", model=self.name,
                          field="dt", rule="range")
        data, n, t = instances.data, instances.n, instances.t
        u = self._input_values(inputs, n, data["defaults"])
        p = data["p"]
        x = data["x"]
        if self.integrator == "discrete":
            x = self._collect(self.update(t, dt, self._view(x), u, p), x.shape, "update")
        elif self.integrator == "rk4":
            x = self._rk4(t, dt, x, u, p)
        else:
            x = self._ivp(t, dt, x, u, p)
        noise = data.get("noise")
        if noise is not None:
            rows, sigma, rng = noise
            x[rows] += sigma * math.sqrt(dt) * rng.standard_normal((len(rows), n))
            if len(self._bounded):
                x[self._bounded] = np.clip(x[self._bounded], self._lo, self._hi)
        data["x"] = x
        instances.t = t + dt
        return self._output_values(instances.t, x, u, p, n)

    def close(self, instances: Instances) -> None:
        """Nothing to release: a Python model holds only arrays."""

    # ------------------------------------------------------------------ reading and changing instances

    def read_outputs(self, instances: Instances, inputs: Mapping[str, Any]) -> dict[str, Array]:
        """The outputs now, with these inputs, without stepping (for example at ``t0``)."""
        data = instances.data
        u = self._input_values(inputs, instances.n, data["defaults"])
        return self._output_values(instances.t, data["x"], u, data["p"], instances.n)

    def state_values(self, instances: Instances) -> dict[str, Array]:
        """A copy of every state, by name."""
        return {name: row.copy() for name, row in zip(self._states, instances.data["x"], strict=True)}

    def parameter_values(self, instances: Instances) -> dict[str, Array]:
        """A copy of every parameter, by name."""
        return {name: value.copy() for name, value in instances.data["p"].items()}

    def set_states(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        """Overwrite states (all instances, or those where the boolean mask ``where`` is true): a
        maintenance action, a fork from measured values. Values are checked against the state's bounds."""
        self._unknown(dict(values), self._index, "state")
        n, mask = instances.n, self._mask(where, instances.n)
        x = instances.data["x"].copy()  # outputs already handed out may alias the old array
        for name, value in values.items():
            i = self._index[name]
            x[i] = np.where(mask, self._checked(value, n, self.signature.states[i], "value of state"), x[i])
        instances.data["x"] = x

    def set_parameters(self, instances: Instances, values: Mapping[str, Any], where: Any = None) -> None:
        """Change parameters from now on (all instances, or where ``where`` is true), within their bounds."""
        self._unknown(dict(values), self._params, "parameter")
        n, mask = instances.n, self._mask(where, instances.n)
        p = instances.data["p"]
        for name, value in values.items():
            p[name] = np.where(mask, self._checked(value, n, self._params[name], "parameter"), p[name])

    # ------------------------------------------------------------------ integration

    def _view(self, x: Array) -> Values:
        return dict(zip(self._states, x, strict=True))

    def _collect(self, values: Mapping[str, Any], shape: tuple[int, ...], what: str) -> Array:
        """A state-shaped array from what ``derivatives``/``update`` returned, checked."""
        out = np.empty(shape)
        try:
            for i, name in enumerate(self._states):
                out[i] = values[name]
        except KeyError as exc:
            raise Invalid(f"{self.name}: {what}() returned no value for state {exc.args[0]!r}", model=self.name,
                          field=str(exc.args[0]), rule="required") from None
        except (ValueError, TypeError) as exc:
            raise Invalid(f"{self.name}: {what}() returned a value of the wrong shape or type for state "
                          f"{name!r} (expected ({shape[1]},)): {exc}", model=self.name, field=name,
                          rule="shape") from None
        if len(values) != len(self._states):
            extra = sorted(set(values) - set(self._states))
            raise Invalid(f"{self.name}: {what}() returned values for unknown states {extra}", model=self.name,
                          field=extra[0] if extra else what, rule="unknown")
        return out

    def _rhs(self, t: float, x: Array, u: Values, p: Values) -> Array:
        return self._collect(self.derivatives(t, self._view(x), u, p), x.shape, "derivatives")

    def _rk4(self, t: float, dt: float, x: Array, u: Values, p: Values) -> Array:
        parts = 1 if self.max_step is None else max(1, math.ceil(dt / self.max_step - 1e-9))
        h = dt / parts
        for k in range(parts):
            tk = t + k * h
            k1 = self._rhs(tk, x, u, p)
            k2 = self._rhs(tk + 0.5 * h, x + (0.5 * h) * k1, u, p)
            k3 = self._rhs(tk + 0.5 * h, x + (0.5 * h) * k2, u, p)
            k4 = self._rhs(tk + h, x + h * k3, u, p)
            x = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        return x

    def _ivp(self, t: float, dt: float, x: Array, u: Values, p: Values) -> Array:
        solve_ivp = _solve_ivp()
        shape = x.shape

        def fun(tt: float, y: Array) -> Array:
            return self._rhs(tt, y.reshape(shape), u, p).ravel()

        options: dict[str, Any] = {"method": self.ivp_method, "rtol": self.rtol, "atol": self.atol}
        if self.max_step is not None:
            options["max_step"] = self.max_step
        if self.ivp_method in _SPARSE_METHODS:
            options["jac_sparsity"] = self._jac_sparsity(shape)
        try:
            sol = solve_ivp(fun, (t, t + dt), x.ravel(), **options)
        except TvillingError:
            raise
        except ValueError as exc:  # an unknown method or a bad option
            raise Invalid(f"{self.name}: solve_ivp rejected the run: {exc}", model=self.name,
                          field="ivp_method") from None
        if not sol.success:
            raise Invalid(f"{self.name}: solve_ivp failed between t={_number(t)} and t={_number(t + dt)} s: "
                          f"{sol.message}", model=self.name, rule="integration")
        return np.asarray(sol.y[:, -1], dtype=np.float64).reshape(shape)

    def _jac_sparsity(self, shape: tuple[int, ...]) -> Any:
        """Instances are independent: state i of instance k depends only on the states of instance k."""
        s, n = shape
        if n not in self._sparsity:
            from scipy import sparse

            self._sparsity[n] = sparse.kron(np.ones((s, s)), sparse.identity(n), format="csr")
        return self._sparsity[n]

    # ------------------------------------------------------------------ checking values

    def _unknown(self, given: Mapping[str, Any], known: Collection[str], kind: str) -> None:
        extra = sorted(set(given) - set(known))
        if extra:
            raise Invalid(f"{self.name}: no {kind} {extra[0]!r}; the {kind}s are {sorted(known)}",
                          model=self.name, field=extra[0], rule="unknown")

    def _checked(self, value: Any, n: int, var: Variable, what: str) -> Array:
        """``value`` as a float array of shape ``(n,)``: finite and within the variable's bounds."""
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise Invalid(f"{self.name}: {what} {var.name!r} must be a number or an array of numbers, not "
                          f"{value!r}", model=self.name, field=var.name, rule="type") from None
        if a.ndim == 0:
            a = np.full(n, float(a))
        elif a.shape != (n,):
            raise Invalid(f"{self.name}: {what} {var.name!r} has shape {a.shape}; expected a scalar or ({n},)",
                          model=self.name, field=var.name, rule="shape")
        else:
            a = a.copy()
        bad = ~np.isfinite(a)
        if bad.any():
            raise Invalid(f"{self.name}: {what} {var.name!r} is not a finite number (instance "
                          f"{int(np.argmax(bad))})", model=self.name, field=var.name, rule="type")
        if var.lower is not None and (a < var.lower).any():
            worst = float(a.min())
            raise Invalid(f"{self.name}: {what} {var.name!r} = {_number(worst)} is below its lower bound "
                          f"{_number(var.lower)}", model=self.name, field=var.name, rule="range")
        if var.upper is not None and (a > var.upper).any():
            worst = float(a.max())
            raise Invalid(f"{self.name}: {what} {var.name!r} = {_number(worst)} is above its upper bound "
                          f"{_number(var.upper)}", model=self.name, field=var.name, rule="range")
        return a

    def _input_defaults(self, n: int) -> Values:
        return {v.name: np.full(n, float(v.default)) for v in self._inputs if v.default is not None}

    def _input_values(self, inputs: Mapping[str, Any], n: int, defaults: Values) -> Values:
        u: Values = {}
        for var in self._inputs:
            value = inputs.get(var.name)
            if value is None:
                if var.name not in defaults:
                    raise Invalid(f"{self.name}: input {var.name!r} is missing (it has no default)",
                                  model=self.name, field=var.name, rule="required")
                u[var.name] = defaults[var.name]
                continue
            a = value if isinstance(value, np.ndarray) and value.dtype == np.float64 else np.asarray(value, float)
            if a.shape != (n,):
                if a.ndim != 0:
                    raise Invalid(f"{self.name}: input {var.name!r} has shape {a.shape}; expected a scalar or "
                                  f"({n},)", model=self.name, field=var.name, rule="shape")
                a = np.full(n, float(a))
            if not np.isfinite(a).all():
                raise Invalid(f"{self.name}: input {var.name!r} is not a finite number (instance "
                              f"{int(np.argmax(~np.isfinite(a)))})", model=self.name, field=var.name, rule="type")
            u[var.name] = a
        if len(inputs) > len(u) or not self._input_names.issuperset(inputs):
            self._unknown(inputs, self._input_names, "input")
        return u

    def _output_values(self, t: float, x: Array, u: Values, p: Values, n: int) -> dict[str, Array]:
        y = self.outputs(t, self._view(x), u, p)
        out: dict[str, Array] = {}
        for var in self.signature.outputs:
            try:
                a = np.asarray(y[var.name], dtype=np.float64)
            except KeyError:
                raise Invalid(f"{self.name}: outputs() returned no value for output {var.name!r}", model=self.name,
                              field=var.name, rule="required") from None
            if a.shape != (n,):
                if a.ndim != 0:
                    raise Invalid(f"{self.name}: outputs() returned shape {a.shape} for {var.name!r}; expected "
                                  f"({n},)", model=self.name, field=var.name, rule="shape")
                a = np.full(n, float(a))
            out[var.name] = a
        return out

    def _mask(self, where: Any, n: int) -> npt.NDArray[np.bool_]:
        if where is None:
            return np.ones(n, dtype=bool)
        mask = np.asarray(where)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise Invalid(f"{self.name}: where must be a boolean array of shape ({n},)", model=self.name,
                          field="where", rule="shape")
        return mask


__all__ = ["INTEGRATORS", "StateSpaceModel", "Values"]
