"""Data flows one way: no stage imports a later one; labeller kinds come from a registry.

traces -> segment -> align -> hooks/extract -> store -> labels -> probes -> importance ->
graphs -> phases -> weights. The check is static (``ast`` over the source files), so it
sees imports inside functions too.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.labels import (
    CallableLabeller,
    Embedder,
    Labeller,
    as_embedder,
    as_labeller,
    get_labeller,
    label_traces,
    labeller_kinds,
    methods,
    register_labeller,
)
from mechgraph.traces import Trace, segment_traces

ROOT = Path(__file__).resolve().parents[1]

STAGES = {
    "mechgraph.traces": 0,
    "mechgraph.segment": 0,
    "mechgraph.align": 0,
    "mechgraph.hooks": 1,
    "mechgraph.extract": 1,
    "mechgraph.packing": 1,
    "mechgraph.engines": 1,
    "mechgraph.store": 1,
    "mechgraph.models": 1,
    "mechgraph.logits": 1,
    "mechgraph.labels": 2,
    "probes": 3,
    "mechgraph.importance": 4,
    "mechgraph.graphs": 5,
    "mechgraph.phases": 6,
    "mechgraph.weights": 7,
    "mechgraph.report": 8,  # reads every stage's artifacts, written last
}
#: Outside the order and free to import any stage (they wire the stages together; the
#: package root loads its names lazily). mechgraph.artifacts reads any stage's artifact.
FREE = {"mechgraph", "mechgraph.cli", "mechgraph.pipeline", "mechgraph.artifacts"}
#: Outside the order and importing no stage.
BASE = {
    "mechgraph.io",
    "mechgraph.errors",
    "mechgraph.configs",
    "mechgraph.specs",
    "mechgraph._lazy",
    "mechgraph.testing",
}

#: Existing violations not removed yet (importer, imported). Each must still exist, so an
#: entry is dropped as soon as its import is gone.
ALLOWED: set[tuple[str, str]] = set()


def _stage(mod: str) -> int | None:
    for name, k in STAGES.items():
        if mod == name or mod.startswith(name + "."):
            return k
    return None


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("mechgraph", "probes"):
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(mod: str, path: Path) -> set[str]:
    """Every module ``mod`` imports (``from a import b`` counts ``a`` and ``a.b``)."""
    out: set[str] = set()
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                src = ".".join([*base, *([node.module] if node.module else [])])
            else:
                src = node.module or ""
            out.add(src)
            out |= {f"{src}.{a.name}" for a in node.names}
    return out


def _violations() -> set[tuple[str, str]]:
    mods = _modules()
    bad = set()
    for mod, path in mods.items():
        if mod in FREE:
            continue
        mine = _stage(mod)
        for imp in _imports(mod, path):
            theirs = _stage(imp)
            if theirs is not None and (mod in BASE or (mine is not None and theirs > mine)):
                # ``from a import name``: report the module ``a``, not ``a.name``
                bad.add((mod, imp if imp in mods else imp.rpartition(".")[0]))
    return bad


def test_every_module_has_a_place():
    lost = [m for m in _modules() if _stage(m) is None and m not in FREE | BASE]
    assert not lost, f"give these modules a stage in tests/test_layering.py: {lost}"


def test_no_stage_imports_a_later_one():
    found = _violations()
    new = sorted(found - ALLOWED)
    assert not new, "earlier stage imports a later one:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in new
    )
    stale = sorted(ALLOWED - found)
    assert not stale, f"no longer violated, drop from ALLOWED: {stale}"


def test_labels_import_nothing_from_probes():
    for mod, path in _modules().items():
        if mod.startswith("mechgraph.labels"):
            assert not any(_stage(i) == 3 for i in _imports(mod, path)), mod


# ---------------------------------------------------------------- labeller registry


@pytest.fixture
def registry(monkeypatch):
    """An empty in-process registry, restored after the test."""
    monkeypatch.setattr(methods, "_USER", {})
    return methods


def _shout(arg, **kw):
    tag = arg or "plan_generation"
    return CallableLabeller(lambda s: tag if s.isupper() else "other", per_sentence=True)


def test_user_registered_kind_works_everywhere(registry):
    register_labeller("Shout", _shout)
    assert "shout" in labeller_kinds() and "shout:ARG" in methods.METHODS
    assert get_labeller("SHOUT").label_sentences(["LET ME TRY.", "x = 1."])[0].planning
    lab = as_labeller("shout:uncertainty_management")
    assert isinstance(lab, Labeller)
    assert lab.label_sentences(["WAIT."])[0].tag == "uncertainty_management"
    (t,) = segment_traces([Trace("a", "LET ME TRY ANOTHER APPROACH. So 2 + 2 = 4.")])
    assert [x.planning for x in label_traces([t], "shout")[0]] == [True, False]

    from mechgraph.weights.sources import PlanningSource

    assert PlanningSource("shout")("LET ME TRY ANOTHER APPROACH. So 2 + 2 = 4.") == [(0, 28)]


def test_unknown_kind_and_bad_registrations(registry):
    with pytest.raises(ConfigError, match=r"unknown labelling method 'llm'; use one of rules"):
        get_labeller("llm")
    register_labeller("strict", _shout, arg=methods.NO_ARG)
    with pytest.raises(ConfigError, match="'strict' takes no argument"):
        get_labeller("strict:x")
    with pytest.raises(ConfigError, match="built in"):
        register_labeller("rules", _shout)
    with pytest.raises(ConfigError, match="without ':'"):
        register_labeller("a:b", _shout)
    with pytest.raises(ConfigError, match="callable"):
        register_labeller("x", "not a factory")


def test_probe_is_an_entry_point():
    eps = importlib.metadata.entry_points(group=methods.ENTRY_POINT_GROUP)
    assert {ep.name: ep.value for ep in eps}["probe"] == "probes.labeller:ProbeLabeller"
    assert "probe:PATH" in methods.METHODS


def test_entry_point_that_cannot_import_is_one_line(monkeypatch):
    ep = importlib.metadata.EntryPoint(
        "probe", "no_such_probes_pkg.labeller:ProbeLabeller", methods.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(methods, "_entry_points", lambda: {"probe": ep})
    with pytest.raises(ConfigError) as e:
        get_labeller("probe:some/dir")
    msg = str(e.value)
    assert "\n" not in msg and "probe:PATH" in msg and "no_such_probes_pkg" in msg


# ---------------------------------------------------------------- one embedder protocol


def test_one_embedder_protocol():
    from mechgraph.importance import resampling
    from mechgraph.importance.stubs import HashEmbedder

    assert resampling.Embedder is Embedder

    def fn(texts):
        return np.eye(len(texts), 3)

    assert isinstance(fn, Embedder) and isinstance(HashEmbedder(), Embedder)
    assert isinstance(resampling.MiniLMEmbedder(), Embedder)  # loads nothing until used
    assert not isinstance(3, Embedder)
    assert as_embedder(fn)(["a", "b"]).dtype == np.float32
    assert as_embedder(HashEmbedder(8))(["a"]).shape == (1, 8)
    with pytest.raises(ConfigError, match="2 texts"):
        as_embedder(lambda t: np.ones(3))(["a", "b"])
    with pytest.raises(ConfigError, match="callable"):
        as_embedder(3)
