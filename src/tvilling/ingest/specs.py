"""What the pipeline needs to know of a twin model's readable values, flattened and cached."""

from __future__ import annotations

from dataclasses import dataclass

from tvilling.models.interface import PropertyDef, TelemetryDef
from tvilling.models.modelset import ModelSet, ResolvedModel
from tvilling.models.outputs import OUTPUTS
from tvilling.models.schema import PrimitiveSchema

NUMBER, INTEGER, BOOLEAN, STRING, OTHER = "number", "integer", "boolean", "string", "other"
_KINDS = {"double": NUMBER, "float": NUMBER, "integer": INTEGER, "long": INTEGER, "boolean": BOOLEAN,
          "string": STRING}


@dataclass(frozen=True, slots=True)
class Spec:
    """One reportable value of a model: ``path`` is dotted for component members (``motor.current``)."""

    path: str
    kind: str  # number | integer | boolean | string | other (validated by the model's full rules)
    unit: str | None
    component: str | None  # the component holding it, if any


def specs_for(models: ModelSet, model: ResolvedModel) -> dict[str, Spec]:
    """Every property and telemetry of ``model`` and of its components, by dotted path.

    The reserved analytic outputs (:mod:`tvilling.models.outputs`) are included unless the
    model declares the name itself.
    """
    out: dict[str, Spec] = {name: Spec(name, kind, None, None) for name, kind in OUTPUTS.items()}
    _add(out, model, None)
    for comp in model.components.values():
        _add(out, models.resolve(comp.schema), comp.name)
    return out


def _add(out: dict[str, Spec], model: ResolvedModel, component: str | None) -> None:
    items: list[PropertyDef | TelemetryDef] = [*model.properties.values(), *model.telemetry.values()]
    for item in items:
        schema = item.schema
        kind = _KINDS.get(schema.name, OTHER) if isinstance(schema, PrimitiveSchema) else OTHER
        path = item.name if component is None else f"{component}.{item.name}"
        out[path] = Spec(path, kind, item.unit, component)
