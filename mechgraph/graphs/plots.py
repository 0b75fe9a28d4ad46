"""Pictures of reasoning graphs: step-state maps with trajectories, trace graphs, comparisons.

Every function builds a static matplotlib figure (Agg backend; saved as PNG/SVG/PDF) or,
when ``out`` ends in ``.html``, an interactive plotly figure.  UMAP (``umap-learn``) is
imported only inside :func:`embed_2d` (it takes seconds to import); ``method="pca"`` needs
nothing beyond scikit-learn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs.paths import _as_path, _trace_of_step, offsets_from_ids, trace_graph
from mechgraph.io import atomic_path

__all__ = [
    "embed_2d",
    "plot_metric_comparison",
    "plot_trace_graph",
    "plot_trajectories",
    "save_figure",
]

_STATIC = (".png", ".svg", ".pdf")


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _is_html(out: str | os.PathLike[str] | None) -> bool:
    return out is not None and Path(out).suffix.lower() == ".html"


def save_figure(fig: Any, out: str | os.PathLike[str]) -> Path:
    """Write a matplotlib or plotly figure atomically; the format follows the suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (*_STATIC, ".html"):
        raise ConfigError(f"unsupported figure format {suffix!r}: use .png, .svg, .pdf or .html")
    with atomic_path(out) as tmp:
        if suffix == ".html":
            fig.write_html(tmp, include_plotlyjs="directory")
        else:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
            _mpl().close(fig)
    return out


