"""Benchmark of the null baselines (no model needed).

On the synthetic corpus of ``bench_graphs.py`` (10,000 traces of 50-300 steps over K = 200
nodes, 32-d step vectors), times in one run:

1. the compiled path, :func:`mechgraph.graphs.null_zscores` (shuffle + walk) on every trace;
2. the former NumPy path (kept below as ``reference_null_zscores``: one ``Generator`` for
   the corpus, a metric pass per batch of draws) on a subset;

and prints the time per trace of both side by side; then
3. the per-graph metric kernel alone (``path_metrics_one``, one thread) on the null draws of
   the first traces (``--kernel-graphs`` of them, shuffle and walk in equal parts).

The numba compile (or the load of its on-disk cache) is timed apart, on a tiny corpus,
before anything else.  Writes JSON (``--out``).  Timings depend on the machine and its
load: report both with them.  Usage::

    python benchmarks/bench_nulls.py [--traces 10000] [--ref-traces 1000] [--n-null 20]
                                     [--kernel-graphs 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graphs import synthetic_corpus


def reference_null_zscores(nodes, offsets, *, vectors=None, n_null=100, kinds=("shuffle", "walk"),
                           groups=None, seed=0, metrics=None, options=None, **kwargs):  # fmt: skip
    """The null_zscores of mechgraph before the compiled draws (verbatim, for timing)."""
    import pandas as pd

    from mechgraph.graphs.metrics import MetricOptions
    from mechgraph.graphs.nulls import NULL_METRICS, corpus_walks, shuffled_orders
    from mechgraph.graphs.paths import _as_path, step_distances
    from mechgraph.graphs.topology import _finalize, _raw_metrics

    metrics = NULL_METRICS if metrics is None else metrics
    opts = MetricOptions.from_options(options, **kwargs)
    p = _as_path(nodes)
    offsets = np.asarray(offsets, np.int64)
    B, N = offsets.size - 1, p.size
    vec = None if vectors is None else np.asarray(vectors)
    obs_d = step_distances(vec, offsets) if vec is not None else None
    observed = _finalize(_raw_metrics(p, offsets, obs_d, opts), opts, p, offsets)
    out = {}
    per_chunk = max(1, 4_000_000 // max(N, 1))
    for ki, kind in enumerate(kinds):
        rng = np.random.default_rng([int(seed), ki])
        s1 = {m: np.zeros(B) for m in metrics}
        s2 = {m: np.zeros(B) for m in metrics}
        cnt = {m: np.zeros(B) for m in metrics}
        done = 0
        while done < n_null:
            reps = min(per_chunk, n_null - done)
            if kind == "shuffle":
                orders = shuffled_orders(offsets, reps, rng)
                nn = p[orders].reshape(-1)
                dd = None
                if vec is not None:
                    dd = np.concatenate(
                        [step_distances(vec, offsets, order=orders[r]) for r in range(reps)]
                    )
            else:
                wn, wd = corpus_walks(p, offsets, reps, rng, groups=groups, distances=obs_d)
                nn, dd = wn.reshape(-1), None if wd is None else wd.reshape(-1)
            off_r = (offsets[:-1][None, :] + (np.arange(reps) * N)[:, None]).reshape(-1)
            off_r = np.r_[off_r, reps * N]
            cols = _finalize(_raw_metrics(nn, off_r, dd, opts), opts, nn, off_r)
            for m in metrics:
                x = cols[m].reshape(reps, B)
                ok = np.isfinite(x)
                s1[m] += np.where(ok, x, 0).sum(0)
                s2[m] += np.where(ok, x * x, 0).sum(0)
                cnt[m] += ok.sum(0)
            done += reps
        for m in metrics:
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = s1[m] / cnt[m]
                std = np.sqrt(np.maximum((s2[m] - cnt[m] * mean * mean) / (cnt[m] - 1), 0))
                z = (observed[m] - mean) / std
            z = np.where((cnt[m] >= 2) & (std > 1e-12 * np.maximum(1.0, np.abs(mean))), z, np.nan)
            out[f"{m}_null_{kind}"] = np.where(cnt[m] > 0, mean, np.nan)
            out[f"{m}_z_{kind}"] = z
    return pd.DataFrame(out)


def kernel_ms_per_graph(nodes, offsets, vectors, n_graphs, n_null, bound, seed=0, reps=3):
    """Best-of-``reps`` time of ``path_metrics_one`` per null graph, one call at a time.

    The graphs are the null draws (``n_null`` per trace, shuffle and walk) of the first
    traces, as ``null_zscores`` draws them; one thread (the kernel is serial).
    """
    from mechgraph.graphs import _kernels as K
    from mechgraph.graphs import _null_kernels as NK
    from mechgraph.graphs.metrics import DEFAULT_MAX_CYCLES
    from mechgraph.graphs.nulls import walk_tables
    from mechgraph.graphs.paths import step_distances

    per_kind = max(1, n_graphs // 2)
    B = min(offsets.size - 1, -(-per_kind // n_null))
    o = offsets[: B + 1]
    p, v = nodes[: o[-1]], vectors[: o[-1]]
    tables = walk_tables(p, o, distances=step_distances(v, o))
    graphs = []
    for kind in ("shuffle", "walk"):
        dn, dd = NK.null_draws(
            NK.KIND_CODES[kind], p, o, v, True, tables.group_codes(None, B),
            np.arange(B, dtype=np.uint64), NK.stream_seed(seed), 0, n_null,
            *NK._kernel_args(kind, tables),
        )  # fmt: skip
        draws = [
            (dn[r, o[b] : o[b + 1]].copy(), dd[r, o[b] : o[b + 1] - 1].copy())
            for r in range(n_null)
            for b in range(B)
        ]
        graphs += draws[:per_kind]
    out = np.full(K.N_RAW, np.nan)
    K.path_metrics_one(graphs[0][0], graphs[0][1], True, False, False, bound, 1, out)
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for gn, gd in graphs:
            K.path_metrics_one(gn, gd, True, False, False, bound, DEFAULT_MAX_CYCLES, out)
        best = min(best, time.perf_counter() - t0)
    return {"graphs": len(graphs), "ms_per_graph": 1e3 * best / len(graphs), "reps": reps}


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=int, default=10_000)
    ap.add_argument("--ref-traces", type=int, default=1000, help="traces timed on the old path")
    ap.add_argument("--n-null", type=int, default=20)
    ap.add_argument("--cycle-bound", type=int, default=10)
    ap.add_argument(
        "--kernel-graphs", type=int, default=4000, help="null graphs timed one by one (0: skip)"
    )
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "nulls.json"
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    from mechgraph.graphs import _kernels, null_zscores
    from mechgraph.io import write_text_atomic

    res: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numba": _kernels.HAVE_NUMBA,
            "numba_threads": int(__import__("numba").get_num_threads())
            if _kernels.HAVE_NUMBA
            else 1,
            "loadavg_1min_start": _load(),
        },
        "args": vars(args) | {"out": str(args.out)},
        "import_s": time.perf_counter() - t0,
    }
    kw = dict(n_null=args.n_null, cycle_length_bound=args.cycle_bound, seed=0)

    # compile (or load the numba cache) on a tiny corpus, timed apart
    tn, to, tv = synthetic_corpus(4)
    t0 = time.perf_counter()
    null_zscores(tn, to, vectors=tv, **kw)
    res["compile_or_cache_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    null_zscores(tn, to, vectors=tv, **kw)
    res["second_tiny_call_s"] = time.perf_counter() - t0
    print(
        f"warm-up (numba compile or cache load): {res['compile_or_cache_load_s']:.1f} s; "
        f"second tiny call {res['second_tiny_call_s']:.3f} s"
    )

    t0 = time.perf_counter()
    nodes, offsets, vectors = synthetic_corpus(args.traces)
    res["corpus"] = {"traces": args.traces, "steps": int(nodes.size), "k": 200, "d": 32}
    print(f"corpus: {args.traces} traces, {nodes.size} steps ({time.perf_counter() - t0:.1f} s)")

    t0, c0 = time.perf_counter(), time.process_time()
    z = null_zscores(nodes, offsets, vectors=vectors, **kw)
    t_new, c_new = time.perf_counter() - t0, time.process_time() - c0
    res["compiled"] = {
        "traces": args.traces,
        "s": t_new,
        "cpu_s": c_new,
        "ms_per_trace": 1e3 * t_new / args.traces,
        "loadavg_1min_after": _load(),
        "finite_z_share": float(np.isfinite(z.to_numpy()).mean()),
    }
    print(
        f"compiled: {args.traces} traces x {args.n_null} draws x 2 models in {t_new:.1f} s "
        f"({1e3 * t_new / args.traces:.2f} ms/trace, CPU {c_new:.0f} s)"
    )

    nb = min(args.ref_traces, args.traces)
    sl = slice(0, int(offsets[nb]))
    t0, c0 = time.perf_counter(), time.process_time()
    zr = reference_null_zscores(nodes[sl], offsets[: nb + 1], vectors=vectors[sl], **kw)
    t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    zs = null_zscores(nodes[sl], offsets[: nb + 1], vectors=vectors[sl], **kw)
    t_sub, c_sub = time.perf_counter() - t0, time.process_time() - c0
    # not the same random draws: compare the null means' averages over the subset
    means = {
        c: [float(np.nanmean(zr[c])), float(np.nanmean(zs[c]))] for c in zr.columns if "_null_" in c
    }
    res["reference"] = {
        "traces": nb,
        "s": t_ref,
        "ms_per_trace": 1e3 * t_ref / nb,
        "cpu_s": c_ref,
        "compiled_same_subset_s": t_sub,
        "compiled_same_subset_cpu_s": c_sub,
        "compiled_same_subset_ms_per_trace": 1e3 * t_sub / nb,
        "loadavg_1min_after": _load(),
        "null_mean_averages_reference_vs_compiled": means,
    }
    ratio = (t_ref / nb) / (t_new / args.traces)
    res["speedup_per_trace"] = ratio
    res["cpu_ratio_same_subset_reference_over_compiled"] = c_ref / c_sub
    res["extrapolated_reference_s_for_all"] = t_ref / nb * args.traces
    print(
        f"reference: {nb} traces in {t_ref:.1f} s ({1e3 * t_ref / nb:.2f} ms/trace; compiled on "
        f"the same subset {1e3 * t_sub / nb:.2f} ms/trace) -> {ratio:.1f}x per trace "
        f"(reference for all {args.traces}: ~{t_ref / nb * args.traces:.0f} s); CPU time on the "
        f"subset: reference {c_ref:.1f} s, compiled {c_sub:.1f} s"
    )
    for c in ("revisits_null_shuffle", "revisits_null_walk", "diameter_norm_null_walk"):
        print(f"  mean {c}: reference {means[c][0]:.3f}, compiled {means[c][1]:.3f}")
    if args.kernel_graphs > 0:
        res["kernel"] = kernel_ms_per_graph(
            nodes, offsets, vectors, args.kernel_graphs, args.n_null, args.cycle_bound
        ) | {"loadavg_1min_after": _load()}
        print(
            f"kernel: {res['kernel']['ms_per_graph']:.3f} ms per null graph "
            f"({res['kernel']['graphs']} graphs, one thread, best of {res['kernel']['reps']})"
        )
    write_text_atomic(args.out, json.dumps(res, indent=2, default=str))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
