"""Fixtures for the model-language tests: the example plant as parsed model sets."""

from __future__ import annotations

from typing import Any

import pytest
from models_samples import load

from tvilling.models import ModelSet, parse_models


@pytest.fixture(scope="session")
def plant_docs() -> list[dict[str, Any]]:
    return load("plant")


@pytest.fixture(scope="session")
def plant(plant_docs: list[dict[str, Any]]) -> ModelSet:
    return ModelSet(parse_models(plant_docs))


@pytest.fixture(scope="session")
def plant_v2(plant: ModelSet) -> ModelSet:
    return plant.with_models(parse_models(load("plant-v2")))