def embed_2d(
    X: np.ndarray, method: str = "umap", *, random_state: int = 0, **kwargs: Any
) -> np.ndarray:
    """Two-dimensional coordinates of the rows of ``X``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    method : {"umap", "pca"}
        UMAP (imported lazily; ``n_neighbors`` etc. pass through ``kwargs``) or PCA.
    random_state : int

    Returns
    -------
    ndarray, shape (n, 2)

    Examples
    --------
    >>> embed_2d(np.eye(4), method="pca").shape
    (4, 2)
    """
    X = np.asarray(X, np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ConfigError(f"need at least 2 rows of states to embed, got shape {X.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        n_comp = min(2, X.shape[0], X.shape[1])
        Y = PCA(n_components=n_comp, random_state=random_state).fit_transform(X)
        return np.c_[Y, np.zeros((X.shape[0], 2 - n_comp))] if n_comp < 2 else Y
    if method == "umap":
        try:
            import umap
        except ImportError as exc:  # pragma: no cover - umap-learn is a core dependency
            raise ImportError("method='umap' needs umap-learn; use method='pca'") from exc
        params = {"n_neighbors": min(15, X.shape[0] - 1), "random_state": random_state, **kwargs}
        return umap.UMAP(n_components=2, **params).fit_transform(X)
    raise ConfigError(f"method must be 'umap' or 'pca', got {method!r}")


def _colors(steps: pd.DataFrame, offsets: np.ndarray, color_by: str) -> tuple[np.ndarray, bool]:
    """Values to colour by, and whether they are categorical."""
    if color_by == "position":
        seg = _trace_of_step(offsets)
        length = np.diff(offsets)[seg]
        pos = np.arange(len(steps)) - offsets[:-1][seg]
        return pos / np.maximum(length - 1, 1), False
    if color_by == "trace":
        return steps["trace_id"].astype(str).to_numpy(), True
    if color_by not in steps.columns:
        raise ConfigError(
            f"cannot colour by {color_by!r}: not a step column ({list(steps.columns)})"
        )
    col = steps[color_by]
    if pd.api.types.is_numeric_dtype(col) and col.nunique() > 12:
        return col.to_numpy(float), False
    return col.astype(str).fillna("NA").to_numpy(), True


def plot_trajectories(
    states: np.ndarray,
    steps: pd.DataFrame,
    *,
    color_by: str = "label",
    traces: Sequence[str] | None = None,
    max_traces: int = 8,
    method: str = "umap",
    coords: np.ndarray | None = None,
    out: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Map of all step states in 2-D, coloured, with some traces drawn as trajectories.

    Parameters
    ----------
    states : ndarray, shape (N, d)
    steps : DataFrame
        Row-aligned steps with ``trace_id`` (and the ``color_by`` column).
    color_by : str, default "label"
        ``"label"``, ``"position"`` (relative position in the trace), ``"trace"`` or any
        step column (e.g. ``"node"``, ``"store"``).  Falls back to ``"position"`` when
        ``"label"`` is asked but absent or empty.
    traces : sequence of str, optional
        Trace ids to draw as lines (default: the first ``max_traces``).
    method : {"umap", "pca"}
    coords : ndarray, shape (N, 2), optional
        Precomputed coordinates (skips the embedding).
    out : path, optional
        ``.png``/``.svg``/``.pdf`` (matplotlib) or ``.html`` (plotly); written when given.

    Returns
    -------
    matplotlib.figure.Figure or plotly.graph_objects.Figure
    """
    if len(steps) != np.asarray(states).shape[0]:
        raise ConfigError(f"{len(steps)} steps but {np.asarray(states).shape[0]} state rows")
    if color_by == "label" and ("label" not in steps or steps["label"].isna().all()):
        color_by = "position"
    xy = embed_2d(states, method) if coords is None else np.asarray(coords)
    offsets, ids = offsets_from_ids(steps["trace_id"].astype(str))
    values, categorical = _colors(steps, offsets, color_by)
    chosen = list(ids[:max_traces]) if traces is None else [str(t) for t in traces]
    where = {t: i for i, t in enumerate(ids)}
    missing = [t for t in chosen if t not in where]
    if missing:
        raise ConfigError(f"trace(s) not in the steps: {missing[:5]}")
    lines = [(t, xy[offsets[where[t]] : offsets[where[t] + 1]]) for t in chosen]
    title = title or f"step states ({method}), coloured by {color_by}"
    if _is_html(out):
        import plotly.graph_objects as go

        fig = go.Figure()
        hover = steps["text"].astype(str).str.slice(0, 120) if "text" in steps else None
        if categorical:
            for v in pd.unique(values):
                m = values == v
                fig.add_trace(
                    go.Scattergl(
                        x=xy[m, 0],
                        y=xy[m, 1],
                        mode="markers",
                        name=str(v),
                        marker={"size": 4, "opacity": 0.6},
                        text=None if hover is None else hover[m],
                    )
                )
        else:
            fig.add_trace(
                go.Scattergl(
                    x=xy[:, 0],
                    y=xy[:, 1],
                    mode="markers",
                    name=color_by,
                    marker={
                        "size": 4,
                        "color": values,
                        "colorscale": "Viridis",
                        "showscale": True,
                        "opacity": 0.6,
                    },
                    text=hover,
                )
            )
        for t, seg in lines:
            fig.add_trace(
                go.Scatter(
                    x=seg[:, 0],
                    y=seg[:, 1],
                    mode="lines+markers",
                    name=f"trace {t}",
                    line={"width": 1},
                    marker={"size": 3},
                )
            )
        fig.update_layout(title=title, template="plotly_white")
    else:
        plt = _mpl()
        fig, ax = plt.subplots(figsize=(8, 7))
        if categorical:
            cats = pd.unique(values)
            cmap = plt.get_cmap("tab20", max(len(cats), 1))
            for i, v in enumerate(cats):
                m = values == v
                ax.scatter(xy[m, 0], xy[m, 1], s=5, alpha=0.5, color=cmap(i), label=str(v))
            if len(cats) <= 20:
                ax.legend(fontsize=6, markerscale=2, loc="best")
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.5, c=values, cmap="viridis")
            fig.colorbar(sc, ax=ax, label=color_by)
        for _, seg in lines:
            ax.plot(seg[:, 0], seg[:, 1], lw=0.7, alpha=0.8)
            ax.scatter(seg[:1, 0], seg[:1, 1], marker="o", s=25, color="black")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    if out is not None:
        save_figure(fig, out)
    return fig


def plot_trace_graph(
    path: Sequence[int] | np.ndarray,
    vectors: np.ndarray | None = None,
    *,
    self_loops: bool = False,
    positions: dict[int, tuple[float, float]] | None = None,
    out: str | os.PathLike[str] | None = None,
    title: str | None = None,
    seed: int = 0,
) -> Any:
    """Drawing of one trace's directed graph: node size = visits, edge width = count.

    Parameters
    ----------
    path : array-like of int
    vectors : ndarray, optional
        Step states (edge ``distance`` in the HTML hover text).
    positions : dict, optional
        Node -> (x, y), e.g. the 2-D coordinates of the node centers; otherwise a seeded
        spring layout.
    out : path, optional
        ``.png``/``.svg``/``.pdf`` or ``.html``.

    Returns
    -------
    matplotlib.figure.Figure or plotly.graph_objects.Figure
    """
    p = _as_path(path)
    G = trace_graph(p, vectors, self_loops=self_loops)
    if G.number_of_nodes() == 0:
        raise ConfigError("cannot draw the graph of an empty path")
    pos = positions or nx.spring_layout(G, seed=seed)
    first = p[0]
    title = title or f"trace graph: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges"
    if _is_html(out):
        import plotly.graph_objects as go

        fig = go.Figure()
        for u, v, e in G.edges(data=True):
            (x0, y0), (x1, y1) = pos[u], pos[v]
            fig.add_trace(
                go.Scatter(
                    x=[x0, x1],
                    y=[y0, y1],
                    mode="lines",
                    hoverinfo="text",
                    text=f"{u}->{v} count {e['count']}"
                    + (f" distance {e['distance']:.3g}" if "distance" in e else ""),
                    line={"width": 0.5 + e["count"]},
                    showlegend=False,
                )
            )
        xs = [pos[u][0] for u in G]
        ys = [pos[u][1] for u in G]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers+text",
                text=[str(u) for u in G],
                marker={
                    "size": [6 + 3 * G.nodes[u]["visits"] for u in G],
                    "color": ["black" if u == first else "steelblue" for u in G],
                },
                showlegend=False,
            )
        )
        fig.update_layout(title=title, template="plotly_white")
    else:
        plt = _mpl()
        fig, ax = plt.subplots(figsize=(6, 6))
        widths = [0.5 + e["count"] for _, _, e in G.edges(data=True)]
        sizes = [40 + 20 * G.nodes[u]["visits"] for u in G]
        colors = ["black" if u == first else "steelblue" for u in G]
        nx.draw_networkx_edges(
            G, pos, ax=ax, width=widths, alpha=0.6, arrows=True, connectionstyle="arc3,rad=0.1"
        )
        nx.draw_networkx_nodes(G, pos, ax=ax, node_size=sizes, node_color=colors)
        nx.draw_networkx_labels(G, pos, ax=ax, font_size=6, font_color="white")
        ax.set_title(title)
        ax.set_axis_off()
    if out is not None:
        save_figure(fig, out)
    return fig


def plot_metric_comparison(
    table: pd.DataFrame,
    metric: str = "n_cycles",
    by: str = "model",
    *,
    out: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Distribution of one metric per group (box plot with the traces as points).

    Parameters
    ----------
    table : DataFrame
        A metrics table (one row per trace).
    metric : str, default "n_cycles"
    by : str, default "model"
        Grouping column (``"model"``, ``"store"``, ``"checkpoint"``, ``"correct"``...).
    out : path, optional

    Returns
    -------
    matplotlib.figure.Figure or plotly.graph_objects.Figure
    """
    for col in (metric, by):
        if col not in table.columns:
            raise ConfigError(f"column {col!r} is not in the table")
    df = table[[by, metric]].copy()
    df[by] = df[by].astype(str)
    df[metric] = pd.to_numeric(df[metric], errors="coerce").astype(float)
    groups = list(pd.unique(df[by]))
    title = title or f"{metric} by {by}"
    if _is_html(out):
        import plotly.graph_objects as go

        fig = go.Figure()
        for g in groups:
            y = df.loc[df[by] == g, metric]
            fig.add_trace(go.Box(y=y, name=g, boxpoints="all", jitter=0.3))
        fig.update_layout(title=title, yaxis_title=metric, template="plotly_white")
    else:
        plt = _mpl()
        fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(groups), 4))
        data = [df.loc[df[by] == g, metric].dropna().to_numpy() for g in groups]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(groups) + 1), groups, rotation=30, ha="right")
        rng = np.random.default_rng(0)
        for i, y in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, y.size), y, s=8, alpha=0.6)
        ax.set_ylabel(metric)
        ax.set_title(title)
    if out is not None:
        save_figure(fig, out)
    return fig
