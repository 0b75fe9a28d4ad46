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

:func:`null_zscores` draws and measures the nulls in one compiled pass
(:mod:`mechgraph.graphs._null_kernels`).  Draw r of a trace uses a random stream keyed
by ``(seed, kind, trace key, r)`` only (the trace key is its index in the corpus, or
``trace_keys``), so a corpus split into slices (``traces=``, or ``engine="ray"``) gives
exactly the numbers of the whole.  The walk's transition tables (:func:`walk_tables`)
are built once per corpus.  :func:`shuffled_orders` and :func:`corpus_walks` are the
vectorised NumPy draws (one ``Generator`` for the whole corpus) that other nulls use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs import _null_kernels as NK
from mechgraph.graphs.metrics import MetricOptions
from mechgraph.graphs.paths import _as_path, _trace_of_step, step_distances

__all__ = [
    "NULL_KINDS",
    "NULL_METRICS",
    "WalkTables",
    "corpus_walks",
    "null_zscores",
    "shuffled_orders",
    "walk_tables",
]

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


@dataclass
class _Transitions:
    """Counts of a corpus' consecutive (group, node) pairs: what both walk nulls sample."""

    labels: tuple | None
    kn: int
    S: int
    n_groups: int
    step_group: np.ndarray
    state: np.ndarray
    d: np.ndarray | None
    rows: np.ndarray
    cols: np.ndarray
    counts: np.ndarray
    dsums: np.ndarray | None
    vrows: np.ndarray
    vcols: np.ndarray
    vcounts: np.ndarray
    gmean: np.ndarray

    @classmethod
    def count(cls, p, offsets, groups, distances) -> _Transitions:
        B, N = offsets.size - 1, p.size
        labels = None
        if groups is None:
            g_codes = np.zeros(B, np.int64)
        else:
            g_codes, uniq = pd.factorize(pd.Series(np.asarray(groups, dtype=object)))
            g_codes, labels = g_codes.astype(np.int64), tuple(uniq.tolist())
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
        if d is not None and d.shape[0] != N:
            raise ConfigError(f"got {d.shape[0]} step distances for {N} steps")
        rows, cols, counts, dsums = _pairs(
            state[:-1][trans], state[1:][trans], S, None if d is None else d[:-1][trans]
        )
        vrows, vcols, vcounts, _ = _pairs(step_group, state, S)
        gmean = np.zeros(n_groups)
        if d is not None:
            moved = trans & (p[:-1] != p[1:])
            gsum = np.bincount(step_group[:-1][moved], weights=d[:-1][moved], minlength=n_groups)
            gcnt = np.bincount(step_group[:-1][moved], minlength=n_groups)
            gmean = np.where(gcnt > 0, gsum / np.maximum(gcnt, 1), 0.0)
        return cls(
            labels,
            kn,
            S,
            n_groups,
            step_group,
            state,
            d,
            rows,
            cols,
            counts,
            dsums,
            vrows,
            vcols,
            vcounts,
            gmean,
        )


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
    c = _Transitions.count(p, offsets, groups, distances)
    kn, S, n_groups, state, d = c.kn, c.S, c.n_groups, c.state, c.d
    sampler = _RowSampler(c.rows, c.cols, c.counts, S)
    teleport = _RowSampler(c.vrows, c.vcols, c.vcounts, n_groups)
    if d is not None:
        edge_mean = c.dsums / c.counts
        gmean = c.gmean
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


# ------------------------------------------------------------------------ compiled nulls
@dataclass(frozen=True)
class WalkTables:
    """Transition tables of the walk null, built once per corpus by :func:`walk_tables`.

    States are ``group * kn + node``.  ``indptr``/``indices``/``cum`` hold, per state, its
    observed successor states and their cumulative counts; ``edge_mean`` the mean
    observed length of each transition (0 without distances).  ``tptr``/``tind``/``tcum``
    hold per group the visited states and cumulative visit counts (the jump of a walk
    stuck on a node without successor), ``gmean`` the group's mean step length.
    ``labels`` are the group labels in code order (``None``: one corpus, no labels).
    Small (a few entries per observed transition): ship it to workers as it is.
    """

    labels: tuple | None
    kn: int
    indptr: np.ndarray
    indices: np.ndarray
    cum: np.ndarray
    edge_mean: np.ndarray
    tptr: np.ndarray
    tind: np.ndarray
    tcum: np.ndarray
    gmean: np.ndarray
    has_distances: bool

    def group_codes(self, groups: Sequence | np.ndarray | None, n_traces: int) -> np.ndarray:
        """Code of each trace's group (``ConfigError`` for a label the tables lack)."""
        if groups is None:
            if self.labels is not None and len(self.labels) > 1:
                raise ConfigError("the walk tables hold several groups: pass groups=...")
            return np.zeros(n_traces, np.int64)
        g = np.asarray(groups, dtype=object)
        if g.size != n_traces:
            raise ConfigError(f"got {g.size} group labels for {n_traces} traces")
        labels = (None,) if self.labels is None else self.labels
        codes = pd.Index(pd.Series(list(labels), dtype=object)).get_indexer(g)
        if np.any(codes < 0):
            raise ConfigError(f"group {g[codes < 0][0]!r} is not in the walk tables")
        return codes.astype(np.int64)


