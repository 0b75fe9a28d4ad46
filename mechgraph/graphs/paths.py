"""Node paths: per-trace walks through the node space, and the graphs they trace.

A corpus of paths is stored flat, the way the activation store keeps steps: one
``nodes`` array (the node id of every step, traces one after the other) and an
``offsets`` array of length ``n_traces + 1`` so that trace ``b`` is
``nodes[offsets[b]:offsets[b + 1]]``.  Every function here accepts that layout, so no
per-trace Python object is needed on the hot paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse

from mechgraph.errors import ConfigError

__all__ = [
    "collapse_repeats",
    "offsets_from_ids",
    "revisit_mask",
    "step_distances",
    "trace_graph",
    "transition_matrix",
]


def _as_path(path: Sequence[int] | np.ndarray) -> np.ndarray:
    p = np.asarray(path)
    if p.ndim != 1:
        raise ConfigError(f"a node path must be one-dimensional, got shape {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        if not np.all(np.equal(np.mod(p, 1), 0)):
            raise ConfigError("a node path must hold integer node ids")
    return p.astype(np.int64, copy=False)


def _trace_of_step(offsets: np.ndarray) -> np.ndarray:
    """Trace index of every step of a flat corpus split by ``offsets``."""
    offsets = np.asarray(offsets, np.int64)
    return np.repeat(np.arange(offsets.size - 1), np.diff(offsets))


def offsets_from_ids(trace_ids: Sequence | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of contiguous runs of equal trace ids.

    Parameters
    ----------
    trace_ids : array-like
        One id per step, the rows of one trace contiguous (the store's layout).

    Returns
    -------
    offsets : ndarray of int64, shape (n_traces + 1,)
    ids : ndarray, shape (n_traces,)
        The id of each run, in order.

    Raises
    ------
    ConfigError
        If the rows of one trace are not contiguous.

    Examples
    --------
    >>> offsets_from_ids(["a", "a", "b"])[0].tolist()
    [0, 2, 3]
    """
    ids = pd.Series(np.asarray(trace_ids, dtype=object))
    if len(ids) == 0:
        return np.zeros(1, np.int64), np.asarray([], dtype=object)
    starts = np.flatnonzero(np.r_[True, ids.to_numpy()[1:] != ids.to_numpy()[:-1]])
    run_ids = ids.to_numpy()[starts]
    if len(pd.unique(run_ids)) != len(run_ids):
        dup = pd.Series(run_ids)[pd.Series(run_ids).duplicated()].iloc[0]
        raise ConfigError(f"the steps of trace {dup!r} are not contiguous")
    return np.r_[starts, len(ids)].astype(np.int64), run_ids


def collapse_repeats(path: Sequence[int] | np.ndarray) -> np.ndarray:
    """Drop consecutive repeats of a node: ``[0, 0, 1, 1, 0] -> [0, 1, 0]``.

    Complexity O(T).

    Examples
    --------
    >>> collapse_repeats([0, 0, 1, 1, 0]).tolist()
    [0, 1, 0]
    """
    p = _as_path(path)
    if p.size == 0:
        return p
    return p[np.r_[True, p[1:] != p[:-1]]]


def revisit_mask(
    nodes: Sequence[int] | np.ndarray, offsets: np.ndarray | None = None
) -> np.ndarray:
    """Steps that return to a node visited earlier in the same trace.

    Step t is a *return* when its node occurred at some step before t, but not at step
    t - 1 (staying on a node is not a return).  This is the event that Topology of
    Reasoning counts as a loop; ``revisits`` is the number of such steps.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
        One path, or many concatenated.
    offsets : ndarray of int, shape (n_traces + 1,), optional
        Trace boundaries when ``nodes`` holds several paths.

    Returns
    -------
    ndarray of bool, shape (N,)

    Notes
    -----
    Vectorised over the whole corpus; O(N log N).

    Examples
    --------
    >>> revisit_mask([0, 1, 2, 1, 0, 2, 0]).astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 1]
    """
    p = _as_path(nodes)
    n = p.size
    if offsets is None:
        offsets = np.array([0, n], np.int64)
    offsets = np.asarray(offsets, np.int64)
    if n == 0:
        return np.zeros(0, bool)
    seg = _trace_of_step(offsets)
    pmin = p.min()
    span = int(p.max() - pmin) + 1
    code = seg.astype(np.int64) * span + (p - pmin)
    _, first_idx, inv = np.unique(code, return_index=True, return_inverse=True)
    seen_before = first_idx[inv] < np.arange(n)
    moved = np.ones(n, bool)
    moved[1:] = p[1:] != p[:-1]
    moved[offsets[:-1][offsets[:-1] < n]] = False
    return seen_before & moved


