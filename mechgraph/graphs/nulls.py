"""Null baselines: the same metrics on shuffled and on random-walk versions of each trace.

Two null models per trace, both seeded:

``shuffle``
    The trace's steps in a random order (nodes and step vectors permuted together):
    same nodes, same visit counts, no sequential structure.
``walk``
    A random walk over the corpus transition matrix (counts of consecutive node pairs,
    self-transitions included, over every trace of the trace's group): same length, same
    start node, first-order Markov dynamics of the corpus.  A walk that reaches a node
    with no observed successor jumps to a node drawn by the group's visit frequencies.
    The length of a walk step u -> v is the mean L2 distance of the corpus' observed
    u -> v transitions (a jump gets the group's mean step distance).

The observed metric is reported as a z-score against ``n_null`` draws of each model:
``z = (observed - mean_null) / std_null`` (sample std), NaN where the null spread is 0
or fewer than 2 null values are finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs.metrics import MetricOptions
from mechgraph.graphs.paths import _as_path, _trace_of_step, step_distances
from mechgraph.graphs.topology import _finalize, _raw_metrics

__all__ = ["NULL_KINDS", "NULL_METRICS", "corpus_walks", "null_zscores", "shuffled_orders"]

NULL_KINDS: tuple[str, ...] = ("shuffle", "walk")
NULL_METRICS: tuple[str, ...] = (
    "loop_count",
    "revisits",
    "n_cycles",
    "diameter_hops",
    "diameter",
    "diameter_norm",
    "clustering",
    "avg_path_length",
    "small_world_sigma",
)
_CHUNK_STEPS = 4_000_000


def shuffled_orders(offsets: np.ndarray, n_null: int, rng: np.random.Generator) -> np.ndarray:
    """Within-trace random permutations of the steps.

    Returns
    -------
    ndarray of int64, shape (n_null, N)
        Row r holds global step indices; ``nodes[orders[r]]`` is the r-th shuffled corpus.

    Examples
    --------
    >>> o = shuffled_orders(np.array([0, 2, 5]), 1, np.random.default_rng(0))
    >>> sorted(o[0, :2].tolist()), sorted(o[0, 2:].tolist())
    ([0, 1], [2, 3, 4])
    """
    offsets = np.asarray(offsets, np.int64)
    seg = _trace_of_step(offsets)
    out = np.empty((n_null, seg.size), np.int64)
    for r in range(n_null):
        out[r] = np.lexsort((rng.random(seg.size), seg))
    return out


class _RowSampler:
    """Vectorised draws from the rows of a sparse non-negative matrix given as
    sorted (row, column) codes and weights."""

    def __init__(
        self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n_rows: int
    ) -> None:
        self.indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)
        self.indices = cols.astype(np.int64)
        self.rowsum = np.bincount(rows, weights=weights, minlength=n_rows)
        cum = np.cumsum(weights)
        row_start = np.r_[0.0, cum][self.indptr[:-1]]
        self.key = rows + (cum - row_start[rows]) / self.rowsum[rows]  # row u in (u, u + 1]

    def draw(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Entry positions (into ``indices``) drawn in each of ``rows`` (non-empty rows)."""
        j = np.searchsorted(self.key, rows + rng.random(rows.size), side="right")
        return np.clip(j, self.indptr[rows], self.indptr[rows + 1] - 1)


def _pairs(a: np.ndarray, b: np.ndarray, n: int, weights: np.ndarray | None = None):
    """Distinct (a, b) pairs sorted by (a, b), their counts and summed weights."""
    codes, inv = np.unique(a * n + b, return_inverse=True)
    counts = np.bincount(inv).astype(np.float64)
    sums = None if weights is None else np.bincount(inv, weights=weights)
    return codes // n, codes % n, counts, sums


