"""Pictures of phases across training: small multiples of per-checkpoint metrics.

In the style of HICRA (Wang et al. 2025, Fig. 3-4): one panel per metric group over the
training steps (accuracy, planning vs execution entropy and relative perplexity, semantic
entropy, planning share and length, topology, trainer logs), each with its bootstrap CI
band (``m_lo`` / ``m_hi``) and its change points (a vertical line, its interval shaded).
:func:`plot_phases` writes ``phases.png`` (matplotlib, Agg) and ``phases.html`` (plotly,
plotly.js included so it opens offline); :func:`plot_metric` draws one metric on a
matplotlib axis.  matplotlib and plotly come with the ``mechgraph[plots]`` extra and are
imported only when a picture is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.io import atomic_path

__all__ = ["default_panels", "plot_metric", "plot_phases"]

# tab10, so that the PNG and the HTML use the same colours.
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_EXEC, _PLAN = _PALETTE[0], _PALETTE[1]
_TOPO_FIRST = ("topo/loop_count", "topo/revisits", "topo/diameter_norm", "topo/small_world_sigma")
_MAX_TOPO = 4
_MAX_LOG = 4
_NOTE = "bands: bootstrap CI; vertical lines: change points (shaded: their interval)"

ChangePoints = Mapping[str, Sequence[Mapping[str, Any]]]


def _need(module: str) -> Any:
    """Import ``matplotlib.pyplot`` (Agg) or ``plotly``, or say which extra to install."""
    try:
        if module == "matplotlib":
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            return plt
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        return go, make_subplots
    except ImportError as exc:
        raise ConfigError(
            f"phase plots need {module}: pip install 'mechgraph[plots]' ({exc})"
        ) from None


# ---------------------------------------------------------------------------------------
# table helpers


def _x(table: pd.DataFrame) -> np.ndarray:
    if "checkpoint_value" not in table.columns:
        return np.arange(len(table), dtype=float)
    x = pd.to_numeric(table["checkpoint_value"], errors="coerce").to_numpy(float)
    if np.isnan(x).any():
        bad = (
            table["checkpoint"].iloc[np.flatnonzero(np.isnan(x))[:5]].tolist()
            if ("checkpoint" in table.columns)
            else np.flatnonzero(np.isnan(x))[:5].tolist()
        )
        raise ConfigError(f"checkpoint_value is missing or not numeric at checkpoint(s) {bad}")
    return x


def _labels(table: pd.DataFrame, x: np.ndarray) -> list[str]:
    if "checkpoint" in table.columns:
        return table["checkpoint"].astype(str).tolist()
    return [f"{v:g}" for v in x]


def _values(table: pd.DataFrame, col: str) -> np.ndarray | None:
    if col not in table.columns:
        return None
    v = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
    return None if np.isnan(v).all() else v


def _has(table: pd.DataFrame, metric: str) -> bool:
    return _values(table, metric) is not None


def _band(table: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    lo, hi = _values(table, f"{metric}_lo"), _values(table, f"{metric}_hi")
    if lo is None or hi is None:
        return None
    return np.fmin(lo, hi), np.fmax(lo, hi)


def _is_metric(col: str) -> bool:
    return col not in ("checkpoint", "checkpoint_value") and not col.endswith(("_lo", "_hi"))


def _points(
    change_points: ChangePoints | Sequence[Mapping[str, Any]] | None,
    metric: str,
    table: pd.DataFrame,
    x: np.ndarray,
) -> list[tuple[float, float | None, float | None, str]]:
    """The change points of ``metric`` as ``(x, lo, hi, label)``."""
    if change_points is None:
        return []
    items = change_points.get(metric, []) if isinstance(change_points, Mapping) else change_points
    labels = _labels(table, x)
    out = []
    for cp in items or []:
        label = cp.get("checkpoint")
        at = cp.get("x")
        if at is None and label is not None and str(label) in labels:
            at = x[labels.index(str(label))]
        if at is None or not np.isfinite(float(at)):
            raise ConfigError(f"change point of {metric!r} has no x and no known checkpoint: {cp}")
        lo, hi = cp.get("lo"), cp.get("hi")
        lo = None if lo is None or not np.isfinite(float(lo)) else float(lo)
        hi = None if hi is None or not np.isfinite(float(hi)) else float(hi)
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        out.append((float(at), lo, hi, str(label) if label is not None else f"{float(at):g}"))
    return out


# ---------------------------------------------------------------------------------------
# panels


def default_panels(table: pd.DataFrame) -> list[list[str]]:
    """The panels :func:`plot_phases` draws by default: groups of metrics with values.

    Accuracy; reward; planning vs execution token entropy; relative perplexity (or NLL when
    there is none); semantic entropy and distinct grams (raw and rarefied); planning share;
    response length; tag shares; up to 4 ``topo/`` metrics and up to 4 ``log/`` columns.
    A metric that is absent or all-NaN is left out, and so is a panel left empty.

    Examples
    --------
    >>> t = pd.DataFrame({"checkpoint": ["a", "b"], "checkpoint_value": [0, 1],
    ...                   "accuracy": [0.1, 0.2], "reward": [float("nan")] * 2})
    >>> default_panels(t)
    [['accuracy']]
    """
    cols = [c for c in table.columns if isinstance(c, str) and _is_metric(c) and _has(table, c)]
    groups: list[list[str]] = [["accuracy"], ["reward"]]
    for pre in ("", "reader/"):  # the checkpoints' own models, then a fixed reader
        ppl = [f"{pre}ppl_rel_plan", f"{pre}ppl_rel_exec"]
        groups.append([f"{pre}entropy_plan", f"{pre}entropy_exec"])
        groups.append(ppl if any(m in cols for m in ppl) else [f"{pre}nll_plan", f"{pre}nll_exec"])
    groups += [
        ["semantic_entropy_rarefied", "semantic_entropy"],
        ["n_distinct_grams_rarefied", "n_distinct_grams"],
        ["planning_share"],
        ["length_tokens"],
        [c for c in cols if c.startswith("tag/")],
    ]
    topo = [c for c in _TOPO_FIRST if c in cols]
    topo += [c for c in cols if c.startswith("topo/") and c not in topo]
    groups += [[c] for c in topo[:_MAX_TOPO]]
    groups += [[c] for c in cols if c.startswith("log/")][:_MAX_LOG]
    return [kept for g in groups if (kept := [m for m in g if m in cols])]


def _check_panels(table: pd.DataFrame, panels: Sequence[Sequence[str] | str]) -> list[list[str]]:
    out = []
    for panel in panels:
        names = [panel] if isinstance(panel, str) else list(panel)
        unknown = [m for m in names if m not in table.columns]
        if unknown:
            have = [c for c in table.columns if isinstance(c, str) and _is_metric(c)]
            raise ConfigError(f"panel metric(s) {unknown} not in the table (metrics: {have})")
        kept = [m for m in names if _has(table, m)]
        if kept:
            out.append(kept)
    return out


def _title(panel: list[str]) -> str:
    if all(m.startswith("reader/") for m in panel):
        return "fixed reader: " + _title([m.removeprefix("reader/") for m in panel])
    s = set(panel)
    if s <= {"entropy_plan", "entropy_exec"}:
        return "token entropy: planning vs execution"
    if s <= {"ppl_rel_plan", "ppl_rel_exec"}:
        return "relative perplexity (first checkpoint = 1)"
    if s <= {"nll_plan", "nll_exec"}:
        return "NLL: planning vs execution"
    if s == {"semantic_entropy", "semantic_entropy_rarefied"}:
        return "semantic entropy (solid: rarefied)"
    if s == {"n_distinct_grams", "n_distinct_grams_rarefied"}:
        return "distinct strategic grams (solid: rarefied)"
    if all(m.startswith("tag/") for m in panel) and len(panel) > 1:
        return "step tag shares"
    if panel == ["length_tokens"]:
        return "response length (tokens)"
    if len(panel) == 1 and "/" in panel[0]:
        kind, name = panel[0].split("/", 1)
        return f"{ {'topo': 'topology', 'log': 'trainer log'}.get(kind, kind) }: {name}"
    return ", ".join(m.replace("_", " ") if "/" not in m else m for m in panel)


def _styles(panel: list[str]) -> dict[str, tuple[str, str]]:
    """Colour and line style of each metric of a panel: planning orange, execution blue,
    a raw series dashed in its rarefied partner's colour."""
    bases = list(dict.fromkeys(m.removesuffix("_rarefied") for m in panel))
    out = {}
    for m in panel:
        base = m.removesuffix("_rarefied")
        if m.endswith("_plan"):
            color = _PLAN
        elif m.endswith("_exec"):
            color = _EXEC
        else:
            color = _PALETTE[bases.index(base) % len(_PALETTE)]
        dashed = not m.endswith("_rarefied") and f"{m}_rarefied" in panel
        out[m] = (color, "--" if dashed else "-")
    return out


