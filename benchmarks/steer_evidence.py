"""Do planning sentences steer? Probe-ranked suppression vs position-matched random sentences.

For each Thought Anchors trace (truncated to the whole sentences within ``--max-tokens``
tokens of the default model), hide ``k`` sentences together (all their keys masked in
every head) and measure the mean per-token ``KL(base || suppressed)`` over one fixed
window: the sentences that make up the last ``--eval-frac`` of the trace's tokens. Only
sentences before the window can be hidden, so every set of a trace is measured on the
same tokens. Sets compared (``mechgraph.importance.steer.steer_test``, ``eval_from``):

* ``probe_vs_position``: the k sentences a planning probe ranks highest vs ``--n-random``
  position-matched k-sets (each top sentence replaced by a non-top sentence within
  ``--radius`` sentences of it). The primary test.
* ``probe_vs_uniform``: the same top set vs uniform random k-sets (position not matched).
* ``oracle_vs_position``: k sentences Thought Anchors tags as planning
  (plan_generation / uncertainty_management), chosen at random among the eligible
  planning sentences, vs position-matched sets (traces with fewer than k skipped).
* ``bottom_vs_position``: the k sentences the probe ranks *least* planning-like vs
  position-matched sets (a second contrast).

Probe: ``probes.LinearProbe(C=0.01)`` on mean-pooled ``resid_post`` states of block
``--layer`` (19: the best grouped-by-problem AUROC of the sweep in docs/probes.md), trained
leave-one-problem-out: the scores of both traces of a problem (correct and incorrect) come
from a probe fitted on the 18 traces of the other 9 problems (whole traces, all steps),
so no tested trace, nor its sibling on the same problem, is in the probe's training data.

Statistics: the trace is the unit. Per trace, ``effect = top_kl - mean(control_kl)`` and
``log_ratio = log(top_kl / mean(control_kl))``; pooled, their mean with a percentile
bootstrap 95% CI over traces, a two-sided Wilcoxon signed-rank p-value and a two-sided
sign test.

Usage::

    python benchmarks/steer_evidence.py                  # extracts runs/steer/store if missing
    python benchmarks/steer_evidence.py --traces 6 --n-random 8 --out /tmp/steer.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.errors import ConfigError, TraceError  # noqa: E402
from mechgraph.importance._common import PreparedTrace, prepare  # noqa: E402
from mechgraph.importance.steer import steer_test  # noqa: E402
from mechgraph.io import write_json_atomic  # noqa: E402
from mechgraph.labels import PLANNING_TAGS  # noqa: E402
from mechgraph.traces import Trace, load_traces  # noqa: E402

TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b"
COMPARISONS = {
    "probe_vs_position": ("probe", "position"),
    "probe_vs_uniform": ("probe", "uniform"),
    "oracle_vs_position": ("oracle", "position"),
    "bottom_vs_position": ("bottom", "position"),
}

# pooled key -> per-comparison field averaged over traces
MEANS = {
    "mean_top_kl": "top_kl",
    "mean_control_kl": "random_kl_mean",
    "mean_position_offset": "position_offset",
    "mean_top_planning": "top_planning",
    "mean_control_planning": "control_planning",
}


def problem_of(trace_id: str) -> str:
    """``correct_base_solution/problem_330`` -> ``problem_330``."""
    return str(trace_id).rsplit("/", 1)[-1]


def ensure_store(path: Path, traces: list[Trace], layer: int) -> Any:
    """Open the store at ``path``, extracting layer ``layer`` of every trace if missing."""
    import mechgraph as mg
    from mechgraph.store import open_store

    if not (path / "manifest.json").is_file() or not list((path / "shards").glob("*")):
        t0 = time.time()
        mg.extract(
            traces, path, layers=(layer,), segmenter="given", window="sliding", progress=False
        )
        print(f"extracted {path} (layer {layer}) in {time.time() - t0:.0f} s", flush=True)
    store = open_store(path)
    if layer not in store.layers:
        raise ConfigError(f"store {path} has layers {store.layers}, not {layer}")
    return store


def lopo_probe_scores(store: Any, layer: int, C: float) -> tuple[dict[str, np.ndarray], dict]:
    """Leave-one-problem-out probe logits of every step, keyed by trace id (step order)."""
    from sklearn.metrics import roc_auc_score

    from probes import LinearProbe
    from probes.train import targets

    steps = store.steps.reset_index(drop=True)
    y, keep = targets(steps, "planning")
    X = np.asarray(store.states(layer), dtype=np.float64)
    problems = steps["trace_id"].map(problem_of).to_numpy()
    logit = np.full(len(steps), np.nan)
    folds = {}
    for g in sorted(set(problems)):
        test = problems == g
        train = keep & ~test
        est = LinearProbe(C=C).fit(X[train], y[train])
        logit[test] = est.decision_function(X[test])
        ok = test & keep
        folds[g] = float(roc_auc_score(y[ok], logit[ok]))
    out = {}
    for tid, df in steps.groupby("trace_id", sort=False):
        order = df.sort_values("step").index.to_numpy()
        out[str(tid)] = logit[order]
    info = {
        "auroc_pooled": float(roc_auc_score(y[keep], logit[keep])),
        "auroc_by_problem": folds,
        "n_steps": int(keep.sum()),
        "n_planning": int(y[keep].sum()),
    }
    return out, info


def check_alignment(store: Any, p: PreparedTrace) -> None:
    """The store's first steps of this trace are the prepared trace's steps (char spans)."""
    df = store.steps
    df = df[df["trace_id"] == p.trace.id].sort_values("step")
    if len(df) < p.n_steps:
        raise TraceError(f"trace {p.trace.id!r}: {len(df)} steps in the store, {p.n_steps} here")
    got = df[["char_start", "char_end"]].to_numpy()[: p.n_steps].tolist()
    want = [[s.start, s.end] for s in p.steps]
    if got != want:
        raise TraceError(f"trace {p.trace.id!r}: the store's steps are not the trace's steps")


def eval_start(p: PreparedTrace, frac: float) -> int:
    """First sentence of the window: the sentences starting in the last ``frac`` of tokens."""
    a0, T = p.spans[0][0], p.spans[-1][1]
    cut = a0 + (1.0 - frac) * (T - a0)
    s0 = next((i for i, (a, _) in enumerate(p.spans) if a >= cut), p.n_steps - 1)
    return min(max(s0, 1), p.n_steps - 1)


def ranking_scores(
    kind: str, probe: np.ndarray, planning: np.ndarray, seed: int
) -> np.ndarray | None:
    """Scores for one ranking; ``oracle``: planning sentences first, in a random order."""
    if kind == "probe":
        return probe
    if kind == "bottom":
        return -probe
    jitter = np.random.default_rng(seed).uniform(0.0, 0.5, len(planning))
    return planning.astype(float) + jitter


def run_trace(
    lm: Any, t: Trace, probe: np.ndarray, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """All comparisons on one trace."""
    from sklearn.metrics import roc_auc_score

    p = prepare(t, lm.tokenizer, max_tokens=args.max_tokens)
    probe = probe[: p.n_steps]
    planning = np.array([s.label in PLANNING_TAGS for s in p.steps])
    s0 = eval_start(p, args.eval_frac)
    rec: dict[str, Any] = {
        "trace": t.id,
        "tokens": int(p.spans[-1][1]),
        "sentences": p.n_steps,
        "eval_from": s0,
        "eval_tokens": int(p.spans[-1][1] - p.spans[s0][0]),
        "n_planning_eligible": int(planning[:s0].sum()),
        "probe_auroc_eligible": (
            float(roc_auc_score(planning[:s0], probe[:s0]))
            if 0 < planning[:s0].sum() < s0
            else None
        ),
        "comparisons": {},
    }
    if s0 < 2 * args.k:
        rec["skipped"] = f"{s0} eligible sentences < 2k"
        return rec
    for name, (kind, control) in COMPARISONS.items():
        if kind == "oracle" and planning[:s0].sum() < args.k:
            rec["comparisons"][name] = {"skipped": "fewer than k eligible planning sentences"}
            continue
        t0 = time.time()
        r = steer_test(
            lm,
            p,
            ranking_scores(kind, probe, planning, seed),
            k=args.k,
            n_random=args.n_random,
            n_boot=args.n_boot,
            seed=seed,
            control=control,
            radius=args.radius,
            eval_from=s0,
            batch_size=args.batch_size,
        )
        d = r.to_dict()
        d["log_ratio"] = float(np.log(r.top_kl / np.mean(r.random_kl)))
        d["top_planning"] = int(planning[r.top].sum())
        d["control_planning"] = float(planning[r.random_sets].sum(1).mean())
        d["seconds"] = round(time.time() - t0, 1)
        rec["comparisons"][name] = d
    return rec


def pool(values: list[float], n_boot: int, seed: int) -> dict[str, Any]:
    """Mean with a bootstrap CI over traces, Wilcoxon and sign-test p-values."""
    from scipy.stats import binomtest, wilcoxon

    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return {"n": 0}
    rng = np.random.default_rng(seed)
    boots = v[rng.integers(0, n, (n_boot, n))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    n_pos = int((v > 0).sum())
    return {
        "n": n,
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "ci95": [float(lo), float(hi)],
        "n_positive": n_pos,
        "wilcoxon_p": float(wilcoxon(v).pvalue) if n >= 2 and np.any(v != 0) else None,
        "sign_test_p": float(binomtest(n_pos, int((v != 0).sum()), 0.5).pvalue)
        if np.any(v != 0)
        else None,
    }


def pooled(records: list[dict], n_boot: int, seed: int) -> dict[str, Any]:
    """Per comparison: pooled effect, log ratio, mean KLs and position offset."""
    out = {}
    for name in COMPARISONS:
        rows = [
            r["comparisons"][name] for r in records if "top_kl" in r["comparisons"].get(name, {})
        ]
        out[name] = {
            "effect": pool([c["effect"] for c in rows], n_boot, seed),
            "log_ratio": pool([c["log_ratio"] for c in rows], n_boot, seed),
        }
        for key, field in MEANS.items():
            out[name][key] = float(np.mean([c[field] for c in rows])) if rows else None
    return out


def print_report(rep: dict) -> None:
    print("\n## per trace (KL x 1e3; effect = top - mean control)\n")
    names = list(COMPARISONS)
    print("| trace | tokens | sentences (window from) | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in rep["traces"]:
        cells = []
        for n in names:
            c = r["comparisons"].get(n, {})
            cells.append(
                f"{1e3 * c['top_kl']:.1f} vs {1e3 * c['random_kl_mean']:.1f}"
                if "top_kl" in c
                else "-"
            )
        print(
            f"| {r['trace']} | {r['tokens']} | {r['sentences']} ({r['eval_from']}) | "
            + " | ".join(cells)
            + " |"
        )
    print("\n## pooled over traces (the trace is the unit)\n")
    print(
        "| comparison | traces | mean top KL | mean control KL | effect (95% CI) | "
        "log ratio (95% CI) | top > control | Wilcoxon p | sign p | position offset |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, s in rep["pooled"].items():
        e, lr = s["effect"], s["log_ratio"]
        if not e.get("n"):
            continue
        print(
            f"| {n} | {e['n']} | {s['mean_top_kl']:.4f} | {s['mean_control_kl']:.4f} | "
            f"{e['mean']:+.4f} [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}] | "
            f"{lr['mean']:+.3f} [{lr['ci95'][0]:+.3f}, {lr['ci95'][1]:+.3f}] | "
            f"{e['n_positive']}/{e['n']} | {e['wilcoxon_p']:.3g} | {e['sign_test_p']:.3g} | "
            f"{s['mean_position_offset']:+.2f} |"
        )


def interleave(traces: list[Trace]) -> list[Trace]:
    """Correct and incorrect trace of each problem in turn (a cut-short run stays balanced)."""
    by_problem: dict[str, list[Trace]] = {}
    for t in traces:
        by_problem.setdefault(problem_of(t.id), []).append(t)
    return [t for g in sorted(by_problem) for t in sorted(by_problem[g], key=lambda t: t.id)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(TA), help="Thought Anchors folder")
    ap.add_argument("--store", default=str(ROOT / "runs" / "steer" / "store"))
    ap.add_argument("--layer", type=int, default=19)
    ap.add_argument("--C", type=float, default=0.01, help="probe inverse L2 strength")
    ap.add_argument("--max-tokens", type=int, default=640)
    ap.add_argument("--eval-frac", type=float, default=0.25)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--n-random", type=int, default=12)
    ap.add_argument("--radius", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=2000, help="per-trace bootstrap")
    ap.add_argument("--n-boot-traces", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--traces", type=int, default=None, help="at most this many traces")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds; no new trace after")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "steer.json"))
    args = ap.parse_args(argv)

    import torch

    from mechgraph.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.time()
    traces = interleave(load_traces(args.data))[: args.traces]
    store = ensure_store(Path(args.store), load_traces(args.data), args.layer)
    probe, probe_info = lopo_probe_scores(store, args.layer, args.C)
    print(f"probe LOPO AUROC {probe_info['auroc_pooled']:.3f} ({time.time() - t_start:.0f} s)")
    lm = load_model("default")
    rep: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/steer_evidence.py", *sys.argv[1:]]),
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "model": lm.model_id,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "split": "leave-one-problem-out: each problem's 2 traces scored by a probe trained on "
        "the other 9 problems' 18 traces",
        "probe": {"estimator": "LinearProbe", "C": args.C, "layer": args.layer, **probe_info},
        "traces": [],
    }
    for n, t in enumerate(traces):
        if args.time_budget is not None and time.time() - t_start > args.time_budget:
            rep["stopped_early"] = f"time budget reached after {n} traces"
            break
        t0 = time.time()
        check_alignment(store, prepare(t, lm.tokenizer, max_tokens=args.max_tokens))
        rec = run_trace(lm, t, probe[t.id], args, seed=args.seed + n)
        rec["seconds"] = round(time.time() - t0, 1)
        rep["traces"].append(rec)
        main_c = rec["comparisons"].get("probe_vs_position", {})
        print(
            f"[{n + 1}/{len(traces)}] {t.id}: {rec['sentences']} sentences, "
            f"probe top {main_c.get('top_kl', float('nan')):.4f} vs matched "
            f"{main_c.get('random_kl_mean') or float('nan'):.4f} ({rec['seconds']:.0f} s)",
            flush=True,
        )
        rep["pooled"] = pooled(rep["traces"], args.n_boot_traces, args.seed)
        rep["wall_s"] = round(time.time() - t_start, 1)
        write_json_atomic(args.out, rep)
    rep["pooled"] = pooled(rep["traces"], args.n_boot_traces, args.seed)
    rep["wall_s"] = round(time.time() - t_start, 1)
    write_json_atomic(args.out, rep)
    print_report(rep)
    print(f"\nwrote {args.out} in {rep['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
