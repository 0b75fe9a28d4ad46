"""Topology metrics of reasoning graphs (networkx-style plain functions).

Two levels:

* path metrics (``has_loop``, ``loop_count``, ``revisits``) take a node path;
* graph metrics (``n_cycles``, ``diameter``, ``clustering``, ``avg_path_length``,
  ``small_world_sigma``) take a networkx graph, e.g. from
  :func:`mechgraph.graphs.trace_graph`.

:func:`mechgraph.graphs.topology_metrics` computes all of them for one trace and
:func:`mechgraph.graphs.metrics_table` for a whole corpus in one compiled pass
(:mod:`mechgraph.graphs.topology`).  Definitions are in ``docs/graphs.md``; in short:

* the graph of a trace has one node per node id visited and an edge u -> v for each
  consecutive pair of steps with u != v (self-loops only when asked);
* ``diameter_hops`` / ``diameter`` are the largest *finite* directed shortest-path
  lengths (hops / sum of edge ``distance``), as in Topology of Reasoning;
* ``diameter_norm`` = ``diameter`` / ``mean_step_distance`` (the mean L2 distance of the
  trace's node-changing transitions): the diameter in units of a typical step, which does
  not grow with the layer's activation norm;
* ``clustering``, ``avg_path_length`` and ``small_world_sigma`` use the undirected simple
  graph (a walk is always connected there).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.graphs import _kernels as K
from mechgraph.graphs.paths import _as_path, revisit_mask

__all__ = [
    "MetricOptions",
    "avg_path_length",
    "clustering",
    "diameter",
    "has_loop",
    "loop_count",
    "n_cycles",
    "revisits",
    "small_world_sigma",
]

#: Default bound on the length (number of nodes) of the simple cycles counted.
DEFAULT_CYCLE_BOUND = 10
#: Default cap on the number of cycles counted per graph.
DEFAULT_MAX_CYCLES = 1_000_000


@dataclass
class MetricOptions:
    """Options of the topology metrics (saved next to every metrics table).

    Parameters
    ----------
    self_loops : bool
        Keep u -> u edges in the graph (they count as edges and as 1-cycles). Default
        False, as in Topology of Reasoning.
    cycle_length_bound : int or None
        Count simple cycles of at most this many nodes (``None``: no bound, which can
        take exponential time on dense graphs).
    max_cycles : int
        Stop counting at this many cycles; ``n_cycles_capped`` then says so.
    distance_agg : {"mean", "min"}
        How an edge's ``distance`` aggregates the step distances of its transitions.
        ``"min"`` reproduces the released Topology of Reasoning code, whose Dijkstra
        sees each transition as a parallel edge.
    sigma_baseline : {"analytic", "sampled"}
        Random-graph baseline of ``small_world_sigma``: Erdos-Renyi expectations
        ``C_r = k / (n - 1)``, ``L_r = ln n / ln k`` (fast, default), or the mean over
        ``sigma_nrand`` degree-preserving rewirings (``networkx.random_reference``, as
        ``networkx.sigma`` does; slow).
    sigma_clustering : {"average", "transitivity"}
        Clustering used in sigma: the average local coefficient (Watts-Strogatz,
        default) or the global transitivity (what ``networkx.sigma`` uses).
    sigma_nrand, sigma_niter : int
        Number of random graphs and rewiring rounds per edge for the sampled baseline.
    seed : int
        Seed of the sampled baseline.
    """

    self_loops: bool = False
    cycle_length_bound: int | None = DEFAULT_CYCLE_BOUND
    max_cycles: int = DEFAULT_MAX_CYCLES
    distance_agg: Literal["mean", "min"] = "mean"
    sigma_baseline: Literal["analytic", "sampled"] = "analytic"
    sigma_clustering: Literal["average", "transitivity"] = "average"
    sigma_nrand: int = 10
    sigma_niter: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cycle_length_bound is not None and int(self.cycle_length_bound) < 1:
            raise ConfigError(
                f"cycle_length_bound must be >= 1 or None, got {self.cycle_length_bound}"
            )
        if int(self.max_cycles) < 1:
            raise ConfigError(f"max_cycles must be >= 1, got {self.max_cycles}")
        _check_choice("distance_agg", self.distance_agg, ("mean", "min"))
        _check_choice("sigma_baseline", self.sigma_baseline, ("analytic", "sampled"))
        _check_choice("sigma_clustering", self.sigma_clustering, ("average", "transitivity"))
        if int(self.sigma_nrand) < 1 or int(self.sigma_niter) < 1:
            raise ConfigError("sigma_nrand and sigma_niter must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the options."""
        return asdict(self)

    @classmethod
    def from_options(cls, options: MetricOptions | None = None, **kwargs: Any) -> MetricOptions:
        """An options object from another one and/or keyword overrides."""
        base = asdict(options) if options is not None else {}
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown metric option(s): {sorted(unknown)}")
        return cls(**{**base, **kwargs})


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")


