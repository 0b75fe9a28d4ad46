"""Compiled null draws: shuffled and random-walk versions of each trace, measured in place.

Every draw has its own random stream, a counter-based generator (SplitMix64) whose state
is a hash of ``(seed, kind, trace key, draw index)``.  A trace's null draws therefore do
not depend on which other traces are computed with it, in which order, in how many
chunks or on which worker: a corpus split into slices gives exactly the numbers of the
whole.  The same functions run as plain Python when numba is missing (slower, same
numbers).

The public wrapper is :func:`mechgraph.graphs.null_zscores`; nothing here is public.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from mechgraph.graphs._kernels import N_RAW, _jit, _jit_parallel, _prange, path_metrics_one
from mechgraph.graphs.metrics import MetricOptions, _sigma_sampled, _simple_undirected
from mechgraph.graphs.paths import step_distances
from mechgraph.graphs.topology import _finalize, _raw_metrics

if TYPE_CHECKING:
    from mechgraph.graphs.nulls import WalkTables

_BLOCK_ROWS = 200_000  # null draws (draw x trace) measured per kernel call

#: Stream codes of the null kinds (fixed: a kind's draws do not depend on the other kinds).
KIND_CODES: dict[str, int] = {"shuffle": 0, "walk": 1}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_INV53 = 1.0 / 9007199254740992.0  # 2 ** -53


@_jit
def mix64(z):
    """SplitMix64 finaliser of a uint64 (a bijection with good avalanche)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def stream_state(seed, kind, key, draw):
    """Initial generator state of one draw: a hash of its four uint64 coordinates."""
    h = mix64(seed + _GOLDEN)
    h = mix64(h ^ mix64(kind + _GOLDEN))
    h = mix64(h ^ mix64(key + _GOLDEN))
    return mix64(h ^ mix64(draw + _GOLDEN))


@_jit
def next_uniform(state):
    """``(new_state, u)`` with ``u`` uniform on [0, 1) (53 random bits)."""
    state = state + _GOLDEN
    return state, np.float64(mix64(state) >> _S11) * _INV53


@_jit
def _pick(cum, lo, hi, r):
    """First j in [lo, hi) with ``cum[j] > r`` (``cum`` increasing, ``r < cum[hi - 1]``)."""
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if cum[mid - 1] > r:
            hi = mid
        else:
            lo = mid
    return lo


@_jit
def shuffle_draw(nodes, vec, has_w, lo, T, state, perm, wn, wd):
    """One shuffled trace: Fisher-Yates over steps ``lo..lo+T-1`` (nodes and vectors)."""
    for i in range(T):
        perm[i] = i
    for i in range(T - 1, 0, -1):
        state, u = next_uniform(state)
        j = int(u * (i + 1))
        if j > i:
            j = i
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp
    for t in range(T):
        wn[t] = nodes[lo + perm[t]]
    if has_w:
        d = vec.shape[1]
        for t in range(T - 1):
            a = lo + perm[t]
            b = lo + perm[t + 1]
            s = 0.0
            for k in range(d):
                x = np.float64(vec[a, k]) - np.float64(vec[b, k])
                s += x * x
            wd[t] = math.sqrt(s)
    return state


@_jit
def walk_draw(
    start, T, g, kn, state, indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean, has_w, wn, wd
):
    """One random walk of ``T`` steps from node ``start`` over group ``g``'s transitions.

    States are ``g * kn + node``; a state without successor jumps to a state drawn from
    the group's visit counts (``tptr``/``tind``/``tcum``) and the step gets ``gmean[g]``.
    """
    if T == 0:
        return state
    u = g * kn + start
    wn[0] = start
    for t in range(1, T):
        a = indptr[u]
        b = indptr[u + 1]
        state, x = next_uniform(state)
        if b > a:
            j = _pick(cum, a, b, x * cum[b - 1])
            v = indices[j]
            step = edge_mean[j]
        else:
            a = tptr[g]
            b = tptr[g + 1]
            j = _pick(tcum, a, b, x * tcum[b - 1])
            v = tind[j]
            step = gmean[g]
        wn[t] = v - g * kn
        if has_w:
            wd[t - 1] = step
        u = v
    return state


@_jit
def draw_one(
    kind, nodes, vec, has_w, lo, T, g, kn, state,
    indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean, perm, wn, wd,
):  # fmt: skip
    """Fill ``wn`` (and ``wd``) with one null draw of the trace at ``lo`` of length ``T``."""
    if kind == 0:
        return shuffle_draw(nodes, vec, has_w, lo, T, state, perm, wn, wd)
    start = nodes[lo] if T > 0 else 0
    return walk_draw(
        start, T, g, kn, state, indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean,
        has_w, wn, wd,
    )  # fmt: skip


