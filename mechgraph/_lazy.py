"""Lazy package namespaces: a name is imported from its module the first time it is read.

A package whose ``__init__`` imported every module eagerly would load torch, scipy and
numba for ``mechgraph --help``. Such a package lists its names as ordinary imports under
``if TYPE_CHECKING:`` (what type checkers and the documentation see) and ends with
``__getattr__, __dir__ = attach(__name__, __file__)``: :func:`attach` reads those imports
from the source and returns the module-level ``__getattr__`` and ``__dir__`` (PEP 562)
that import a name's module on first use and bind the name on the package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["attach", "typing_imports"]


def typing_imports(source: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, attribute)}`` of the ``from`` imports under ``if TYPE_CHECKING:``.

    Examples
    --------
    >>> typing_imports("if TYPE_CHECKING:\\n    from json import dumps, loads as ld\\n")
    {'dumps': ('json', 'dumps'), 'ld': ('json', 'loads')}
    """
    out: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"):
            continue
        for imp in node.body:
            if isinstance(imp, ast.ImportFrom) and imp.module and not imp.level:
                for a in imp.names:
                    out[a.asname or a.name] = (imp.module, a.name)
    return out


def attach(package: str, file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` serving the ``TYPE_CHECKING`` imports of ``file`` lazily."""
    where = typing_imports(Path(file).read_text(encoding="utf-8"))

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        value = getattr(import_module(module), attr)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *vars(sys.modules[package])})

    return __getattr__, __dir__
