"""Shadow mode, the pure part: a behaviour model run beside its assets, compared with what they measure.

A :class:`ShadowFleet` holds the running instances of one simulation's model — one instance per
simulated twin, all stepped in one vectorised model call per time step — and what it learned about
each twin's residuals. :meth:`ShadowFleet.advance` takes a batch as arrays (the batch's distinct
times; per time, the inputs and the measured outputs of every twin, NaN where a twin reported
nothing) and returns what to write. It performs no I/O.

Semantics, per distinct time ``t`` of a batch (in order):

* inputs are held: an input a twin did not report at ``t`` keeps its last value (an input with a
  default starts at it); a twin joins once every input without a default has a value. A twin that
  joins starts at the model's steady state for its inputs (where the model offers ``steady_start``),
  and states that are also outputs (temperatures, speed) start at their measured values;
* every running instance is advanced from the fleet's clock to ``t`` (``dt`` = the time between,
  times ``time_scale``, split into sub-steps of at most ``step`` seconds), whether or not its twin
  reported at ``t``: a stopped machine is simulated too (its inputs say it is stopped). The inputs
  reported at ``t`` drive the step that ends at ``t`` (a device reports its setpoint and load with
  the outputs they produced); readings older than the clock only update the held inputs;
* where a twin measured an output at ``t``, the residual is ``measured − predicted``;
* **normalised size.** During a twin's first ``learn_rows`` compared rows, each output's *scale* is
  learned: the root mean square of its residual over those rows, floored at 1 % of the output's mean
  measured magnitude and at the configured ``tolerance`` (so a noise-free output does not divide by
  zero). After that the scale is fixed, and each output's *score* is the exponentially smoothed
  residual (``alpha``) divided by its scale, in absolute value. ``residual_norm`` is the largest score
  of the twin's outputs and ``worst`` the output that has it. A healthy asset whose model fits keeps
  scores around 1 or below; an asset doing something the model does not know drives the score of
  the output it shows in up — to tens or hundreds for a bearing defect the model has not been told of.

What is written, per twin and time (``<p>`` = ``simulation.<name>``; ``<o>`` = the output with ``:``
as ``.``): ``<p>.residual.<o>`` always; ``<p>.score.<o>``, ``<p>.residual_norm`` and ``<p>.worst``
once the scale is learned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.simulation.ports import Array, BehaviourModel, Instances
from tvilling.simulation.spec import SimulationSpec, output_path

MAX_SUBSTEPS = 1000  # a longer gap is stepped in at most this many steps
SCALE_FLOOR = 0.01  # the scale is at least this share of an output's mean measured magnitude
_TINY = 1e-9


@dataclass
class Derived:
    """Numeric outputs as columns, plus the ``worst`` text rows."""

    twin: list[npt.NDArray[np.object_]] = field(default_factory=list)
    prop: list[npt.NDArray[np.object_]] = field(default_factory=list)
    ts: list[npt.NDArray[np.int64]] = field(default_factory=list)
    value: list[npt.NDArray[np.float64]] = field(default_factory=list)
    text: list[tuple[str, str, int, str]] = field(default_factory=list)

    def add(self, twins: npt.NDArray[np.object_], props: npt.NDArray[np.object_], ts: int,
            values: npt.NDArray[np.float64]) -> None:
        if len(values):
            self.twin.append(twins)
            self.prop.append(props)
            self.ts.append(np.full(len(values), ts, dtype=np.int64))
            self.value.append(values)

    def __len__(self) -> int:
        return sum(len(v) for v in self.value) + len(self.text)


class ShadowFleet:
    """One simulation's model running beside every twin it simulates (see the module docstring)."""

    def __init__(self, spec: SimulationSpec, model: BehaviourModel) -> None:
        self.spec = spec
        self.model = model
        sig = model.signature
        self.inputs = list(spec.inputs)
        self.outputs = list(spec.outputs)
        given = {v.name: v.default for v in sig.inputs}
        self._input_default = np.array([math.nan if given[n] is None else given[n] for n in self.inputs],
                                       dtype=np.float64)
        for k, name in enumerate(self.inputs):
            c = spec.inputs[name].constant
            if c is not None:
                self._input_default[k] = c
        self._required = np.array([given[n] is None for n in self.inputs], dtype=bool)
        self._param_default: dict[str, float | None] = {v.name: v.default for v in sig.parameters}
        self._states = set(sig.names("states"))
        prefix = spec.prefix()
        self._residual_props = np.array([f"{prefix}.residual.{output_path(o)}" for o in self.outputs], dtype=object)
        self._score_props = np.array([f"{prefix}.score.{output_path(o)}" for o in self.outputs], dtype=object)
        self._norm_prop, self._worst_prop = f"{prefix}.residual_norm", f"{prefix}.worst"
        self._tolerance = np.array([spec.tolerance.get(o, 0.0) for o in self.outputs])
        self.twins: list[str] = []
        self.index: dict[str, int] = {}
        self.parameters: list[dict[str, float]] = []
        self.held = np.empty((len(self.inputs), 0))
        self.started = np.zeros(0, dtype=bool)
        self.instances: Instances | None = None
        self._order = np.zeros(0, dtype=np.int64)  # fleet index of each instance
        self.clock_us: int | None = None
        n_out = len(self.outputs)
        self.rows = np.zeros(0, dtype=np.int64)
        self._sumsq, self._summag, self._count = np.zeros((n_out, 0)), np.zeros((n_out, 0)), np.zeros((n_out, 0))
        self.scale = np.full((n_out, 0), np.nan)
        self.smoothed = np.full((n_out, 0), np.nan)

    # -- the twins ---------------------------------------------------------------------------
    def add(self, twin: str, parameters: Mapping[str, float]) -> int:
        """Simulate ``twin`` (it joins when its inputs are known); returns its index."""
        if twin in self.index:
            return self.index[twin]
        i = len(self.twins)
        self.twins.append(twin)
        self.index[twin] = i
        self.parameters.append(dict(parameters))
        self.held = np.column_stack([self.held, self._input_default]) if self.held.size else \
            self._input_default.reshape(-1, 1).copy()
        self.started = np.append(self.started, False)
        self.rows = np.append(self.rows, 0)
        grow = np.zeros((len(self.outputs), 1))
        self._sumsq, self._summag, self._count = (np.hstack([a, grow]) for a in (self._sumsq, self._summag,
                                                                                   self._count))
        self.scale = np.hstack([self.scale, grow + np.nan])
        self.smoothed = np.hstack([self.smoothed, grow + np.nan])
        return i

    def set_parameters(self, twin: str, parameters: Mapping[str, float]) -> None:
        """New parameters for one twin from now on (a promoted version); its learned scale is kept."""
        i = self.index[twin]
        self.parameters[i] = dict(parameters)
        if self.instances is None or not self.started[i]:
            return
        setter = getattr(self.model, "set_parameters", None)
        if setter is None:
            self._rebuild(np.zeros(0, dtype=np.int64), None)
            return
        where = self._order == i
        full = self._parameter_arrays(self._order)
        setter(self.instances, {k: v for k, v in full.items()}, where=where)

    # -- a batch -----------------------------------------------------------------------------
    def advance(self, times: npt.NDArray[np.int64], inputs: npt.NDArray[np.float64],
                measured: npt.NDArray[np.float64]) -> Derived:
        """Step through a batch: ``times`` (K,) distinct, ascending, µs; ``inputs`` (K, inputs, twins) and
        ``measured`` (K, outputs, twins), NaN where a twin reported nothing. Returns what to write."""
        out = Derived()
        n = len(self.twins)
        if inputs.shape[1:] != (len(self.inputs), n) or measured.shape[1:] != (len(self.outputs), n):
            raise ValueError(f"advance: arrays of shape {inputs.shape} and {measured.shape} do not fit "
                             f"{len(self.inputs)} inputs, {len(self.outputs)} outputs and {n} twins")
        for k, t in enumerate(times.tolist()):
            fresh = ~np.isnan(inputs[k])
            self.held[fresh] = inputs[k][fresh]
            if self.clock_us is not None and t < self.clock_us:
                continue  # late readings: their inputs are held, nothing is stepped back
            if self.instances is not None and self.clock_us is not None and t > self.clock_us:
                y = self._step((t - self.clock_us) / 1e6 * self.spec.time_scale)
                self._compare(t, y, measured[k][:, self._order], out)
            self.clock_us = t
            ready = ~self.started & ~(np.isnan(self.held) & self._required[:, None]).any(axis=0)
            if ready.any():
                self._rebuild(np.flatnonzero(ready), measured[k])
        return out

    def _inputs_now(self) -> dict[str, Array]:
        held = self.held[:, self._order]
        return {name: held[j] for j, name in enumerate(self.inputs) if not np.isnan(held[j]).any()}

    def _step(self, dt: float) -> dict[str, Array]:
        assert self.instances is not None
        parts = 1 if self.spec.step is None else min(MAX_SUBSTEPS, max(1, math.ceil(dt / self.spec.step - 1e-9)))
        u = self._inputs_now()
        y: dict[str, Array] = {}
        for _ in range(parts):
            y = self.model.step(self.instances, dt / parts, u)
        return y

    def _compare(self, t: int, y: Mapping[str, Array], measured: npt.NDArray[np.float64], out: Derived) -> None:
        """Residuals of the running instances at ``t`` (``measured``: outputs × instances)."""
        order = self._order
        predicted = np.vstack([np.asarray(y[o], dtype=np.float64) for o in self.outputs])
        residual = measured - predicted
        valid = np.isfinite(residual)
        j, c = np.nonzero(valid)
        twins = np.asarray(self.twins, dtype=object)[order]
        out.add(twins[c], self._residual_props[j], t, residual[j, c])
        compared = valid.any(axis=0)
        learning = compared & (self.rows[order] < self.spec.learn_rows)
        if learning.any():
            cols = order[learning]
            r, v = residual[:, learning], valid[:, learning]
            self._sumsq[:, cols] += np.where(v, r * r, 0.0)
            self._summag[:, cols] += np.where(v, np.abs(measured[:, learning]), 0.0)
            self._count[:, cols] += v
        self.rows[order[compared]] += 1
        scale = self.scale[:, order]
        done = learning & (self.rows[order] >= self.spec.learn_rows)
        if done.any():
            cols = order[done]
            count = np.maximum(self._count[:, cols], 1.0)
            rms = np.sqrt(self._sumsq[:, cols] / count)
            floor = np.maximum(SCALE_FLOOR * self._summag[:, cols] / count, self._tolerance[:, None])
            self.scale[:, cols] = np.maximum(np.maximum(rms, floor), _TINY)
            scale = self.scale[:, order]
        # smooth the residual in units of the scale (during learning, in units of the running RMS)
        unit = np.where(np.isnan(scale), np.sqrt(self._sumsq[:, order] / np.maximum(self._count[:, order], 1.0)),
                        scale)
        z = residual / np.maximum(unit, _TINY)
        prev = self.smoothed[:, order]
        alpha = self.spec.alpha
        smoothed = np.where(valid, np.where(np.isnan(prev), z, alpha * z + (1.0 - alpha) * prev), prev)
        self.smoothed[:, order] = smoothed
        learned = compared & ~np.isnan(scale).any(axis=0)
        if not learned.any():
            return
        score = np.abs(smoothed[:, learned])
        shown = valid[:, learned]
        j, c = np.nonzero(shown)
        lt = twins[learned]
        out.add(lt[c], self._score_props[j], t, np.round(score[j, c], 6).astype(np.float64))
        ranked = np.where(np.isnan(score), -1.0, score)
        worst = np.argmax(ranked, axis=0)
        norm = ranked[worst, np.arange(len(worst))]
        keep = norm >= 0
        out.add(lt[keep], np.full(int(keep.sum()), self._norm_prop, dtype=object), t,
                np.round(norm[keep], 6).astype(np.float64))
        for twin, w in zip(lt[keep].tolist(), worst[keep].tolist(), strict=True):
            out.text.append((twin, self._worst_prop, t, self.outputs[w]))

    # -- instances -----------------------------------------------------------------------------
    def _parameter_arrays(self, order: npt.NDArray[np.int64]) -> dict[str, Array]:
        names = sorted({k for i in order.tolist() for k in self.parameters[i]})
        arrays: dict[str, Array] = {}
        for name in names:
            default = self._param_default.get(name)
            fill = math.nan if default is None else float(default)
            arrays[name] = np.array([self.parameters[i].get(name, fill)
                                     for i in order.tolist()], dtype=np.float64)
        return arrays

    def _rebuild(self, joining: npt.NDArray[np.int64], measured: npt.NDArray[np.float64] | None) -> None:
        """Start the instances again over the running twins plus ``joining`` (states kept where the model
        can give them; the joining twins at a steady or measured start)."""
        model: Any = self.model
        old = self.instances
        kept: dict[str, Array] = {}
        if old is not None and hasattr(model, "state_values"):
            kept = model.state_values(old)
        if old is not None:
            model.close(old)
        order = np.concatenate([self._order, joining]).astype(np.int64)
        params = self._parameter_arrays(order)
        held = self.held[:, order]
        inputs = {name: held[j] for j, name in enumerate(self.inputs) if not np.isnan(held[j]).any()}
        starts: dict[str, Array] = {}
        if hasattr(model, "steady_start"):
            starts = model.steady_start(len(order), inputs, params)
        if kept:
            m = len(self._order)
            for name, values in kept.items():
                column = starts.get(name)
                if column is None:
                    column = np.full(len(order), np.nan)
                column = np.array(column, dtype=np.float64, copy=True)
                column[:m] = values
                starts[name] = column
        if measured is not None and len(joining):
            for j, name in enumerate(self.outputs):
                if name in self._states:
                    column = np.array(starts.get(name, np.full(len(order), np.nan)), dtype=np.float64, copy=True)
                    seen = measured[j, joining]
                    rows = len(self._order) + np.flatnonzero(np.isfinite(seen))
                    column[rows] = seen[np.isfinite(seen)]
                    starts[name] = column
        starts = {k: v for k, v in starts.items() if not np.isnan(v).any()}
        t0 = 0.0 if old is None else old.t
        self.instances = model.start(len(order), params, starts, t0)
        self._order = order
        self.started[joining] = True


__all__ = ["MAX_SUBSTEPS", "SCALE_FLOOR", "Derived", "ShadowFleet"]
