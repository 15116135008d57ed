"""The model registry service: registers DTDL model versions, keeps the resolved set in memory."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.core.ids import parse_dtmi
from tvilling.models.dtdl import Interface, parse_models
from tvilling.models.export import to_dtdl
from tvilling.models.modelset import ModelSet, ResolvedModel
from tvilling.twins.ports import ModelRecord, ModelStore


class ModelRegistry:
    """Registered model versions over a :class:`ModelStore`, with the resolved :class:`ModelSet`.

    The set is rebuilt from the store when a model id is asked for that this process has
    not seen, so that several processes sharing one store agree.
    """

    def __init__(self, store: ModelStore) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._set = ModelSet(())
        self._records: dict[str, ModelRecord] = {}
        self.reload()

    @property
    def modelset(self) -> ModelSet:
        return self._set

    def reload(self) -> None:
        with self._lock:
            records = self._store.list_models()
            interfaces: list[Interface] = []
            seen: set[str] = set()
            for rec in records:
                for iface in parse_models(rec.document):
                    if iface.id not in seen:
                        seen.add(iface.id)
                        interfaces.append(iface)
            self._set = ModelSet(()).with_models(interfaces) if interfaces else ModelSet(())
            self._records = {r.id: r for r in records}

    def add(self, document: Any, *, validate_only: bool = False) -> list[str]:
        """Parse, validate and (unless ``validate_only``) store DTDL interfaces; returns their ids.

        Re-registering an identical document is a no-op; a different document under an
        existing id is a ``Conflict``: publish a new version instead.
        """
        interfaces = parse_models(document)
        with self._lock:
            self.reload()
            new: list[Interface] = []
            for iface in interfaces:
                existing = self._records.get(iface.id)
                if existing is None:
                    if iface.id not in {n.id for n in new}:
                        new.append(iface)
                    continue
                if _canonical(existing.document) != _canonical(_standalone(iface)):
                    raise Conflict(
                        f"model {iface.id} is registered already with a different definition; "
                        "models are immutable, register a new version (e.g. ;"
                        f"{(parse_dtmi(iface.id).version or 0) + 1}) instead",
                        model=iface.id,
                        rule="immutable",
                    )
            modelset = self._set.with_models(new)
            if validate_only or not new:
                return [i.id for i in interfaces]
            now = datetime.now(UTC)
            self._store.add_models(
                [ModelRecord(id=i.id, document=_standalone(i), uploaded=now) for i in new]
            )
            self._set = modelset
            self._records.update({i.id: self._store.get_model(i.id) for i in new})
            return [i.id for i in interfaces]

    def record(self, model_id: str) -> ModelRecord:
        rec = self._records.get(model_id)
        if rec is None:
            self.reload()
            rec = self._records.get(model_id)
        if rec is None:
            raise NotFound(f"model {model_id} is not registered", model=model_id)
        return rec

    def list(self) -> list[ModelRecord]:
        records = self._store.list_models()
        if {r.id for r in records} != set(self._records):
            self.reload()  # another process registered models: parse them once
        else:
            self._records = {r.id: r for r in records}  # (de)commissioning may have changed
        return records

    def describe(self, model_id: str) -> dict[str, Any]:
        rec = self.record(model_id)
        iface = self._set.get(model_id)
        return {
            "id": rec.id,
            "uploaded": rec.uploaded.isoformat().replace("+00:00", "Z"),
            "decommissioned": rec.decommissioned,
            "extends": list(iface.extends),
            "displayName": iface.display_name,
            "definition": to_dtdl(iface),
        }

    def resolve(self, model_id: str) -> ResolvedModel:
        if model_id not in self._records:
            self.record(model_id)  # reloads, or raises NotFound
        return self._set.resolve(model_id)

    def expand(self, model_id: str, *, exact: bool = False) -> frozenset[str]:
        """Model ids a query's ``model`` names: itself (every version if unversioned) and its extensions."""
        self.reload_if_unknown(model_id)
        if exact:
            if model_id in self._records:
                return frozenset({model_id})
            found = frozenset(self._set.versions(model_id))
        else:
            found = self._set.descendants(model_id)
        if not found:
            raise Invalid(f"model {model_id} is not registered", field="model", model=model_id, rule="unknown_model")
        return found

    def reload_if_unknown(self, model_id: str) -> None:
        if model_id not in self._records and not self._set.versions(model_id):
            self.reload()

    def decommission(self, model_id: str, value: bool = True) -> ModelRecord:
        with self._lock:
            self.record(model_id)
            rec = self._store.set_decommissioned(model_id, value)
            self._records[model_id] = rec
            return rec

    def ensure_usable(self, model_id: str, twin_id: str) -> ResolvedModel:
        """The resolved model for a new twin; it must be registered and not decommissioned.

        The record is read from the store each time, so that a decommissioning done by
        another process (another server, the CLI) holds at once.
        """
        try:
            rec = self._store.get_model(model_id)
            if model_id not in self._records or self._records[model_id] != rec:
                self.reload()
        except NotFound:
            raise Invalid(
                f"twin {twin_id!r}: model {model_id} is not registered", twin=twin_id, field="model",
                rule="unknown_model",
            ) from None
        if rec.decommissioned:
            raise Invalid(
                f"twin {twin_id!r}: model {model_id} is decommissioned; use a newer version",
                twin=twin_id, field="model", rule="decommissioned",
            )
        return self.resolve(model_id)


_CONTEXT = ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"]


def _standalone(iface: Interface) -> dict[str, Any]:
    """The interface's document, readable on its own (an inline interface gets a context)."""
    doc = dict(iface.document)
    doc.setdefault("@context", _CONTEXT)
    return doc


def _canonical(doc: Any) -> bytes:
    return msgspec.json.encode(doc, order="sorted")


def describe_records(records: Sequence[ModelRecord]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "uploaded": r.uploaded.isoformat().replace("+00:00", "Z"),
            "decommissioned": r.decommissioned,
        }
        for r in records
    ]
