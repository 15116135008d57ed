"""Composition root: reads the settings and wires adapters into services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvilling.config import Settings
from tvilling.models.service import ModelRegistry
from tvilling.twins.ports import ModelStore, TwinStore
from tvilling.twins.service import TwinService


@dataclass
class Platform:
    """The wired services of one Tvilling process."""

    settings: Settings
    model_store: ModelStore
    twin_store: TwinStore
    models: ModelRegistry
    twins: TwinService

    def close(self) -> None:
        self.twin_store.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_stores(settings: Settings) -> tuple[ModelStore, TwinStore]:
    """The model and twin stores the settings name (embedded SQLite by default)."""
    if settings.store == "memory":
        from tvilling.twins.adapters.memory import MemoryModelStore, MemoryTwinStore

        return MemoryModelStore(), MemoryTwinStore()
    if settings.store is not None:
        from tvilling.twins.adapters.postgres import open_postgres

        return open_postgres(settings.store, schema=settings.pg_schema)
    from tvilling.twins.adapters.sqlite import open_sqlite

    return open_sqlite(settings.data_dir / "tvilling.db")


def build_platform(settings: Settings) -> Platform:
    model_store, twin_store = open_stores(settings)
    models = ModelRegistry(model_store)
    twins = TwinService(twin_store, models, default_limit=settings.default_page_size,
                        max_limit=settings.max_page_size)
    return Platform(settings, model_store, twin_store, models, twins)
