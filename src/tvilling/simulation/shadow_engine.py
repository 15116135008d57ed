"""Shadow mode, the I/O shell: the configured simulations observing every batch the ingest pipeline stores.

After the pipeline stores a batch, :class:`ShadowEngine` (an ingest observer, like the analytics
engine) finds, per simulation, the simulated twins the batch touches — a reading of the machine
itself, or of a twin one of its sources reads through a relationship (its bearing) — gathers the
batch into arrays (distinct times × inputs or outputs × twins), runs
:meth:`~tvilling.simulation.shadow.ShadowFleet.advance` (one vectorised model call per distinct
time, instances = twins) and writes the residuals back through the writer it was built with — the
pipeline's ``write_derived``, the one write path; they are not passed to the observers again and,
where the history store marks them, are derived batches in its readings feed.

Parameters come from the configuration and the registry (:mod:`tvilling.simulation.binding_versions`);
:meth:`ShadowEngine.refresh` applies versions promoted since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.core.readings import Readings
from tvilling.simulation.binding import Binder, check_relationships, load_model
from tvilling.simulation.binding_versions import parameters_for, promoted_versions
from tvilling.simulation.ports import BehaviourModel
from tvilling.simulation.shadow import Derived, ShadowFleet
from tvilling.simulation.spec import SimulationSpec

log = logging.getLogger("tvilling.simulation")
SIMULATION_TRANSPORT = "simulation"
Writer = Callable[[Readings, "npt.NDArray[np.object_]"], int]
"""Stores derived readings with the source of each; returns how many were stored."""

# a reading's role in one simulation: (fleet index, is input, slot, source)
_Slot = tuple[int, bool, int, Any]


class _Bound:
    """One simulation's model, binder and fleet, plus the slots each (twin, property) fills."""

    def __init__(self, spec: SimulationSpec, model: BehaviourModel, binder: Binder) -> None:
        self.spec = spec
        self.binder = binder
        self.fleet = ShadowFleet(spec, model)
        self.slots: dict[tuple[str, str], list[_Slot]] = {}
        self.versions: dict[str, tuple[int | None, ...]] = {}


