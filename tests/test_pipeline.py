"""`mechgraph run`: the whole pipeline, make-like reruns, resume, records, config errors."""

from __future__ import annotations

import json

import pytest

from mechgraph.artifacts import content_hash, load, read_info
from mechgraph.cli import sample_path
from mechgraph.errors import ConfigError
from mechgraph.pipeline import RunConfig, plan_run, run_pipeline

OUTPUTS = [
    "store",
    "labels.jsonl",
    "probe",
    "graph.parquet",
    "importance.parquet",
    "weights.parquet",
]


@pytest.fixture()
def cfg(tiny_model_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    return RunConfig.from_dict(
        {
            "model": str(tiny_model_dir),
            "layers": [0, 2],
            "extract": {"window": "sliding"},
            "graph": {"k": 4, "n_null": 2},
            "importance": {"max_tokens": 96},
            "weights": {"tokenizer": str(tiny_model_dir)},
        }
    )


def _hashes(run):
    return {name: content_hash(run / name) for name in OUTPUTS}


def test_full_run_then_nothing_to_do(cfg, tmp_path):
    run = tmp_path / "run"
    lines = []
    done = run_pipeline(cfg, run, echo=lines.append)
    assert [d[0] for d in done] == [
        "extract",
        "label",
        "probe",
        "graph",
        "importance",
        "weights",
        "phases",
    ]
    assert all(d[1].startswith("ran in") for d in done[:6]) and done[6][1].startswith("skip")
    assert len(lines) == 7 and lines[0].startswith("extract")
    for name in OUTPUTS:
        info = read_info(run / name)
        assert info is not None and info.inputs, name
        load(run / name)  # every artifact reads back
    before = _hashes(run)
    again = run_pipeline(cfg, run, echo=lambda s: None)
    assert all(d[1] in ("up to date",) or d[1].startswith("skip") for d in again)
    assert _hashes(run) == before


def test_changed_option_reruns_only_downstream(cfg, tmp_path):
    run = tmp_path / "run"
    run_pipeline(cfg, run, echo=lambda s: None)
    k8 = RunConfig.from_dict({**cfg.to_dict(), "graph": {**cfg.graph, "k": 3}})
    assert dict(plan_run(k8, run))["graph"] == "run: config changed"
    assert [s for s, w in plan_run(k8, run) if w.startswith("run")] == ["graph"]
    layers = RunConfig.from_dict({**cfg.to_dict(), "layers": [1, 2]})
    plan = dict(plan_run(layers, run))
    assert plan["extract"] == "run: config changed"
    assert plan["probe"] == plan["graph"] == "run: an input will change"
    assert plan["label"] == plan["importance"] == plan["weights"] == "up to date"
    forced = dict(plan_run(cfg, run, force=["weights"]))
    assert forced["weights"] == "run: forced" and forced["graph"] == "up to date"
    with pytest.raises(ConfigError, match="unknown stages"):
        plan_run(cfg, run, force=["nope"])


def test_killed_run_resumes_to_the_same_folder(cfg, tmp_path):
    import shutil

    run = tmp_path / "run"
    run_pipeline(cfg, run, echo=lambda s: None)
    clean = _hashes(run)
    # a kill after graph's output was committed but before its record was written,
    # and one before the probe was committed
    (run / "graph.parquet.artifact.json").unlink()
    shutil.rmtree(run / "probe")
    plan = dict(plan_run(cfg, run))
    assert plan["graph"] == "run: no record" and plan["probe"] == "run: no output yet"
    assert plan["label"] == "up to date"
    run_pipeline(cfg, run, echo=lambda s: None)
    assert _hashes(run) == clean


def test_phases_stage_runs_when_traces_carry_checkpoints(cfg, tmp_path, smol):
    src = tmp_path / "t.jsonl"
    recs = [json.loads(x) for x in sample_path().read_text().splitlines() if x.strip()]
    out = []
    for c in ("10", "20", "30", "40", "50", "60"):
        for r in recs[:3]:
            out.append({**r, "id": f"{c}/{r['id']}", "checkpoint": c})
    src.write_text("".join(json.dumps(r) + "\n" for r in out))
    cfg2 = RunConfig.from_dict(
        {
            **cfg.to_dict(),
            "traces": str(src),
            "importance": {"enabled": False},
            "probe": {"enabled": False},
        }
    )
    done = dict(run_pipeline(cfg2, tmp_path / "run", echo=lambda s: None))
    assert done["importance"] == "skip: disabled" and done["phases"].startswith("ran in")
    art = load(tmp_path / "run" / "phases.parquet")
    assert art.kind == "phases" and len(art.table) == 6


def test_run_config_errors(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('model = "default"\nlayer = [3]\n')
    with pytest.raises(ConfigError, match=r"unknown keys \['layer'\]"):
        RunConfig.from_toml(p)
    p.write_text("model = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        RunConfig.from_toml(p)
    p.write_text("graph = 3\n")
    with pytest.raises(ConfigError, match=r"\[graph\] must be a table"):
        RunConfig.from_toml(p)
    p.write_text("[graph]\nk = 5\n")
    assert RunConfig.from_toml(p).graph == {"k": 5, "n_null": 20}
    with pytest.raises(ConfigError, match="no such file"):
        plan_run(RunConfig(traces=str(tmp_path / "missing.jsonl")), tmp_path / "r")


def test_run_command_dry_run_and_errors(cfg, tmp_path):
    from typer.testing import CliRunner

    from mechgraph.cli import app

    toml = tmp_path / "run.toml"
    toml.write_text(
        f'model = "{cfg.model}"\nlayers = [0, 2]\n[extract]\nwindow = "sliding"\n'
        "[importance]\nenabled = false\n"
    )
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", str(toml), "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "extract     run: no output yet" in r.output and "importance  skip: disabled" in r.output
    assert not out.exists()
    r = CliRunner().invoke(app, ["run", str(toml), "--out", str(out), "--force", "nope"])
    assert r.exit_code != 0 and "unknown stages" in str(r.exception)


@pytest.mark.model
def test_mechgraph_run_on_the_default_model(tmp_path):
    """The README's main job: the default model on the bundled sample, then nothing to redo."""
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mechgraph.cli", "run", "--out", str(out)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("ran in") == 6 and "phases      skip" in p.stdout
    for name in OUTPUTS:
        assert read_info(out / name) is not None
    graph = load(out / "graph.parquet")
    assert len(graph.table) == 6 and "n_cycles_z_shuffle" in graph.table
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.count("up to date") == 6


@pytest.mark.parametrize("delay", [1.5, 4.0])
def test_sigkilled_run_resumes_to_identical_artifacts(cfg, tmp_path, delay):
    """A real kill (SIGKILL) mid-run, then `mechgraph run` again: the same folder contents."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    toml = tmp_path / "run.toml"
    toml.write_text(
        f'model = "{cfg.model}"\nlayers = [0, 2]\n[extract]\nwindow = "sliding"\n'
        "[graph]\nk = 4\nn_null = 2\n[importance]\nmax_tokens = 96\n"
        f'[weights]\ntokenizer = "{cfg.model}"\n'
    )
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mechgraph.cli", "run", str(toml), "--out", str(run)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(cmd, capture_output=True, env=env, timeout=600).returncode == 0
    clean = _hashes(run)
    shutil.rmtree(run)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    unfinished = [n for n in OUTPUTS if not (run / n).exists() or read_info(run / n) is None]
    assert unfinished, "the run ended before the kill: the test would prove nothing"
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _hashes(run) == clean
