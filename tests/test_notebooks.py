"""The notebooks in notebooks/: stored clean, and run by the test suite through nbmake.

``pytest`` (the README's test command) runs every notebook top to bottom in a fresh Jupyter
kernel with nbmake: ``[tool.pytest.ini_options]`` in pyproject.toml puts ``notebooks`` in
``testpaths`` and passes ``--nbmake``; each notebook is one test item
(``notebooks/03_reasoning_graphs.ipynb::03_reasoning_graphs.ipynb``; skip them all with
``--ignore=notebooks``, run one with ``pytest notebooks/03_reasoning_graphs.ipynb``). What a
notebook must leave true is asserted in its own "Checks" cells, so that any runner (nbmake,
``jupyter nbconvert --execute``, a person clicking "Run all") checks the same things.

This module checks what running them cannot: how they are stored and what they may touch.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {
    "01_foundation.ipynb",
    "02_planning_and_importance.ipynb",
    "03_reasoning_graphs.ipynb",
    "04_phases.ipynb",
    "05_export_to_trl.ipynb",
}

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)


def _code(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_notebooks_are_there():
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


def test_pytest_runs_the_notebooks():
    """The README's bare ``pytest`` collects notebooks/ and runs each notebook with nbmake."""
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["pytest"]
    opts = opts["ini_options"]
    assert "notebooks" in opts["testpaths"] and "tests" in opts["testpaths"]
    assert "--nbmake" in opts["addopts"].split()
    assert importlib.util.find_spec("nbmake") is not None, "pip install -e '.[test]' (nbmake)"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert any(d.startswith("nbmake") for d in extras["optional-dependencies"]["test"])


@by_name
def test_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4, f"{path.name}: not an nbformat 4 notebook"
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        where = f"{path.name}, cell {index}"
        assert "execution" not in cell.metadata, f"{where}: execution timings are stored"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{where}: outputs are stored (clear them)"
            assert cell.execution_count is None, f"{where}: an execution count is stored"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state is stored"


@by_name
def test_checks_its_results(path: Path):
    """Every notebook ends in assertions that the nbmake run checks."""
    asserts = [s for s in _code(path) if re.search(r"^assert ", s, re.M)]
    assert asserts, f"{path.name}: no cell asserts anything"


@by_name
def test_pins_torch_to_one_thread(path: Path):
    """Notebooks that run a model use one torch thread (far faster on a busy small CPU)."""
    src = "\n".join(_code(path))
    if re.search(r"import torch|load_model\(|\.extract\(|import trl", src):
        assert "torch.set_num_threads(1)" in src, f"{path.name}: torch threads not pinned"


@by_name
def test_needs_nothing_beyond_the_package(path: Path):
    """Outputs go to a temporary folder, and the shared data is optional (guarded)."""
    for src in _code(path):
        assert not re.search(r"""["']runs/""", src), f"{path.name}: writes under runs/"
        if re.search(r"\.\./shared|shared/data|MECHGRAPH_SHARED", src):
            assert re.search(r"\.(exists|is_dir)\(\)", src), (
                f"{path.name}: a cell reads ../shared without checking that it exists:\n{src}"
            )