# ----------------------------------------------------------------------------- path metrics
def revisits(path: Sequence[int] | np.ndarray) -> int:
    """Number of steps that return to a node visited earlier (not at the step before).

    Parameters
    ----------
    path : array-like of int
        Node id of each step.

    Returns
    -------
    int

    Notes
    -----
    O(T log T).  Staying on a node (a consecutive repeat) is not a revisit.

    Examples
    --------
    >>> revisits([0, 1, 2, 1, 0, 2, 0])
    4
    """
    return int(revisit_mask(path).sum())


def has_loop(path: Sequence[int] | np.ndarray) -> bool:
    """Whether the walk comes back to a node with another node in between.

    Topology of Reasoning's definition (consecutive repeats are not loops).  O(T log T).

    Examples
    --------
    >>> has_loop([0, 1, 2, 1]), has_loop([0, 0, 1])
    (True, False)
    """
    return bool(revisit_mask(path).any())


def loop_count(path: Sequence[int] | np.ndarray) -> int:
    """Topology of Reasoning's loop count.

    The first node that the walk revisits (with another node in between) is the loop
    node; the count is its number of visits, consecutive repeats collapsed, minus one.
    0 when the walk never loops.  O(T log T).

    Examples
    --------
    >>> loop_count([0, 1, 2, 1, 0, 2, 0])
    1
    >>> loop_count([0, 1, 0, 0, 1, 0])
    2
    """
    p = _as_path(path)
    mask = revisit_mask(p)
    if not mask.any():
        return 0
    u = p[np.argmax(mask)]
    on = p == u
    entries = on & np.r_[True, ~on[:-1]]
    return int(entries.sum()) - 1


# ---------------------------------------------------------------------------- graph metrics
def _graph_arrays(G: nx.Graph, weight: str | None = None):
    """Local-id edge arrays of a networkx graph (self-loops split off)."""
    index = {u: i for i, u in enumerate(G)}
    src, dst, w = [], [], []
    for u, v, d in G.edges(data=True):
        if u == v:
            continue
        if weight is not None:
            if weight not in d:
                raise ConfigError(f"edge ({u!r}, {v!r}) has no {weight!r} attribute")
            x = float(d[weight])
            if not x >= 0:
                raise ConfigError(f"edge ({u!r}, {v!r}) has a negative or NaN {weight!r}: {x}")
        else:
            x = 1.0
        src.append(index[u])
        dst.append(index[v])
        w.append(x)
        if not G.is_directed():
            src.append(index[v])
            dst.append(index[u])
            w.append(x)
    return (
        len(index),
        np.asarray(src, np.int64),
        np.asarray(dst, np.int64),
        np.asarray(w, np.float64),
        nx.number_of_selfloops(G),
    )


def n_cycles(
    G: nx.DiGraph,
    length_bound: int | None = DEFAULT_CYCLE_BOUND,
    max_cycles: int = DEFAULT_MAX_CYCLES,
) -> int:
    """Number of simple directed cycles with at most ``length_bound`` nodes.

    Equals ``sum(1 for _ in nx.simple_cycles(G, length_bound))`` (self-loops count as
    cycles of length 1), computed by a compiled depth-first search that is pruned with the
    hop distance back to the cycle's smallest node.

    Parameters
    ----------
    G : networkx.DiGraph
    length_bound : int or None, default 10
        ``None`` counts every simple cycle (exponential in the worst case).
    max_cycles : int, default 1_000_000
        Stop counting there (the result is then a lower bound).

    Returns
    -------
    int

    Notes
    -----
    Complexity O(n (n + m)) for the pruning searches plus O(number of length-bounded
    simple paths that can still close), bounded by ``max_cycles`` closures.

    Examples
    --------
    >>> n_cycles(nx.DiGraph([(0, 1), (1, 0), (1, 2), (2, 0)]))
    2
    """
    if not G.is_directed():
        raise ConfigError("n_cycles expects a directed graph (networkx.DiGraph)")
    n, src, dst, _, n_self = _graph_arrays(G)
    bound = n if length_bound is None else int(length_bound)
    if bound < 1:
        raise ConfigError(f"length_bound must be >= 1 or None, got {length_bound}")
    indptr, indices, _ = K.csr_sorted(n, src, dst, np.zeros(src.size))
    rindptr, rindices, _ = K.csr_sorted(n, dst, src, np.zeros(src.size))
    c, _ = K.count_cycles(n, indptr, indices, rindptr, rindices, bound, int(max_cycles))
    return int(min(c + n_self, max_cycles))


