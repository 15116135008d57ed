"""Binding a simulation to twins: its behaviour model, checked against the configuration, and which twin
and property each input and output reads.

* :func:`load_model` builds the model a :class:`~tvilling.simulation.spec.SimulationSpec` names (a Python
  class, or an FMU) and checks the configuration against its signature: every input, output and
  parameter named exists, every input without a default is bound.
* :func:`check_relationships` checks the relationships the sources follow against the twin model.
* :class:`Binder` resolves, per simulated twin, the twin each source reads (the twin itself, or the
  target of one of its relationships, chosen by ``where``), and the reverse: which simulated twins a
  reading of ``(twin, property)`` feeds. Resolutions are cached; :meth:`Binder.forget` drops them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tvilling.core.errors import Invalid
from tvilling.core.twin import Twin
from tvilling.models.modelset import ModelSet
from tvilling.simulation.ports import BehaviourModel, Signature
from tvilling.simulation.spec import SimulationSpec, Source

log = logging.getLogger("tvilling.simulation")


def load_model(spec: SimulationSpec) -> BehaviourModel:
    """The behaviour model of ``spec``, checked against the configuration (:class:`Invalid` names the field)."""
    at = f"simulation {spec.name!r}"
    model: Any
    if spec.kind == "python":
        assert spec.model_class is not None  # parse_simulation guarantees it
        module_name, _, class_name = spec.model_class.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise Invalid(f"{at}: class {spec.model_class!r}: module {module_name!r} cannot be imported ({exc})",
                          field="class", rule="import") from None
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise Invalid(f"{at}: class {spec.model_class!r}: module {module_name!r} has no class {class_name!r}",
                          field="class", rule="import")
        model = cls()
    else:
        from tvilling.simulation.fmu import FmuModel

        assert spec.path is not None
        model = FmuModel.open(spec.path, spec.interface)
    if not all(hasattr(model, a) for a in ("signature", "start", "step", "close")):
        raise Invalid(f"{at}: {type(model).__name__} is not a behaviour model (signature, start, step, close)",
                      field="class", rule="port")
    check_signature(spec, model.signature)
    return model  # type: ignore[no-any-return]


def check_signature(spec: SimulationSpec, signature: Signature) -> None:
    """Every name the configuration uses exists in the model, and every input without a default is bound."""
    at = f"simulation {spec.name!r}"
    tables: list[tuple[str, Mapping[str, Any]]] = [
        ("inputs", spec.inputs), ("outputs", spec.outputs), ("parameters", spec.parameters),
        *((f"twins.{t}", p) for t, p in spec.twins.items()), ("tolerance", spec.tolerance)]
    for kind, names in tables:
        section = kind.split(".")[0]
        known = signature.names("parameters" if section == "twins" else
                                "outputs" if section == "tolerance" else section)
        extra = sorted(set(names) - set(known))
        if extra:
            what = "parameter" if section in ("parameters", "twins") else section.rstrip("s").replace("tolerance",
                                                                                                   "output")
            raise Invalid(f"{at}: the model has no {what} {extra[0]!r}; it has {', '.join(known)}",
                          field=f"{kind}.{extra[0]}", rule="unknown")
    unbound = [v.name for v in signature.inputs if v.default is None and v.name not in spec.inputs]
    if unbound:
        raise Invalid(f"{at}: model input {unbound[0]!r} has no default: bind it in inputs",
                      field=f"inputs.{unbound[0]}", rule="required")
    for name, var in {v.name: v for v in signature.parameters}.items():
        for where, table in (("parameters", spec.parameters), *((f"twins.{t}", p) for t, p in spec.twins.items())):
            value = table.get(name)
            if value is None:
                continue
            if (var.lower is not None and value < var.lower) or (var.upper is not None and value > var.upper):
                raise Invalid(f"{at}: parameter {name!r} = {value:g} lies outside its bounds "
                              f"[{var.lower}, {var.upper}]", field=f"{where}.{name}", rule="range")


def check_relationships(spec: SimulationSpec, modelset: ModelSet) -> None:
    """The relationships the sources follow exist on the simulated twins' model."""
    if spec.model not in modelset:
        return  # the model may be added later; sources are then resolved as twins appear
    known = modelset.resolve(spec.model).relationships
    for kind, sources in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        for name, source in sources.items():
            if source.relationship is not None and source.relationship not in known:
                raise Invalid(f"simulation {spec.name!r}: {kind}.{name} follows {source.relationship!r}, which is "
                              f"not a relationship of {spec.model} ({', '.join(sorted(known)) or 'none'})",
                              field=f"{kind}.{name}", rule="relationship")


