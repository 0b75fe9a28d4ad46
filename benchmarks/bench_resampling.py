"""Resampling importance: how well do cheaper runs keep the full estimator's ranking?

Everything runs side by side in one process, on generators whose answer distribution is
known (``mechgraph.importance.stubs.StubGenerator``), so the true importance is known too:

- ``full`` (``--n`` rollouts per position, seed 1) is the reference; ``full'`` (seed 2)
  is an independent rerun of it;
- ``oracle`` is the true importance (what an estimator with infinitely many rollouts
  gives): the best any estimator can do against a noisy reference;
- ``uniform`` is ``budget x n`` rollouts per position, and ``adaptive`` is
  :func:`~mechgraph.importance.adaptive.adaptive_importance` with the same budget.
  Each is run with seed 1 (*nested*: its rollouts are the first ones of ``full``, i.e.
  early stopping) and seed 2 (*independent* of ``full``);
- ``predicted`` is :func:`~mechgraph.importance.resampling.ranking_reliability` of
  ``full`` alone (split halves + Spearman-Brown), to compare with ``full vs full'``;
- ``sequential`` adds 2 rollouts per position per round (seed 2) and stops once the
  predicted reliability of its ranking reaches ``--target`` (or at the full run's size):
  its share of the full run's rollouts says what *this* trace needs.

Profiles: each Thought Anchors trace in ../shared (their per-chunk ``accuracy``,
``different_trajectories_fraction`` and ``counterfactual_importance_accuracy`` define
the stub's answer rates; first ``--max-sentences`` chunks), plus synthetic ones.
Columns are Spearman correlations with ``full`` (accuracy importance), and the top-10%
overlap with ``full``.

    python benchmarks/bench_resampling.py                 # ~10 min on 2 CPU cores
    python benchmarks/bench_resampling.py --quick         # 4 TA traces + synthetic
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.importance.adaptive import adaptive_importance  # noqa: E402
from mechgraph.importance.resampling import (  # noqa: E402
    counterfactual_importance,
    ranking_reliability,
    result_from_rollouts,
)
from mechgraph.importance.stubs import HashEmbedder, StubGenerator  # noqa: E402
from mechgraph.io import write_json_atomic  # noqa: E402
from mechgraph.traces import Step, Trace  # noqa: E402

TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b"


def _trace(n: int) -> Trace:
    steps, text = [], ""
    for i in range(n):
        s = f"Sentence {i} works on part {i}."
        a = len(text)
        text += s + " "
        steps.append(Step(text=s, start=a, end=a + len(s)))
    return Trace(id=f"s{n}", text=text.rstrip(), prompt="Q: ", answer="42", steps=steps)


def ta_profiles(max_sentences: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Answer rates per position from Thought Anchors' own resampling statistics."""
    out = {}
    for f in sorted(TA.glob("*_base_solution/problem_*/chunks_labeled.json")):
        d = json.loads(f.read_text())[:max_sentences]
        acc = np.array([c["accuracy"] for c in d] + [d[-1]["accuracy"]], dtype=np.float64)
        fr = np.array([c.get("different_trajectories_fraction", 0.0) for c in d] + [0.0])
        cf = np.array([c.get("counterfactual_importance_accuracy", 0.0) for c in d] + [0.0])
        acc_dis = np.clip(cf + np.r_[acc[1:], acc[-1]], 0, 1)
        keep = np.where(fr < 1, np.clip((acc - fr * acc_dis) / np.maximum(1 - fr, 1e-9), 0, 1), acc)
        out[f"TA {f.parts[-3][:3]}/{f.parts[-2]}"] = (fr, acc_dis, keep)
    return out


