"""The report's plotly figures, built from numbers the stages stored (nothing recomputed).

Every figure has axis titles with units, uses the Okabe-Ito palette (colour-blind safe)
or Viridis for continuous values (:mod:`mechgraph.report.palette`), and rounds what its
hover labels print. Phase panels are in :mod:`mechgraph.report.phasefig`. plotly is
imported only when a figure is built (``pip install 'mechgraph[report]'``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mechgraph.report.palette import OKABE_ITO, SEQ, TAG_COLOURS, layout, unit

__all__ = [
    "OKABE_ITO",
    "TAG_COLOURS",
    "distribution_figure",
    "probe_sweep_figure",
    "receiver_figure",
    "scores_figure",
    "suppression_figure",
    "trace_graph_figure",
    "trajectory_figure",
    "zscore_figure",
]


def _go() -> Any:
    import plotly.graph_objects as go

    return go


# ---------------------------------------------------------------------------- probe


def probe_sweep_figure(sweep: Mapping[str, Any]) -> Any:
    """Probe scores per layer with their ±1 s.d. over the CV folds (``probe/`` sweep).

    Examples
    --------
    >>> sweep = {"task": "binary", "primary": "auroc", "best_layer": 1, "n_steps": 9,
    ...          "n_traces": 3, "config": {"n_splits": 3, "estimator": "logistic"},
    ...          "table": [{"layer": 0, "auroc": 0.6, "auroc_std": 0.1, "f1": 0.5},
    ...                    {"layer": 1, "auroc": 0.8, "auroc_std": 0.05, "f1": 0.7}]}
    >>> fig = probe_sweep_figure(sweep)
    >>> [t.name for t in fig.data], fig.layout.xaxis.title.text
    (['AUROC', 'F1'], 'block (layer index)')
    """
    go = _go()
    rows = list(sweep.get("table") or [])
    layers = [int(r["layer"]) for r in rows]
    task = sweep.get("task", "binary")
    names = {
        "binary": [("auroc", "AUROC"), ("f1", "F1"), ("balanced_accuracy", "balanced accuracy")],
        "multiclass": [("auroc", "AUROC (macro, one-vs-rest)"), ("macro_f1", "macro F1")],
        "regression": [("spearman", "Spearman ρ"), ("pearson", "Pearson r"), ("r2", "R²")],
    }.get(task, [])
    fig = go.Figure()
    for i, (col, label) in enumerate(names):
        if not rows or col not in rows[0]:
            continue
        y = [r.get(col) for r in rows]
        sd = [r.get(f"{col}_std") for r in rows]
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=y,
                name=label,
                mode="lines+markers",
                line={"color": SEQ[i], "dash": "solid" if i == 0 else "dash"},
                marker={"size": 8, "symbol": ["circle", "square", "diamond"][i % 3]},
                error_y={"type": "data", "array": [v if v is not None else 0 for v in sd]},
                hovertemplate=f"{label}<br>block %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    if task in ("binary", "multiclass"):
        fig.add_hline(y=0.5, line={"color": "#777", "dash": "dot", "width": 1})
        fig.add_annotation(
            x=0,
            xref="paper",
            xanchor="left",
            y=0.5,
            yanchor="bottom",
            text="chance (AUROC 0.5)",
            showarrow=False,
            font={"size": 10, "color": "#555"},
        )
    best = sweep.get("best_layer")
    if best is not None:
        fig.add_vline(x=best, line={"color": OKABE_ITO["vermillion"], "dash": "dot"})
        fig.add_annotation(
            x=best, y=1.02, yref="paper", text=f"best: block {best}", showarrow=False
        )
    cfg = sweep.get("config") or {}
    sub = (
        f"{cfg.get('estimator', '?')} probe of {sweep.get('target', 'the target')}, grouped "
        f"{cfg.get('n_splits', '?')}-fold CV over {sweep.get('n_traces', '?')} traces, "
        f"{sweep.get('n_steps', '?')} steps; error bars: ±1 s.d. over folds"
    )
    layout(fig, f"Probe score by layer<br><sup>{sub}</sup>", "block (layer index)", "score")
    fig.update_xaxes(tickmode="array", tickvals=layers)
    if task != "regression":
        fig.update_yaxes(range=[0, 1.05], title_text="score (0-1)")
    return fig


# ------------------------------------------------------------------------- matrices


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(v) else float(f"{v:.4g}") for v in row] for row in a]


def suppression_figure(matrix: np.ndarray, trace_id: str) -> Any:
    """Sentence x sentence suppression matrix: effect on sentence i of masking sentence j.

    Examples
    --------
    >>> m = np.array([[np.nan, np.nan], [0.2, np.nan]])
    >>> suppression_figure(m, "t").layout.yaxis.title.text
    'affected sentence i'
    """
    go = _go()
    m = np.asarray(matrix, np.float64)
    n = m.shape[0]
    fig = go.Figure(
        go.Heatmap(
            z=_nan_to_none(m),
            x=list(range(n)),
            y=list(range(n)),
            colorscale="Viridis",
            colorbar={"title": {"text": "KL (nats)"}},
            hovertemplate="sentence %{y} when %{x} is suppressed: %{z:.3g} nats<extra></extra>",
            hoverongaps=False,
        )
    )
    layout(
        fig,
        f"Attention suppression, {trace_id}<br><sup>mean token KL(base ‖ suppressed) in "
        "sentence i when the keys of sentence j are masked</sup>",
        "suppressed sentence j",
        "affected sentence i",
        height=420,
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    return fig


def receiver_figure(vertical: np.ndarray, heads: Sequence[str], trace_id: str) -> Any:
    """Vertical score of every sentence under each receiver head (rows best first)."""
    go = _go()
    v = np.asarray(vertical, np.float64)
    fig = go.Figure(
        go.Heatmap(
            z=_nan_to_none(v),
            x=list(range(v.shape[1])),
            y=list(heads),
            colorscale="Viridis",
            colorbar={"title": {"text": "attention<br>(0-1)"}},
            hovertemplate="head %{y}, sentence %{x}: %{z:.3g}<extra></extra>",
            hoverongaps=False,
        )
    )
    layout(
        fig,
        f"Receiver heads, {trace_id}<br><sup>vertical score: mean attention a sentence "
        "receives from sentences at least 4 later (blank: none that late)</sup>",
        "receiving sentence j",
        "receiver head (layer.head, best first)",
        height=420,
    )
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def scores_figure(
    trace_id: str, sentences: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]]
) -> Any | None:
    """Per-sentence importance scores of one trace (importance.parquet), one axis each."""
    go = _go()
    fig = go.Figure()
    x = [s["i"] for s in sentences if "imp" in s]
    for i, (k, label) in enumerate(cols):
        y = [s["imp"].get(k) for s in sentences if "imp" in s]
        if all(v is None for v in y):
            continue
        fig.add_trace(
            go.Bar(
                x=x,
                y=y,
                name=label,
                marker_color=list(OKABE_ITO.values())[i],
                yaxis="y" if i == 0 else f"y{i + 1}",
                offsetgroup=i,
                hovertemplate=f"sentence %{{x}}<br>{label}: %{{y:.3g}}<extra></extra>",
            )
        )
    if not fig.data:
        return None
    layout(
        fig,
        f"Per-sentence importance, {trace_id}<br><sup>importance.parquet (each score on its own axis)</sup>",
        "sentence",
        cols[0][1] if cols else "score",
        barmode="group",
        height=360,
        legend={"orientation": "h", "y": -0.25},
    )
    for i, (_, label) in enumerate(cols[1:3], start=2):
        fig.update_layout(
            {
                f"yaxis{i}": {
                    "title": {"text": label},
                    "overlaying": "y",
                    "side": "right",
                    "showgrid": False,
                    "anchor": "x" if i == 2 else "free",
                    **({"position": 0.92} if i == 3 else {}),
                }
            }
        )
    return fig


# --------------------------------------------------------------------------- graphs


def trace_graph_figure(
    path: Sequence[int], revisit: Sequence[bool], centers_xy: np.ndarray, trace_id: str
) -> Any:
    """The reasoning graph of one trace, drawn at its node centers (PCA plane).

    Nodes are sized by visits; edges (consecutive steps on different nodes) are arrows
    whose width follows their count; nodes that the trace returns to are vermillion.
    """
    from mechgraph.graphs.paths import trace_graph

    go = _go()
    G = trace_graph(np.asarray(path, np.int64))
    ret = {int(n) for n, r in zip(path, revisit, strict=True) if r}
    xy = np.asarray(centers_xy, np.float64)
    fig = go.Figure()
    for u, v, c in G.edges(data="count"):
        fig.add_annotation(
            x=xy[v, 0],
            y=xy[v, 1],
            ax=xy[u, 0],
            ay=xy[u, 1],
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowsize=1,
            arrowwidth=1 + 1.5 * (c - 1),
            arrowcolor="rgba(80,80,80,0.6)",
            standoff=8,
            startstandoff=8,
            hovertext=f"{u} → {v}: {c} transition(s)",
        )
    nodes = sorted(G.nodes)
    visits = [G.nodes[n]["visits"] for n in nodes]
    fig.add_trace(
        go.Scatter(
            x=[xy[n, 0] for n in nodes],
            y=[xy[n, 1] for n in nodes],
            mode="markers+text",
            text=[str(n) for n in nodes],
            textposition="middle center",
            textfont={"size": 10, "color": "white"},
            marker={
                "size": [14 + 6 * math.sqrt(v) for v in visits],
                "color": [
                    OKABE_ITO["vermillion"] if n in ret else OKABE_ITO["blue"] for n in nodes
                ],
                "line": {"width": 1, "color": "white"},
            },
            customdata=[
                [v, G.nodes[n]["first_step"], "yes" if n in ret else "no"]
                for n, v in zip(nodes, visits, strict=True)
            ],
            hovertemplate="node %{text}<br>visits: %{customdata[0]}<br>first step: "
            "%{customdata[1]}<br>revisited: %{customdata[2]}<extra></extra>",
            showlegend=False,
        )
    )
    layout(
        fig,
        f"Reasoning graph, {trace_id}<br><sup>{len(nodes)} nodes, {G.number_of_edges()} "
        "edges; size: visits, arrow width: transitions, vermillion: revisited</sup>",
        "PC 1 of the node space (state units)",
        "PC 2 (state units)",
        height=420,
        showlegend=False,
    )
    return fig


def trajectory_figure(
    xy: np.ndarray,
    revisit: Sequence[bool],
    nodes: Sequence[int],
    centers_xy: np.ndarray,
    trace_id: str,
    explained: Sequence[float] = (),
) -> Any:
    """The trace's steps in the PCA plane of the node space, in order; revisits marked."""
    go = _go()
    xy = np.asarray(xy, np.float64)
    rev = np.asarray(revisit, bool)
    steps = np.arange(len(xy))
    ev = [f" ({100 * e:.0f}% of variance)" for e in explained] if len(explained) == 2 else ["", ""]
    fig = go.Figure()
    c = np.asarray(centers_xy, np.float64)
    fig.add_trace(
        go.Scatter(
            x=c[:, 0],
            y=c[:, 1],
            mode="markers",
            name="node centers",
            marker={"symbol": "x-thin", "size": 8, "line": {"width": 1.5, "color": "#999"}},
            text=[str(i) for i in range(len(c))],
            hovertemplate="center of node %{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="lines+markers",
            name="steps (colour: position)",
            line={"color": "rgba(0,114,178,0.35)", "width": 1.5},
            marker={
                "size": 9,
                "color": steps,
                "colorscale": "Viridis",
                "colorbar": {"title": {"text": "step"}, "len": 0.6},
            },
            customdata=[[int(s), int(n)] for s, n in zip(steps, nodes, strict=True)],
            hovertemplate="step %{customdata[0]} (node %{customdata[1]})<extra></extra>",
        )
    )
    if rev.any():
        fig.add_trace(
            go.Scatter(
                x=xy[rev, 0],
                y=xy[rev, 1],
                mode="markers",
                name="revisit (returns to a node)",
                marker={
                    "size": 16,
                    "color": "rgba(0,0,0,0)",
                    "line": {"width": 2.5, "color": OKABE_ITO["vermillion"]},
                },
                hoverinfo="skip",
            )
        )
    layout(
        fig,
        f"Trajectory of the steps, {trace_id}<br><sup>PCA of the step states in the node "
        "space (a projection for the eye)</sup>",
        f"PC 1{ev[0]}",
        f"PC 2{ev[1]}",
        height=420,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def zscore_figure(table: Any, metrics: Sequence[str], nulls: Sequence[str]) -> Any | None:
    """Each trace's z-score against the null models, per metric (None without z columns)."""
    go = _go()
    fig = go.Figure()
    shown = False
    symbols = {"shuffle": "circle", "walk": "diamond"}
    for i, null in enumerate(nulls):
        xs, ys, ids = [], [], []
        for m in metrics:
            col = f"{m}_z_{null}"
            if col not in table.columns:
                continue
            z = table[col].astype(float).to_numpy()
            ok = np.isfinite(z)
            xs += [m] * int(ok.sum())
            ys += [round(float(v), 2) for v in z[ok]]
            ids += table["trace_id"].astype(str).to_numpy()[ok].tolist()
        if not xs:
            continue
        shown = True
        fig.add_trace(
            go.Box(
                x=xs,
                y=ys,
                name=f"{null} null",
                boxpoints="all",
                jitter=0.5,
                pointpos=0,
                fillcolor="rgba(0,0,0,0)",
                line={"color": SEQ[i]},
                marker={"color": SEQ[i], "symbol": symbols.get(null, "circle"), "size": 7},
                text=ids,
                hovertemplate="%{text}<br>%{x}: z = %{y:.2f}<extra></extra>",
            )
        )
    if not shown:
        return None
    for y in (-1.96, 1.96):
        fig.add_hline(y=y, line={"color": "#777", "dash": "dot", "width": 1})
    layout(
        fig,
        "Graph metrics against null models<br><sup>z = (metric - null mean) / null s.d. per "
        "trace; dotted: ±1.96</sup>",
        "metric",
        "z-score (null s.d. units)",
        boxmode="group",
        height=380,
    )
    return fig


def distribution_figure(table: Any, metrics: Sequence[str], by: str) -> Any | None:
    """Box plots (every trace a point) of each metric, grouped by ``by``."""
    from plotly.subplots import make_subplots

    go = _go()
    metrics = [m for m in metrics if m in table.columns and table[m].notna().any()]
    if by not in table.columns or not metrics or not table[by].notna().any():
        return None
    groups = table[by].astype(object).where(table[by].notna(), "n/a").astype(str)
    levels = list(dict.fromkeys(sorted(groups.unique(), key=_natural)))
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.06)
    for j, m in enumerate(metrics):
        for i, lev in enumerate(levels):
            sel = (groups == lev).to_numpy()
            y = table.loc[sel, m].astype(float)
            fig.add_trace(
                go.Box(
                    y=[round(v, 3) for v in y],
                    name=lev,
                    legendgroup=lev,
                    showlegend=j == 0,
                    boxpoints="all",
                    jitter=0.4,
                    pointpos=0,
                    marker={"color": SEQ[i % len(SEQ)], "size": 6},
                    line={"color": SEQ[i % len(SEQ)]},
                    text=table.loc[sel, "trace_id"].astype(str).tolist(),
                    hovertemplate="%{text}<br>%{y:.3g}<extra>" + lev + "</extra>",
                ),
                row=1,
                col=j + 1,
            )
        fig.update_yaxes(title_text=unit(m), row=1, col=j + 1)
        fig.update_xaxes(title_text=by, row=1, col=j + 1)
    layout(
        fig,
        f"Graph metrics by {by}<br><sup>one point per trace</sup>",
        by,
        unit(metrics[0]),
        height=360,
    )
    for j, m in enumerate(metrics):
        fig.update_yaxes(title_text=unit(m), row=1, col=j + 1)
    return fig


def _natural(s: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))
