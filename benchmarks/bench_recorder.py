"""Overhead of :class:`mechgraph.weights.recorder.PhaseRecorder` on a tiny GRPO run (CPU).

The same tiny random Llama (the default tokenizer, 3 blocks, d=64) trains with TRL's GRPO
for ``--steps`` steps with the recorder on (``make_recording_trainer`` + ``PhaseRecorder``,
``sg:hicra`` planning) and off (plain ``GRPOTrainer``), same seeds, runs alternating
off/on ``--pairs`` times. Step time = wall time from the second step's start to the end of
training, over the steps after the first (so init and warm-up are left out). Prints the
median on/off ratio (target: at most 1.05) and writes ``benchmarks/results/recorder.json``.

``--model default`` (or an HF folder) times the real model instead, with its own
learning rate 2e-6, and writes ``benchmarks/results/recorder_<name>.json``.

Usage: ``python benchmarks/bench_recorder.py [--steps 8] [--pairs 3] [--model default]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
TARGET = 1.05


def tiny_model(folder: Path) -> Path:
    from mechgraph.models import load_tokenizer
    from mechgraph.testing import tiny_llama

    tok = load_tokenizer("default")
    tiny_llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def reward_len(completions, **kw):
    return [float(len(c) % 5) for c in completions]


def run(model_dir: Path, out: Path, steps: int, record: bool, lr: float = 1e-3) -> float:
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    from mechgraph.weights.recorder import PhaseRecorder, make_recording_trainer
    from mechgraph.weights.trl import cpu_grpo_config

    class Timer(TrainerCallback):
        t0 = t1 = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1 and self.t0 is None:
                self.t0 = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            self.t1 = time.perf_counter()

    timer = Timer()
    args = cpu_grpo_config(
        out / "out",
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=32,
        max_steps=steps,
        learning_rate=lr,
    )
    ds = Dataset.from_dict({"prompt": [f"What is {i} + {i}? Let me think." for i in range(64)]})
    tok = AutoTokenizer.from_pretrained(model_dir)
    cbs = [PhaseRecorder(out / "traces.jsonl", planning="sg:hicra")] if record else []
    cls = make_recording_trainer() if record else trl.GRPOTrainer
    tr = cls(
        model=str(model_dir),
        reward_funcs=reward_len,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[*cbs, timer],
    )
    tr.train()
    return (timer.t1 - timer.t0) / (steps - 1)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--model", default=None, help="default | an HF folder (else a tiny model)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if a.model is None:
            model_dir, lr, name = tiny_model(root / "tiny"), 1e-3, "recorder.json"
        else:
            from mechgraph.models import default_model_path

            model_dir = default_model_path() if a.model == "default" else Path(a.model)
            lr, name = 2e-6, f"recorder_{Path(a.model).name}.json"
        off, on = [], []
        for i in range(a.pairs):
            off.append(run(model_dir, root / f"off{i}", a.steps, record=False, lr=lr))
            on.append(run(model_dir, root / f"on{i}", a.steps, record=True, lr=lr))
            print(f"pair {i}: off {off[-1]:.4f} s/step, on {on[-1]:.4f} s/step")
    ratios = [b / x for x, b in zip(off, on, strict=True)]
    ratio = statistics.median(on) / statistics.median(off)
    res = {
        "steps": a.steps,
        "pairs": a.pairs,
        "off_s_per_step": off,
        "on_s_per_step": on,
        "pair_ratios": ratios,
        "median_ratio": ratio,
        "target_ratio": TARGET,
        "meets_target": ratio <= TARGET,
        "model": a.model or "tiny random Llama (3 blocks, d=64)",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads 1",
    }
    print(f"recorder on/off step time: {ratio:.3f} (target <= {TARGET})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
