"""Evidence for docs/graphs.md: reasoning traces vs non-reasoning text on the same problems.

On ``../shared/data/thought_anchors_llama8b`` (20 DeepSeek-R1-Distill-Llama-8B traces on 10
MATH level-5 problems), three stores, with the default model's states at its default layer
(``int(0.9 * n_layers)``, mean-pooled, as in Topology of Reasoning):

* ``reasoning``: the ``<think>`` traces, steps = the labelled Thought Anchors chunks;
* ``final_answer``: the same model's answer after ``</think>`` (a non-reasoning solution
  of the same problem), split into sentences;
* ``human``: the human reference solution (``problem.json`` -> ``gt_solution``; note that
  ``base_solution.json`` -> ``solution`` is the model's text, not the reference), split into
  sentences.

One K = 200 node space is fitted on all steps; every metric with shuffle and random-walk
nulls (z-scores, walk transition matrices per store), the aha odds ratio per store, H1
persistent homology (observed; its nulls are slow), and a length-matched control: the
reasoning traces cut to their first m steps, m = the median final-answer length.

Writes ``runs/evidence/{metrics.parquet, summary.json}`` and prints Markdown tables; the
summary of the run reported in docs/graphs.md is kept as ``benchmarks/results/graphs_evidence.json``.
Usage: ``python benchmarks/graphs_evidence.py [--data DIR] [--out runs/evidence] [--n-null 50]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

Z = ["n_cycles", "revisits", "diameter_norm", "small_world_sigma"]


def final_answers(model_traces):
    """The model's own answer after ``</think>``: non-reasoning text, same model and problem."""
    from mechgraph.traces import Trace

    out = []
    for t in model_traces:
        if "</think>" not in t.text:
            continue
        post = t.text.split("</think>", 1)[1].strip()
        if post:
            prompt = t.prompt.replace("<think>", "").rstrip() + "\n"
            out.append(Trace(id=f"final/{t.id}", text=post, prompt=prompt, model=t.model))
    return out


def human_traces(model_traces):
    from mechgraph.traces import Trace

    out, seen = [], set()
    for t in model_traces:
        problem = t.meta.get("problem")
        sol = t.meta.get("gt_solution")
        if not sol or problem in seen:
            continue
        seen.add(problem)
        prompt = t.prompt.replace("<think>", "").rstrip() + "\n"
        pid = t.id.split("/")[-1]
        out.append(
            Trace(id=f"human/{pid}", text=sol, prompt=prompt, model="human (MATH reference)")
        )
    return out


