"""Benchmark of the reasoning-graph metrics (no model needed).

Measures, on a synthetic corpus shaped like the issue's target (10,000 traces of 50-300
steps over K = 200 nodes):

1. ``metrics_table`` for the whole corpus (every metric, weighted diameter included), and
   the same metrics computed with networkx on a sample of traces, side by side (ratio per
   trace);
2. the small-world index: our analytic sigma, our sampled sigma and ``networkx.sigma`` on a
   few traces: cost and value, side by side;
3. null z-scores (shuffle + walk) on a subset.

Prints a summary and writes JSON (``--out``).  Timings depend on the machine: report the
CPU with them.  Usage::

    python benchmarks/bench_graphs.py [--traces 10000] [--out benchmarks/results/graphs.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from pathlib import Path

import networkx as nx
import numpy as np


def synthetic_corpus(n_traces: int, k: int = 200, d: int = 32, seed: int = 0):
    """Markov walks with sparse successors and some return-prone hubs, plus step vectors."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 301, n_traces)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    n = int(offsets[-1])
    succ = rng.integers(0, k, (k, 6))
    succ[:, 0] = rng.integers(0, 10, k)  # hubs: nodes 0..9 are everyone's first successor
    probs = rng.dirichlet(np.full(6, 0.6), k)
    cum = np.cumsum(probs, axis=1)
    nodes = np.empty(n, np.int64)
    cur = rng.integers(0, k, n_traces)
    for t in range(int(lengths.max())):
        live = lengths > t
        nodes[offsets[:-1][live] + t] = cur[live]
        choice = (rng.random(n_traces)[:, None] > cum[cur]).sum(axis=1).clip(0, 5)
        cur = succ[cur, choice]
    centers = rng.normal(0, 4, (k, d)).astype(np.float32)
    vectors = centers[nodes] + rng.normal(0, 1, (n, d)).astype(np.float32)
    return nodes, offsets, vectors


