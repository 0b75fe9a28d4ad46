"""All topology metrics at once: one trace (:func:`topology_metrics`) or a corpus
(:func:`metrics_table`), in one compiled pass over flat arrays.

The single metrics and their definitions live in :mod:`mechgraph.graphs.metrics`; this
module runs the numba kernels of :mod:`mechgraph.graphs._kernels` over every trace, adds
the derived columns (``diameter_norm``, ``small_world_sigma``) and builds the table.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs import _kernels as K
from mechgraph.graphs.metrics import (
    MetricOptions,
    _sigma_analytic,
    _sigma_sampled,
    _simple_undirected,
)
from mechgraph.graphs.paths import _as_path, offsets_from_ids, step_distances

__all__ = ["METRIC_COLUMNS", "metrics_frame", "metrics_table", "topology_metrics"]


#: Columns of :func:`metrics_table` (and keys of :func:`topology_metrics`), in order.
def _with_derived(raw: tuple[str, ...]) -> tuple[str, ...]:
    """The kernel's raw columns plus the derived ones, each after the column it comes from."""
    after = {"diameter": "diameter_norm", "mean_degree": "small_world_sigma"}
    return tuple(c for name in raw for c in (name, after.get(name)) if c)


METRIC_COLUMNS: tuple[str, ...] = _with_derived(K.RAW_COLUMNS)
_INT_COLUMNS = (
    "n_steps",
    "n_nodes",
    "n_edges",
    "n_transitions",
    "loop_count",
    "revisits",
    "n_cycles",
    "diameter_hops",
)
_BOOL_COLUMNS = ("has_loop", "n_cycles_capped")


# ------------------------------------------------------------------------- batched metrics
def _raw_metrics(
    nodes: np.ndarray, offsets: np.ndarray, dists: np.ndarray | None, opts: MetricOptions
) -> np.ndarray:
    nodes = np.ascontiguousarray(nodes, np.int64)
    offsets = np.ascontiguousarray(offsets, np.int64)
    has_w = dists is not None
    d = np.ascontiguousarray(dists if has_w else np.zeros(nodes.size), np.float64)
    if has_w and d.shape[0] != nodes.shape[0]:
        raise ConfigError(f"got {d.shape[0]} step distances for {nodes.shape[0]} steps")
    bound = int(opts.cycle_length_bound) if opts.cycle_length_bound is not None else 1 << 30
    return K.path_metrics_batch(
        nodes,
        offsets,
        d,
        has_w,
        bool(opts.self_loops),
        opts.distance_agg == "min",
        bound,
        int(opts.max_cycles),
    )


def _finalize(
    raw: np.ndarray, opts: MetricOptions, nodes: np.ndarray, offsets: np.ndarray
) -> dict[str, np.ndarray]:
    """Raw kernel matrix -> named metric columns (derived ones added)."""
    cols = {name: raw[:, i] for i, name in enumerate(K.RAW_COLUMNS)}
    diam, step = cols["diameter"], cols["mean_step_distance"]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["diameter_norm"] = np.where(diam == 0, 0.0, diam / step)
    C = cols["transitivity"] if opts.sigma_clustering == "transitivity" else cols["clustering"]
    if opts.sigma_baseline == "analytic":
        cols["small_world_sigma"] = _sigma_analytic(
            C, cols["avg_path_length"], cols["n_nodes"], cols["mean_degree"]
        )
    else:
        sig = np.full(raw.shape[0], np.nan)
        for b in range(raw.shape[0]):
            p = nodes[offsets[b] : offsets[b + 1]]
            U = _simple_undirected(nx.DiGraph(itertools.pairwise(p.tolist())), p)
            seed = int(np.random.SeedSequence([opts.seed, b]).generate_state(1)[0])
            sig[b] = _sigma_sampled(
                U, float(C[b]), float(cols["avg_path_length"][b]), opts, random.Random(seed)
            )
        cols["small_world_sigma"] = sig
    return {name: cols[name] for name in METRIC_COLUMNS}


def _distances(nodes, offsets, vectors, distances) -> np.ndarray | None:
    if distances is not None:
        return np.asarray(distances, np.float64)
    if vectors is not None:
        v = np.asarray(vectors)
        if v.shape[0] != len(nodes):
            raise ConfigError(f"vectors has {v.shape[0]} rows for {len(nodes)} steps")
        return step_distances(v, offsets)
    return None


