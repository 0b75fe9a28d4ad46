"""`mechgraph phases`: outputs, the run-folder loader, topology through a reader, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

import mechgraph as mg
from mechgraph.cli import app

STEPS = (50, 100, 150, 200, 250, 300)


def run_folder(tmp_path, steps=STEPS, n=6):
    d = tmp_path / "run"
    d.mkdir(exist_ok=True)
    for k, s in enumerate(steps):
        recs = []
        for i in range(n):
            plans = " ".join(["Let me try a different approach."] * (k // 2 + i % 2))
            text = (
                f"<think>Problem {i}. {plans} So {i} + {s} = {i + s}. Wait, let me check.</think>"
            )
            recs.append(
                {
                    "problem": f"Problem {i}",
                    "step": s,
                    "output": f"system\nThink.\nuser\nProblem {i}\nassistant\n{text}",
                    f"{s}_correct": (i + k) % 3 == 0,
                }
            )
        (d / f"step_{s:04d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def invoke(*args):
    return CliRunner().invoke(app, ["phases", *map(str, args)])


def test_text_only_outputs(tmp_path):
    out = tmp_path / "ph.parquet"
    r = invoke(run_folder(tmp_path), "--no-topology", "--n-boot", 40, "--out", out)
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(out)
    assert t["checkpoint"].tolist() == [str(s) for s in STEPS]
    assert {"accuracy", "accuracy_lo", "planning_share_hi", "semantic_entropy_rarefied"} <= set(t)
    doc = json.loads((tmp_path / "ph.parquet.json").read_text())
    assert doc["format"] == "mechgraph.phases" and doc["config"]["n_boot"] == 40
    assert set(doc["change_points"]) >= {"accuracy", "planning_share"}
    for cps in doc["change_points"].values():
        for c in cps:
            assert {"checkpoint", "x", "lo", "hi"} <= set(c)
    assert doc["two_phase"]["verdict"] == "unavailable"
    assert "paired bootstrap over 6 prompts" in doc["info"]["pairing"]
    assert "two-phase test: unavailable" in r.output


def test_logs_give_the_two_phase_test_an_execution_side(tmp_path):
    logs = tmp_path / "trainer_state.json"
    hist = [{"step": s, "token_entropy": 1.0 if s < 200 else 0.5} for s in STEPS]
    logs.write_text(json.dumps({"log_history": hist}))
    out = tmp_path / "ph.parquet"
    r = invoke(run_folder(tmp_path), "--no-topology", "--n-boot", 40, "--logs", logs, "--out", out)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "ph.parquet.json").read_text())
    assert doc["two_phase"]["exec_metric"] == "log/token_entropy"
    assert doc["two_phase"]["verdict"] in ("yes", "no", "undetermined")
    assert pd.read_parquet(out)["log/token_entropy"].tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def test_plots_and_forced_n_changes(tmp_path):
    out = tmp_path / "ph.parquet"
    r = invoke(
        run_folder(tmp_path),
        "--no-topology",
        "--n-boot",
        30,
        "--n-changes",
        1,
        "--change-model",
        "mean",
        "--plots",
        tmp_path / "plots",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "plots" / "phases.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "ph.parquet.json").read_text())
    for m, v in doc["change_points"].items():  # forced: one each, unless it cannot hold one
        assert len(v) == 1 or "no change placed" in doc["change_fits"][m]["note"], m
    assert len(doc["change_points"]["planning_share"]) == 1
    assert doc["change_config"]["n_changes"] == 1


def test_topology_through_a_reader_in_one_node_space(tmp_path, tiny_model_dir):
    out = tmp_path / "ph.parquet"
    r = invoke(
        run_folder(tmp_path, n=4),
        "--reader",
        tiny_model_dir,
        "--k",
        4,
        "--n-boot",
        30,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(out)
    assert {"topo/loop_count", "topo/revisits", "topo/diameter_norm", "topo/n_steps"} <= set(t)
    doc = json.loads((tmp_path / "ph.parquet.json").read_text())
    assert doc["topology"]["match_steps"] == "paired" and doc["topology"]["k_used"] >= 2
    assert any(row["topo_metric"] == "topo/loop_count" for row in doc["topology_link"])
    assert mg.open_store(tmp_path / "ph.store").summary()
    # paired matching: every prompt has the same step count at every checkpoint
    per = t["topo/n_steps"]
    assert per.nunique() == 1


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mechgraph.cli", "phases", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--models", "950=default"), "absent from the traces"),
        (("--order", "50,100"), "leaves out"),
        (("--checkpoint-from", "field:nope"), "no checkpoint field 'nope'"),
        (("--reasoning", "think:x"), "unknown reasoning rule"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, extra, message):
    out = tmp_path / "ph.parquet"
    p = _cli(run_folder(tmp_path), "--no-topology", *extra, "--out", out)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not out.exists() and not (tmp_path / "ph.parquet.json").exists()


def test_one_checkpoint_and_unmatched_logs_are_errors(tmp_path):
    one = run_folder(tmp_path, steps=(50,))
    p = _cli(one, "--no-topology", "--out", tmp_path / "a.parquet")
    assert p.returncode == 1 and "at least two checkpoints" in p.stderr
    logs = tmp_path / "log.jsonl"
    logs.write_text('{"global_step": 3, "kl": 0.1}\n')
    p = _cli(run_folder(tmp_path), "--no-topology", "--logs", logs, "--out", tmp_path / "b.parquet")
    assert p.returncode == 1 and "step key 'global_step'" in p.stderr
    assert not list(tmp_path.glob("*.parquet*"))


def test_out_must_be_parquet_and_not_an_input(tmp_path):
    d = run_folder(tmp_path)
    r = invoke(d, "--no-topology", "--out", tmp_path / "x.csv")
    assert r.exit_code != 0 and "must end in .parquet" in str(r.exception or r.output)
    f = d / "step_0050.parquet"
    f.write_text("")
    r = invoke(f, "--no-topology", "--out", f)
    assert r.exit_code != 0 and "one of the inputs" in str(r.exception or r.output)