def networkx_metrics(path, vectors, bound):
    """The same metrics, computed the straightforward way with networkx."""
    G = nx.DiGraph()
    G.add_nodes_from(np.unique(path).tolist())
    diffs = np.linalg.norm(np.diff(vectors.astype(np.float64), axis=0), axis=1)
    acc = {}
    for u, v, x in zip(path[:-1].tolist(), path[1:].tolist(), diffs, strict=True):
        if u != v:
            acc.setdefault((u, v), []).append(x)
    for (u, v), xs in acc.items():
        G.add_edge(u, v, count=len(xs), distance=float(np.mean(xs)))
    cycles = sum(1 for _ in nx.simple_cycles(G, length_bound=bound))
    hops = dict(nx.all_pairs_shortest_path_length(G))
    diam_hops = max(d for r in hops.values() for d in r.values())
    dist = dict(nx.all_pairs_dijkstra_path_length(G, weight="distance"))
    diam = max(d for r in dist.values() for d in r.values())
    U = nx.Graph(G)
    c = nx.average_clustering(U)
    L = nx.average_shortest_path_length(U) if U.number_of_nodes() > 1 else 0.0
    return {
        "n_cycles": cycles,
        "diameter_hops": diam_hops,
        "diameter": diam,
        "clustering": c,
        "avg_path_length": L,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=int, default=10_000)
    ap.add_argument("--nx-sample", type=int, default=200, help="traces timed with networkx")
    ap.add_argument("--sigma-sample", type=int, default=8, help="traces for the sigma comparison")
    ap.add_argument("--sigma-nrand", type=int, default=5)
    ap.add_argument("--sigma-niter", type=int, default=5)
    ap.add_argument("--null-traces", type=int, default=1000)
    ap.add_argument("--n-null", type=int, default=20)
    ap.add_argument("--cycle-bound", type=int, default=10)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "graphs.json"
    )
    args = ap.parse_args()

    from mechgraph.graphs import (
        metrics_table,
        null_zscores,
        small_world_sigma,
        step_distances,
        trace_graph,
    )
    from mechgraph.io import write_text_atomic

    res: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "args": vars(args) | {"out": str(args.out)},
    }
    t0 = time.perf_counter()
    nodes, offsets, vectors = synthetic_corpus(args.traces)
    res["corpus"] = {
        "traces": args.traces,
        "steps": int(nodes.size),
        "k": 200,
        "build_s": time.perf_counter() - t0,
    }
    print(
        f"corpus: {args.traces} traces, {nodes.size} steps, K=200 "
        f"({res['corpus']['build_s']:.1f} s to synthesise)"
    )

    t0 = time.perf_counter()
    metrics_table(nodes[:100], np.array([0, 100]), distances=np.ones(100))  # compile / load cache
    res["warmup_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dist = step_distances(vectors, offsets)
    t_dist = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = metrics_table(nodes, offsets, distances=dist, cycle_length_bound=args.cycle_bound)
    t_metrics = time.perf_counter() - t0
    res["metrics"] = {
        "step_distances_s": t_dist,
        "metrics_table_s": t_metrics,
        "total_s": t_dist + t_metrics,
        "per_trace_ms": 1e3 * t_metrics / args.traces,
        "mean_n_cycles": float(table["n_cycles"].astype(float).mean()),
        "mean_n_nodes": float(table["n_nodes"].astype(float).mean()),
        "capped": int(table["n_cycles_capped"].sum()),
    }
    print(
        f"metrics_table: {t_metrics:.2f} s for {args.traces} traces "
        f"({1e3 * t_metrics / args.traces:.3f} ms/trace) + step distances {t_dist:.2f} s "
        f"[warm-up/compile {res['warmup_s']:.1f} s]"
    )

    # networkx, same metrics, on a sample
    rng = np.random.default_rng(1)
    sample = rng.choice(args.traces, size=min(args.nx_sample, args.traces), replace=False)
    t0 = time.perf_counter()
    ref = [
        networkx_metrics(
            nodes[offsets[b] : offsets[b + 1]],
            vectors[offsets[b] : offsets[b + 1]],
            args.cycle_bound,
        )
        for b in sample
    ]
    t_nx = (time.perf_counter() - t0) / sample.size
    t0 = time.perf_counter()
    sub_nodes = np.concatenate([nodes[offsets[b] : offsets[b + 1]] for b in sample])
    sub_vec = np.concatenate([vectors[offsets[b] : offsets[b + 1]] for b in sample])
    sub_off = np.r_[0, np.cumsum([offsets[b + 1] - offsets[b] for b in sample])]
    sub = metrics_table(sub_nodes, sub_off, vectors=sub_vec, cycle_length_bound=args.cycle_bound)
    t_ours = (time.perf_counter() - t0) / sample.size
    agree = all(
        sub.iloc[i]["n_cycles"] == r["n_cycles"]
        and sub.iloc[i]["diameter_hops"] == r["diameter_hops"]
        and math.isclose(sub.iloc[i]["diameter"], r["diameter"], rel_tol=1e-9)
        and math.isclose(sub.iloc[i]["clustering"], r["clustering"], rel_tol=1e-9, abs_tol=1e-12)
        and math.isclose(sub.iloc[i]["avg_path_length"], r["avg_path_length"], rel_tol=1e-9)
        for i, r in enumerate(ref)
    )
    res["vs_networkx"] = {
        "sample": int(sample.size),
        "networkx_ms_per_trace": 1e3 * t_nx,
        "ours_ms_per_trace": 1e3 * t_ours,
        "speedup": t_nx / t_ours,
        "networkx_10k_extrapolated_s": t_nx * args.traces,
        "values_agree": agree,
    }
    print(
        f"networkx on {sample.size} traces: {1e3 * t_nx:.1f} ms/trace vs ours {1e3 * t_ours:.3f} "
        f"ms/trace -> {t_nx / t_ours:.0f}x faster (networkx for all: ~{t_nx * args.traces:.0f} s); "
        f"values agree: {agree}"
    )

    # sigma: analytic vs sampled vs networkx.sigma
    rows = []
    for b in sample[: args.sigma_sample]:
        G = trace_graph(nodes[offsets[b] : offsets[b + 1]])
        U = nx.Graph(G)
        row = {"trace": int(b), "n": U.number_of_nodes(), "m": U.number_of_edges()}
        t0 = time.perf_counter()
        row["analytic"] = small_world_sigma(G)
        row["analytic_s"] = time.perf_counter() - t0
        row["analytic_transitivity"] = small_world_sigma(G, clustering="transitivity")
        t0 = time.perf_counter()
        row["ours_sampled"] = small_world_sigma(
            G,
            baseline="sampled",
            clustering="transitivity",
            nrand=args.sigma_nrand,
            niter=args.sigma_niter,
            seed=7,
        )
        row["ours_sampled_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            row["networkx"] = float(
                nx.sigma(U, niter=args.sigma_niter, nrand=args.sigma_nrand, seed=random.Random(7))
            )
        except (nx.NetworkXError, ZeroDivisionError) as exc:
            row["networkx"] = f"error: {exc}"
        row["networkx_s"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"  sigma trace {b}: n={row['n']} m={row['m']}  analytic {row['analytic']:.3f} "
            f"({1e3 * row['analytic_s']:.2f} ms, {row['analytic_transitivity']:.3f} with transitivity)  sampled {row['ours_sampled']:.3f} "
            f"({row['ours_sampled_s']:.2f} s)  networkx.sigma {row['networkx']} "
            f"({row['networkx_s']:.2f} s)  cost ratio nx/analytic "
            f"{row['networkx_s'] / row['analytic_s']:.0f}x"
        )
    finite = [r for r in rows if isinstance(r["networkx"], float) and np.isfinite(r["analytic"])]
    res["sigma"] = {
        "rows": rows,
        "nrand": args.sigma_nrand,
        "niter": args.sigma_niter,
        "median_cost_ratio_networkx_over_analytic": float(
            np.median([r["networkx_s"] / r["analytic_s"] for r in rows])
        ),
        "median_value_ratio_analytic_over_networkx": float(
            np.median([r["analytic"] / r["networkx"] for r in finite])
        )
        if finite
        else None,
        "median_value_ratio_analytic_transitivity_over_networkx": float(
            np.median([r["analytic_transitivity"] / r["networkx"] for r in finite])
        )
        if finite
        else None,
        "sampled_equals_networkx": all(
            math.isclose(r["ours_sampled"], r["networkx"], rel_tol=1e-9) for r in finite
        ),
    }
    print(
        f"sigma: networkx.sigma costs {res['sigma']['median_cost_ratio_networkx_over_analytic']:.0f}x "
        f"the analytic sigma (median); value ratio analytic/networkx "
        f"{res['sigma']['median_value_ratio_analytic_over_networkx']:.3f} (average clustering), "
        f"{res['sigma']['median_value_ratio_analytic_transitivity_over_networkx']:.3f} (transitivity); "
        f"sampled == networkx.sigma: {res['sigma']['sampled_equals_networkx']}"
    )

    # nulls on a subset
    nb = min(args.null_traces, args.traces)
    t0 = time.perf_counter()
    null_zscores(
        nodes[: offsets[nb]],
        offsets[: nb + 1],
        vectors=vectors[: offsets[nb]],
        n_null=args.n_null,
        cycle_length_bound=args.cycle_bound,
    )
    t_null = time.perf_counter() - t0
    res["nulls"] = {"traces": nb, "n_null": args.n_null, "kinds": ["shuffle", "walk"], "s": t_null}
    print(f"null z-scores: {nb} traces x {args.n_null} draws x 2 models in {t_null:.1f} s")

    write_text_atomic(args.out, json.dumps(res, indent=2, default=str))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
