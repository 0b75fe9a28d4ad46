"""Compiled kernels behind the reasoning-graph metrics.

Everything here works on small integer arrays (local node ids ``0..n-1``) so that it
compiles with numba in ``nopython`` mode.  When numba is missing (or the environment
variable ``MECHGRAPH_DISABLE_NUMBA`` is set) the very same functions run as plain
Python: slower, identical results (see :mod:`._kernel_jit`).

This module holds the CSR builders and the per-graph / per-path drivers; the kernels
they call live in :mod:`._kernel_paths` (BFS, Dijkstra) and :mod:`._kernel_cycles`
(cycle counts, clustering) and are re-exported here, so ``_kernels.<name>`` reaches all.

The public wrappers live in :mod:`mechgraph.graphs.metrics`; nothing here is public.
"""

from __future__ import annotations

import numpy as np

from mechgraph.graphs._kernel_cycles import clustering_stats, count_cycles
from mechgraph.graphs._kernel_jit import HAVE_NUMBA, _jit, _jit_parallel, _prange
from mechgraph.graphs._kernel_paths import (
    _BITSET_MAX_N,
    _U1,
    _bfs_bitset,
    _bfs_queue,
    _dijkstra_max_lazy,
    _heap_pop,
    _heap_push,
    _popcount,
    _reach_bitsets,
    _sift_down,
    _sift_up,
    _sssp_ecc,
    bfs_all_pairs,
    bfs_all_pairs_reach,
    dijkstra_max,
    dijkstra_max_reach,
)

# the names of the former single module, kept reachable as ``_kernels.<name>``
__all__ = [
    "HAVE_NUMBA",
    "N_RAW",
    "RAW_COLUMNS",
    "_BITSET_MAX_N",
    "_U1",
    "_bfs_bitset",
    "_bfs_queue",
    "_dijkstra_max_lazy",
    "_heap_pop",
    "_heap_push",
    "_jit",
    "_jit_parallel",
    "_popcount",
    "_prange",
    "_reach_bitsets",
    "_sift_down",
    "_sift_up",
    "_sssp_ecc",
    "bfs_all_pairs",
    "bfs_all_pairs_reach",
    "clustering_stats",
    "count_cycles",
    "csr_from_sorted",
    "csr_sorted",
    "dijkstra_max",
    "dijkstra_max_reach",
    "graph_metrics",
    "path_metrics_batch",
    "path_metrics_one",
    "undirected_csr",
]

#: Columns of the raw metric matrix returned by :func:`path_metrics_batch`.
RAW_COLUMNS: tuple[str, ...] = (
    "n_steps",
    "n_nodes",
    "n_edges",
    "n_transitions",
    "has_loop",
    "loop_count",
    "revisits",
    "n_cycles",
    "n_cycles_capped",
    "diameter_hops",
    "diameter",
    "mean_step_distance",
    "clustering",
    "transitivity",
    "avg_path_length",
    "avg_path_length_directed",
    "mean_degree",
)
N_RAW = len(RAW_COLUMNS)
(
    I_N_STEPS,
    I_N_NODES,
    I_N_EDGES,
    I_N_TRANS,
    I_HAS_LOOP,
    I_LOOP_COUNT,
    I_REVISITS,
    I_N_CYCLES,
    I_CAPPED,
    I_DIAM_HOPS,
    I_DIAM,
    I_MEAN_STEP,
    I_CLUST,
    I_TRANS,
    I_APL,
    I_APL_DIR,
    I_MEAN_DEG,
) = range(N_RAW)


# --------------------------------------------------------------------------- CSR helpers
@_jit
def csr_from_sorted(n, src, dst):
    """CSR (indptr, indices) of edges already sorted by ``src``."""
    indptr = np.zeros(n + 1, np.int64)
    for i in range(src.shape[0]):
        indptr[src[i] + 1] += 1
    for i in range(n):
        indptr[i + 1] += indptr[i]
    return indptr, dst.copy()


@_jit
def csr_sorted(n, src, dst, w):
    """CSR of an arbitrary directed edge list (stable by ``src``), with weights."""
    order = np.argsort(src, kind="mergesort")
    indptr, indices = csr_from_sorted(n, src[order], dst[order])
    return indptr, indices, w[order]


