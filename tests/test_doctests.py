"""Run the docstring examples of every clinrag module."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import clinrag

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(clinrag.__path__, "clinrag.")
    if not m.name.startswith(("clinrag.tests", "clinrag.bench", "clinrag.data.samples"))
)


@pytest.mark.parametrize("name", ["clinrag", *MODULES])
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