def step_distances(
    vectors: np.ndarray,
    offsets: np.ndarray | None = None,
    *,
    order: np.ndarray | None = None,
    chunk: int = 65536,
) -> np.ndarray:
    """L2 distance from every step to the next step of its trace.

    Parameters
    ----------
    vectors : ndarray, shape (N, d)
        Step states, aligned with the concatenated paths.
    offsets : ndarray, optional
        Trace boundaries; the last step of each trace gets NaN.
    order : ndarray of int, shape (N,), optional
        Read step t as ``vectors[order[t]]`` (e.g. a shuffled order) without copying the
        whole matrix.
    chunk : int
        Rows per block (bounds the float64 working memory).

    Returns
    -------
    ndarray of float64, shape (N,)

    Examples
    --------
    >>> step_distances(np.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [5.0, nan]
    """
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise ConfigError(f"vectors must be 2-D (n_steps, d), got shape {x.shape}")
    n = x.shape[0] if order is None else len(order)
    out = np.full(n, np.nan)
    for lo in range(0, max(n - 1, 0), chunk):
        hi = min(lo + chunk, n - 1)
        if order is None:
            a, b = x[lo:hi], x[lo + 1 : hi + 1]
        else:
            a, b = x[order[lo:hi]], x[order[lo + 1 : hi + 1]]
        diff = a.astype(np.float64) - b.astype(np.float64)
        out[lo:hi] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    if offsets is not None:
        ends = np.asarray(offsets, np.int64)[1:] - 1
        out[ends[ends >= 0]] = np.nan
    return out


def trace_graph(
    path: Sequence[int] | np.ndarray,
    vectors: np.ndarray | None = None,
    *,
    self_loops: bool = False,
) -> nx.DiGraph:
    """Directed transition graph of one node path.

    Nodes are the node ids visited (attribute ``visits``: number of steps on the node,
    ``first_step``: index of the first visit).  There is an edge u -> v for every
    consecutive pair of steps with u != v (and u == v too when ``self_loops``), with
    attributes ``count`` (number of such transitions) and, when ``vectors`` is given,
    ``distance`` (mean L2 distance between the two step vectors over those transitions).

    Parameters
    ----------
    path : array-like of int, shape (T,)
    vectors : ndarray, shape (T, d), optional
    self_loops : bool, default False
        Keep u -> u edges (Topology of Reasoning drops them).

    Returns
    -------
    networkx.DiGraph

    Notes
    -----
    O(T) plus networkx overhead; the metric functions do not need this object (they
    run on arrays), it is meant for inspection and drawing.

    Examples
    --------
    >>> G = trace_graph([0, 1, 0, 1])
    >>> sorted(G.edges(data="count"))
    [(0, 1, 2), (1, 0, 1)]
    """
    p = _as_path(path)
    G = nx.DiGraph()
    if p.size == 0:
        return G
    nodes, first, counts = np.unique(p, return_index=True, return_counts=True)
    for u, f, c in zip(nodes.tolist(), first.tolist(), counts.tolist(), strict=True):
        G.add_node(u, visits=c, first_step=f)
    if vectors is not None:
        vectors = np.asarray(vectors)
        if vectors.shape[0] != p.size:
            raise ConfigError(f"vectors has {vectors.shape[0]} rows for a path of {p.size} steps")
        dist = step_distances(vectors)[:-1]
    else:
        dist = None
    a, b = p[:-1], p[1:]
    keep = np.ones(a.size, bool) if self_loops else a != b
    for i in np.flatnonzero(keep):
        u, v = int(a[i]), int(b[i])
        if G.has_edge(u, v):
            e = G.edges[u, v]
            e["count"] += 1
            if dist is not None:
                e["_sum"] += dist[i]
        else:
            G.add_edge(u, v, count=1)
            if dist is not None:
                G.edges[u, v]["_sum"] = float(dist[i])
    if dist is not None:
        for _, _, e in G.edges(data=True):
            e["distance"] = e.pop("_sum") / e["count"]
    return G


def transition_matrix(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray | None = None,
    *,
    n_nodes: int | None = None,
    weights: np.ndarray | None = None,
) -> sparse.csr_matrix:
    """Counts of consecutive node pairs (u, v) over a corpus, self-transitions included.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
    offsets : ndarray, optional
        Trace boundaries: no transition is counted across two traces.
    n_nodes : int, optional
        Matrix size (default ``max(nodes) + 1``).
    weights : ndarray, shape (N,), optional
        Sum ``weights[t]`` instead of 1 for the transition t -> t + 1 (e.g. the step
        distances, to get per-transition sums).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)

    Examples
    --------
    >>> transition_matrix([0, 1, 0, 1]).toarray().tolist()
    [[0.0, 2.0], [1.0, 0.0]]
    """
    p = _as_path(nodes)
    n = int(p.max()) + 1 if n_nodes is None and p.size else int(n_nodes or 0)
    if p.size < 2:
        return sparse.csr_matrix((n, n))
    valid = np.ones(p.size - 1, bool)
    if offsets is not None:
        ends = np.asarray(offsets, np.int64)[1:-1] - 1
        valid[ends[(ends >= 0) & (ends < p.size - 1)]] = False
    data = np.ones(valid.sum()) if weights is None else np.asarray(weights, float)[:-1][valid]
    m = sparse.coo_matrix((data, (p[:-1][valid], p[1:][valid])), shape=(n, n)).tocsr()
    m.sum_duplicates()
    return m