def synthetic_profiles(seed: int = 1, S: int = 40) -> dict[str, tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    out = {}
    fr = rng.uniform(0.3, 0.9, S + 1)
    keep = np.full(S + 1, 0.9)
    for spread in (0.7, 1.0):
        acc_dis = np.clip(0.9 - rng.permutation(np.linspace(0, spread, S + 1)), 0, 1)
        out[f"graded {spread}"] = (fr, acc_dis, keep)
    acc_dis = keep.copy()
    hot = rng.choice(S, 8, replace=False)
    acc_dis[hot] = rng.uniform(0.1, 0.6, 8)
    acc_dis[np.setdiff1d(np.arange(S), hot)] += rng.normal(0, 0.05, S - 8)
    out["8 anchors"] = (fr, np.clip(acc_dis, 0, 1), keep)
    return out


def _sp(a: np.ndarray, b: np.ndarray) -> float:
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def _top(a: np.ndarray, b: np.ndarray, frac: float = 0.1) -> float:
    k = max(1, round(frac * len(a)))
    return len(set(np.argsort(-np.abs(a))[:k]) & set(np.argsort(-np.abs(b))[:k])) / k


def one_profile(
    name: str,
    prof: tuple[np.ndarray, ...],
    n: int,
    budget: float,
    target: float,
    n_initial: int | None = None,
) -> dict:
    fr, acc_dis, keep = prof
    S = len(fr) - 1
    trace = _trace(S)
    gen = StubGenerator(trace, fr, acc_dis, keep)
    emb = HashEmbedder(64)
    t0 = time.perf_counter()
    full = counterfactual_importance(trace, gen, emb, n_rollouts=n, seed=1)
    t_full = time.perf_counter() - t0
    rerun = counterfactual_importance(trace, gen, emb, n_rollouts=n, seed=2)
    m = round(budget * n)
    uni_nested = result_from_rollouts([r[:m] for r in full.rollouts], full.config, "42")
    uni_indep = result_from_rollouts([r[:m] for r in rerun.rollouts], full.config, "42")
    t0 = time.perf_counter()
    kw = {"n_rollouts": n, "budget": budget, "n_initial": n_initial}
    ada_nested = adaptive_importance(trace, gen, emb, seed=1, **kw)
    t_ada = time.perf_counter() - t0
    ada_indep = adaptive_importance(trace, gen, emb, seed=2, **kw)
    seq = adaptive_importance(
        trace,
        gen,
        emb,
        n_rollouts=n,
        budget=1.0,
        n_initial=10,
        allocation="uniform",
        target_reliability=target,
        seed=2,
    )
    kl_kw = {"n_rollouts": n, "budget": budget, "n_initial": n_initial, "metric": "kl"}
    ada_kl_nested = adaptive_importance(trace, gen, emb, seed=1, **kl_kw)
    ada_kl_indep = adaptive_importance(trace, gen, emb, seed=2, **kl_kw)
    oracle = gen.true_accuracy_importance()
    ref = full.accuracy
    rel = ranking_reliability(full)
    kl_oracle = gen.true_kl_importance()
    row = {
        "profile": name,
        "sentences": S,
        "full_vs_rerun": _sp(ref, rerun.accuracy),
        "predicted": rel.full,
        "oracle": _sp(ref, oracle),
        "uniform_nested": _sp(ref, uni_nested.accuracy),
        "uniform_indep": _sp(ref, uni_indep.accuracy),
        "adaptive_nested": _sp(ref, ada_nested.accuracy),
        "adaptive_indep": _sp(ref, ada_indep.accuracy),
        "top10_rerun": _top(ref, rerun.accuracy),
        "top10_oracle": _top(ref, oracle),
        "top10_uniform_indep": _top(ref, uni_indep.accuracy),
        "top10_adaptive_indep": _top(ref, ada_indep.accuracy),
        "sequential": _sp(ref, seq.accuracy),
        "sequential_share": seq.n_total / full.n_total,
        "adaptive_share": ada_indep.n_total / full.n_total,
        "uniform_share": uni_indep.n_total / full.n_total,
        "rollouts_for_0.9": rel.rollouts_for_target,
        "kl_full_vs_rerun": _sp(full.kl, rerun.kl),
        "kl_predicted": ranking_reliability(full, "kl").full,
        "kl_oracle": _sp(full.kl, kl_oracle),
        "kl_uniform_nested": _sp(full.kl, uni_nested.kl),
        "kl_uniform_indep": _sp(full.kl, uni_indep.kl),
        "kl_adaptive_nested": _sp(full.kl, ada_kl_nested.kl),
        "kl_adaptive_indep": _sp(full.kl, ada_kl_indep.kl),
        "kl_top10_rerun": _top(full.kl, rerun.kl),
        "kl_top10_oracle": _top(full.kl, kl_oracle),
        "kl_top10_uniform_indep": _top(full.kl, uni_indep.kl),
        "seconds_full": t_full,
        "seconds_adaptive": t_ada,
    }
    return row


COLS = [
    ("full_vs_rerun", "full'"),
    ("predicted", "pred."),
    ("oracle", "oracle"),
    ("uniform_nested", "uni/nest"),
    ("uniform_indep", "uni/ind"),
    ("adaptive_nested", "ada/nest"),
    ("adaptive_indep", "ada/ind"),
    ("sequential", "seq"),
    ("sequential_share", "seq share"),
    ("top10_rerun", "top full'"),
    ("top10_oracle", "top orac"),
    ("top10_uniform_indep", "top uni"),
    ("top10_adaptive_indep", "top ada"),
    ("adaptive_share", "ada share"),
]
KL_COLS = [
    ("kl_full_vs_rerun", "full'"),
    ("kl_predicted", "pred."),
    ("kl_oracle", "oracle"),
    ("kl_uniform_nested", "uni/nest"),
    ("kl_uniform_indep", "uni/ind"),
    ("kl_adaptive_nested", "ada/nest"),
    ("kl_adaptive_indep", "ada/ind"),
    ("kl_top10_rerun", "top full'"),
    ("kl_top10_oracle", "top orac"),
    ("kl_top10_uniform_indep", "top uni"),
]


def _table(title: str, rows: list[dict], cols: list, summary: dict) -> None:
    print(f"\n{title}\n")
    print(f"| profile | S | {' | '.join(h for _, h in cols)} |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        vals = " | ".join(f"{r[c]:.2f}" for c, _ in cols)
        print(f"| {r['profile']} | {r['sentences']} | {vals} |")
    for group, means in summary.items():
        vals = " | ".join(f"{means[c]:.2f}" for c, _ in cols)
        print(f"| **{group}** | | {vals} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100, help="rollouts per position of the full run")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--max-sentences", type=int, default=60)
    ap.add_argument("--n-initial", type=int, default=None, help="adaptive: first rollouts")
    ap.add_argument("--target", type=float, default=0.9, help="reliability target (sequential)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "resampling.json"))
    args = ap.parse_args()
    profiles = ta_profiles(args.max_sentences) if TA.is_dir() else {}
    if args.quick:
        profiles = dict(list(profiles.items())[::5])
    ta_names = list(profiles)
    profiles |= synthetic_profiles()
    rows = []
    for name, prof in profiles.items():
        t0 = time.perf_counter()
        rows.append(one_profile(name, prof, args.n, args.budget, args.target, args.n_initial))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    summary = {}
    for group, names in (("TA mean", ta_names), ("synthetic mean", list(synthetic_profiles()))):
        sel = [r for r in rows if r["profile"] in names]
        if sel:
            summary[group] = {c: float(np.mean([r[c] for r in sel])) for c, _ in COLS + KL_COLS}
    head = f"Spearman with the full run ({args.n} rollouts/position); cheaper runs use "
    head += f"{args.budget:.0%} of its rollouts."
    _table(head + " Accuracy importance:", rows, COLS, summary)
    _table("KL importance:", rows, KL_COLS, summary)
    write_json_atomic(
        args.out,
        {
            "n": args.n,
            "budget": args.budget,
            "max_sentences": args.max_sentences,
            "target": args.target,
            "rows": rows,
            "summary": summary,
        },
    )
    print(f"\n-> {args.out}")


if __name__ == "__main__":
    main()
