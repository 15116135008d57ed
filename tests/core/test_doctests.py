"""The runnable examples in the docstrings of the core and the query form stay correct."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["tvilling.core.errors", "tvilling.core.ids", "tvilling.core.patch", "tvilling.core.events",
           "tvilling.config", "tvilling.models.builtin", "tvilling.core.envelope", "tvilling.core.readings"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