@_jit
def undirected_csr(n, src, dst):
    """Symmetric CSR of the simple undirected graph underlying a directed edge list.

    Self-loops and duplicate (u, v) / (v, u) pairs are dropped.
    """
    m = src.shape[0]
    codes = np.empty(m, np.int64)
    k = 0
    for i in range(m):
        a = src[i]
        b = dst[i]
        if a == b:
            continue
        if a > b:
            a, b = b, a
        codes[k] = a * n + b
        k += 1
    codes = np.sort(codes[:k])
    uniq = 0
    for i in range(k):
        if i == 0 or codes[i] != codes[i - 1]:
            codes[uniq] = codes[i]
            uniq += 1
    # rows by counting: the codes run by (a, b), so row v receives its neighbours a < v
    # (from the codes (a, v)) before its neighbours b > v, each in increasing order
    indptr = np.zeros(n + 1, np.int64)
    for i in range(uniq):
        indptr[codes[i] // n + 1] += 1
        indptr[codes[i] % n + 1] += 1
    for v in range(n):
        indptr[v + 1] += indptr[v]
    fill = indptr[:n].copy()
    indices = np.empty(2 * uniq, np.int64)
    for i in range(uniq):
        a = codes[i] // n
        b = codes[i] % n
        indices[fill[a]] = b
        fill[a] += 1
        indices[fill[b]] = a
        fill[b] += 1
    return indptr, indices, uniq


@_jit
def graph_metrics(n, src, dst, w, has_w, n_self, bound, cap, out):
    """Fill ``out`` (a row of RAW_COLUMNS) with the graph metrics of one directed graph.

    ``src``/``dst``/``w`` list the distinct directed edges u != v (any order);
    ``n_self`` self-loops are counted as edges and as cycles of length 1.
    """
    out[I_N_NODES] = n
    out[I_N_EDGES] = src.shape[0] + n_self
    if n == 0:
        return
    indptr, indices, weights = csr_sorted(n, src, dst, w)
    rindptr, rindices, _ = csr_sorted(n, dst, src, w)
    # cycles
    c, capped = count_cycles(n, indptr, indices, rindptr, rindices, bound, cap)
    c += n_self
    if c >= cap:
        c = cap
        capped = True
    out[I_N_CYCLES] = c
    out[I_CAPPED] = 1.0 if capped else 0.0
    # directed hop metrics
    best, total, pairs, reach = bfs_all_pairs_reach(n, indptr, indices)
    out[I_DIAM_HOPS] = best
    if n == 1:
        out[I_APL_DIR] = 0.0
    elif pairs > 0:
        out[I_APL_DIR] = total / pairs
    if has_w:
        out[I_DIAM] = dijkstra_max_reach(n, indptr, indices, weights, reach)
    # undirected simple graph: clustering, path length, degree
    uptr, uind, m_u = undirected_csr(n, src, dst)
    avg_c, trans = clustering_stats(n, uptr, uind)
    out[I_CLUST] = avg_c
    out[I_TRANS] = trans
    out[I_MEAN_DEG] = 2.0 * m_u / n
    if n == 1:
        out[I_APL] = 0.0
    else:
        _, utotal, upairs = bfs_all_pairs(n, uptr, uind)
        if upairs == n * (n - 1):
            out[I_APL] = utotal / upairs


@_jit
def path_metrics_one(nodes, dists, has_w, self_loops, agg_min, bound, cap, out):
    """Fill ``out`` with every raw metric of one node path.

    ``dists[t]`` is the L2 distance between step t and t + 1 (length T - 1).
    """
    T = nodes.shape[0]
    out[I_N_STEPS] = T
    out[I_HAS_LOOP] = 0.0
    out[I_LOOP_COUNT] = 0.0
    out[I_REVISITS] = 0.0
    out[I_N_TRANS] = 0.0
    out[I_N_CYCLES] = 0.0
    out[I_CAPPED] = 0.0
    out[I_N_NODES] = 0.0
    out[I_N_EDGES] = 0.0
    if T == 0:
        return
    # local ids, in sorted order of the global ids
    order = np.argsort(nodes, kind="mergesort")
    loc = np.empty(T, np.int64)
    n = 0
    for i in range(T):
        if i > 0 and nodes[order[i]] != nodes[order[i - 1]]:
            n += 1
        loc[order[i]] = n
    n += 1
    # revisits, loop detection (Topology of Reasoning definitions)
    seen = np.zeros(n, np.bool_)
    first = -1
    rev = 0
    for t in range(T):
        u = loc[t]
        if t > 0 and loc[t - 1] == u:
            continue
        if seen[u]:
            rev += 1
            if first < 0:
                first = u
        seen[u] = True
    out[I_REVISITS] = rev
    if first >= 0:
        visits = 0
        for t in range(T):
            if loc[t] == first and (t == 0 or loc[t - 1] != first):
                visits += 1
        out[I_HAS_LOOP] = 1.0
        out[I_LOOP_COUNT] = visits - 1
    # transitions -> distinct directed edges with count / distance aggregates
    codes = np.empty(max(T - 1, 0), np.int64)
    cd = np.empty(max(T - 1, 0), np.float64)
    k = 0
    self_seen = np.zeros(n, np.bool_)
    n_self = 0
    step_sum = 0.0
    for t in range(T - 1):
        a = loc[t]
        b = loc[t + 1]
        if a == b:
            if self_loops and not self_seen[a]:
                self_seen[a] = True
                n_self += 1
            continue
        codes[k] = a * n + b
        cd[k] = dists[t] if has_w else 0.0
        step_sum += cd[k]
        k += 1
    out[I_N_TRANS] = k
    if has_w:
        out[I_MEAN_STEP] = step_sum / k if k > 0 else np.nan
    eorder = np.argsort(codes[:k], kind="mergesort")
    src = np.empty(k, np.int64)
    dst = np.empty(k, np.int64)
    w = np.empty(k, np.float64)
    m = 0
    cnt = 0
    for i in range(k):
        c = codes[eorder[i]]
        x = cd[eorder[i]]
        if i == 0 or c != codes[eorder[i - 1]]:
            if m > 0 and not agg_min:
                w[m - 1] /= cnt
            src[m] = c // n
            dst[m] = c % n
            w[m] = x
            cnt = 1
            m += 1
        else:
            cnt += 1
            if agg_min:
                if x < w[m - 1]:
                    w[m - 1] = x
            else:
                w[m - 1] += x
    if m > 0 and not agg_min:
        w[m - 1] /= cnt
    graph_metrics(n, src[:m], dst[:m], w[:m], has_w, n_self, bound, cap, out)


@_jit_parallel
def path_metrics_batch(nodes, offsets, dists, has_w, self_loops, agg_min, bound, cap):
    """Raw metric matrix (n_traces, N_RAW) for concatenated paths split by ``offsets``."""
    B = offsets.shape[0] - 1
    out = np.full((B, N_RAW), np.nan)
    for b in _prange(B):
        lo = offsets[b]
        hi = offsets[b + 1]
        dhi = hi - 1 if hi > lo else lo
        path_metrics_one(
            nodes[lo:hi], dists[lo:dhi], has_w, self_loops, agg_min, bound, cap, out[b]
        )
    return out