def summarise(table: pd.DataFrame, by: str) -> pd.DataFrame:
    from mechgraph.graphs import NULL_METRICS

    report = ("n_steps", "n_nodes", *NULL_METRICS)
    cols = [c for c in report if c in table] + [
        f"{m}_z_{k}" for m in Z for k in ("shuffle", "walk") if f"{m}_z_{k}" in table
    ]
    cols += [
        c
        for c in ("h1_count", "h1_total_persistence_norm", "h1_count_z_shuffle", "h1_count_z_walk")
        if c in table
    ]
    num = table[[by, *cols]].copy()
    for c in cols:
        num[c] = pd.to_numeric(num[c], errors="coerce").astype(float)
    g = num.groupby(by, sort=False)
    mean, sd, finite = g.mean(), g.std(), g.count()
    rows = []
    for name in mean.index:
        for c in cols:
            rows.append(
                {
                    "group": name,
                    "metric": c,
                    "mean": mean.loc[name, c],
                    "sd": sd.loc[name, c],
                    "n_defined": int(finite.loc[name, c]),
                }
            )
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame) -> str:
    wide = summary.assign(
        cell=lambda d: d.apply(
            lambda r: (
                "n/a" if r.n_defined == 0 else f"{r['mean']:.3g} ± {r['sd']:.2g} ({r.n_defined})"
            ),
            axis=1,
        )
    )
    piv = wide.pivot(index="metric", columns="group", values="cell")
    piv = piv.loc[[m for m in summary["metric"].unique() if m in piv.index]]
    head = "| metric | " + " | ".join(piv.columns) + " |\n|---|" + "---|" * len(piv.columns) + "\n"
    return head + "\n".join(f"| {m} | " + " | ".join(piv.loc[m]) + " |" for m in piv.index)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/thought_anchors_llama8b"))
    ap.add_argument("--out", type=Path, default=Path("runs/evidence"))
    ap.add_argument("--n-null", type=int, default=50)
    ap.add_argument("--homology-null", type=int, default=0, help="H1 nulls (slow: ~10-50 s a draw)")
    ap.add_argument("--k", type=int, default=200)
    args = ap.parse_args()

    import mechgraph as mg
    from mechgraph.graphs import (
        GraphConfig,
        MetricOptions,
        NodeSpaceConfig,
        analyze_corpus,
        metrics_table,
        null_zscores,
    )
    from mechgraph.graphs.homology import homology_table

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    reasoning = mg.load_traces(args.data)
    for t in reasoning:
        t.model = "DeepSeek-R1-Distill-Llama-8B"
    human = human_traces(reasoning)
    final = final_answers(reasoning)
    stores = []
    for name, traces, seg in (
        ("reasoning", reasoning, "given"),
        ("final_answer", final, "sentences"),
        ("human", human, "sentences"),
    ):
        stores.append(
            mg.extract(traces, args.out / name, segmenter=seg, window="sliding", progress=False)
        )
    layer = stores[0].layers[0]
    print(
        f"extracted in {time.time() - t0:.0f} s; layer {layer} of {stores[0].manifest['n_layers']}, "
        f"model {stores[0].model_id}"
    )

    cfg = GraphConfig(
        layer=layer,
        nodes=NodeSpaceConfig(k=args.k),
        metrics=MetricOptions(),
        n_null=args.n_null,
        group_by="store",
        seed=0,
    )
    res = analyze_corpus(stores, cfg)
    table = res.table
    corpus = res.corpus
    homo = homology_table(
        corpus.states,
        corpus.offsets,
        nodes=res.nodes,
        n_null=args.homology_null,
        groups=corpus.keys["store"].to_numpy(dtype=object),
        seed=0,
    )
    table = pd.concat([table.reset_index(drop=True), homo.reset_index(drop=True)], axis=1)

    # length-matched control: reasoning traces cut to the median final-answer length
    match_len = int(np.median(table.loc[table.store == "final_answer", "n_steps"].astype(int)))
    sel = np.flatnonzero(corpus.keys["store"].to_numpy() == "reasoning")
    cut_nodes, cut_vec, cut_off = [], [], [0]
    for b in sel:
        lo = corpus.offsets[b]
        hi = min(corpus.offsets[b + 1], lo + match_len)
        cut_nodes.append(res.nodes[lo:hi])
        cut_vec.append(corpus.states[lo:hi])
        cut_off.append(cut_off[-1] + hi - lo)
    cn, cv, co = np.concatenate(cut_nodes), np.concatenate(cut_vec), np.asarray(cut_off)
    cut = pd.concat(
        [
            metrics_table(cn, co, vectors=cv),
            null_zscores(cn, co, vectors=cv, n_null=args.n_null, seed=0),
        ],
        axis=1,
    )
    cut.insert(0, "store", f"reasoning, first {match_len} steps")

    both = pd.concat([table, cut], ignore_index=True)
    summary = summarise(both, "store")
    table.to_parquet(args.out / "metrics.parquet", index=False)
    doc = {
        "model": stores[0].model_id,
        "layer": layer,
        "k_used": res.nodespace.k_,
        "n_steps": {
            s: int(table.loc[table.store == s, "n_steps"].astype(int).sum())
            for s in ("reasoning", "final_answer", "human")
        },
        "n_null": args.n_null,
        "homology_null": args.homology_null,
        "length_matched_m": match_len,
        "reasoning_by_correct": table[table.store == "reasoning"]
        .groupby("correct")[["n_steps", "loop_count"]]
        .mean()
        .to_dict(orient="index"),
        "summary": summary.to_dict(orient="records"),
        "aha": res.aha.astype(object).where(res.aha.notna(), None).to_dict(orient="records"),
        "seconds": time.time() - t0,
    }
    from mechgraph.io import write_text_atomic

    write_text_atomic(args.out / "summary.json", json.dumps(doc, indent=2, default=str))
    print(markdown(summary))
    print()
    print(res.aha.to_string(index=False))
    print(f"\nK used {res.nodespace.k_}; total {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
