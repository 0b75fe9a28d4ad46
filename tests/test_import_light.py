"""`import mechgraph` / `import probes` stay light; every exported name still resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "pyarrow", "transformers", "scipy", "networkx")


def _loaded_after(stmt: str) -> set[str]:
    code = (
        f"import json, sys; {stmt}; "
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_mechgraph_is_light():
    assert _loaded_after("import mechgraph") == set()


def test_import_probes_has_no_torch():
    # scikit-learn itself may pull pandas; torch must stay out
    assert "torch" not in _loaded_after("import probes")


def test_mechgraph_exports_resolve():
    import mechgraph as mg

    assert len(mg.__all__) == len(set(mg.__all__))
    assert set(mg.__all__) <= set(dir(mg))
    for name in mg.__all__:
        assert getattr(mg, name) is not None, name
    with pytest.raises(AttributeError):
        mg.no_such_name  # noqa: B018


def test_extract_stays_the_function_after_submodule_import():
    import mechgraph as mg
    import mechgraph.extract
    from mechgraph.extract import extract

    assert mg.extract is extract and callable(mg.extract)
    assert mg.store.Store is mg.Store  # submodules are reachable as attributes
    assert sys.modules["mechgraph.extract"].ExtractConfig is mg.ExtractConfig


def test_probes_exports_resolve():
    import probes

    assert set(probes.__all__) <= set(dir(probes))
    for name in probes.__all__:
        assert getattr(probes, name) is not None, name
    with pytest.raises(AttributeError):
        probes.no_such_name  # noqa: B018


def test_cli_loads_no_model_or_numerics_stack():
    # `mechgraph --help` registers every command: their modules must not pull torch,
    # scipy (ruptures, scikit-learn) or numba in at import
    loaded = _loaded_after("import mechgraph.cli")
    assert not loaded & {"torch", "transformers", "scipy", "networkx"}, loaded


@pytest.mark.parametrize("pkg", ["mechgraph.graphs", "mechgraph.importance", "mechgraph.phases"])
def test_stage_packages_are_lazy_and_resolve(pkg):
    import importlib

    assert _loaded_after(f"import {pkg}") <= {"pandas", "pyarrow"}
    mod = importlib.import_module(pkg)
    assert len(mod.__all__) == len(set(mod.__all__))
    assert set(mod.__all__) <= set(dir(mod))
    for name in mod.__all__:
        value = getattr(mod, name)
        assert value is not None and getattr(mod, name) is value, name
    with pytest.raises(AttributeError, match="no_such_name"):
        mod.no_such_name  # noqa: B018
