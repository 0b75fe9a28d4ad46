"""The documentation site: `mkdocs build --strict` passes and renders what it should.

The strict build fails on a broken link, a missing page, an unknown cross-reference
(`[name][mechgraph.x.name]`, so every function the pages link to exists) and a
docstring mkdocstrings cannot render. The command-line pages are rendered from the typer
app at every build (docs/hooks.py), so they cannot go stale; this test checks that each
subcommand and each of its options is on its page.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("material")


def _hooks():
    spec = importlib.util.spec_from_file_location(
        "mechgraph_docs_hooks", ROOT / "docs" / "hooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


@pytest.mark.slow
def test_api_pages(site: Path) -> None:
    phases = (site / "api" / "phases" / "index.html").read_text(encoding="utf-8")
    for name in ("analyze_phases", "change_points", "two_phase_test", "load_run", "PhaseConfig"):
        assert f'id="mechgraph.phases.{name}"' in phases, name
    for page in ("traces", "labels", "graphs", "weights", "importance", "probes", "pipeline"):
        assert (site / "api" / page / "index.html").is_file(), page
    # every top-level name is in the table, linked to its documentation
    import mechgraph

    top = (site / "api" / "mechgraph" / "index.html").read_text(encoding="utf-8")
    for name in mechgraph.__all__:
        if not name.startswith("__"):
            assert f"mg.{name}</code></a>" in top, name
    # the reStructuredText of the docstrings was turned into Markdown everywhere
    for html in (site / "api").rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not re.search(r":(func|class|mod|meth|attr|data|exc):<code>", text), html
        assert "==========" not in text, html
    # Sphinx roles became links: the phases module docstring links its functions
    assert 'href="#mechgraph.phases.load_run"' in phases


@pytest.mark.slow
def test_cli_pages_match_the_app(site: Path) -> None:
    import typer

    from mechgraph import cli

    group = typer.main.get_command(cli.app)
    assert len(group.commands) >= 10
    index = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for name, cmd in group.commands.items():
        page = site / "cli" / name / "index.html"
        assert page.is_file(), name
        text = page.read_text(encoding="utf-8")
        assert f"mechgraph {name}" in text
        assert f'href="{name}/"' in index, name
        for param in cmd.params:
            assert param.opts[-1] in text, (name, param.opts)


@pytest.mark.slow
def test_guide_pages(site: Path) -> None:
    for page in ("index", "coming-from", "foundation", "labels", "graphs", "weights", "phases"):
        path = site / "index.html" if page == "index" else site / page / "index.html"
        assert path.is_file(), page
    coming = (site / "coming-from" / "index.html").read_text(encoding="utf-8")
    assert "receiver_scores" in coming and "small_world_sigma" in coming
    assert "hicra_advantages" in coming


def test_docstring_conversion() -> None:
    pytest.importorskip("griffe")
    hooks = _hooks()
    resolve = {"load_run": "mechgraph.phases.load_run"}.get
    doc = (
        "See :func:`load_run` and :class:`~mechgraph.Unknown` or :func:`nowhere`.\n\n"
        "Layout::\n\n    a/\n      b\n\n"
        ">>> [1][0]\n1\n\n"
        "=====  =========\n"
        "kind   returns\n"
        "=====  =========\n"
        "store  a | b\n"
        "       more\n"
        "probe  ``x|y``\n"
        "=====  =========\n\n"
        "Parameters\n----------\nx : int\n    :func:`load_run`\n"
    )
    out = hooks.convert_docstring(doc, resolve)
    assert '<autoref identifier="mechgraph.phases.load_run" optional>' in out
    assert "`nowhere`" in out and ":func:" not in out and ":class:" not in out
    assert "Layout:\n\n```text\na/\n  b\n```" in out
    assert "```pycon\n>>> [1][0]\n1\n```" in out
    assert "| kind | returns |" in out
    assert "| store | a \\| b more |" in out and "| probe | ``x|y`` |" in out
    assert "Parameters\n----------\nx : int\n    <autoref" in out
    # an Examples section keeps its doctests for griffe
    assert "```" not in hooks.convert_docstring("Examples\n--------\n>>> 1\n1\n", resolve)
    # lazily re-exported names resolve to where they are documented
    assert hooks._canonical("mechgraph.Store") == "mechgraph.store.Store"
    assert hooks._canonical("probes.load_probe") == "probes.artifacts.load_probe"
    assert hooks._canonical("mechgraph.extract.prepare_trace") == "mechgraph.extract.prepare_trace"