# ---------------------------------------------------------------------------------------
# matplotlib


def plot_metric(
    table: pd.DataFrame,
    metric: str,
    change_points: ChangePoints | Sequence[Mapping[str, Any]] | None = None,
    ax: Any = None,
    *,
    color: str | None = None,
    linestyle: str = "-",
    label: str | None = None,
) -> Any:
    """Draw one metric over the checkpoints on a matplotlib axis, with CI band and change points.

    Parameters
    ----------
    table : DataFrame
        Phase table: ``checkpoint``, ``checkpoint_value`` and the metric (with optional
        ``{metric}_lo`` / ``{metric}_hi`` for the band).
    metric : str
    change_points : dict or list, optional
        ``{metric: [{"checkpoint", "x", "lo", "hi"}, ...]}`` (only ``metric``'s are drawn)
        or that list itself; ``x`` may be None when ``checkpoint`` names a row, ``lo`` /
        ``hi`` may be None (no band).
    ax : matplotlib Axes, optional
        Drawn on a new figure when not given.
    color, linestyle, label : optional
        Line style; the label defaults to the metric name.

    Returns
    -------
    matplotlib Axes
    """
    plt = _need("matplotlib")
    if metric not in table.columns:
        raise ConfigError(f"metric {metric!r} is not in the table")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    x = _x(table)
    y = _values(table, metric)
    if y is None:
        ax.text(0.5, 0.5, f"{metric}: no values", transform=ax.transAxes, ha="center")
        return ax
    color = color or _PALETTE[0]
    band = _band(table, metric)
    if band is not None:
        ax.fill_between(x, band[0], band[1], color=color, alpha=0.18, lw=0)
    dashed = linestyle != "-"
    ax.plot(
        x,
        y,
        color=color,
        ls=linestyle,
        lw=1.2 if dashed else 1.8,
        alpha=0.75 if dashed else 1.0,
        marker="o",
        ms=2.5,
        label=label or metric,
    )
    for at, lo, hi, name in _points(change_points, metric, table, x):
        if lo is not None or hi is not None:
            ax.axvspan(
                lo if lo is not None else at,
                hi if hi is not None else at,
                color=color,
                alpha=0.12,
                lw=0,
            )
        span = f" [{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
        ax.axvline(at, color=color, ls=":", lw=1.4, label=f"change @ {name}{span}")
    ax.set_xlabel("checkpoint")
    ax.grid(alpha=0.25, lw=0.5)
    return ax