@_jit_parallel
def null_raw_batch(
    kind, nodes, offsets, vec, has_w, gcode, keys, seed, n_null, kn,
    indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean,
    self_loops, agg_min, bound, cap,
):  # fmt: skip
    """Raw metric rows of every null draw: array (n_null, n_traces, N_RAW).

    Parallel over traces; draw r of trace b uses the stream
    ``stream_state(seed, kind, keys[b], r)`` and nothing else.
    """
    B = offsets.shape[0] - 1
    out = np.full((n_null, B, N_RAW), np.nan)
    kc = np.uint64(kind)
    for b in _prange(B):
        lo = offsets[b]
        T = offsets[b + 1] - lo
        perm = np.empty(T, np.int64)
        wn = np.empty(T, np.int64)
        wd = np.full(max(T - 1, 0), np.nan)
        for r in range(n_null):
            st = stream_state(seed, kc, keys[b], np.uint64(r))
            draw_one(
                kind, nodes, vec, has_w, lo, T, gcode[b], kn, st,
                indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean, perm, wn, wd,
            )  # fmt: skip
            path_metrics_one(wn, wd, has_w, self_loops, agg_min, bound, cap, out[r, b])
    return out


@_jit
def null_draws(
    kind, nodes, offsets, vec, has_w, gcode, keys, seed, r0, r1, kn,
    indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean,
):  # fmt: skip
    """The draws ``r0..r1-1`` themselves: nodes and step lengths, shape (r1 - r0, N).

    Same streams as :func:`null_raw_batch` (row ``r - r0`` holds draw ``r``); the step
    length from t to t + 1 sits at t (NaN at the end of each trace).
    """
    B = offsets.shape[0] - 1
    N = nodes.shape[0]
    out_n = np.zeros((r1 - r0, N), np.int64)
    out_d = np.full((r1 - r0, N), np.nan)
    kc = np.uint64(kind)
    for b in range(B):
        lo = offsets[b]
        T = offsets[b + 1] - lo
        perm = np.empty(T, np.int64)
        wn = np.empty(T, np.int64)
        wd = np.full(max(T - 1, 0), np.nan)
        for r in range(r0, r1):
            st = stream_state(seed, kc, keys[b], np.uint64(r))
            draw_one(
                kind, nodes, vec, has_w, lo, T, gcode[b], kn, st,
                indptr, indices, cum, edge_mean, tptr, tind, tcum, gmean, perm, wn, wd,
            )  # fmt: skip
            out_n[r - r0, lo : lo + T] = wn
            if has_w:
                out_d[r - r0, lo : lo + max(T - 1, 0)] = wd
    return out_n, out_d


# ------------------------------------------------------------------------ block driver
def stream_seed(seed: int) -> np.uint64:
    return np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)


def _kernel_args(kind: str, tables: WalkTables | None) -> tuple:
    if kind == "walk":
        t = tables
        return (t.kn, t.indptr, t.indices, t.cum, t.edge_mean, t.tptr, t.tind, t.tcum, t.gmean)
    z, zf = np.zeros(1, np.int64), np.zeros(1)
    return (1, z, z, zf, zf, z, z, zf, zf)


def _sampled_sigma(cols, kind, p, offsets, vec, has_w, gcode, keys, n_null, tables, seed, opts):
    """Sampled small-world sigma of every draw (Python, seeded per trace key and draw)."""
    nn, _ = null_draws(
        KIND_CODES[kind], p, offsets, vec, has_w, gcode, keys,
        stream_seed(seed), 0, n_null, *_kernel_args(kind, tables),
    )  # fmt: skip
    C = cols["transitivity"] if opts.sigma_clustering == "transitivity" else cols["clustering"]
    L, B = cols["avg_path_length"], offsets.size - 1
    sig = np.full(n_null * B, np.nan)
    for r in range(n_null):
        for b in range(B):
            path = nn[r, offsets[b] : offsets[b + 1]]
            U = _simple_undirected(nx.DiGraph(itertools.pairwise(path.tolist())), path)
            s = np.random.SeedSequence(
                [int(opts.seed), stream_seed(seed).item(), KIND_CODES[kind], int(keys[b]), r]
            )
            rng = random.Random(int(s.generate_state(1)[0]))
            i = r * B + b
            sig[i] = _sigma_sampled(U, float(C[i]), float(L[i]), opts, rng)
    return sig