Target = tuple[str | None, tuple[tuple[str, str], ...]]


@dataclass
class Bound:
    """Where each source of one simulated twin reads: source target → twin id (None: no such twin)."""

    twin: str
    targets: dict[Target, str | None] = field(default_factory=dict)

    def twin_of(self, source: Source) -> str | None:
        return self.targets.get(source.target)


class Binder:
    """Resolves which twins the sources of one simulation read, from the twin store.

    ``twins``: a twin store (``get``, ``get_many``, ``incoming``). A reading of a twin that is not
    itself simulated is routed through its incoming relationships (a bearing → its machine).
    """

    def __init__(self, spec: SimulationSpec, twins: Any, modelset: ModelSet | Any) -> None:
        self.spec = spec
        self.twins = twins
        self._modelset = modelset
        sources = [*spec.inputs.values(), *spec.outputs.values()]
        self._targets: list[Target] = sorted({s.target for s in sources if s.constant is None},
                                             key=lambda t: (t[0] or "", t[1]))
        self._relationships = {t[0] for t in self._targets if t[0] is not None}
        self.bound: dict[str, Bound] = {}
        self._routes: dict[str, list[tuple[str, Target]]] = {}  # twin → (simulated twin, target) it feeds
        self._checked: set[str] = set()

    def modelset(self) -> ModelSet:
        ms = self._modelset
        return ms() if callable(ms) else ms

    def matches(self, model: str | None) -> bool:
        """Whether twins of ``model`` are simulated (it is, or extends, the spec's model)."""
        if model is None:
            return False
        ms = self.modelset()
        return model in ms and self.spec.model in ms and ms.is_a(model, self.spec.model)

    def forget(self) -> None:
        """Drop every resolution (relationships or twins changed)."""
        self.bound.clear()
        self._routes.clear()
        self._checked.clear()

    def routes(self, twins: Iterable[str], models: Mapping[str, str]) -> dict[str, list[tuple[str, Target]]]:
        """For each twin of a batch: the (simulated twin, target) pairs its readings feed."""
        out: dict[str, list[tuple[str, Target]]] = {}
        new = [t for t in twins if t not in self._checked]
        if new:
            self._discover(new, models)
        for t in twins:
            r = self._routes.get(t)
            if r:
                out[t] = r
        return out

    def _discover(self, new: Sequence[str], models: Mapping[str, str]) -> None:
        simulated = [t for t in new if self.matches(models.get(t))]
        for t in simulated:
            self.bind(t)
        for t in new:
            self._checked.add(t)
            if t in self.bound or not self._relationships:
                continue
            try:
                incoming = self.twins.incoming(t)
            except Exception:  # a twin deleted meanwhile
                continue
            sources = sorted({src for src, rel in incoming if rel.name in self._relationships} - set(self.bound))
            if not sources:
                continue
            for src, twin in self.twins.get_many(sources).items():
                if self.matches(twin.model):
                    self.bind(src, twin)

    def bind(self, twin_id: str, twin: Twin | None = None) -> Bound:
        """Resolve the sources of one simulated twin (and route the readings of the twins they read)."""
        twin = twin or self.twins.get(twin_id)
        bound = Bound(twin_id)
        by_rel: dict[str, list[Any]] = {}
        for rel in twin.relationships.values():
            if rel.name in self._relationships:
                by_rel.setdefault(rel.name, []).append(rel)
        targets = sorted({r.target for rels in by_rel.values() for r in rels})
        states = self.twins.get_many(targets) if targets else {}
        for target in self._targets:
            name, where = target
            if name is None:
                bound.targets[target] = twin_id
                continue
            found = [r.target for r in by_rel.get(name, [])
                     if all(_matches(r.properties, states.get(r.target), k, v) for k, v in where)]
            if len(found) > 1:
                log.warning("simulation %s: twin %s has %d targets of %s%s; using %s", self.spec.name, twin_id,
                            len(found), name, dict(where) or "", sorted(found)[0])
            bound.targets[target] = sorted(found)[0] if found else None
        self.bound[twin_id] = bound
        for target, tid in bound.targets.items():
            if tid is not None:
                routes = self._routes.setdefault(tid, [])
                if (twin_id, target) not in routes:
                    routes.append((twin_id, target))
        return bound


def _matches(rel_props: Mapping[str, Any], target: Twin | None, key: str, value: str) -> bool:
    if key in rel_props:
        return str(rel_props[key]) == value
    if target is None:
        return False
    node: Any = target.reported
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return str(node) == value


__all__ = ["Binder", "Bound", "Target", "check_relationships", "check_signature", "load_model"]
