"""Ports of the twin service: where models, twins and their events are kept.

Every adapter (in-memory, embedded SQLite, PostgreSQL) implements these protocols
and passes the one contract suite in ``tests/twins/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from tvilling.core.events import Event
from tvilling.core.twin import Relationship, Twin
from tvilling.twins.query import Query


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A registered model version: the DTDL document as uploaded, and its lifecycle."""

    id: str
    document: dict[str, Any]
    uploaded: datetime
    decommissioned: bool = False


class Page(msgspec.Struct, frozen=True):
    items: list[Twin]
    next: str | None  # id of the last item when more may follow, else None


@runtime_checkable
class ModelStore(Protocol):
    def add_models(self, records: Sequence[ModelRecord]) -> None:
        """Store all records atomically; ``Conflict`` (and nothing stored) if any id exists."""

    def get_model(self, model_id: str) -> ModelRecord:
        """The record, or ``NotFound``."""

    def list_models(self) -> list[ModelRecord]:
        """All records, ordered by id."""

    def set_decommissioned(self, model_id: str, value: bool) -> ModelRecord:
        """Mark a model version (de)commissioned; ``NotFound`` if unknown."""


@runtime_checkable
class TwinStore(Protocol):
    def get(self, twin_id: str) -> Twin:
        """The live twin, or ``NotFound`` (also for a deleted one)."""

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin]:
        """The live twins among ``twin_ids``, by id (missing ones are left out)."""

    def last_revision(self, twin_id: str) -> int:
        """The revision of the twin's last event, deleted or not; 0 if it never existed."""

    def commit(self, events: Sequence[Event]) -> list[Event]:
        """Append events atomically (all or none) and update the twins' snapshots.

        For each twin, the events' revisions must continue its log without a gap
        (``last_revision + 1``, ``+2``, ...) else ``Conflict`` is raised and nothing is
        stored: this is the optimistic-concurrency check. Returns the events with their
        global ``position`` set, in the order given. Durable when it returns.
        """

    def history(
        self,
        twin_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        until_revision: int | None = None,
        until_time: datetime | None = None,
    ) -> list[Event]:
        """The twin's events with revision > ``after``, in revision order."""

    def feed(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of all twins with position > ``after``, in position order."""

    def query(self, query: Query) -> Page:
        """Run a resolved query (models already expanded to sets of model ids)."""

    def incoming(self, twin_id: str) -> list[tuple[str, Relationship]]:
        """Relationships of live twins that point at ``twin_id``, as (source id, relationship)."""

    def count(self) -> int:
        """Number of live twins."""

    def close(self) -> None:
        """Release connections and files."""
