"""PhaseRecorder: traces of a tiny GRPO run, planning/execution metrics, no duplicate rows."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import half_text, reward_len, tiny_grpo_config

trl = pytest.importorskip("trl")

from mechgraph.traces import load_traces  # noqa: E402
from mechgraph.weights.recorder import (  # noqa: E402
    METRICS,
    PhaseRecorder,
    make_recording_trainer,
)

torch.set_num_threads(1)


def _args(tmp_path, **kw):
    return tiny_grpo_config(tmp_path, **kw)


class Keeping(PhaseRecorder):
    """Keeps a copy of every recorded step's inputs."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.kept = []

    def on_step_end(self, args, state, control, **kwargs):
        out = super().on_step_end(args, state, control, **kwargs)
        if self.last and self.last["step"] == state.global_step:
            self.kept.append(self.last)
        return out


def _trainer(base, tiny_model_dir, tmp_path, rec, **kw):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = Dataset.from_dict(
        {
            "prompt": [f"What is {i} + {i}?" for i in range(8)],
            "answer": [str(2 * i) for i in range(8)],
        }
    )
    extra = {k: kw.pop(k) for k in ("planning",) if k in kw}
    return make_recording_trainer(base)(
        model=str(tiny_model_dir),
        reward_funcs=reward_len,
        args=_args(tmp_path, **kw),
        train_dataset=ds,
        processing_class=tok,
        callbacks=[rec],
        **extra,
    ), tok


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_generated_completions_and_hand_checked_metrics(tiny_model_dir, tmp_path):
    path = tmp_path / "traces.jsonl"
    rec = Keeping(path, planning=half_text, checker=lambda text, ex: ex["answer"] in text)
    trainer, tok = _trainer(None, tiny_model_dir, tmp_path, rec)
    trainer.train()
    assert trainer.state.global_step == 2 and len(rec.kept) == 2

    rows = _rows(path)
    want = []
    for kept in rec.kept:
        gen = kept["gen"]
        for k in range(gen["ids"].shape[0]):
            ids = gen["ids"][k][gen["mask"][k].bool()].tolist()
            text = tok.decode(ids, skip_special_tokens=True)
            if text:
                want.append((f"{kept['step']}/{k}", text, gen["examples"][k]["prompt"]))
    assert [(r["id"], r["text"], r["prompt"]) for r in rows] == want
    assert all(isinstance(r["reward"], float) and "correct" in r for r in rows)
    assert {r["checkpoint"] for r in rows} <= {1, 2}
    traces = load_traces(path)
    assert [t.id for t in traces] == [r["id"] for r in rows]
    assert traces[0].checkpoint in {"1", "2"} and traces[0].meta.get("reward") == rows[0]["reward"]

    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    for kept, h in zip(rec.kept, logged, strict=True):
        assert all(k in h for k in METRICS)
        plan_grid = torch.as_tensor(kept["tokens"].planning)
        ent_p, ent_e, n_p, n_e, n = [], [], 0, 0, 0
        for m in kept["micro"]:
            rows_ = m["rows"] - kept["gen"]["row0"]
            mask = m["mask"].bool()
            # the captured ids are the generated rows
            torch.testing.assert_close(m["logps"].shape, mask.shape)
            p = plan_grid[rows_] & mask
            ent_p += m["entropies"][p].tolist()
            ent_e += m["entropies"][mask & ~p].tolist()
            n_p += int(p.sum())
            n_e += int((mask & ~p).sum())
            n += int(mask.sum())
        assert n_p > 0 and n_e > 0
        assert h["phases/entropy_plan"] == pytest.approx(sum(ent_p) / len(ent_p), rel=1e-6)
        assert h["phases/entropy_exec"] == pytest.approx(sum(ent_e) / len(ent_e), rel=1e-6)
        assert h["phases/planning_share"] == pytest.approx(n_p / n, rel=1e-9)
        assert 0.2 < h["phases/planning_share"] < 0.8
        # the loss forward's entropies are TRL's own: its logged entropy is their masked mean
        assert h["entropy"] == pytest.approx((sum(ent_p) + sum(ent_e)) / n, rel=1e-4)
        assert h["phases/logp_plan"] < 0 and h["phases/logp_exec"] < 0
        assert h["phases/semantic_entropy"] >= 0
    # planning = first half of the decoded text, on the tokens (anchor rule of mechgraph.align)
    bt = rec.kept[0]["tokens"]
    for i, text in enumerate(bt.texts):
        if text:
            assert bt.planning[i].any() or len(text) < 2


def test_resume_and_rerun_do_not_duplicate_rows(tiny_model_dir, tmp_path):
    from mechgraph.weights.trl import make_grpo_trainer_class

    path = tmp_path / "traces.jsonl"
    base = make_grpo_trainer_class()  # the HICRA trainer, wrapped too
    tr, _ = _trainer(
        base,
        tiny_model_dir,
        tmp_path,
        PhaseRecorder(path, planning="rules"),
        planning=half_text,
        save_strategy="steps",
        save_steps=1,
        max_steps=2,
    )
    tr.train()
    first = _rows(path)
    assert {r["checkpoint"] for r in first} == {1, 2}
    # a killed run wrote a step past its last checkpoint, then tore its last append: on
    # resume from checkpoint-2 both go (step 3 is generated again by the resumed run)
    ghost = {**first[0], "id": "3/0", "checkpoint": 3, "text": "abandoned branch"}
    with path.open("a") as f:
        f.write(json.dumps(ghost) + "\n" + '{"id": "9/0", "te')
    tr2, _ = _trainer(
        base,
        tiny_model_dir,
        tmp_path,
        PhaseRecorder(path, planning="rules"),
        planning=half_text,
        save_strategy="steps",
        save_steps=1,
        max_steps=3,
    )
    tr2.train(resume_from_checkpoint=True)
    rows = _rows(path)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert rows[: len(first)] == first and {r["checkpoint"] for r in rows} == {1, 2, 3}
    assert "abandoned branch" not in {r["text"] for r in rows}
    assert sum(r["checkpoint"] == 3 for r in rows) == sum(r["checkpoint"] == 1 for r in rows)
    # re-running from scratch on the same file writes nothing new
    tr3, _ = _trainer(None, tiny_model_dir, tmp_path / "b", PhaseRecorder(path), max_steps=2)
    tr3.train()
    assert _rows(path) == rows
    load_traces(path)


def test_recorder_needs_recording_trainer(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from mechgraph.errors import ConfigError

    tr = trl.GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=reward_len,
        args=_args(tmp_path, max_steps=1),
        train_dataset=Dataset.from_dict({"prompt": ["a"] * 4}),
        callbacks=[PhaseRecorder(tmp_path / "t.jsonl")],
    )
    with pytest.raises(ConfigError, match="make_recording_trainer"):
        tr.train()
