"""The phase table: metrics per checkpoint with intervals, pairing, forced metrics, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.labels import TAGS
from mechgraph.phases import load_run, phase_table
from mechgraph.phases import samples as samples_mod
from mechgraph.phases.samples import sample_table
from mechgraph.traces import Trace

PLAN = "Let me try a different approach."
EXEC = "So 3 * 4 = 12."


def make_run(n_ckpt=3, n_prompts=6, plan_growth=1, correct=True, seed=0):
    """Samples whose number of planning sentences grows with the checkpoint."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_ckpt):
        for p in range(n_prompts):
            n_plan = c * plan_growth + int(rng.integers(0, 2))
            sents = [f"Problem {p} asks for x."] + [PLAN] * n_plan + [EXEC] * (4 - c % 2)
            out.append(
                Trace(
                    id=f"{c}/{p}",
                    text=" ".join(sents),
                    prompt=f"user: problem {p}\nassistant: ",
                    checkpoint=f"step_{(c + 1) * 10}",
                    correct=bool(rng.random() < 0.3 + 0.2 * c) if correct else None,
                    meta={"reward": float(c + rng.random())},
                )
            )
    return out


def test_table_shape_columns_and_intervals(smol):
    res = phase_table(make_run(), tokenizer=smol, n_boot=60, workers=1)
    t = res.table
    assert t["checkpoint"].tolist() == ["step_10", "step_20", "step_30"]
    assert t["checkpoint_value"].tolist() == [10, 20, 30]
    assert t["n_traces"].tolist() == [6, 6, 6] and t["n_prompts"].tolist() == [6, 6, 6]
    for m in ("accuracy", "reward", "length_tokens", "planning_share", "semantic_entropy"):
        assert {m, f"{m}_lo", f"{m}_hi"} <= set(t.columns)
        assert np.all(t[f"{m}_lo"] <= t[m] + 1e-9) and np.all(t[m] <= t[f"{m}_hi"] + 1e-9)
        assert res.replicates[m].shape == (60, 3)
    assert all(f"tag/{x}" in t for x in TAGS)
    np.testing.assert_allclose(t[[f"tag/{x}" for x in TAGS]].sum(axis=1), 1.0)
    assert t["planning_share"].is_monotonic_increasing
    assert res.info["paired"] and "paired" in res.info["pairing"]


def test_values_equal_hand_computation(smol):
    run = make_run()
    res = phase_table(run, tokenizer=smol, n_boot=30, workers=1)
    t = res.table.set_index("checkpoint")
    for c in t.index:
        mine = [x for x in run if x.checkpoint == c]
        assert t.loc[c, "accuracy"] == pytest.approx(np.mean([x.correct for x in mine]))
        assert t.loc[c, "reward"] == pytest.approx(np.mean([x.meta["reward"] for x in mine]))
        n_tok = [len(smol(x.text, add_special_tokens=False)["input_ids"]) for x in mine]
        assert t.loc[c, "length_tokens"] == pytest.approx(np.mean(n_tok))


def test_semantic_entropy_of_known_gram_counts(tmp_path, smol):
    grams = tmp_path / "g.txt"
    grams.write_text("alpha beta\ngamma delta\n")
    run = [
        Trace("a/0", "alpha beta. alpha beta. gamma delta.", checkpoint="1"),
        Trace("a/1", "alpha beta.", checkpoint="1"),
        Trace("b/0", "gamma delta.", checkpoint="2"),
        Trace("b/1", "gamma delta. x.", checkpoint="2"),
    ]
    res = phase_table(run, tokenizer=smol, grams=str(grams), n_boot=30, workers=1, rarefy=2)
    h = res.table["semantic_entropy"].tolist()
    p = np.array([3, 1]) / 4
    assert h[0] == pytest.approx(-(p * np.log(p)).sum()) and h[1] == 0
    assert res.table["n_distinct_grams"].tolist() == [2, 1]
    assert res.info["rarefy_m"] == 2 and not res.info["paired"]


def test_unknown_correct_gives_nan_accuracy_and_unpaired_runs(smol):
    run = make_run(correct=False)
    run = [t for t in run if not (t.checkpoint == "step_20" and t.id.endswith("/5"))]
    res = phase_table(run, tokenizer=smol, n_boot=30, workers=1)
    assert res.table["accuracy"].isna().all()
    assert not res.info["paired"] and "5 of 6 prompts shared" in res.info["pairing"]
    with pytest.raises(ConfigError, match="paired=yes"):
        phase_table(run, tokenizer=smol, n_boot=30, workers=1, paired="yes")


def test_one_sample_checkpoint_has_no_interval(smol):
    run = make_run(n_prompts=4)
    run = [t for t in run if t.checkpoint != "step_30" or t.id.endswith("/0")]
    res = phase_table(run, tokenizer=smol, n_boot=30, workers=1)
    row = res.table.iloc[2]
    assert row["n_traces"] == 1 and np.isfinite(row["accuracy"]) and np.isnan(row["accuracy_lo"])
    assert any("one sample" in n for n in res.info["notes"])


