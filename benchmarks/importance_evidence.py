"""Receiver and suppression scores of the default model vs Thought Anchors' importance.

For every Thought Anchors trace in ../shared (cut to whole sentences within
``--max-tokens``), the default model's per-sentence receiver score and suppression score
(column mean of the suppression matrix) are compared by Spearman with Thought Anchors'
``counterfactual_importance_kl`` (and ``_accuracy``, sign flipped so that higher = more
important), over the sentences where their value is defined. Sentence position
(earlier = higher) is reported as a baseline, since importance falls with position.
Pooled: the mean of the per-trace correlations with a bootstrap 95% CI over traces (the
trace is the unit) and a Wilcoxon signed-rank p-value. ``score~target|position`` is the
partial Spearman with sentence position partialled out.

    python benchmarks/importance_evidence.py --max-tokens 512     # ~4 min, 2 cores
    python benchmarks/importance_evidence.py --max-tokens 1024 --out \
        benchmarks/results/importance_1024.json                   # ~20 min, 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr, wilcoxon

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.importance._common import prepare  # noqa: E402
from mechgraph.importance.receivers import receiver_scores  # noqa: E402
from mechgraph.importance.suppression import suppression_matrix  # noqa: E402
from mechgraph.io import write_json_atomic  # noqa: E402
from mechgraph.models import load_model  # noqa: E402
from mechgraph.traces import load_traces  # noqa: E402

TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b"
TARGETS = {
    "cf_kl": ("counterfactual_importance_kl", 1.0),
    "cf_acc": ("counterfactual_importance_accuracy", -1.0),
}


def _sp(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spearmanr(a[ok], b[ok]).statistic
    return float(r) if np.isfinite(r) else float("nan")


def _partial(a: np.ndarray, b: np.ndarray, z: np.ndarray) -> float:
    """Spearman of a and b with z partialled out (ranks, linear residuals)."""
    from scipy.stats import rankdata

    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(z)
    if ok.sum() < 6:
        return float("nan")
    ra, rb, rz = (rankdata(v[ok]) for v in (a, b, z))
    Z = np.column_stack([np.ones_like(rz), rz])
    res = [r - Z @ np.linalg.lstsq(Z, r, rcond=None)[0] for r in (ra, rb)]
    den = np.linalg.norm(res[0]) * np.linalg.norm(res[1])
    return float(res[0] @ res[1] / den) if den > 0 else float("nan")


def pooled(values: list[float], seed: int = 0) -> dict:
    v = np.array([x for x in values if np.isfinite(x)])
    if len(v) == 0:
        return {"mean": float("nan"), "ci": [float("nan")] * 2, "wilcoxon_p": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    boots = rng.choice(v, (5000, len(v))).mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    p = float(wilcoxon(v).pvalue) if len(v) >= 6 else float("nan")
    return {"mean": float(v.mean()), "ci": [float(lo), float(hi)], "wilcoxon_p": p, "n": len(v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N traces only")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "importance.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("default")
    folders = sorted(TA.glob("*_base_solution/problem_*"))[: args.limit]
    rows = []
    print(
        "| trace | tokens | S | receiver~cf_kl | suppression~cf_kl | position~cf_kl "
        "| receiver~cf_acc | suppression~cf_acc | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        (trace,) = load_traces(folder)
        t0 = time.perf_counter()
        p = prepare(trace, lm.tokenizer, max_tokens=args.max_tokens)
        rec = receiver_scores(lm, p).scores
        sup = suppression_matrix(lm, p, batch_size=args.batch_size).scores()
        pos = -np.arange(p.n_steps, dtype=np.float64)
        row = {
            "trace": f"{folder.parent.name[:3]}/{folder.name}",
            "tokens": len(p.ids),
            "sentences": p.n_steps,
        }
        for key, (col, sign) in TARGETS.items():
            y = sign * np.array([s.meta.get(col, np.nan) for s in p.steps], dtype=np.float64)
            row[f"receiver~{key}"] = _sp(rec, y)
            row[f"suppression~{key}"] = _sp(sup, y)
            row[f"position~{key}"] = _sp(pos, y)
            row[f"receiver~{key}|position"] = _partial(rec, y, pos)
            row[f"suppression~{key}|position"] = _partial(sup, y, pos)
        row["receiver~suppression"] = _sp(rec, sup)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"| {row['trace']} | {row['tokens']} | {row['sentences']} "
            f"| {row['receiver~cf_kl']:.2f} | {row['suppression~cf_kl']:.2f} "
            f"| {row['position~cf_kl']:.2f} | {row['receiver~cf_acc']:.2f} "
            f"| {row['suppression~cf_acc']:.2f} | {row['seconds']:.0f} |",
            flush=True,
        )
    keys = [k for k in rows[0] if "~" in k]
    summary = {k: pooled([r[k] for r in rows]) for k in keys}
    print("\npooled over traces: mean Spearman [95% CI], Wilcoxon p")
    for k, s in summary.items():
        print(
            f"  {k:24s} {s['mean']:+.3f} [{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}]  "
            f"p = {s['wilcoxon_p']:.3f}  (n = {s['n']})"
        )
    write_json_atomic(args.out, {"max_tokens": args.max_tokens, "rows": rows, "summary": summary})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
