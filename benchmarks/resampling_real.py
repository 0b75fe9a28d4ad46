"""Resampling importance with real rollouts: the default model and MiniLM, on CPU.

Runs :func:`~mechgraph.importance.resampling.counterfactual_importance` on one bundled
sample trace with plain HF generation (:class:`~mechgraph.importance.HFGenerator`) and
all-MiniLM-L6-v2, twice (seeds 1 and 2), and reports: how many rollouts end in an answer
under each extraction mode, the per-sentence importances, the agreement of the two runs,
the split-half reliability predicted from run 1 alone, and what a 20% prefix of run 1
(an early-stopped run) and the adaptive estimator keep of its ranking.

    python benchmarks/resampling_real.py --trace sample/apples --n 16 --max-new-tokens 96
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.cli import sample_path  # noqa: E402
from mechgraph.importance.adaptive import adaptive_importance  # noqa: E402
from mechgraph.importance.answers import ANSWER_MODES, extract_answer  # noqa: E402
from mechgraph.importance.resampling import (  # noqa: E402
    HFGenerator,
    MiniLMEmbedder,
    counterfactual_importance,
    ranking_reliability,
    result_from_rollouts,
)
from mechgraph.io import write_json_atomic  # noqa: E402
from mechgraph.models import load_model  # noqa: E402
from mechgraph.traces import load_traces, segment_traces  # noqa: E402


class CountingGenerator:
    """Wraps a generator; keeps every continuation (to count answer modes)."""

    def __init__(self, inner: HFGenerator):
        self.inner = inner
        self.texts: list[str] = []

    def sample(self, prefix: str, seeds: list[int]) -> list[str]:
        out = self.inner.sample(prefix, seeds)
        self.texts += out
        return out


def _sp(a, b) -> float:
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", default="sample/apples")
    ap.add_argument("--n", type=int, default=16, help="rollouts per position")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--answer", default="boxed_or_stated", choices=ANSWER_MODES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "resampling_real.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    traces = load_traces(sample_path())
    (trace,) = segment_traces([t for t in traces if t.id == args.trace], "sentences")
    lm = load_model("default")
    gen = CountingGenerator(HFGenerator(lm, max_new_tokens=args.max_new_tokens, batch_size=args.n))
    emb = MiniLMEmbedder()
    S = len(trace.steps or [])
    print(f"{trace.id}: {S} sentences, answer {trace.answer}, {args.n} rollouts/position")
    runs, secs = [], []
    for seed in (1, 2):
        t0 = time.perf_counter()
        runs.append(
            counterfactual_importance(
                trace, gen, emb, n_rollouts=args.n, seed=seed, answer=args.answer
            )
        )
        secs.append(time.perf_counter() - t0)
        print(f"run seed {seed}: {secs[-1]:.0f} s", flush=True)
    a, b = runs
    modes = {m: sum(extract_answer(t, m) is not None for t in gen.texts) for m in ANSWER_MODES}
    answers = Counter(r.answer for pos in a.rollouts for r in pos)
    m = max(2, round(0.2 * args.n))
    prefix = result_from_rollouts([r[:m] for r in a.rollouts], a.config, a.correct)
    ada = adaptive_importance(
        trace, gen, emb, n_rollouts=args.n, seed=1, answer=args.answer, budget=0.2
    )
    rel = ranking_reliability(a)
    report = {
        "trace": trace.id,
        "sentences": S,
        "n_rollouts": args.n,
        "max_new_tokens": args.max_new_tokens,
        "answer_mode": args.answer,
        "seconds_per_run": secs,
        "rollouts_with_answer": {k: v / len(gen.texts) for k, v in modes.items()},
        "top_answers": answers.most_common(6),
        "accuracy_run1": a.accuracy.tolist(),
        "accuracy_run2": b.accuracy.tolist(),
        "kl_run1": a.kl.tolist(),
        "different_fraction_run1": a.different_fraction.tolist(),
        "accuracy_rerun_spearman": _sp(a.accuracy, b.accuracy),
        "kl_rerun_spearman": _sp(a.kl, b.kl),
        "predicted_reliability": rel.full,
        "rollouts_for_0.9": rel.rollouts_for_target,
        "prefix20_vs_full": _sp(prefix.accuracy, a.accuracy),
        "adaptive_vs_full": _sp(ada.accuracy, a.accuracy),
        "adaptive_share": ada.n_total / a.n_total,
    }
    for k in (
        "rollouts_with_answer",
        "top_answers",
        "accuracy_rerun_spearman",
        "kl_rerun_spearman",
        "predicted_reliability",
        "rollouts_for_0.9",
        "prefix20_vs_full",
        "adaptive_vs_full",
        "adaptive_share",
    ):
        print(f"{k}: {report[k]}")
    print("sentence | accuracy (run 1, run 2) | kl | dissimilar | text")
    for i, s in enumerate(trace.steps or []):
        print(
            f"{i:2d} | {a.accuracy[i]:+.2f} {b.accuracy[i]:+.2f} | {a.kl[i]:.2f} "
            f"| {a.different_fraction[i]:.2f} | {s.text[:60]!r}"
        )
    write_json_atomic(args.out, report)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