def _matplotlib_figure(
    table: pd.DataFrame,
    panels: list[list[str]],
    change_points: ChangePoints | None,
    title: str,
) -> Any:
    plt = _need("matplotlib")
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.1 * nrows + 0.6), squeeze=False)
    x = _x(table)
    pad = 0.02 * (x.max() - x.min() or 1.0)
    for i, panel in enumerate(panels):
        ax = axes.flat[i]
        styles = _styles(panel)
        for m in panel:
            color, ls = styles[m]
            plot_metric(table, m, change_points, ax, color=color, linestyle=ls)
        if any(m.removeprefix("reader/").startswith("ppl_rel") for m in panel):
            ax.axhline(1.0, color="0.35", ls="--", lw=0.9)
        ax.set_title(_title(panel), fontsize=10)
        ax.set_xlim(x.min() - pad, x.max() + pad)
        ax.tick_params(labelsize=8)
        last_in_column = i + ncols >= n
        ax.set_xlabel("checkpoint" if last_in_column else "", fontsize=9)
        handles, names = ax.get_legend_handles_labels()
        if len(names) > 1:  # the series first, then the change points
            order = sorted(range(len(names)), key=lambda j: names[j].startswith("change @"))
            ax.legend(
                [handles[j] for j in order],
                [names[j] for j in order],
                fontsize=7,
                loc="best",
                framealpha=0.7,
                edgecolor="none",
            )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.text(0.5, 0.005, _NOTE, ha="center", va="bottom", fontsize=7.5, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97 if title else 1))
    return fig


