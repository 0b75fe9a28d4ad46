"""Attention suppression: prefix reuse vs the naive full forward per sentence, one run.

Reports wall time and token-forwards of both, their ratio, and the max abs difference
of the two matrices. Default: the default model on a Thought Anchors trace truncated
to ``--max-tokens`` (or mechgraph's bundled sample when the shared data is absent).

    python benchmarks/bench_suppression.py --max-tokens 768 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mechgraph.importance._common import prepare
from mechgraph.importance.suppression import suppression_matrix, suppression_matrix_naive
from mechgraph.io import write_json_atomic
from mechgraph.models import load_model
from mechgraph.traces import load_traces

ROOT = Path(__file__).resolve().parents[1]
TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b" / "correct_base_solution"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", default=str(TA / "problem_330"))
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "suppression.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    src = Path(args.trace)
    if not src.exists():
        src = ROOT / "mechgraph" / "data" / "sample_traces.jsonl"
    traces = load_traces(src)
    if not traces[0].steps:
        from mechgraph.traces import segment_traces

        traces = segment_traces(traces, "sentences")
    lm = load_model("default")
    p = prepare(traces[0], lm.tokenizer, max_tokens=args.max_tokens)
    T = p.spans[-1][1]
    t0 = time.perf_counter()
    fast = suppression_matrix(lm, p, batch_size=args.batch_size)
    t1 = time.perf_counter()
    naive = suppression_matrix_naive(lm, p)
    t2 = time.perf_counter()
    res = {
        "trace": traces[0].id,
        "tokens": int(T),
        "sentences": p.n_steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "prefix_reuse_s": round(t1 - t0, 2),
        "naive_s": round(t2 - t1, 2),
        "time_ratio": round((t1 - t0) / (t2 - t1), 3),
        "prefix_reuse_token_forwards": fast.token_forwards,
        "naive_token_forwards": naive.token_forwards,
        "token_forward_ratio": round(fast.token_forwards / naive.token_forwards, 3),
        "forwards_per_sentence_equiv": round(fast.token_forwards / T / p.n_steps, 3),
        "max_abs_diff": float(np.nanmax(np.abs(fast.matrix - naive.matrix))),
        "max_value": float(np.nanmax(naive.matrix)),
    }
    write_json_atomic(args.out, res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
