"""examples/grpo_phases.py: exact task answers, disjoint splits, a resumed 3-step run."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
torch.set_num_threads(1)

PATH = Path(__file__).resolve().parents[1] / "examples" / "grpo_phases.py"
ANALYZE = PATH.with_name("grpo_phases_analyze.py")


@pytest.fixture(scope="module")
def gp():
    spec = importlib.util.spec_from_file_location("grpo_phases_example", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _solve(key: str) -> int:
    start, *ops = key.split("|")
    x = int(start)
    for op in ops:
        name, n = op[:3], int(op[3:])
        if name == "div":
            assert x % n == 0
        x = {"add": x + n, "sub": x - n, "mul": x * n, "div": x // n}[name]
        assert x > 0
    return x


def test_task_answers_exact_and_splits_disjoint(gp):
    train = gp.make_set("train", [1, 2, 3], 60, seed=0)
    held = gp.make_set("eval", [1, 2, 3], 30, seed=1000)
    for p in train + held:
        assert int(p["answer"]) == _solve(p["key"])
        assert len(p["key"].split("|")) == p["level"] + 1
        assert p["question"].count("Then ") == p["level"]
    assert not {p["key"] for p in train} & {p["key"] for p in held}
    assert not {p["question"] for p in train} & {p["question"] for p in held}
    assert gp.make_set("train", [2], 5, seed=3) == gp.make_set("train", [2], 5, seed=3)
    # the checker: \boxed{} wins, else the last number
    assert gp.is_correct("2 + 3 = 5, so \\boxed{5}. Check: 7", "5")
    assert gp.is_correct("so the total is 1,200.0", "1200")
    assert not gp.is_correct("5 apples, then 6", "5") and not gp.is_correct("none", "5")
    lo, hi = gp.wilson(5, 20)
    assert lo == pytest.approx(0.1119, abs=1e-3) and hi == pytest.approx(0.4687, abs=1e-3)


def test_train_resumes_without_duplicates(gp, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    common = [
        "train", "--method", "hicra", "--seed", "0", "--out", str(out),
        "--model", str(tiny_model_dir), "--save-every", "1", "--num-generations", "4",
        "--batch", "4", "--max-tokens", "12", "--lr", "1e-2", "--n-train", "8",
        "--eval-n", "4", "--threads", "1",
    ]  # fmt: skip
    gp.main([*common, "--steps", "2"])
    assert [s for s, _ in gp.checkpoints(out)] == [1, 2]
    first = (out / "traces.jsonl").read_text().splitlines()
    gp.main([*common, "--steps", "3"])
    assert [s for s, _ in gp.checkpoints(out)] == [1, 2, 3]
    rows = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) and {r["checkpoint"] for r in rows} == {1, 2, 3}
    assert [json.dumps(r) for r in rows[: len(first)]] == [json.dumps(json.loads(x)) for x in first]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    logged = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2, 3]  # step 3 continued the saved state
    assert all("phases/planning_share" in h for h in logged)
    train = {r["key"] for r in map(json.loads, (out / "data_train.jsonl").read_text().splitlines())}
    held = {
        r["key"] for r in map(json.loads, (out / "data_heldout.jsonl").read_text().splitlines())
    }
    assert train and held and not train & held
    assert not (out / "checkpoint-1" / "optimizer.pt").exists()  # pruned, last one kept
    assert (out / "checkpoint-3" / "optimizer.pt").exists()
    # evaluate: one row per checkpoint (and the start model), readable as trainer logs
    gp.main(["evaluate", "--out", str(out), "--eval-tokens", "6", "--threads", "1"])
    ev = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ev] == [0, 1, 2, 3]
    assert all(r["n"] == 8 and r["acc_lo"] <= r["accuracy"] <= r["acc_hi"] for r in ev)
    from mechgraph.phases import load_logs

    assert load_logs(out / "eval.jsonl")["log/accuracy"].index.tolist() == [0, 1, 2, 3]
    # a different run in the same folder is refused; a folder in the repository too
    with pytest.raises(SystemExit, match="different run"):
        gp.main([*common, "--steps", "3", "--lr", "1e-3"])
    with pytest.raises(SystemExit, match="inside the repository"):
        gp.main([*common[:6], str(PATH.parent / "runs"), *common[7:], "--steps", "1"])
    # the analysis: collect the small results, mechgraph phases twice, the comparison
    _analyze(out, tmp_path)


def _analyze(out: Path, tmp_path: Path) -> None:
    import shutil

    spec = importlib.util.spec_from_file_location("grpo_phases_analyze", ANALYZE)
    an = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(an)
    root, results = tmp_path / "root", tmp_path / "results"
    root.mkdir()
    for name in ("grpo-s0", "hicra-s0"):
        shutil.copytree(out, root / name)
    args = [
        "--root", str(root), "--results", str(results), "--bin-steps", "1", "--save-every", "1",
        "--recent", "1", "--n-boot", "20", "--boot", "200",
    ]  # fmt: skip
    summary = an.main([*args, "--skip-models"])
    # the model pass (teacher-forced under each checkpoint, topology) on one run
    pa = argparse.Namespace(**{**summary["config"], "skip_models": False})
    an.phases("hicra-seed0", root / "hicra-s0", results, root / "analysis", pa)
    kept = sorted(p.name for p in results.iterdir() if p.is_file())
    for name in ("grpo-seed0", "hicra-seed0"):
        for suffix in (".jsonl", ".trainer_state.json", ".eval.jsonl", ".run.json"):
            assert name + suffix in kept
        assert (results / f"{name}.jsonl").read_bytes() == (out / "traces.jsonl").read_bytes()
        for kind in ("text", "model") if name.startswith("hicra") else ("text",):
            doc = json.loads((results / "phases" / f"{name}.{kind}.parquet.json").read_text())
            assert doc["config"]["bin_steps"] == 1
            assert len(doc["checkpoints"]) == 3
        assert not list((results / "phases").glob("*.store"))  # the reader's store stays behind
    text = json.loads((results / "phases" / "hicra-seed0.text.parquet.json").read_text())
    assert text["two_phase"]["exec_metric"] == "log/phases/entropy_exec"
    model = json.loads((results / "phases" / "hicra-seed0.model.parquet.json").read_text())
    assert model["config"]["models"] and model["config"]["topology"]
    # identical runs: HICRA - GRPO is exactly 0, and the curves are the evaluation's accuracy
    assert summary["steps"] == [0, 1, 2, 3]
    d = summary["hicra_minus_grpo"]["last_checkpoint"]
    assert d["diff"] == 0 and d["lo"] == 0 and d["hi"] == 0
    ev = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert summary["curves"]["grpo"]["accuracy"] == pytest.approx([r["accuracy"] for r in ev])
    assert (results / "curves.png").stat().st_size > 10_000
    assert json.loads((results / "summary.json").read_text())["runs"] == [
        "grpo-seed0",
        "hicra-seed0",
    ]
    # a run analysed before whose folder is gone (another machine) joins from its kept results;
    # one with no model pass kept (grpo-seed0 here) does not
    shutil.rmtree(root / "hicra-s0")
    shutil.rmtree(root / "grpo-s0")
    shutil.copytree(out, root / "grpo-s1")
    again = an.main([*args, "--skip-models"])
    assert again["runs"] == ["hicra-seed0", "grpo-seed1"]
    assert "hicra-seed0.model" in again["phases"] and "grpo-seed1.text" in again["phases"]
