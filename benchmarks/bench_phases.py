"""Speed of the text-only phases analysis: 200 checkpoints x 256 samples of ~2,000 chars.

The target (issue: phases) is the text metrics and change points of such a run in under
60 s on the project's 2-core CPU machine. Samples are generated here (seeded): sentences of
~105 characters (the mean sentence of the shared GRPO samples), 30% drawn from a few
formulaic sentences (in the real run 46% of sentences repeat verbatim), the rest two
clauses from planning / execution / checking templates with random numbers and words,
cut near 2,000 characters.

One run times, side by side: building the samples' per-sample quantities with 1 and with
2 worker processes, then the whole ``analyze_phases`` (table with 200 paired bootstrap
replicates, change points of every metric, two-phase test, topology link) with the
default workers. Prints the seconds and the ratio to the 60 s target; writes
``benchmarks/results/phases_speed.json``.

Usage: ``python benchmarks/bench_phases.py [--checkpoints 200] [--samples 256]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGET_S = 60.0

PLAN = [
    "Let me try a different approach to {w}.",
    "But wait, maybe we should consider {w} first.",
    "Alternatively, we can use the fact that {w} is {n}.",
    "Hmm, I think I need to rethink the {w} part.",
    "So the plan is to compute {w} and then compare with {n}.",
]
EXEC = [
    "So {n} * {m} = {p}.",
    "Then {w} equals {n} + {m}, which is {q}.",
    "Substituting {n} into the {w} gives {p}.",
    "Now, {n} / {m} is about {r}.",
    "We have $x^2 + {n}x - {m} = 0$, so $x = {r}$.",
]
CHECK = [
    "Let me double-check: {n} + {m} = {q}, yes.",
    "Wait, is {w} really {n}? Let me verify.",
    "Therefore, the answer is \\boxed{{{p}}}.",
]
WORDS = "area angle triangle circle radius sum product sequence term root value side".split()


FORMULAIC = [
    "To solve this problem, we need to analyze the given information step by step.",
    "Let's start by understanding what the problem is asking us to find.",
    "Therefore, the final answer is the value we computed above.",
    "We need to find the value that satisfies all the given conditions.",
    "This means that our previous calculation was correct.",
    "Let's break down the problem into smaller parts and solve each one.",
    "First, we need to determine the relationship between the given quantities.",
    "Now, let's substitute the known values into the equation.",
]


def _sentence(rng, p_plan: float) -> str:
    """One sentence of ~105 characters, the mean of the shared GRPO samples' sentences."""
    if rng.random() < 0.3:  # formulaic sentences repeat (46% of sentences do in the real run)
        return FORMULAIC[int(rng.integers(len(FORMULAIC)))]
    u = rng.random()
    pool = PLAN if u < p_plan else CHECK if u > 0.9 else EXEC
    parts = []
    for _ in range(2):
        n, m = (int(v) for v in rng.integers(2, 999, 2))
        parts.append(
            pool[int(rng.integers(len(pool)))].format(
                w=WORDS[int(rng.integers(len(WORDS)))],
                n=n,
                m=m,
                p=n * m,
                q=n + m,
                r=round(n / m, 3),
            )
        )
    return parts[0].rstrip(".?!") + ", and " + parts[1][0].lower() + parts[1][1:]


def make_samples(n_ckpt: int, n_samples: int, chars: int = 2000, seed: int = 0):
    from mechgraph.traces import Trace

    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_ckpt):
        p_plan = 0.15 + 0.15 * c / max(1, n_ckpt - 1)  # planning grows over training
        for i in range(n_samples):
            parts, size = ["<think>"], 7
            while size < chars:
                s = _sentence(rng, p_plan)
                parts.append(s)
                size += len(s) + 1
            out.append(
                Trace(
                    id=f"{c}/{i}",
                    text=" ".join(parts),
                    prompt=f"user\nProblem {i}: find the value.\nassistant\n",
                    checkpoint=f"checkpoint-{(c + 1) * 10}",
                    correct=bool(rng.random() < 0.2 + 0.1 * c / n_ckpt),
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=200)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "phases_speed.json")
    args = ap.parse_args()

    from mechgraph.io import write_json_atomic
    from mechgraph.models import load_tokenizer
    from mechgraph.phases import analyze_phases
    from mechgraph.phases.samples import sample_table

    tok = load_tokenizer()
    t0 = time.perf_counter()
    run = make_samples(args.checkpoints, args.samples)
    gen_s = time.perf_counter() - t0
    chars = sum(len(t.text) for t in run)
    print(f"{len(run)} samples, {chars / 1e6:.1f} M chars (generated in {gen_s:.1f} s)")

    sub = run[: len(run) // 8]  # the per-sample work, 1 vs 2 workers, side by side
    times = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        sample_table(sub, tokenizer=tok, workers=w)
        times[f"samples_1_8th_workers{w}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = analyze_phases(run, tokenizer=tok, topology=False, n_boot=200)
    total = time.perf_counter() - t0
    times["analyze_phases_total"] = total
    n_changes = sum(cp.n_changes for cp in rep.change_points.values())
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "n_checkpoints": args.checkpoints,
        "n_samples": len(run),
        "million_chars": round(chars / 1e6, 2),
        "n_metrics": len(rep.change_points),
        "n_changes_found": n_changes,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "ratio_to_target": round(total / TARGET_S, 3),
        "workers_speedup": round(
            times["samples_1_8th_workers1"] / times["samples_1_8th_workers2"], 2
        ),
    }
    write_json_atomic(args.out, res)
    for k, v in times.items():
        print(f"{k:>28}: {v:7.2f} s")
    print(
        f"total / 60 s target: {total / TARGET_S:.2f}  (2 workers vs 1: x{res['workers_speedup']})"
    )


if __name__ == "__main__":
    main()
