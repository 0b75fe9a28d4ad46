"""The `mechgraph` command: segment, extract, info, demo; errors on stderr, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mechgraph as mg
from mechgraph.cli import sample_path


def run(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "mechgraph.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_commands():
    out = run("--help").stdout
    for cmd in ("segment", "extract", "info", "demo"):
        assert cmd in out


def test_segment_writes_exact_spans(tmp_path):
    out = tmp_path / "seg.jsonl"
    run("segment", sample_path(), "--method", "lines", "--out", out)
    traces = {t.id: t for t in mg.load_traces(sample_path())}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == list(traces)
    for x in lines:
        text = traces[x["id"]].text
        assert all(text[s["start"] : s["end"]] == s["text"] for s in x["steps"])


def test_errors_go_to_stderr_with_exit_1(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok text."}\n{"id": "b", "text": ""}\n')
    proc = run("segment", bad, "--out", tmp_path / "o.jsonl", check=False)
    assert proc.returncode == 1
    assert "bad.jsonl:2: trace 'b': text is empty" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
    proc = run("info", tmp_path, check=False)
    assert proc.returncode == 1 and "not a mechgraph store" in proc.stderr


def test_extract_with_unknown_layer_fails_cleanly(tiny_model_dir, tmp_path):
    proc = run(
        "extract",
        sample_path(),
        "--model",
        tiny_model_dir,
        "--layers",
        "7",
        "--out",
        tmp_path / "s",
        check=False,
    )
    assert proc.returncode == 1 and "layer 7 does not exist" in proc.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.model
def test_demo_end_to_end_on_default_model(tmp_path):
    """The README's main job: sample -> default model -> store -> labels, graphs, weights."""
    out = tmp_path / "sample"
    proc = run("demo", "--out", out)
    assert "traces     6" in proc.stdout and "SmolLM2-135M-Instruct" in proc.stdout
    assert "planning steps" in proc.stdout and "loop_count" in proc.stdout
    store = mg.open_store(out / "store")
    assert store.layers == [3, 15, 27] and store.pools == ["mean", "last"]
    assert store.states(15).shape == (len(store.steps), 576)
    rows = mg.read_weights(out / "weights.parquet")
    assert len(rows) == 6
    info = run("info", out / "store").stdout
    assert "blocks.15.hook_resid_post" in info


def test_import_mechgraph_loads_the_analysis_stages_on_first_use():
    code = (
        "import sys, mechgraph as mg\n"
        "assert not {'scipy', 'networkx', 'mechgraph.graphs'} & set(sys.modules)\n"
        "assert callable(mg.graph_table) and 'mechgraph.graphs' in sys.modules\n"
        "assert all(hasattr(mg, n) for n in mg.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
