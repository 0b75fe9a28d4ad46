"""Docstring examples run: every module of ``mechgraph`` and ``probes`` keeps its examples true.

Modules are discovered (``pkgutil.walk_packages``), so a new module's examples run without
being listed here. Examples that need a model, the network, a GPU or the user's data are
marked ``# doctest: +SKIP`` in the docstrings; those that need only the default model or
tokenizer (under a few seconds) run.

A module whose examples fail and that its owner has yet to fix goes in ``XFAIL`` with the
failing example; the mark is strict, so the test fails once the examples pass again and the
entry must then be removed.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("mechgraph", "probes")

#: module -> why its examples fail (the failing example), until its owner fixes them.
XFAIL: dict[str, str] = {}


def _modules() -> list[str]:
    names = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        names.extend(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg_name + "."))
    return sorted(names)


MODULES = _modules()


def _param(name: str):
    if name in XFAIL:
        return pytest.param(name, marks=pytest.mark.xfail(reason=XFAIL[name], strict=True))
    return name


def test_discovery_finds_modules():
    assert "mechgraph.phases.changepoints" in MODULES and "probes.estimators" in MODULES
    unknown = set(XFAIL) - set(MODULES)
    assert not unknown, f"XFAIL names modules that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("name", [_param(n) for n in MODULES])
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
