"""Validation of writes to a twin against its model: state patches, relationships, migrations.

>>> from tvilling.models.dtdl import parse_models
>>> from tvilling.models.modelset import ModelSet
>>> models = ModelSet(parse_models({
...     "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
...     "@id": "dtmi:ex:Oven;1", "@type": "Interface",
...     "contents": [{"@type": ["Property", "Temperature"], "name": "temperature",
...                   "schema": "double", "unit": "degreeCelsius"}]}))
>>> oven = models.resolve("dtmi:ex:Oven;1")
>>> patch = {"temperature": {"value": 212, "unit": "degreeFahrenheit"}}
>>> validate_section(oven, models, "o1", "reported", patch)
{'temperature': 100.0}
>>> validate_section(oven, models, "o1", "desired", {"temperature": 90.0})
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: twin 'o1': desired.temperature is not writable (rule: not_writable)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tvilling.core.ids import parse_dtmi
from tvilling.models.interface import ComponentDef, PropertyDef, TelemetryDef
from tvilling.models.modelset import ModelSet, ResolvedModel
from tvilling.models.outputs import OUTPUTS, check_output
from tvilling.models.values import Issues, check_value

Section = Literal["reported", "desired"]


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """The outcome of checking a twin against another model version.

    ``dropped`` lists the top-level ``reported``/``desired`` names that the new model
    no longer declares (their values would be removed); ``problems`` are blocking.
    """

    ok: bool
    problems: list[dict[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def validate_section(
    model: ResolvedModel, models: ModelSet, twin_id: str, section: Section, patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Check a merge patch of a twin's ``reported`` or ``desired`` values; return it with units converted.

    Raises :class:`~tvilling.core.errors.Invalid` with ``twin``, ``field``, ``rule`` and ``errors``.
    """
    issues = Issues()
    out = _section(model, models, section, patch, section, issues)
    issues.raise_for(twin_id)
    return out


