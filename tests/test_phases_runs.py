"""Inputs of the phases stage: checkpoint order, run folders, reasoning rules, trainer logs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mechgraph.errors import ConfigError, TraceError
from mechgraph.phases.runs import (
    checkpoint_order,
    checkpoint_value,
    load_logs,
    load_run,
    reasoning_text,
)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_checkpoint_values_and_natural_order():
    assert checkpoint_value("step_0950") == 950 and checkpoint_value(8) == 8
    assert math.isnan(checkpoint_value("final"))
    ordered, x = checkpoint_order(["checkpoint-16", "checkpoint-8", "checkpoint-128"])
    assert ordered == ["checkpoint-8", "checkpoint-16", "checkpoint-128"]
    assert x.tolist() == [8, 16, 128]
    ordered, x = checkpoint_order([950, 50, "100"])
    assert ordered == ["50", "100", "950"] and x.tolist() == [50, 100, 950]


def test_explicit_order_and_its_errors():
    ordered, x = checkpoint_order(["base", "sft", "rl"], ["base", "sft", "rl"])
    assert ordered == ["base", "sft", "rl"] and x.tolist() == [0, 1, 2]
    # numbers that do not increase in the order given fall back to ranks
    assert checkpoint_order(["s10", "s5"], ["s10", "s5"])[1].tolist() == [0, 1]
    with pytest.raises(ConfigError, match="cannot be ordered"):
        checkpoint_order(["base", "rl"])
    with pytest.raises(ConfigError, match="leaves out"):
        checkpoint_order(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ConfigError, match="absent"):
        checkpoint_order(["a", "b"], ["a", "b", "z"])
    with pytest.raises(ConfigError, match="twice"):
        checkpoint_order(["a", "b"], ["a", "a", "b"])
    with pytest.raises(ConfigError, match="at least two checkpoints"):
        checkpoint_order(["step_5", "step_5"])


@pytest.mark.parametrize(
    "full",
    [
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n"
        "<|im_start|>assistant\nA. B.",
        "<|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA. B.",
        "system\nBe brief.\nuser\nQ? And the assistant said\nassistant\nA. B.",
        "<｜User｜>Q?<｜Assistant｜>A. B.",
    ],
)
def test_chat_rule_keeps_the_assistant_turn(full):
    prompt, text = reasoning_text(full, "chat")
    assert text == "A. B." and prompt + text == full
    assert reasoning_text(full, "auto") == (prompt, text)


def test_think_after_and_none_rules():
    assert reasoning_text("Q <think>a</think> b", "think") == ("Q <think>", "a")
    assert reasoning_text("Q <think>cut off", "think") == ("Q <think>", "cut off")
    assert reasoning_text("Q ### A: x", "after:A:") == ("Q ### A:", " x")
    assert reasoning_text("plain text", "none") == ("", "plain text")
    assert reasoning_text("plain text", "auto") == ("", "plain text")
    with pytest.raises(TraceError, match="no assistant header"):
        reasoning_text("plain text", "chat")
    with pytest.raises(TraceError, match="<think>"):
        reasoning_text("plain text", "think")
    with pytest.raises(ConfigError, match="unknown reasoning rule"):
        reasoning_text("x", "bogus")


def _run_folder(tmp_path, steps=(50, 100), n=3):
    d = tmp_path / "run"
    d.mkdir()
    for s in steps:
        recs = [
            {
                "problem": f"P{i}",
                "step": s,
                "output": f"system\nHelp.\nuser\nP{i}\nassistant\n<think>Let me try {i}. So x = {s}.",
                f"{s}_correct": i % 2 == 0,
                f"{s}_changed": False,
                "reward": [1.0, 0.0] if i == 0 else 0.5,
            }
            for i in range(n)
        ]
        _jsonl(d / f"step_{s:04d}.jsonl", recs)
    return d


def test_load_run_folder_like_the_shared_dumps(tmp_path):
    run = load_run(_run_folder(tmp_path))
    assert len(run) == 6
    t = run[0]
    assert (t.id, t.checkpoint, t.correct) == ("50/0", "50", True)
    assert t.text == "<think>Let me try 0. So x = 50."
    assert t.prompt.endswith("assistant\n") and "P0" in t.prompt
    assert t.meta["reward"] == 0.5 and run[1].meta["reward"] == 0.5
    assert "50_changed" not in t.meta and t.meta["problem"] == "P0"
    # the same problem has the same prompt at every checkpoint
    assert run[0].prompt == run[3].prompt


def test_load_run_checkpoint_from_file_field_and_columns(tmp_path):
    d = _run_folder(tmp_path)
    by_file = load_run(d, checkpoint="file")
    assert by_file[0].checkpoint == "step_0050" and by_file[0].id == "step_0050/0"
    by_field = load_run(d, checkpoint="field:problem")
    assert by_field[0].checkpoint == "P0"
    mapped = load_run(
        d, columns={"text": "problem", "correct": "{checkpoint}_changed"}, reasoning="none"
    )
    assert mapped[0].text == "P0" and mapped[0].correct is False
    with pytest.raises(ConfigError, match="unknown checkpoint source"):
        load_run(d, checkpoint="field:")
    with pytest.raises(TraceError, match="no checkpoint field 'nope'"):
        load_run(d, checkpoint="field:nope")


def test_load_run_errors_name_file_and_line(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "step_1.jsonl").write_text('{"output": "assistant\\nok."}\n{broken\n', encoding="utf-8")
    with pytest.raises(TraceError, match=r"step_1\.jsonl:2: invalid JSON"):
        load_run(d)
    (d / "step_1.jsonl").write_text('{"answer": "x"}\n', encoding="utf-8")
    with pytest.raises(TraceError, match=r"step_1\.jsonl:1: no text column"):
        load_run(d)
    (d / "step_1.jsonl").write_text('{"output": "x", "reward": "high"}\n', encoding="utf-8")
    with pytest.raises(TraceError, match="reward must be a number"):
        load_run(d)
    with pytest.raises(ConfigError, match="no file matches"):
        load_run(d, pattern="*.json")


def test_load_run_keeps_unicode_line_separators(tmp_path):
    d = tmp_path / "u"
    d.mkdir()
    text = "Let me see.\u2028So x = 1."
    _jsonl(d / "step_1.jsonl", [{"output": text, "step": 1}])
    assert load_run(d)[0].text == text


def test_load_logs_trl_jsonl_and_csv(tmp_path):
    state = {
        "log_history": [
            {"step": 50, "loss": 1.0, "token_entropy": 0.8},
            {"step": 50, "loss": 3.0, "token_entropy": None},
            {"step": 100, "loss": 0.5, "token_entropy": 0.6, "note": "x"},
            {"train_runtime": 10.0},
        ]
    }
    p = tmp_path / "trainer_state.json"
    p.write_text(json.dumps(state))
    logs = load_logs(p)
    assert list(logs.columns) == ["log/loss", "log/token_entropy"]
    assert logs["log/loss"].tolist() == [2.0, 0.5]
    assert logs["log/token_entropy"].tolist() == [0.8, 0.6]
    j = _jsonl(
        tmp_path / "log.jsonl", [{"global_step": 1, "kl": 0.1}, {"global_step": 2, "kl": 0.3}]
    )
    assert load_logs(j)["log/kl"].tolist() == [0.1, 0.3]
    c = tmp_path / "wandb.csv"
    c.write_text("_step,reward,name\n50,0.2,a\n50,,b\n100,0.4,c\n")
    got = load_logs(c, "_step")
    assert got["log/reward"].tolist() == [0.2, 0.4] and got.index.tolist() == [50.0, 100.0]
    with pytest.raises(ConfigError, match="no step column"):
        load_logs(c)
    with pytest.raises(ConfigError, match="no such file"):
        load_logs(tmp_path / "missing.json")


def test_shared_grpo_run_loads_in_one_call(grpo_run_dir):
    run = load_run(grpo_run_dir, pattern="step_*.jsonl")
    assert len(run) == 1900
    labels, x = checkpoint_order([t.checkpoint for t in run])
    assert labels[0] == "50" and labels[-1] == "950" and len(labels) == 19
    assert np.all(np.diff(x) == 50)
    assert all(t.text.startswith("<think>") for t in run)
    assert all("You are a helpful AI Assistant" in t.prompt for t in run)
    assert len({t.prompt for t in run}) == 100
    acc = {c: np.mean([t.correct for t in run if t.checkpoint == c]) for c in labels}
    assert 0.19 <= min(acc.values()) and max(acc.values()) <= 0.32
