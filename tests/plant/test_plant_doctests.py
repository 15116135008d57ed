"""The runnable examples in the docstrings of tvilling.plant stay correct."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["faults", "plant", "signals"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"tvilling.plant.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
