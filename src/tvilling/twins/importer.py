"""Bulk import of twins with their outgoing relationships, validated, committed in batches.

Each item is ``{"id", "model", "attributes"?, "reported"?, "desired"?, "relationships"?:
[{"id", "name", "target", "properties"?}]}``. A relationship's target must exist already
or come earlier in the import (import leaves before the twins that point at them).
A batch is atomic: when any item of it is invalid, nothing of that batch is stored and
the error names the item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tvilling.core import events as ev
from tvilling.core.errors import Conflict, Invalid, TvillingError
from tvilling.core.events import Event
from tvilling.core.ids import check_twin_id
from tvilling.core.patch import check_json
from tvilling.models.modelset import ResolvedModel
from tvilling.models.validate import validate_relationship, validate_section
from tvilling.twins.service import TwinService


def import_twins(
    service: TwinService,
    items: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 10_000,
    actor: str = "import",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Create every twin of ``items``; returns how many were created."""
    total = 0
    batch: list[Mapping[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            total += _commit_batch(service, batch, actor, total)
            batch = []
            if progress:
                progress(total)
    if batch:
        total += _commit_batch(service, batch, actor, total)
        if progress:
            progress(total)
    return total


def _commit_batch(service: TwinService, batch: list[Mapping[str, Any]], actor: str, offset: int) -> int:
    now = datetime.now(UTC)
    batch_models: dict[str, str] = {}
    wanted_targets: set[str] = set()
    for item in batch:
        for rel in item.get("relationships") or ():
            if isinstance(rel, Mapping) and isinstance(rel.get("target"), str):
                wanted_targets.add(rel["target"])
    for item in batch:
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            batch_models[item["id"]] = str(item.get("model"))
    stored = service.store.get_many(sorted(wanted_targets - set(batch_models)))
    target_models = {**{k: t.model for k, t in stored.items()}, **batch_models}
    events: list[Event] = []
    usable: dict[str, ResolvedModel] = {}  # each model checked once a batch

    def model_for(model_id: str, twin_id: str) -> ResolvedModel:
        if model_id not in usable:
            usable[model_id] = service.models.ensure_usable(model_id, twin_id)
        return usable[model_id]

    for n, item in enumerate(batch):
        try:
            events.extend(_events_for(service, item, target_models, now, actor, model_for))
        except TvillingError as exc:
            where = f"item {offset + n + 1}"
            exc.fields.setdefault("item", offset + n + 1)
            exc.message = f"{where}: {exc.message}"
            exc.args = (exc.message,)
            raise
    try:
        service.store.commit(events)
    except Conflict as exc:
        raise Conflict(f"import batch starting at item {offset + 1}: {exc.message}", **exc.fields) from exc
    return len(batch)


def _events_for(service: TwinService, item: Mapping[str, Any], target_models: Mapping[str, str],
                now: datetime, actor: str, model_for: Callable[[str, str], ResolvedModel]) -> list[Event]:
    if not isinstance(item, Mapping):
        raise Invalid("each item must be a JSON object", rule="type")
    twin_id = check_twin_id(item.get("id"))  # type: ignore[arg-type]
    extra = sorted(set(item) - {"id", "model", "attributes", "reported", "desired", "relationships"})
    if extra:
        raise Invalid(f"twin {twin_id!r}: unknown key(s) {extra}", twin=twin_id, field=extra[0], rule="unknown_key")
    model_id = item.get("model")
    if not isinstance(model_id, str):
        raise Invalid(f"twin {twin_id!r}: 'model' is required", twin=twin_id, field="model", rule="required")
    model = model_for(model_id, twin_id)
    payload: dict[str, Any] = {"model": model_id, "metadata": {}}
    attrs = item.get("attributes") or {}
    check_json(attrs, field="attributes")
    payload["attributes"] = dict(attrs)
    stamp = {"time": now.isoformat().replace("+00:00", "Z"), "quality": "good", "source": actor}
    for section in ("reported", "desired"):
        values = item.get(section) or {}
        if not isinstance(values, Mapping):
            raise Invalid(f"twin {twin_id!r}: '{section}' must be an object", twin=twin_id, field=section,
                          rule="type")
        check_json(values, field=section)
        clean = {k: v for k, v in validate_section(model, service.models.modelset, twin_id, section,
                                                   values).items() if v is not None}
        payload[section] = clean
        payload["metadata"][section] = {k: stamp for k in clean}
    out = [Event(twin=twin_id, revision=1, time=now, actor=actor, type=ev.TWIN_CREATED, payload=payload)]
    counts: dict[str, int] = {}
    for rel in item.get("relationships") or ():
        if not isinstance(rel, Mapping) or not all(isinstance(rel.get(k), str) for k in ("id", "name", "target")):
            raise Invalid(f"twin {twin_id!r}: a relationship needs 'id', 'name' and 'target' strings",
                          twin=twin_id, field="relationships", rule="required")
        target_model = target_models.get(rel["target"])
        if target_model is None:
            raise Invalid(f"twin {twin_id!r}: relationship {rel['id']!r} targets {rel['target']!r}, which does "
                          "not exist (import targets first)", twin=twin_id,
                          field=f"relationships.{rel['id']}.target", rule="target_exists")
        props = validate_relationship(service.models.modelset, model_id, twin_id, rel["name"], rel["target"],
                                      target_model, rel.get("properties") or {}, counts.get(rel["name"], 0))
        counts[rel["name"]] = counts.get(rel["name"], 0) + 1
        out.append(Event(twin=twin_id, revision=len(out) + 1, time=now, actor=actor, type=ev.RELATIONSHIP_SET,
                         payload={"id": rel["id"], "name": rel["name"], "target": rel["target"],
                                  "properties": dict(props)}))
    return out