def _section(
    model: ResolvedModel,
    models: ModelSet,
    section: Section,
    patch: Mapping[str, Any],
    prefix: str,
    issues: Issues,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(patch, Mapping):
        issues.add(prefix, "type", "must be an object")
        return out
    for key, value in patch.items():
        where = f"{prefix}.{key}"
        content = model.contents.get(key) if isinstance(key, str) else None
        if isinstance(content, ComponentDef):
            if value is None:
                out[key] = None
            elif not isinstance(value, Mapping):
                issues.add(where, "type", f"is a component ({content.schema}); its value must be an object")
            else:
                out[key] = _section(models.resolve(content.schema), models, section, value, where, issues)
        elif isinstance(content, PropertyDef | TelemetryDef):
            if section == "desired" and not (isinstance(content, PropertyDef) and content.writable):
                issues.add(where, "not_writable", "is not writable")
            elif value is None:
                out[key] = None
            else:
                out[key] = check_value(content.schema, value, where, issues, unit=content.unit, partial=True)
        elif content is not None:
            kind = type(content).__name__.removesuffix("Def").lower()
            issues.add(
                where, "unknown_property", f"is a {kind} of model {model.id}, not a property or telemetry"
            )
        elif section == "reported" and prefix == section and key in OUTPUTS:
            checked = check_output(key, value, where)
            for problem in checked.problems:
                issues.add(where, "type", problem)
            out[key] = checked.value
        else:
            issues.add(where, "unknown_property", f"is not declared by model {model.id}")
    return out


def validate_relationship(
    models: ModelSet,
    source_model: str,
    source_id: str,
    name: str,
    target_id: str,
    target_model: str,
    properties: Mapping[str, Any],
    existing_with_name: int,
) -> dict[str, Any]:
    """Check a relationship ``name`` from twin ``source_id`` to ``target_id``; return its properties.

    ``existing_with_name`` counts the source's other relationships of that name (excluding
    the one being replaced). Rules: ``unknown_relationship``, ``target_model``,
    ``multiplicity``, ``unknown_property``, ``type`` (and the value rules of properties).
    """
    issues = Issues()
    where = f"relationships.{name}"
    rel = models.resolve(source_model).relationships.get(name)
    if rel is None:
        issues.add(where, "unknown_relationship", f"is not a relationship of model {source_model}")
        issues.raise_for(source_id)
        return {}
    if rel.target is not None and not (target_model in models and models.is_a(target_model, rel.target)):
        issues.add(
            f"{where}.target",
            "target_model",
            f"must be a twin of {rel.target} (or a model extending it); {target_id!r} is a {target_model}",
        )
    if rel.max_multiplicity is not None and existing_with_name >= rel.max_multiplicity:
        issues.add(
            where,
            "multiplicity",
            f"allows at most {rel.max_multiplicity} relationship(s); {existing_with_name} exist already",
        )
    out: dict[str, Any] = {}
    if not isinstance(properties, Mapping):
        issues.add(f"{where}.properties", "type", "must be an object")
        properties = {}
    for key, value in properties.items():
        prop = rel.properties.get(key) if isinstance(key, str) else None
        at = f"{where}.properties.{key}"
        if prop is None:
            issues.add(at, "unknown_property", f"is not a property of relationship {name!r}")
        elif value is None:
            issues.add(at, "type", "must not be null")
        else:
            out[key] = check_value(prop.schema, value, at, issues, unit=prop.unit)
    issues.raise_for(source_id)
    return out


def migration_report(
    models: ModelSet,
    twin_id: str,
    reported: Mapping[str, Any],
    desired: Mapping[str, Any],
    relationships: Sequence[tuple[str, str, str]],
    new_model: str,
    *,
    current_model: str | None = None,
) -> MigrationReport:
    """Check whether a twin's state and relationships fit ``new_model``.

    ``relationships`` are ``(relationship id, name, target twin's model)``. Pass the twin's
    ``current_model`` to enforce that migration stays within the same unversioned DTMI or
    moves to a model extending the current one (rule ``incompatible_model``).
    """
    issues = Issues()
    if current_model is not None and not _compatible(models, current_model, new_model):
        issues.add(
            "model",
            "incompatible_model",
            f"cannot change from {current_model} to {new_model}: only "
            "another version of the same model or a model extending it is allowed",
        )
    model = models.resolve(new_model)
    dropped: list[str] = []
    sections: tuple[tuple[Section, Mapping[str, Any]], ...] = (("reported", reported), ("desired", desired))
    for section, values in sections:
        kept: dict[str, Any] = {}
        for key, value in values.items():
            if key not in model.contents:
                if key not in dropped:
                    dropped.append(key)
            else:
                kept[key] = value
        _section(model, models, section, kept, section, issues)
    counts: dict[str, int] = {}
    for rel_id, name, target_model in relationships:
        rel = model.relationships.get(name)
        where = f"relationships.{rel_id}"
        if rel is None:
            issues.add(where, "unknown_relationship", f"({name!r}) is not a relationship of {new_model}")
            continue
        counts[name] = counts.get(name, 0) + 1
        if rel.target is not None and not (target_model in models and models.is_a(target_model, rel.target)):
            issues.add(where, "target_model", f"targets a {target_model}; {new_model} requires {rel.target}")
        if rel.max_multiplicity is not None and counts[name] == rel.max_multiplicity + 1:
            issues.add(
                where, "multiplicity", f"exceeds {name!r}'s limit of {rel.max_multiplicity} in {new_model}"
            )
    for item in issues.items:
        item["message"] = f"twin {twin_id!r}: {item['message']}"
    return MigrationReport(ok=not issues.items, problems=issues.items, dropped=dropped)


def _compatible(models: ModelSet, current: str, new: str) -> bool:
    if parse_dtmi(current).unversioned == parse_dtmi(new).unversioned:
        return True
    return current in models and new in models and models.is_a(new, current)