def block_columns(
    p: np.ndarray,
    offsets: np.ndarray,
    vec: np.ndarray | None,
    gcode: np.ndarray,
    keys: np.ndarray,
    tables: WalkTables | None,
    kinds: Sequence[str],
    n_null: int,
    seed: int,
    metrics: Sequence[str],
    opts: MetricOptions,
) -> dict[str, np.ndarray]:
    """Null means and z-scores of a block of traces (the unit a worker computes)."""
    obs_d = step_distances(vec, offsets) if vec is not None else None
    observed = _finalize(_raw_metrics(p, offsets, obs_d, opts), opts, p, offsets)
    has_w = vec is not None
    v = np.ascontiguousarray(vec) if has_w else np.zeros((1, 1))
    bound = int(opts.cycle_length_bound) if opts.cycle_length_bound is not None else 1 << 30
    fin_opts = replace(opts, sigma_baseline="analytic")
    B = offsets.size - 1
    step = max(1, _BLOCK_ROWS // n_null)
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        parts: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
        for lo in range(0, B, step):
            hi = min(lo + step, B)
            o = offsets[lo : hi + 1]
            bp, bo = p[o[0] : o[-1]], o - o[0]
            bv = v[o[0] : o[-1]] if has_w else v
            with np.errstate(over="ignore"):  # uint64 hashing when numba is missing
                raw = null_raw_batch(
                    KIND_CODES[kind], bp, bo, bv, has_w, gcode[lo:hi], keys[lo:hi],
                    stream_seed(seed), n_null, *_kernel_args(kind, tables),
                    bool(opts.self_loops), opts.distance_agg == "min", bound,
                    int(opts.max_cycles),
                )  # fmt: skip
            flat = raw.reshape(n_null * (hi - lo), N_RAW)
            cols = _finalize(flat, fin_opts, bp, bo)
            if opts.sigma_baseline == "sampled" and "small_world_sigma" in metrics:
                with np.errstate(over="ignore"):
                    cols["small_world_sigma"] = _sampled_sigma(
                        cols, kind, bp, bo, bv, has_w, gcode[lo:hi], keys[lo:hi], n_null,
                        tables, seed, opts,
                    )  # fmt: skip
            for m in metrics:
                parts[m].append(cols[m].reshape(n_null, hi - lo))
        for m in metrics:
            # (trace, draw) rows, each summed on its own: the same bits in any block size
            x = np.concatenate([a.T for a in parts[m]]) if parts[m] else np.zeros((0, n_null))
            x = np.ascontiguousarray(x)
            ok = np.isfinite(x)
            cnt = ok.sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = np.where(ok, x, 0).sum(1) / cnt
                var = np.where(ok, (x - mean[:, None]) ** 2, 0).sum(1) / (cnt - 1)
                std = np.sqrt(np.maximum(var, 0))
                z = (observed[m] - mean) / std
            # relative tolerance: a spread below float noise is no spread
            z = np.where((cnt >= 2) & (std > 1e-12 * np.maximum(1.0, np.abs(mean))), z, np.nan)
            out[f"{m}_null_{kind}"] = np.where(cnt > 0, mean, np.nan)
            out[f"{m}_z_{kind}"] = z
    return out


def _ray_block(*args):
    """:func:`block_columns` in a Ray worker, one numba thread (the tasks share the cores)."""
    from mechgraph.graphs import _kernels

    if _kernels.HAVE_NUMBA:
        import numba

        numba.set_num_threads(1)
    return block_columns(*args)


def ray_columns(
    p, offsets, vec, gcode, keys, tables, kinds, n_null, seed, metrics, opts, n_tasks
) -> dict[str, np.ndarray]:
    """:func:`block_columns` over contiguous trace slices in Ray tasks, concatenated.

    Uses the running Ray instance, else joins ``$RAY_ADDRESS`` or starts a local one (and
    stops what it started).  The slices are cut at equal
    step counts; each task gets its slice and a reference to the shared walk tables.
    """
    import ray

    from mechgraph.engines.ray import ray_address, start_local_ray

    started = not ray.is_initialized()
    if started:  # join $RAY_ADDRESS, else a new local instance (never one found in /tmp/ray)
        addr = ray_address(None)
        if addr is None:
            start_local_ray(ray, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=addr, include_dashboard=False, log_to_driver=False)
    try:
        return _ray_run(
            ray, p, offsets, vec, gcode, keys, tables, kinds, n_null, seed, metrics, opts, n_tasks
        )
    finally:
        if started:
            ray.shutdown()


def _ray_run(
    ray, p, offsets, vec, gcode, keys, tables, kinds, n_null, seed, metrics, opts, n_tasks
) -> dict[str, np.ndarray]:
    if n_tasks is None:
        n_tasks = max(1, int(ray.available_resources().get("CPU", 1)))
    B = offsets.size - 1
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], int(n_tasks) + 1), "left")
    cuts = np.unique(np.r_[0, np.clip(cuts[1:-1], 0, B), B])
    remote = ray.remote(num_cpus=1)(_ray_block)
    tref = ray.put(tables)
    futures = []
    for lo, hi in itertools.pairwise(cuts.tolist()):
        o = offsets[lo : hi + 1]
        bv = None if vec is None else vec[o[0] : o[-1]]
        futures.append(
            remote.remote(
                p[o[0] : o[-1]],
                o - o[0],
                bv,
                gcode[lo:hi],
                keys[lo:hi],
                tref,
                list(kinds),
                n_null,
                seed,
                list(metrics),
                opts,
            )
        )
    parts = ray.get(futures)
    if not parts:
        return block_columns(
            p, offsets, vec, gcode, keys, tables, kinds, n_null, seed, metrics, opts
        )
    return {c: np.concatenate([part[c] for part in parts]) for c in parts[0]}
