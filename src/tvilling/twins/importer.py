"""Bulk import of twins with their outgoing relationships, validated, committed in batches.

Each item is ``{"id", "model", "attributes"?, "reported"?, "desired"?, "relationships"?:
[{"id", "name", "target", "properties"?}]}``. A relationship's target must exist already
or come earlier in the import (import leaves before the twins that point at them).
A batch is atomic: when any item of it is invalid, nothing of that batch is stored and
the error names the item. Each batch is one call of the twin service's write path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tvilling.core.commands import Command, CreateTwin, SetRelationship
from tvilling.core.errors import Conflict, Invalid, TvillingError
from tvilling.core.ids import check_twin_id
from tvilling.core.principal import Principal
from tvilling.twins.service import TwinService

ITEM_KEYS = frozenset({"id", "model", "attributes", "reported", "desired", "relationships"})


def import_twins(
    service: TwinService,
    items: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 10_000,
    actor: Principal | str = "import",
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


def _commit_batch(service: TwinService, batch: list[Mapping[str, Any]], actor: Principal | str, offset: int) -> int:
    now = datetime.now(UTC)
    who = Principal.of(actor)
    stamp = {"time": now.isoformat().replace("+00:00", "Z"), "quality": "good", "source": who.actor}
    commands: list[Command] = []
    item_of: list[int] = []  # per command, the item (1-based, over the whole import) it came from
    for n, item in enumerate(batch):
        try:
            made = _commands_for(item, stamp)
        except TvillingError as exc:
            raise _at_item(exc, offset + n + 1) from None
        commands.extend(made)
        item_of.extend([offset + n + 1] * len(made))
    try:
        service.execute(commands, who, states=False)
    except Conflict as exc:
        if "index" in vars(exc) and exc.fields.get("rule") == "exists":
            raise _at_item(exc, item_of[vars(exc)["index"]]) from None
        raise Conflict(f"import batch starting at item {offset + 1}: {exc.message}", **exc.fields) from exc
    except TvillingError as exc:
        if "index" in vars(exc):
            raise _at_item(exc, item_of[vars(exc)["index"]]) from None
        raise
    return len(batch)


def _at_item(exc: TvillingError, item: int) -> TvillingError:
    exc.fields.setdefault("item", item)
    exc.message = f"item {item}: {exc.message}"
    exc.args = (exc.message,)
    return exc


def _commands_for(item: Mapping[str, Any], stamp: dict[str, Any]) -> list[Command]:
    """The twin's creation and its relationships, checked for shape (values are checked by the service)."""
    if not isinstance(item, Mapping):
        raise Invalid("each item must be a JSON object", rule="type")
    twin_id = check_twin_id(item.get("id"))  # type: ignore[arg-type]
    extra = sorted(set(item) - ITEM_KEYS)
    if extra:
        raise Invalid(f"twin {twin_id!r}: unknown key(s) {extra}", twin=twin_id, field=extra[0], rule="unknown_key")
    model_id = item.get("model")
    if not isinstance(model_id, str):
        raise Invalid(f"twin {twin_id!r}: 'model' is required", twin=twin_id, field="model", rule="required")
    sections: dict[str, Any] = {}
    for section in ("attributes", "reported", "desired"):
        values = item.get(section) or {}
        if not isinstance(values, Mapping):
            raise Invalid(f"twin {twin_id!r}: '{section}' must be an object", twin=twin_id, field=section,
                          rule="type")
        sections[section] = values  # the service checks and copies them
    out: list[Command] = [CreateTwin(twin=twin_id, model=model_id, stamp=stamp, attributes=sections["attributes"],
                                     reported=sections["reported"], desired=sections["desired"])]
    for rel in item.get("relationships") or ():
        if not isinstance(rel, Mapping) or not all(isinstance(rel.get(k), str) for k in ("id", "name", "target")):
            raise Invalid(f"twin {twin_id!r}: a relationship needs 'id', 'name' and 'target' strings",
                          twin=twin_id, field="relationships", rule="required")
        props = rel.get("properties") or {}
        if not isinstance(props, Mapping):
            raise Invalid(f"twin {twin_id!r}: relationship {rel['id']!r}: 'properties' must be an object",
                          twin=twin_id, field=f"relationships.{rel['id']}.properties", rule="type")
        out.append(SetRelationship(twin=twin_id, id=rel["id"], name=rel["name"], target=rel["target"],
                                   properties=dict(props)))
    return out
