"""Docstring examples run: the modules listed here keep their examples true.

(Examples that need a model or data are marked ``# doctest: +SKIP`` in the docstrings.)
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mechgraph.artifacts",
    "mechgraph.io",
    "mechgraph.segment",
    "mechgraph.graphs.matching",
    "mechgraph.labels.methods",
    "mechgraph.phases",
    "mechgraph.phases.analysis",
    "mechgraph.phases.changepoints",
    "mechgraph.phases.cli",
    "mechgraph.phases.forced",
    "mechgraph.phases.inference",
    "mechgraph.phases.plots",
    "mechgraph.phases.readers",
    "mechgraph.phases.runs",
    "mechgraph.phases.samples",
    "mechgraph.phases.stats",
    "mechgraph.phases.table",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