def test_bad_input_fails_before_any_work(monkeypatch, smol, tmp_path):
    def boom(*a, **k):
        raise AssertionError("expensive work started")

    monkeypatch.setattr("mechgraph.phases.table.sample_table", boom)
    run = make_run()
    with pytest.raises(ConfigError, match="at least two checkpoints"):
        phase_table([t for t in run if t.checkpoint == "step_10"], tokenizer=smol)
    with pytest.raises(ConfigError, match="absent from the traces"):
        phase_table(run, tokenizer=smol, models={"step_99": "default"})
    logs = tmp_path / "log.jsonl"
    logs.write_text(json.dumps({"step": 7, "loss": 1.0}) + "\n")
    with pytest.raises(ConfigError, match="no value of step key 'step' matches"):
        phase_table(run, tokenizer=smol, logs=str(logs))
    with pytest.raises(ConfigError, match="cannot be ordered"):
        phase_table([*run, Trace("x", "Text here.", checkpoint="final")], tokenizer=smol)
    with pytest.raises(ConfigError, match="must be a number"):
        phase_table([*run[:3], Trace("y", "Hi.", checkpoint="step_20", meta={"reward": "hi"})])


def test_logs_are_joined_by_step(smol, tmp_path):
    logs = tmp_path / "trainer_state.json"
    hist = [{"step": s, "token_entropy": 1.0 / s} for s in (10, 10, 30, 40)]
    logs.write_text(json.dumps({"log_history": hist}))
    res = phase_table(make_run(), tokenizer=smol, n_boot=30, workers=1, logs=str(logs))
    col = res.table["log/token_entropy"].tolist()
    assert col[0] == pytest.approx(0.1) and np.isnan(col[1]) and col[2] == pytest.approx(1 / 30)


def test_workers_give_the_same_samples(smol):
    run = make_run(n_ckpt=2, n_prompts=40)
    one = sample_table(run, tokenizer=smol, workers=1)
    two = sample_table(run, tokenizer=smol, workers=2)
    assert one.frame.equals(two.frame) and (one.grams != two.grams).nnz == 0


def test_planning_sources(smol):
    run = make_run(n_ckpt=2)
    rules = sample_table(run, tokenizer=smol, workers=1, planning="rules")
    sg = sample_table(run, tokenizer=smol, workers=1, planning="sg:hicra")
    assert (rules.frame["n_plan_tokens"] > 0).any() and (sg.frame["n_plan_tokens"] >= 0).all()
    with pytest.raises(ConfigError, match="unknown planning source"):
        sample_table(run, tokenizer=smol, planning="magic")


def test_forced_metrics_with_checkpoint_models(smol, tiny_model_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    run = make_run(n_ckpt=3, n_prompts=3)
    models = {"step_10": str(tiny_model_dir), "step_30": str(tiny_model_dir)}
    store = tmp_path / "s"
    res = phase_table(run, tokenizer=smol, n_boot=30, workers=1, models=models, store=str(store))
    t = res.table
    for m in ("entropy_plan", "entropy_exec", "nll_plan", "nll_exec", "ppl_rel_exec"):
        assert m in t and np.isnan(t[m].iloc[1])  # step_20 has no model
    assert t["ppl_rel_exec"].iloc[0] == pytest.approx(1.0)
    assert t["ppl_rel_plan_lo"].iloc[2] <= t["ppl_rel_plan"].iloc[2] <= t["ppl_rel_plan_hi"].iloc[2]
    # cached beside the store: a rerun does no forward pass
    assert list((tmp_path / "s.forced").glob("*.parquet"))
    import mechgraph.phases.forced as forced

    def boom(*a, **k):
        raise AssertionError("forward pass repeated")

    orig = forced.forced_token_stats
    forced.forced_token_stats = boom
    try:
        again = phase_table(
            run, tokenizer=smol, n_boot=30, workers=1, models=models, store=str(store)
        )
    finally:
        forced.forced_token_stats = orig
    np.testing.assert_allclose(again.table["nll_exec"], t["nll_exec"])


def test_forced_tokenizer_mismatch_is_an_error(smol, tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra_planning_token>"])
    tok.save_pretrained(other)
    monkeypatch.setattr(samples_mod, "sample_table", None)  # never reached
    with pytest.raises(ConfigError, match=r"step_10.*step_30|step_30.*step_10"):
        phase_table(
            make_run(),
            tokenizer=smol,
            models={"step_10": str(tiny_model_dir), "step_30": str(other)},
        )


def test_shared_run_text_metrics(grpo_run_dir, smol):
    run = load_run(grpo_run_dir, pattern="step_*.jsonl")
    res = phase_table(run, tokenizer=smol, n_boot=50)
    t = res.table
    assert len(t) == 19 and t["n_traces"].eq(100).all() and res.info["paired"]
    acc = {c: np.mean([x.correct for x in run if x.checkpoint == c]) for c in t.checkpoint}
    np.testing.assert_allclose(t["accuracy"], [acc[c] for c in t.checkpoint])
    assert t["accuracy"].between(0.19, 0.32).all()
    assert (t["semantic_entropy_rarefied"] <= t["semantic_entropy"] + 1e-9).all()
    assert (t["accuracy_lo"] < t["accuracy"]).all() and (t["accuracy"] < t["accuracy_hi"]).all()


def test_a_registered_labeller_is_a_planning_source_everywhere(smol):
    import mechgraph.labels.methods as methods
    from mechgraph.labels.external import CallableLabeller
    from mechgraph.weights import WeightsConfig

    def everything(arg, **kw):
        return CallableLabeller(lambda s: "plan_generation", per_sentence=True)

    methods.register_labeller("allplan", everything)
    try:
        WeightsConfig(planning="allplan")  # accepted by the weights stage
        st = sample_table(make_run(n_ckpt=2), tokenizer=smol, workers=1, planning="allplan")
        f = st.frame
        assert (f["n_plan_tokens"] == f["n_tokens"]).all()
        none = sample_table(make_run(n_ckpt=2), tokenizer=smol, workers=1, planning="none")
        assert (none.frame["n_plan_tokens"] == 0).all()
    finally:
        methods._USER.pop("allplan", None)