def corpus_walks(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray,
    n_null: int,
    rng: np.random.Generator,
    *,
    groups: Sequence | np.ndarray | None = None,
    distances: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random walks over the corpus transition matrix, one per trace and replicate.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
    offsets : ndarray, shape (n_traces + 1,)
    n_null : int
    rng : numpy.random.Generator
    groups : array-like, shape (n_traces,), optional
        Group label of each trace (e.g. its model); each group gets its own transition
        matrix.  Default: one corpus.
    distances : ndarray, shape (N,), optional
        Observed step distances (:func:`step_distances`); when given, walk step lengths
        are returned too.

    Returns
    -------
    walk_nodes : ndarray of int64, shape (n_null, N)
        Same layout as ``nodes`` (walk b of replicate r at ``[r, offsets[b]:offsets[b+1]]``).
    walk_distances : ndarray of float64, shape (n_null, N), or None
        Length of the step from t to t + 1 (NaN at the end of each walk).

    Notes
    -----
    Vectorised over traces and replicates; a Python loop over the step index only.

    Examples
    --------
    >>> w, _ = corpus_walks([0, 1, 0, 1], np.array([0, 4]), 2, np.random.default_rng(0))
    >>> w.tolist()
    [[0, 1, 0, 1], [0, 1, 0, 1]]
    """
    p = _as_path(nodes)
    offsets = np.asarray(offsets, np.int64)
    B, N = offsets.size - 1, p.size
    lengths = np.diff(offsets)
    if groups is None:
        g_codes = np.zeros(B, np.int64)
    else:
        g_codes = pd.factorize(pd.Series(np.asarray(groups, dtype=object)))[0].astype(np.int64)
    if g_codes.size != B:
        raise ConfigError(f"got {g_codes.size} group labels for {B} traces")
    n_groups = int(g_codes.max()) + 1 if B else 1
    kn = int(p.max()) + 1 if N else 1
    step_group = g_codes[_trace_of_step(offsets)]
    state = step_group * kn + p
    S = n_groups * kn
    trans = np.ones(max(N - 1, 0), bool)
    inner = offsets[1:-1] - 1
    trans[inner[(inner >= 0) & (inner < N - 1)]] = False
    d = None if distances is None else np.asarray(distances, np.float64)
    rows, cols, counts, dsums = _pairs(
        state[:-1][trans], state[1:][trans], S, None if d is None else d[:-1][trans]
    )
    sampler = _RowSampler(rows, cols, counts, S)
    vrows, vcols, vcounts, _ = _pairs(step_group, state, S)
    teleport = _RowSampler(vrows, vcols, vcounts, n_groups)
    if d is not None:
        edge_mean = dsums / counts
        moved = trans & (p[:-1] != p[1:])
        gsum = np.bincount(step_group[:-1][moved], weights=d[:-1][moved], minlength=n_groups)
        gcnt = np.bincount(step_group[:-1][moved], minlength=n_groups)
        gmean = np.where(gcnt > 0, gsum / np.maximum(gcnt, 1), 0.0)
    walk = np.zeros((n_null, N), np.int64)
    wdist = np.full((n_null, N), np.nan) if d is not None else None
    s0 = np.zeros(B, np.int64)
    s0[lengths > 0] = state[offsets[:-1][lengths > 0]]
    starts = (offsets[:-1][None, :] + (np.arange(n_null) * N)[:, None]).reshape(-1)
    cur = np.tile(s0, n_null)
    lens = np.tile(lengths, n_null)
    rank = np.argsort(-lens, kind="stable")  # active walkers always form a prefix
    starts, cur, lens = starts[rank], cur[rank], lens[rank]
    flat = walk.reshape(-1)
    flat_d = None if wdist is None else wdist.reshape(-1)
    first = lens > 0
    flat[starts[first]] = cur[first] % kn
    max_len = int(lens.max()) if lens.size else 0
    for t in range(1, max_len):
        na = int(np.searchsorted(-lens, -t, side="left"))
        u = cur[:na]
        nxt = np.empty(na, np.int64)
        step_d = np.empty(na)
        dead = sampler.rowsum[u] == 0
        live = ~dead
        if live.any():
            j = sampler.draw(u[live], rng)
            nxt[live] = sampler.indices[j]
            if d is not None:
                step_d[live] = edge_mean[j]
        if dead.any():
            g = u[dead] // kn
            nxt[dead] = teleport.indices[teleport.draw(g, rng)]
            if d is not None:
                step_d[dead] = gmean[g]
        pos = starts[:na] + t
        flat[pos] = nxt % kn
        if flat_d is not None:
            flat_d[pos - 1] = step_d
        cur[:na] = nxt
    return walk, wdist


def _shuffle_batch(p, offsets, vectors, orders):
    """Nodes and step distances of shuffled replicates (flattened)."""
    if vectors is None:
        return p[orders].reshape(-1), None
    d = np.concatenate(
        [step_distances(vectors, offsets, order=orders[r]) for r in range(orders.shape[0])]
    )
    return p[orders].reshape(-1), d


def null_zscores(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray,
    *,
    vectors: np.ndarray | None = None,
    n_null: int = 100,
    kinds: Sequence[str] = NULL_KINDS,
    groups: Sequence | np.ndarray | None = None,
    seed: int = 0,
    metrics: Sequence[str] = NULL_METRICS,
    options: MetricOptions | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Null means and z-scores of the topology metrics, one row per trace.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
    offsets : ndarray, shape (n_traces + 1,)
    vectors : ndarray, shape (N, d), optional
        Step states (for the weighted metrics; the shuffle null permutes them).
    n_null : int, default 100
        Draws per null model and trace.
    kinds : sequence of {"shuffle", "walk"}
    groups : array-like, shape (n_traces,), optional
        Trace groups with separate transition matrices for the walk null.
    seed : int
        Same seed, same nulls.
    metrics : sequence of str
        Metrics to report (default :data:`NULL_METRICS`).
    options : MetricOptions, optional
        As in :func:`mechgraph.graphs.metrics_table` (keyword overrides accepted).

    Returns
    -------
    pandas.DataFrame
        Columns ``{metric}_null_{kind}`` (null mean) and ``{metric}_z_{kind}``.

    Notes
    -----
    Costs ``n_null`` times the metric pass per kind, plus ``n_null * N * d`` for the
    shuffled step distances.

    Examples
    --------
    >>> z = null_zscores([0, 1, 0, 1, 0, 2, 3, 4], np.array([0, 8]), n_null=20, kinds=["shuffle"])
    >>> "revisits_z_shuffle" in z
    True
    """
    opts = MetricOptions.from_options(options, **kwargs)
    p = _as_path(nodes)
    offsets = np.asarray(offsets, np.int64)
    B, N = offsets.size - 1, p.size
    if int(n_null) < 2:
        raise ConfigError(f"n_null must be >= 2 for a z-score, got {n_null}")
    for k in kinds:
        if k not in NULL_KINDS:
            raise ConfigError(f"unknown null kind {k!r}; choose from {NULL_KINDS}")
    vec = None if vectors is None else np.asarray(vectors)
    if vec is not None and vec.shape[0] != N:
        raise ConfigError(f"vectors has {vec.shape[0]} rows for {N} steps")
    obs_d = step_distances(vec, offsets) if vec is not None else None
    observed = _finalize(_raw_metrics(p, offsets, obs_d, opts), opts, p, offsets)
    out: dict[str, np.ndarray] = {}
    per_chunk = max(1, _CHUNK_STEPS // max(N, 1))
    for ki, kind in enumerate(kinds):
        rng = np.random.default_rng([int(seed), ki])
        s1 = {m: np.zeros(B) for m in metrics}
        s2 = {m: np.zeros(B) for m in metrics}
        cnt = {m: np.zeros(B) for m in metrics}
        done = 0
        while done < n_null:
            reps = min(per_chunk, n_null - done)
            if kind == "shuffle":
                nn, dd = _shuffle_batch(p, offsets, vec, shuffled_orders(offsets, reps, rng))
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
                var = (s2[m] - cnt[m] * mean * mean) / (cnt[m] - 1)
                std = np.sqrt(np.maximum(var, 0))
                z = (observed[m] - mean) / std
            # relative tolerance: a spread below float noise is no spread
            z = np.where((cnt[m] >= 2) & (std > 1e-12 * np.maximum(1.0, np.abs(mean))), z, np.nan)
            out[f"{m}_null_{kind}"] = np.where(cnt[m] > 0, mean, np.nan)
            out[f"{m}_z_{kind}"] = z
    ordered = [f"{m}_{part}_{k}" for m in metrics for k in kinds for part in ("null", "z")]
    return pd.DataFrame({c: out[c] for c in ordered})
