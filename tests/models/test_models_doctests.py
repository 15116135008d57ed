"""The runnable examples in the docstrings of tvilling.models stay correct."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dtdl", "dtdl_care", "modelset", "problems", "schema", "units", "validate", "values"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"tvilling.models.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
