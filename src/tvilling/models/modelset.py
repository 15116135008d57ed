"""An immutable set of registered Interfaces, with inheritance resolved.

>>> from tvilling.models.dtdl import parse_models
>>> base, child = parse_models([
...     {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:Asset;1", "@type": "Interface",
...      "contents": [{"@type": "Property", "name": "serial", "schema": "string"}]},
...     {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:Pump;1", "@type": "Interface",
...      "extends": "dtmi:ex:Asset;1"}])
>>> models = ModelSet([]).with_models([base, child])
>>> sorted(models.resolve("dtmi:ex:Pump;1").properties)
['serial']
>>> models.is_a("dtmi:ex:Pump;1", "dtmi:ex:Asset")
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.core.ids import parse_dtmi
from tvilling.models.dtdl_care import affect_problem
from tvilling.models.interface import (
    CommandDef,
    ComponentDef,
    Content,
    Interface,
    PropertyDef,
    RelationshipDef,
    TelemetryDef,
)
from tvilling.models.problems import Problems

MAX_EXTENDS_DEPTH = 10
MAX_HIERARCHY = 1024


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """An Interface with its inherited contents merged in (all mappings are by name)."""

    id: str
    interface: Interface
    contents: Mapping[str, Content]
    properties: Mapping[str, PropertyDef]
    telemetry: Mapping[str, TelemetryDef]
    commands: Mapping[str, CommandDef]
    relationships: Mapping[str, RelationshipDef]
    components: Mapping[str, ComponentDef]
    bases: frozenset[str]


class ModelSet:
    """An immutable view over registered Interfaces. Build new sets with :meth:`with_models`."""

    def __init__(self, interfaces: Iterable[Interface] = ()) -> None:
        self._by_id: dict[str, Interface] = {}
        self._resolved: dict[str, ResolvedModel] = {}
        self._descendants: dict[str, frozenset[str]] = {}
        self._depths: dict[str, int] = {}
        batch = list(interfaces)
        if batch:
            self._admit(batch)

    def with_models(self, new: Sequence[Interface]) -> ModelSet:
        """Return a new set with ``new`` added, after validating them against the combined set.

        Raises :class:`Invalid` listing unresolved ``extends``/Component schemas, cycles,
        name clashes with inherited contents and depth violations, or :class:`Conflict`
        when an id is already registered with a different definition.
        """
        clashes = [i.id for i in new if i.id in self._by_id and self._by_id[i.id].document != i.document]
        if clashes:
            raise Conflict(
                f"model {clashes[0]!r} is already registered with a different definition",
                ids=clashes,
                rule="model_exists",
            )
        fresh = [i for i in new if i.id not in self._by_id]
        result = ModelSet()
        result._by_id = dict(self._by_id)
        result._resolved = dict(self._resolved)
        result._depths = dict(self._depths)
        if fresh:
            result._admit(fresh)
        return result

    def _admit(self, batch: list[Interface]) -> None:
        problems = Problems()
        for index, iface in enumerate(batch):
            if iface.id in self._by_id:
                problems.add(f"$[{index}]", iface.id, f"model {iface.id!r} appears twice in the batch")
            self._by_id[iface.id] = iface
        roots = [i.id for i in batch] + [s for i in batch for s in i.component_schemas]
        depths = self._compute_depths(roots)
        for iface in batch:
            self._check(iface, problems, depths)
        if len(problems):
            for iface in batch:
                self._by_id.pop(iface.id, None)
                self._resolved.pop(iface.id, None)
            problems.raise_if_any()
        self._depths.update({d: n for d, n in depths.items() if n is not None})

    def _check(self, iface: Interface, problems: Problems, depths: Mapping[str, int | None]) -> None:
        missing = False
        for i, base in enumerate(iface.extends):
            if base not in self._by_id:
                problems.add(
                    f"{iface.id}.extends[{i}]", "extends", f"extended model {base!r} is not registered"
                )
                missing = True
        for comp in iface.contents.values():
            if isinstance(comp, ComponentDef) and comp.schema not in self._by_id:
                problems.add(
                    f"{iface.id}.{comp.name}",
                    "Component",
                    f"component schema {comp.schema!r} is not registered",
                )
                missing = True
        if missing:
            return
        depth = depths.get(iface.id)
        if depth is None:
            problems.add(
                f"{iface.id}.extends", "extends", f"the extends hierarchy of {iface.id!r} contains a cycle"
            )
            return
        if depth > MAX_EXTENDS_DEPTH:
            problems.add(
                f"{iface.id}.extends",
                "extends",
                f"the extends hierarchy is {depth} levels deep; at most {MAX_EXTENDS_DEPTH} allowed",
            )
            return
        if not self._bases_registered(iface.id):
            return  # a base lacks its own base; reported where that base is checked
        try:
            resolved = self._resolve(iface.id)
        except Invalid as err:
            problems.add(f"{iface.id}.contents", "name", err.message)
            return
        if len(resolved.bases) > MAX_HIERARCHY:
            problems.add(
                f"{iface.id}.extends", "extends", f"more than {MAX_HIERARCHY} Interfaces in the hierarchy"
            )
        self._check_affects(iface, resolved, problems, depths)
        for comp in resolved.components.values():
            if comp.schema == iface.id or self._has_components(comp.schema, depths):
                problems.add(
                    f"{iface.id}.{comp.name}",
                    "Component",
                    f"component {comp.name!r} uses {comp.schema!r}, which contains a Component; "
                    "DTDL v3 does not allow nested Components",
                )

    def _check_affects(
        self, iface: Interface, resolved: ResolvedModel, problems: Problems, depths: Mapping[str, int | None]
    ) -> None:
        """Every ``affects`` entry of ``iface``'s own Commands must name a Property or Telemetry."""
        own = [c for c in iface.contents.values() if isinstance(c, CommandDef) and c.affects]
        if not own:
            return
        props = {**resolved.properties, **resolved.telemetry}
        components: dict[str, Mapping[str, object]] = {}
        for comp in resolved.components.values():
            depth = depths.get(comp.schema, self._depths.get(comp.schema))
            if depth is None or not self._bases_registered(comp.schema):
                continue  # reported where the component's schema is checked
            try:
                inner = self._resolve(comp.schema)
            except Invalid:
                continue
            components[comp.name] = {**inner.properties, **inner.telemetry}
        for cmd in own:
            for name in cmd.affects:
                problem = affect_problem(name, props, components)
                if problem is not None:
                    problems.add(f"{iface.id}.{cmd.name}.affects", name, problem)

    def _has_components(self, dtmi: str, depths: Mapping[str, int | None]) -> bool:
        """Whether Interface ``dtmi`` (used as a Component schema) has Components itself."""
        depth = depths.get(dtmi)
        if depth is None or depth > MAX_EXTENDS_DEPTH or not self._bases_registered(dtmi):
            return False  # reported where ``dtmi`` itself is checked
        try:
            return bool(self._resolve(dtmi).components)
        except Invalid:
            return False  # its own clash is reported where it is checked

    def _bases_registered(self, dtmi: str) -> bool:
        """Whether every Interface that ``dtmi`` extends, transitively, is registered."""
        stack, seen = [dtmi], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            iface = self._by_id.get(current)
            if iface is None:
                return False
            stack.extend(iface.extends)
        return True

    def _compute_depths(self, roots: Iterable[str]) -> dict[str, int | None]:
        """Extends depth (1 with no bases) of ``roots`` and all they reach; ``None`` on a cycle.

        Iterative (Kahn's algorithm) so that long or adversarial hierarchies cost O(V + E)
        without deep recursion; known depths of registered models are reused.
        """
        reached: set[str] = set()
        stack = list(roots)
        while stack:
            dtmi = stack.pop()
            if dtmi in reached or dtmi not in self._by_id:
                continue
            reached.add(dtmi)
            if dtmi not in self._depths:
                stack.extend(self._by_id[dtmi].extends)
        result: dict[str, int | None] = {d: self._depths[d] for d in reached if d in self._depths}
        pending = reached - result.keys()
        waiting = {d: sum(1 for b in self._by_id[d].extends if b in pending) for d in pending}
        dependents: dict[str, list[str]] = {}
        for dtmi in pending:
            for base in self._by_id[dtmi].extends:
                if base in pending:
                    dependents.setdefault(base, []).append(dtmi)
        ready = [d for d, n in waiting.items() if n == 0]
        while ready:
            dtmi = ready.pop()
            bases = [result.get(b) or 0 for b in self._by_id[dtmi].extends]
            result[dtmi] = 1 + max(bases, default=0)
            for child in dependents.get(dtmi, []):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        for dtmi in pending - result.keys():
            result[dtmi] = None
        return result

    def get(self, dtmi: str) -> Interface:
        """Return the registered Interface ``dtmi``; :class:`NotFound` if none."""
        iface = self._by_id.get(dtmi)
        if iface is None:
            raise NotFound(f"model {dtmi!r} is not registered", model=dtmi)
        return iface

    def resolve(self, dtmi: str) -> ResolvedModel:
        """Return model ``dtmi`` with its inherited contents merged (cached)."""
        self.get(dtmi)
        return self._resolve(dtmi)

    def _resolve(self, dtmi: str) -> ResolvedModel:
        cached = self._resolved.get(dtmi)
        if cached is not None:
            return cached
        iface = self._by_id[dtmi]
        merged: dict[str, Content] = {}
        origin: dict[str, str] = {}
        bases = {dtmi}
        for base_id in iface.extends:
            base = self._resolve(base_id)
            bases |= base.bases
            for name, content in base.contents.items():
                source = _origin(self, base, name)
                if name in merged and origin[name] != source:
                    raise Invalid(f"{name!r} is inherited from both {origin[name]!r} and {source!r}")
                merged[name], origin[name] = content, source
        for name, content in iface.contents.items():
            if name in merged:
                raise Invalid(f"{name!r} is declared by {dtmi!r} and inherited from {origin[name]!r}")
            merged[name] = content

        def only(kind: type[Content]) -> Mapping[str, Content]:
            return MappingProxyType({n: c for n, c in merged.items() if isinstance(c, kind)})

        resolved = ResolvedModel(
            id=dtmi,
            interface=iface,
            contents=MappingProxyType(merged),
            properties=only(PropertyDef),  # type: ignore[arg-type]
            telemetry=only(TelemetryDef),  # type: ignore[arg-type]
            commands=only(CommandDef),  # type: ignore[arg-type]
            relationships=only(RelationshipDef),  # type: ignore[arg-type]
            components=only(ComponentDef),  # type: ignore[arg-type]
            bases=frozenset(bases),
        )
        self._resolved[dtmi] = resolved
        return resolved

    def descendants(self, dtmi: str) -> frozenset[str]:
        """Every registered model that is or extends ``dtmi``; unversioned means every version."""
        found = self._descendants.get(dtmi)
        if found is None:
            found = frozenset(m for m in self._by_id if self.is_a(m, dtmi))
            self._descendants[dtmi] = found
        return found

    def is_a(self, model_id: str, base_id: str) -> bool:
        """Whether ``model_id`` is or extends ``base_id`` (any version if ``base_id`` is unversioned)."""
        bases = self.resolve(model_id).bases
        if base_id in bases:
            return True
        wanted = parse_dtmi(base_id, field="base")
        if wanted.version is not None:
            return False
        return any(parse_dtmi(b).unversioned == base_id for b in bases)

    def versions(self, unversioned: str) -> list[str]:
        """Registered versions of a model (``dtmi:a:b`` or any version of it), oldest first."""
        key = parse_dtmi(unversioned, field="model").unversioned
        found = [(parse_dtmi(m), m) for m in self._by_id if parse_dtmi(m).unversioned == key]
        return [m for d, m in sorted(found, key=lambda p: (p[0].version or 0, p[0].minor or 0))]

    def __contains__(self, dtmi: object) -> bool:
        return dtmi in self._by_id

    def __iter__(self) -> Iterator[Interface]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)


def _origin(models: ModelSet, resolved: ResolvedModel, name: str) -> str:
    """Return the id of the Interface in ``resolved``'s hierarchy that declares ``name``."""
    for base in resolved.bases:
        if name in models.get(base).contents:
            return base
    return resolved.id
