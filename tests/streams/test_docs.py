"""The examples in the streams modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["tvilling.streams.source", "tvilling.streams.cursor", "tvilling.streams.filter",
           "tvilling.streams.registry", "tvilling.streams.offsets", "tvilling.streams.consumer",
           "tvilling.runtime.units"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
