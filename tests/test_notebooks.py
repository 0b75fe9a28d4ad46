"""Every notebook in notebooks/ runs top to bottom (code cells only, no Jupyter needed).

The code cells of a notebook are executed in order in one namespace, from a temporary
working directory (so the ``runs/...`` folders they write land there). A failure names
the notebook and the cell's index in the notebook (markdown cells counted).
"""

from __future__ import annotations

import json
import linecache
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mechgraph.errors import MechgraphError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# What a notebook must leave behind besides running without error (others: just run).
Check = Callable[[dict[str, Any], Path], None]


def _check_foundation(ns: dict[str, Any], cwd: Path) -> None:
    store, X = ns["store"], ns["X"]
    assert X.shape == (len(store.steps), store.d_model)
    assert np.isfinite(X).all()
    assert (cwd / "runs" / "notebook").is_dir()


def _check_planning(ns: dict[str, Any], cwd: Path) -> None:
    trace, p = ns["trace"], ns["p"]
    assert len(ns["labels"]) == len(trace.steps)
    assert any(lab.planning for lab in ns["labels"])
    assert ns["mask"].any() and len(ns["mask"]) == len(ns["ids"])
    assert ns["X"].shape[0] == len(ns["y"])
    assert len(ns["probe_labels"]) == len(trace.steps)
    assert (cwd / "runs" / "planning-probe" / "config.json").is_file()
    assert len(ns["importance"]) == p.n_steps
    assert np.isfinite(ns["steer"].top_kl)
    assert ns["full"].n_total > ns["seq"].n_total > 0


CHECKS: dict[str, Check] = {
    "01_foundation.ipynb": _check_foundation,
    "02_planning_and_importance.ipynb": _check_planning,
}


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(index in the notebook, source) of every non-empty code cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4, f"{path.name}: not an nbformat 4 notebook"
    out = []
    for index, cell in enumerate(nb["cells"]):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if cell.get("cell_type") == "code" and src.strip():
            assert not cell.get("outputs"), f"{path.name}, cell {index}: outputs are stored"
            out.append((index, src))
    return out


@pytest.fixture
def model_or_skip(request: pytest.FixtureRequest) -> Any:
    """The session's default model (conftest); skip when it cannot be loaded here."""
    try:
        return request.getfixturevalue("default_model")
    except (ImportError, OSError, MechgraphError) as e:
        pytest.skip(f"the default model cannot be loaded: {e}")


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a busy 2-core box, more threads make the small ops far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(
    path: Path,
    model_or_skip: Any,
    one_torch_thread: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # the notebooks import `probes` from the checkout
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "__main__"}
    for index, src in code_cells(path):
        name = f"<{path.name} cell {index}>"
        # register the source so that tracebacks show the cell's lines
        monkeypatch.setitem(linecache.cache, name, (len(src), None, src.splitlines(True), name))
        try:
            exec(compile(src, name, "exec"), ns)
        except Exception as e:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == name]
            where = f", line {frames[-1].lineno} `{frames[-1].line}`" if frames else ""
            raise AssertionError(
                f"{path.name}, cell {index}{where} raised {type(e).__name__}: {e}"
            ) from e
    check = CHECKS.get(path.name)
    if check is not None:
        check(ns, tmp_path)
