"""Persistent homology of step trajectories (H1: loops), with null baselines.

A Vietoris-Rips filtration on the step vectors alone ignores the order of the steps, so it
cannot tell a trajectory that comes back from one that does not.  The *trajectory
filtration* used here puts every consecutive pair of steps at distance 0 (the path is
present from the start) and every other pair at its L2 distance.  A straight trajectory
then has no H1 class (each shortcut is filled by the triangle it closes); a walk that comes
back near an earlier point creates a loop that lives until the shortcut chords fill it.
``trajectory=False`` gives the plain point-cloud filtration.

Reported per trace: ``h1_count`` (bars with persistence above ``min_persistence`` times
the mean step distance), ``h1_total_persistence`` (sum of death - birth),
``h1_max_persistence`` and ``h1_total_persistence_norm`` (total / mean consecutive step
distance, comparable across layers).  The null baselines are those of
:mod:`mechgraph.graphs.nulls`: shuffled step order, and random walks over the corpus
transition matrix whose visits emit a random step vector of the visited node.

Needs ``ripser`` (``pip install 'mechgraph[topology]'``), imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs.nulls import NULL_KINDS, corpus_walks, shuffled_orders
from mechgraph.graphs.paths import _as_path, _trace_of_step

__all__ = ["HOMOLOGY_COLUMNS", "homology_table", "trajectory_homology"]

HOMOLOGY_COLUMNS: tuple[str, ...] = (
    "h1_count",
    "h1_total_persistence",
    "h1_max_persistence",
    "h1_total_persistence_norm",
)


def _ripser():
    try:
        from ripser import ripser
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "persistent homology needs the 'ripser' package: pip install 'mechgraph[topology]' "
            "(or pip install ripser)"
        ) from exc
    return ripser


def _pairwise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def trajectory_homology(
    vectors: np.ndarray,
    *,
    trajectory: bool = True,
    min_persistence: float = 0.0,
) -> dict[str, float]:
    """H1 summary of one step trajectory.

    Parameters
    ----------
    vectors : ndarray, shape (T, d)
        Step states in order.
    trajectory : bool, default True
        Use the trajectory filtration (consecutive steps at distance 0).
    min_persistence : float, default 0
        Count bars whose persistence exceeds this fraction of the mean consecutive step
        distance (0: every bar above float noise).

    Returns
    -------
    dict
        :data:`HOMOLOGY_COLUMNS`.  A trajectory of fewer than 4 steps has no H1 (zeros);
        the normalised total is NaN when all steps coincide.

    Notes
    -----
    O(T^2 d) for the distances plus ripser's H1 computation (about O(T^3) worst case).

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    >>> circle = np.c_[np.cos(t), np.sin(t)]
    >>> trajectory_homology(circle)["h1_count"] >= 1
    True
    """
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2:
        raise ConfigError(f"vectors must be 2-D (T, d), got shape {x.shape}")
    T = x.shape[0]
    step = float(np.mean(np.linalg.norm(np.diff(x, axis=0), axis=1))) if T > 1 else float("nan")
    zeros = {
        "h1_count": 0.0,
        "h1_total_persistence": 0.0,
        "h1_max_persistence": 0.0,
        "h1_total_persistence_norm": 0.0 if step > 0 else float("nan"),
    }
    if T < 4:
        return zeros
    D = _pairwise(x)
    if trajectory:
        i = np.arange(T - 1)
        D[i, i + 1] = D[i + 1, i] = 0.0
    dgm = _ripser()(D, distance_matrix=True, maxdim=1)["dgms"][1]
    pers = dgm[:, 1] - dgm[:, 0] if dgm.size else np.zeros(0)
    pers = pers[np.isfinite(pers)]
    scale = step if step > 0 else float(D.max()) or 1.0
    pers = pers[pers > max(min_persistence * scale, 1e-9 * scale)]
    total = float(pers.sum())
    return {
        "h1_count": float(pers.size),
        "h1_total_persistence": total,
        "h1_max_persistence": float(pers.max()) if pers.size else 0.0,
        "h1_total_persistence_norm": total / step if step > 0 else float("nan"),
    }


def _member_sampler(nodes: np.ndarray, offsets: np.ndarray, groups: np.ndarray):
    """For each (group, node): the global indices of its steps, for random draws."""
    seg = _trace_of_step(offsets)
    kn = int(nodes.max()) + 1
    key = groups[seg] * kn + nodes
    order = np.argsort(key, kind="stable")
    skey = key[order]
    return kn, order, skey


def homology_table(
    vectors: np.ndarray,
    offsets: np.ndarray,
    *,
    nodes: Sequence[int] | np.ndarray | None = None,
    n_null: int = 0,
    kinds: Sequence[str] = NULL_KINDS,
    groups: Sequence | np.ndarray | None = None,
    seed: int = 0,
    trajectory: bool = True,
    min_persistence: float = 0.0,
) -> pd.DataFrame:
    """H1 summaries of every trace, with null means and z-scores when ``n_null >= 2``.

    Parameters
    ----------
    vectors : ndarray, shape (N, d)
    offsets : ndarray, shape (n_traces + 1,)
    nodes : array-like of int, shape (N,), optional
        Node ids, needed by the ``walk`` null.
    n_null : int, default 0
    kinds : sequence of {"shuffle", "walk"}
    groups : array-like, shape (n_traces,), optional
        Trace groups with separate transition matrices (walk null).
    seed : int
    trajectory, min_persistence
        As in :func:`trajectory_homology`.

    Returns
    -------
    pandas.DataFrame
        :data:`HOMOLOGY_COLUMNS`, then ``{col}_null_{kind}`` and ``{col}_z_{kind}``.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(12, 3))
    >>> list(homology_table(x, np.array([0, 6, 12])).columns)[:2]
    ['h1_count', 'h1_total_persistence']
    """
    x = np.asarray(vectors)
    offsets = np.asarray(offsets, np.int64)
    B = offsets.size - 1
    if x.shape[0] != offsets[-1]:
        raise ConfigError(f"vectors has {x.shape[0]} rows, offsets cover {offsets[-1]}")

    def summarise(rows: np.ndarray) -> np.ndarray:
        out = np.empty((B, len(HOMOLOGY_COLUMNS)))
        for b in range(B):
            h = trajectory_homology(
                x[rows[offsets[b] : offsets[b + 1]]],
                trajectory=trajectory,
                min_persistence=min_persistence,
            )
            out[b] = [h[c] for c in HOMOLOGY_COLUMNS]
        return out

    observed = summarise(np.arange(x.shape[0]))
    table = pd.DataFrame(observed, columns=list(HOMOLOGY_COLUMNS))
    table["h1_count"] = table["h1_count"].astype("Int64")
    if n_null == 0:
        return table
    if n_null < 2:
        raise ConfigError(f"n_null must be 0 or >= 2, got {n_null}")
    for ki, kind in enumerate(kinds):
        if kind not in NULL_KINDS:
            raise ConfigError(f"unknown null kind {kind!r}; choose from {NULL_KINDS}")
        rng = np.random.default_rng([int(seed), 100 + ki])
        if kind == "shuffle":
            draws = shuffled_orders(offsets, n_null, rng)
        else:
            if nodes is None:
                raise ConfigError("the walk null needs the node ids (nodes=...)")
            p = _as_path(nodes)
            g = (
                np.zeros(B, np.int64)
                if groups is None
                else pd.factorize(pd.Series(np.asarray(groups, dtype=object)))[0]
            )
            walks, _ = corpus_walks(p, offsets, n_null, rng, groups=groups)
            kn, order, skey = _member_sampler(p, offsets, g)
            seg = _trace_of_step(offsets)
            keys = g[seg][None, :] * kn + walks
            lo = np.searchsorted(skey, keys, side="left")
            hi = np.searchsorted(skey, keys, side="right")
            draws = order[lo + (rng.random(keys.shape) * (hi - lo)).astype(np.int64)]
        null = np.stack([summarise(draws[r]) for r in range(n_null)])  # (n_null, B, C)
        mean = np.nanmean(null, axis=0)
        std = np.nanstd(null, axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 1e-12, (observed - mean) / std, np.nan)
        for j, c in enumerate(HOMOLOGY_COLUMNS):
            table[f"{c}_null_{kind}"] = mean[:, j]
            table[f"{c}_z_{kind}"] = z[:, j]
    return table