def _within_row_cum(rows: np.ndarray, weights: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    c = np.cumsum(weights)
    return c - np.r_[0.0, c][indptr[:-1]][rows]


def walk_tables(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray,
    *,
    groups: Sequence | np.ndarray | None = None,
    distances: np.ndarray | None = None,
) -> WalkTables:
    """Transition tables of the walk null for a whole corpus (built once, then shared).

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
    offsets : ndarray, shape (n_traces + 1,)
    groups : array-like, shape (n_traces,), optional
        Group label of each trace; each group gets its own transition matrix.
    distances : ndarray, shape (N,), optional
        Observed step distances (:func:`step_distances`), for the walk step lengths.

    Returns
    -------
    WalkTables

    Examples
    --------
    >>> t = walk_tables([0, 1, 0, 1], np.array([0, 4]))
    >>> t.indices.tolist(), t.cum.tolist()
    ([1, 0], [2.0, 1.0])
    """
    c = _Transitions.count(_as_path(nodes), np.asarray(offsets, np.int64), groups, distances)
    rows, cols, counts, dsums, S, n_groups, d = (
        c.rows,
        c.cols,
        c.counts,
        c.dsums,
        c.S,
        c.n_groups,
        c.d,
    )
    labels, kn, gmean = c.labels, c.kn, c.gmean
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=S))].astype(np.int64)
    tptr = np.r_[0, np.cumsum(np.bincount(c.vrows, minlength=n_groups))].astype(np.int64)
    vrows, vcols, vcounts = c.vrows, c.vcols, c.vcounts
    return WalkTables(
        labels=labels,
        kn=kn,
        indptr=indptr,
        indices=cols.astype(np.int64),
        cum=_within_row_cum(rows, counts, indptr),
        edge_mean=np.zeros(rows.size) if d is None else dsums / counts,
        tptr=tptr,
        tind=vcols.astype(np.int64),
        tcum=_within_row_cum(vrows, vcounts, tptr),
        gmean=np.asarray(gmean, np.float64),
        has_distances=d is not None,
    )