def topology_metrics(
    path: Sequence[int] | np.ndarray,
    vectors: np.ndarray | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Every topology metric of one trace.

    Parameters
    ----------
    path : array-like of int, shape (T,)
        Node id of each step.
    vectors : ndarray, shape (T, d), optional
        Step states; needed for the weighted ``diameter``, ``diameter_norm`` and
        ``mean_step_distance`` (NaN without).
    **options
        Fields of :class:`MetricOptions` (``self_loops``, ``cycle_length_bound``,
        ``max_cycles``, ``distance_agg``, ``sigma_baseline``, ``sigma_clustering``,
        ``sigma_nrand``, ``sigma_niter``, ``seed``).

    Returns
    -------
    dict
        Keys :data:`METRIC_COLUMNS`; ints, bools and floats (NaN where undefined).

    Notes
    -----
    O(T log T + n (n + m) log n) plus the bounded cycle search, compiled.

    Examples
    --------
    >>> m = topology_metrics([0, 1, 2, 1, 0, 2, 0])
    >>> m["has_loop"], m["loop_count"], m["revisits"], m["n_cycles"]
    (True, 1, 4, 5)
    """
    opts = MetricOptions.from_options(**options)
    p = _as_path(path)
    offsets = np.array([0, p.size], np.int64)
    cols = _finalize(
        _raw_metrics(p, offsets, _distances(p, offsets, vectors, None), opts), opts, p, offsets
    )
    out: dict[str, Any] = {}
    for name, col in cols.items():
        x = col[0]
        if name in _BOOL_COLUMNS:
            out[name] = bool(x)
        elif name in _INT_COLUMNS and np.isfinite(x):
            out[name] = int(x)
        else:
            out[name] = float(x)
    return out


def metrics_table(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray | None = None,
    *,
    trace_ids: Sequence | np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    distances: np.ndarray | None = None,
    options: MetricOptions | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Topology metrics of many traces at once, one row per trace.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
        Node ids of all steps, traces concatenated.
    offsets : ndarray of int, shape (n_traces + 1,), optional
        Trace boundaries.  Derived from ``trace_ids`` when omitted.
    trace_ids : array-like, optional
        One id per step (contiguous per trace) when ``offsets`` is omitted, else one id
        per trace.  Becomes the ``trace_id`` column.
    vectors : ndarray, shape (N, d), optional
        Step states, for the weighted metrics.
    distances : ndarray, shape (N,), optional
        Precomputed :func:`step_distances` (instead of ``vectors``).
    options : MetricOptions, optional
    **kwargs
        Overrides of ``options`` fields.

    Returns
    -------
    pandas.DataFrame
        ``trace_id`` (when known) then :data:`METRIC_COLUMNS`; counts as nullable ``Int64``,
        flags as ``boolean``.

    Notes
    -----
    One compiled pass over all traces (parallel over the CPU cores); about 0.5 ms per
    trace of 50-300 steps on a busy 2-core machine (``benchmarks/results/graphs.json``).

    Examples
    --------
    >>> t = metrics_table([0, 1, 0, 5, 5], trace_ids=["a", "a", "a", "b", "b"])
    >>> t[["trace_id", "revisits", "n_nodes"]].values.tolist()
    [['a', 1, 2], ['b', 0, 1]]
    """
    opts = MetricOptions.from_options(options, **kwargs)
    p = _as_path(nodes)
    ids = None
    if offsets is None:
        if trace_ids is None:
            offsets = np.array([0, p.size], np.int64)
        else:
            if len(trace_ids) != p.size:
                raise ConfigError(f"got {len(trace_ids)} trace ids for {p.size} steps")
            offsets, ids = offsets_from_ids(trace_ids)
    else:
        offsets = np.asarray(offsets, np.int64)
        if offsets[0] != 0 or offsets[-1] != p.size or np.any(np.diff(offsets) < 0):
            raise ConfigError("offsets must start at 0, end at len(nodes) and not decrease")
        ids = None if trace_ids is None else np.asarray(trace_ids, dtype=object)
        if ids is not None and ids.size != offsets.size - 1:
            raise ConfigError(f"got {ids.size} trace ids for {offsets.size - 1} traces")
    raw = _raw_metrics(p, offsets, _distances(p, offsets, vectors, distances), opts)
    return metrics_frame(_finalize(raw, opts, p, offsets), ids)


def metrics_frame(cols: dict[str, np.ndarray], ids: np.ndarray | None = None) -> pd.DataFrame:
    """DataFrame with the table dtypes from named metric columns."""
    df = pd.DataFrame(cols)
    for c in _INT_COLUMNS:
        if c in df:
            df[c] = pd.array(np.where(np.isfinite(df[c]), df[c], np.nan), dtype="Float64").astype(
                "Int64"
            )
    for c in _BOOL_COLUMNS:
        if c in df:
            df[c] = df[c].astype(bool).astype("boolean")
    if ids is not None:
        df.insert(0, "trace_id", pd.array(ids, dtype=object))
    return df