def diameter(G: nx.Graph, weight: str | None = "distance") -> float:
    """Largest finite shortest-path length over all ordered pairs of nodes.

    Unreachable pairs are ignored (Topology of Reasoning's definition), so this is
    defined for every graph: 0 for a graph without edges.  Directed graphs use directed
    paths.

    Parameters
    ----------
    G : networkx.Graph or networkx.DiGraph
    weight : str or None, default "distance"
        Edge attribute holding a non-negative length; ``None`` counts hops.

    Returns
    -------
    float (an int when ``weight`` is None)

    Notes
    -----
    Dijkstra from every node, O(n m log n); BFS when unweighted, O(n (n + m)).  For a
    strongly connected graph it equals ``networkx.diameter(G, weight=weight)``.

    Examples
    --------
    >>> diameter(nx.DiGraph([(0, 1), (1, 2)]), weight=None)
    2
    """
    n, src, dst, w, _ = _graph_arrays(G, weight)
    indptr, indices, weights = K.csr_sorted(n, src, dst, w)
    if weight is None:
        return int(K.bfs_all_pairs(n, indptr, indices)[0])
    return float(K.dijkstra_max(n, indptr, indices, weights))


def clustering(G: nx.Graph) -> float:
    """Average clustering coefficient of the undirected simple graph underlying ``G``.

    Equals ``nx.average_clustering(nx.Graph(G))`` with self-loops removed (nodes of degree
    below 2 count as 0).  NaN for an empty graph.

    Notes
    -----
    O(sum of d(v)^2).

    Examples
    --------
    >>> clustering(nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3)]))
    0.5833333333333334
    """
    n, src, dst, _, _ = _graph_arrays(G)
    uptr, uind, _ = K.undirected_csr(n, src, dst)
    return float(K.clustering_stats(n, uptr, uind)[0])


def avg_path_length(G: nx.Graph, directed: bool = False) -> float:
    """Average shortest-path length in hops.

    Parameters
    ----------
    G : networkx.Graph or networkx.DiGraph
    directed : bool, default False
        False: over all ordered pairs of the undirected simple graph underlying ``G``
        (NaN when that graph is disconnected; the graph of one walk never is).  True: over
        the ordered pairs (u, v) with v reachable from u along directed edges (NaN when no
        pair is reachable).

    Returns
    -------
    float
        0.0 for a one-node graph, NaN for an empty one.

    Notes
    -----
    BFS from every node, O(n (n + m)).  With ``directed=False`` on a connected graph it
    equals ``nx.average_shortest_path_length(nx.Graph(G))``.

    Examples
    --------
    >>> avg_path_length(nx.DiGraph([(0, 1), (1, 2)]))
    1.3333333333333333
    >>> avg_path_length(nx.DiGraph([(0, 1), (1, 2)]), directed=True)
    1.3333333333333333
    """
    n, src, dst, _, _ = _graph_arrays(G)
    if n == 0:
        return float("nan")
    if n == 1:
        return 0.0
    if directed:
        indptr, indices, _ = K.csr_sorted(n, src, dst, np.zeros(src.size))
        _, total, pairs = K.bfs_all_pairs(n, indptr, indices)
        return total / pairs if pairs else float("nan")
    return _undirected_apl(n, *K.undirected_csr(n, src, dst)[:2])


def _undirected_apl(n: int, uptr: np.ndarray, uind: np.ndarray) -> float:
    """Mean hop distance of a symmetric CSR graph (0 for one node, NaN if empty/disconnected)."""
    if n == 0:
        return float("nan")
    if n == 1:
        return 0.0
    _, total, pairs = K.bfs_all_pairs(n, uptr, uind)
    return total / pairs if pairs == n * (n - 1) else float("nan")