# ---------------------------------------------------------------------------------------
# plotly


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _plotly_figure(
    table: pd.DataFrame,
    panels: list[list[str]],
    change_points: ChangePoints | None,
    title: str,
) -> Any:
    go, make_subplots = _need("plotly")
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = make_subplots(
        rows=nrows,
        cols=ncols,
        subplot_titles=[_title(p) for p in panels],
        horizontal_spacing=0.07,
        vertical_spacing=min(0.12, 0.5 / max(nrows, 1)),
    )
    x = _x(table)
    labels = _labels(table, x)
    for i, panel in enumerate(panels):
        row, col = i // ncols + 1, i % ncols + 1
        styles = _styles(panel)
        for m in panel:
            color, ls = styles[m]
            y = _values(table, m)
            band = _band(table, m)
            if band is not None:
                common = {
                    "x": x,
                    "mode": "lines",
                    "line": {"width": 0},
                    "legendgroup": m,
                    "showlegend": False,
                    "hoverinfo": "skip",
                }
                fig.add_trace(go.Scatter(y=band[0], name=f"{m}_lo", **common), row=row, col=col)
                fig.add_trace(
                    go.Scatter(
                        y=band[1],
                        name=f"{m}_hi",
                        fill="tonexty",
                        fillcolor=_rgba(color, 0.18),
                        **common,
                    ),
                    row=row,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=m,
                    legendgroup=m,
                    mode="lines+markers",
                    line={
                        "color": color,
                        "dash": "dash" if ls != "-" else "solid",
                        "width": 1.5 if ls != "-" else 2.2,
                    },
                    marker={"size": 4},
                    text=labels,
                    hovertemplate=f"{m}<br>%{{text}} (x=%{{x}})<br>%{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            for at, lo, hi, name in _points(change_points, m, table, x):
                if lo is not None or hi is not None:
                    fig.add_vrect(
                        x0=lo if lo is not None else at,
                        x1=hi if hi is not None else at,
                        fillcolor=color,
                        opacity=0.12,
                        line_width=0,
                        row=row,
                        col=col,
                    )
                fig.add_vline(
                    x=at,
                    line={"color": color, "dash": "dot", "width": 1.5},
                    annotation_text=f"{m} change @ {name} (x={at:g})",
                    annotation_font={"size": 9, "color": color},
                    annotation_position="top left",
                    row=row,
                    col=col,
                )
        if any(m.removeprefix("reader/").startswith("ppl_rel") for m in panel):
            fig.add_hline(
                y=1.0, line={"color": "grey", "dash": "dash", "width": 1}, row=row, col=col
            )
        if i + ncols >= n:
            fig.update_xaxes(title_text="checkpoint", row=row, col=col)
    fig.update_layout(
        title={"text": f"{title}<br><sup>{_NOTE}</sup>" if title else f"<sup>{_NOTE}</sup>"},
        template="plotly_white",
        height=300 * nrows + 120,
        width=460 * ncols + 220,
        hovermode="closest",
    )
    return fig


# ---------------------------------------------------------------------------------------
# entry point


def plot_phases(
    table: pd.DataFrame,
    change_points: ChangePoints | None = None,
    *,
    out_dir: str | os.PathLike[str],
    panels: Sequence[Sequence[str] | str] | None = None,
    title: str = "",
) -> list[Path]:
    """Small multiples of the phase table over training; writes ``phases.png`` and ``.html``.

    Parameters
    ----------
    table : DataFrame
        One row per checkpoint, in training order: ``checkpoint`` (label),
        ``checkpoint_value`` (numeric position, the x axis), metric columns ``m`` with
        optional bootstrap CI columns ``m_lo`` / ``m_hi`` (drawn as bands).
    change_points : dict, optional
        ``{metric: [{"checkpoint": label, "x": value, "lo": a, "hi": b}, ...]}``; each is
        a vertical line in the panel of its metric, ``[lo, hi]`` shaded (None: no band).
    out_dir : path
        Folder for ``phases.png`` (matplotlib, Agg) and ``phases.html`` (plotly, with
        plotly.js inside, so it opens offline); created if needed, files written
        atomically.
    panels : list of list of str, optional
        Metric names per panel (a bare string is a one-metric panel); default
        :func:`default_panels`.  All-NaN metrics are skipped; an unknown name is an error.
    title : str

    Returns
    -------
    list of Path
        ``[out_dir / "phases.png", out_dir / "phases.html"]``.

    Raises
    ------
    ConfigError
        matplotlib or plotly missing (install ``mechgraph[plots]``), an unknown panel
        metric, or nothing to plot.
    """
    _need("matplotlib")
    _need("plotly")
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ConfigError("plot_phases needs a non-empty phase table (one row per checkpoint)")
    chosen = default_panels(table) if panels is None else _check_panels(table, panels)
    if not chosen:
        raise ConfigError("nothing to plot: no metric column of the phase table has values")
    # Build both figures before writing either, so a failure leaves no new file at all.
    fig = _matplotlib_figure(table, chosen, change_points, title)
    html = _plotly_figure(table, chosen, change_points, title)
    out_dir = Path(out_dir)
    png, page = out_dir / "phases.png", out_dir / "phases.html"
    plt = _need("matplotlib")
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    with atomic_path(page) as tmp:
        html.write_html(tmp, include_plotlyjs=True, full_html=True)
    return [png, page]