class ShadowEngine:
    """The configured simulations in shadow mode: call it as a pipeline observer.

    ``twins``: the twin store (relationships are followed in it); ``models``: the model registry;
    ``registry``: the analytic registry holding parameter versions (None: configuration only);
    ``writer``: where residuals go (None: computed and dropped); ``history``: the history store (or
    a callable returning it), whose ``deriving()`` marks the writes as derived in its readings feed.
    """

    def __init__(self, specs: Sequence[SimulationSpec], models: Any, twins: Any, registry: Any = None,
                 writer: Writer | None = None, history: Any = None,
                 loaded: Mapping[str, BehaviourModel] | None = None) -> None:
        self.models = models
        self.registry = registry
        self._writer = writer
        self._history = history
        self._lock = threading.RLock()
        self.failures: dict[str, str] = {}
        self._bound: list[_Bound] = []
        for spec in specs:
            if not spec.enabled:
                continue
            model = (loaded or {}).get(spec.name) or load_model(spec)
            check_relationships(spec, models.modelset)
            binder = Binder(spec, twins, lambda: self.models.modelset)
            self._bound.append(_Bound(spec, model, binder))

    @property
    def specs(self) -> list[SimulationSpec]:
        """The enabled simulations."""
        return [b.spec for b in self._bound]

    def fleet(self, name: str) -> ShadowFleet:
        """The running fleet of simulation ``name`` (KeyError when it is not configured)."""
        for b in self._bound:
            if b.spec.name == name:
                return b.fleet
        raise KeyError(name)

    # -- the observer ------------------------------------------------------------------------
    def __call__(self, readings: Readings, models: Mapping[str, str], transport: str) -> None:
        if transport == SIMULATION_TRANSPORT or not self._bound:
            return
        self.handle(readings, models)

    def handle(self, readings: Readings, models: Mapping[str, str]) -> int:
        """Run shadow mode over a stored batch and store the residuals; returns how many readings."""
        derived = self.outputs(readings, models)
        if derived is None or self._writer is None:
            return 0
        store = self._history() if callable(self._history) else self._history
        with store.deriving() if hasattr(store, "deriving") else nullcontext():
            return self._writer(*derived)

    def outputs(self, readings: Readings, models: Mapping[str, str]) -> tuple[Readings, Any] | None:
        """What shadow mode derives from a batch, not yet written: readings and the source of each."""
        if not len(readings):
            return None
        parts: list[tuple[Readings, npt.NDArray[np.object_]]] = []
        with self._lock:
            for bound in self._bound:
                try:
                    derived = self._run(bound, readings, models)
                except Exception as exc:  # one simulation failing must not stop the others
                    why = f"{type(exc).__name__}: {exc}"
                    if self.failures.get(bound.spec.name) != why:
                        log.exception("simulation %s failed on a batch", bound.spec.name)
                    self.failures[bound.spec.name] = why
                    continue
                self.failures.pop(bound.spec.name, None)
                if derived is not None and len(derived):
                    r = _readings(derived)
                    parts.append((r, np.full(len(r), f"simulation:{bound.spec.name}", dtype=object)))
        if not parts:
            return None
        return Readings.concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def refresh(self) -> list[str]:
        """Apply parameter versions promoted since the twins were bound; returns the twins changed."""
        changed: list[str] = []
        with self._lock:
            for b in self._bound:
                for twin in b.fleet.twins:
                    now = promoted_versions(self.registry, b.spec, twin)
                    if now != b.versions.get(twin):
                        b.versions[twin] = now
                        b.fleet.set_parameters(twin, parameters_for(self.registry, b.spec, twin))
                        changed.append(twin)
        return changed

    def forget(self) -> None:
        """Resolve relationships again at the next batch (twins or relationships changed)."""
        with self._lock:
            for b in self._bound:
                b.binder.forget()
                b.slots.clear()

    # -- one simulation over one batch ---------------------------------------------------------
    def _run(self, b: _Bound, readings: Readings, models: Mapping[str, str]) -> Derived | None:
        twins = readings.twin
        present = sorted(set(twins.tolist()))
        routes = b.binder.routes(present, models)
        if not routes:
            return None
        rows = np.flatnonzero(np.isin(twins, list(routes)))
        if not len(rows):
            return None
        sub_twin, sub_prop = twins[rows], readings.prop[rows]
        key = sub_twin.astype(str) + "\x1f" + sub_prop.astype(str)
        uniq, inverse = np.unique(key, return_inverse=True)
        slot_lists = [self._slots(b, str(k), routes) for k in uniq.tolist()]
        if not any(slot_lists):
            return None
        fleet = b.fleet
        times, t_index = np.unique(readings.ts[rows], return_inverse=True)
        n = len(fleet.twins)
        inputs = np.full((len(times), len(fleet.inputs), n), np.nan)
        measured = np.full((len(times), len(fleet.outputs), n), np.nan)
        values = readings.value[rows]
        text = readings.text[rows] if readings.text is not None else None
        for u, slots in enumerate(slot_lists):
            if not slots:
                continue
            sel = np.flatnonzero(inverse == u)
            for index, is_input, slot, source in slots:
                v = values[sel]
                if source.map and text is not None:
                    v = np.array([source.number(s) if isinstance(s, str) else np.nan for s in text[sel]])
                target = inputs if is_input else measured
                target[t_index[sel], slot, index] = v
        return fleet.advance(times.astype(np.int64), inputs, measured)

    def _slots(self, b: _Bound, key: str, routes: Mapping[str, list[tuple[str, Any]]]) -> list[_Slot]:
        twin, _, prop = key.partition("\x1f")
        cached = b.slots.get((twin, prop))
        if cached is not None:
            return cached
        out: list[_Slot] = []
        for sim_twin, target in routes.get(twin, []):
            if sim_twin not in b.fleet.index:
                b.versions[sim_twin] = promoted_versions(self.registry, b.spec, sim_twin)
                b.fleet.add(sim_twin, parameters_for(self.registry, b.spec, sim_twin))
            index = b.fleet.index[sim_twin]
            for slot, source in enumerate(b.spec.inputs.values()):
                if source.constant is None and source.target == target and source.path == prop:
                    out.append((index, True, slot, source))
            for slot, source in enumerate(b.spec.outputs.values()):
                if source.target == target and source.path == prop:
                    out.append((index, False, slot, source))
        b.slots[(twin, prop)] = out
        return out


def _readings(d: Derived) -> Readings:
    parts: list[Readings] = []
    if d.value:
        parts.append(Readings(np.concatenate(d.twin), np.concatenate(d.prop), np.concatenate(d.ts),
                              np.concatenate(d.value)))
    if d.text:
        parts.append(Readings.from_rows(d.text))
    return Readings.concat(parts)


__all__ = ["SIMULATION_TRANSPORT", "ShadowEngine", "Writer"]