def _trace_keys(trace_keys, n_traces: int) -> np.ndarray:
    """uint64 stream key of every trace: its index, or a given int / hashed key."""
    if trace_keys is None:
        return np.arange(n_traces, dtype=np.uint64)
    k = np.asarray(trace_keys)
    if k.shape != (n_traces,):
        raise ConfigError(f"got {k.size} trace keys for {n_traces} traces")
    if k.size and np.issubdtype(k.dtype, np.integer):
        out = k.astype(np.int64).view(np.uint64)
    else:
        out = np.array(
            [
                int.from_bytes(hashlib.blake2b(str(x).encode(), digest_size=8).digest(), "little")
                for x in k.tolist()
            ],
            np.uint64,
        )
    if np.unique(out).size != out.size:
        raise ConfigError("trace_keys must be unique (one random stream per trace)")
    return out


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
    traces: slice | tuple[int, int] | None = None,
    trace_keys: Sequence | np.ndarray | None = None,
    tables: WalkTables | None = None,
    engine: Literal["numba", "ray"] = "numba",
    n_tasks: int | None = None,
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
    traces : slice or (start, stop), optional
        Compute only these traces (the walk tables still come from the whole corpus):
        the rows equal those of the whole result, so slices can go to different workers.
    trace_keys : array-like, shape (n_traces,), optional
        Unique key of each trace's random streams (ints, or ids that get hashed); default
        the trace's index.  With keys, a trace's nulls do not depend on its position.
    tables : WalkTables, optional
        Walk tables built once for the corpus (:func:`walk_tables`); then ``nodes`` may be
        any part of it (give its ``trace_keys`` and ``groups``).  Default: built from
        ``nodes``.
    engine : {"numba", "ray"}
        ``"ray"`` spreads trace slices over Ray tasks (same numbers).
    n_tasks : int, optional
        Ray tasks (default: the CPUs Ray sees).

    Returns
    -------
    pandas.DataFrame
        Columns ``{metric}_null_{kind}`` (null mean) and ``{metric}_z_{kind}``.

    Notes
    -----
    One compiled pass per kind, parallel over traces: each draw is generated and measured
    in place (no Python loop per draw).  Draw r of a trace uses the stream ``(seed, kind,
    trace key, r)`` only: the same for any slicing, chunking or worker.  Generating the
    draws is cheap; the cost is the metric pass on each of the ``n_null`` draws per kind
    (a shuffled trace's graph has more edges and cycles than the trace's own), so the
    time is about ``2 * n_null`` times that of :func:`metrics_table`
    (``benchmarks/results/nulls.json``).

    Examples
    --------
    >>> z = null_zscores([0, 1, 0, 1, 0, 2, 3, 4], np.array([0, 8]), n_null=20, kinds=["shuffle"])
    >>> "revisits_z_shuffle" in z
    True
    >>> nodes, off = [0, 1, 0, 2, 1, 0, 1, 2], np.array([0, 3, 5, 8])
    >>> whole = null_zscores(nodes, off, n_null=10)
    >>> part = null_zscores(nodes, off, n_null=10, traces=(1, 3))
    >>> whole.iloc[1:].reset_index(drop=True).equals(part)
    True
    """
    opts = MetricOptions.from_options(options, **kwargs)
    p = _as_path(nodes)
    offsets = np.asarray(offsets, np.int64)
    B, N = offsets.size - 1, p.size
    if int(n_null) < 2:
        raise ConfigError(f"n_null must be >= 2 for a z-score, got {n_null}")
    n_null = int(n_null)
    for k in kinds:
        if k not in NULL_KINDS:
            raise ConfigError(f"unknown null kind {k!r}; choose from {NULL_KINDS}")
    if engine not in ("numba", "ray"):
        raise ConfigError(f"engine must be 'numba' or 'ray', got {engine!r}")
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != N or np.any(np.diff(offsets) < 0):
        raise ConfigError("offsets must start at 0, end at len(nodes) and not decrease")
    if N and p.min() < 0:
        raise ConfigError("node ids must be >= 0")
    vec = None if vectors is None else np.asarray(vectors)
    if vec is not None and (vec.ndim != 2 or vec.shape[0] != N):
        raise ConfigError(f"vectors must have shape (n_steps={N}, d), got {vec.shape}")
    if "walk" in kinds:
        if tables is None:
            obs_d = step_distances(vec, offsets) if vec is not None else None
            tables = walk_tables(p, offsets, groups=groups, distances=obs_d)
        elif vec is not None and not tables.has_distances:
            raise ConfigError("the walk tables were built without distances; vectors given")
        if N and p.max() >= tables.kn:
            raise ConfigError(f"node {int(p.max())} is not in the walk tables")
        gcode = tables.group_codes(groups, B)
        empty = (tables.tptr[gcode + 1] == tables.tptr[gcode]) & (np.diff(offsets) > 0)
        if empty.any():
            raise ConfigError("a trace's group has no visited node in the walk tables")
    else:
        gcode = np.zeros(B, np.int64)
    keys = _trace_keys(trace_keys, B)
    if traces is not None:
        lo, hi, stride = traces.indices(B) if isinstance(traces, slice) else (*map(int, traces), 1)
        if stride != 1 or not 0 <= lo <= hi <= B:
            raise ConfigError(f"traces must be a contiguous range inside 0..{B}, got {traces}")
        o = offsets[lo : hi + 1]
        p, vec = p[o[0] : o[-1]], None if vec is None else vec[o[0] : o[-1]]
        offsets, gcode, keys = o - o[0], gcode[lo:hi], keys[lo:hi]
    args = (p, offsets, vec, gcode, keys, tables, list(kinds), n_null, seed, list(metrics), opts)
    if engine == "ray":
        out = NK.ray_columns(*args, n_tasks)
    else:
        out = NK.block_columns(*args)
    ordered = [f"{m}_{part}_{k}" for m in metrics for k in kinds for part in ("null", "z")]
    return pd.DataFrame({c: out[c] for c in ordered})