def _simple_undirected(G: nx.Graph, nodes: np.ndarray | None = None) -> nx.Graph:
    """Undirected simple graph of ``G`` (self-loops dropped), plus isolated ``nodes``."""
    U = nx.Graph()
    U.add_nodes_from(G)
    if nodes is not None:
        U.add_nodes_from(np.unique(nodes).tolist())
    U.add_edges_from((u, v) for u, v in G.edges() if u != v)
    return U


def _sigma_analytic(C, L, n, k) -> np.ndarray:
    C, L, n, k = (np.asarray(x, np.float64) for x in (C, L, n, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        c_rand = k / (n - 1)
        l_rand = np.log(n) / np.log(k)
        sigma = (C / c_rand) / (L / l_rand)
    ok = (n >= 3) & (k > 1) & np.isfinite(L) & (L > 0) & np.isfinite(C)
    return np.where(ok, sigma, np.nan)


def _sigma_sampled(
    U: nx.Graph, C: float, L: float, opts: MetricOptions, rng: random.Random
) -> float:
    """Sigma with a degree-preserving rewired baseline (as ``networkx.sigma``)."""
    if U.number_of_nodes() < 4 or U.number_of_edges() < 2 or not nx.is_connected(U):
        return float("nan")
    cs, ls = [], []
    for _ in range(opts.sigma_nrand):
        R = nx.random_reference(U, niter=opts.sigma_niter, seed=rng)
        cs.append(
            nx.transitivity(R)
            if opts.sigma_clustering == "transitivity"
            else nx.average_clustering(R)
        )
        ls.append(nx.average_shortest_path_length(R))
    c_rand, l_rand = float(np.mean(cs)), float(np.mean(ls))
    if c_rand == 0 or L == 0:
        return float("nan")
    return (C / c_rand) / (L / l_rand)


def small_world_sigma(
    G: nx.Graph,
    baseline: Literal["analytic", "sampled"] = "analytic",
    clustering: Literal["average", "transitivity"] = "average",
    nrand: int = 10,
    niter: int = 100,
    seed: int | None = 0,
) -> float:
    """Small-world index sigma = (C / C_r) / (L / L_r) of the undirected simple graph.

    Parameters
    ----------
    G : networkx.Graph or networkx.DiGraph
        Directed graphs are made undirected, self-loops dropped.
    baseline : {"analytic", "sampled"}, default "analytic"
        ``"analytic"``: Erdos-Renyi expectations with the same n and mean degree k,
        ``C_r = k / (n - 1)`` and ``L_r = ln n / ln k``.  ``"sampled"``: means over
        ``nrand`` degree-preserving rewirings (``networkx.random_reference``); with
        ``clustering="transitivity"`` and an int ``seed`` this reproduces
        ``networkx.sigma(G, niter, nrand, seed)`` exactly.
    clustering : {"average", "transitivity"}, default "average"
    nrand, niter : int
        Sampled baseline only.
    seed : int or None
        Sampled baseline only.

    Returns
    -------
    float
        NaN where sigma is undefined: fewer than 3 nodes (4 when sampled), mean degree
        k <= 1, a disconnected graph, or a zero random clustering.

    Notes
    -----
    Analytic: O(sum d(v)^2 + n (n + m)), the cost of C and L.  Sampled: ``nrand`` times
    ``niter * m`` edge swaps plus C and L of each random graph, in networkx (slow).

    Examples
    --------
    >>> round(small_world_sigma(nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3)])), 3)
    1.313
    """
    opts = MetricOptions(
        sigma_baseline=baseline,
        sigma_clustering=clustering,
        sigma_nrand=nrand,
        sigma_niter=niter,
        seed=seed if seed is not None else 0,
    )
    n, src, dst, _, _ = _graph_arrays(G)
    uptr, uind, m_u = K.undirected_csr(n, src, dst)
    c_avg, c_trans = K.clustering_stats(n, uptr, uind) if n else (np.nan, np.nan)
    C = c_trans if clustering == "transitivity" else c_avg
    L = _undirected_apl(n, uptr, uind)
    if baseline == "analytic":
        return float(_sigma_analytic(C, L, n, 2.0 * m_u / n if n else 0.0))
    return _sigma_sampled(_simple_undirected(G), C, L, opts, random.Random(seed))
