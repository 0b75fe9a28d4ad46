"""The phase panels of :mod:`mechgraph.phases.plots`, in the report's palette and units."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mechgraph.report.palette import FONT, SEQ, TAG_COLOURS, unit

__all__ = ["phases_figure"]

_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_TAB10 += ("#7f7f7f", "#bcbd22", "#17becf")
_TO_OKABE = {t: (*SEQ, "#999999", "#666666")[i] for i, t in enumerate(_TAB10)}


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _recolour(value: Any, to: str | None = None) -> Any:
    """A tab10 colour (hex or rgba) in the report's palette; ``to`` forces the hue."""
    if not isinstance(value, str):
        return value
    low = value.lower()
    if low in _TO_OKABE or (to and low.startswith("#")):
        return to or _TO_OKABE[low]
    m = re.fullmatch(r"rgba\((\d+),(\d+),(\d+),([\d.]+)\)", low.replace(" ", ""))
    if m:
        rgb = tuple(int(x) for x in m.groups()[:3])
        for t, o in _TO_OKABE.items():
            if _rgb(t) == rgb or to:
                r, g, b = _rgb(to or o)
                return f"rgba({r},{g},{b},{m.group(4)})"
    return value


def phases_figure(table: Any, change_points: Mapping[str, Any] | None) -> Any:
    """The phase panels of :mod:`mechgraph.phases.plots` in the report's palette."""
    from mechgraph.phases.plots import _plotly_figure, default_panels

    fig = _plotly_figure(table, default_panels(table), change_points, "")
    for tr in fig.data:
        group = str(getattr(tr, "legendgroup", "") or "")
        to = TAG_COLOURS.get(group[4:]) if group.startswith("tag/") else None
        if getattr(tr, "line", None) is not None and tr.line.color:
            tr.line.color = _recolour(tr.line.color, to)
        if getattr(tr, "fillcolor", None):
            tr.fillcolor = _recolour(tr.fillcolor, to)
        if getattr(tr, "marker", None) is not None and isinstance(tr.marker.color, str):
            tr.marker.color = _recolour(tr.marker.color, to)
    for sh in fig.layout.shapes:
        if sh.fillcolor:
            sh.fillcolor = _recolour(sh.fillcolor)
        if sh.line is not None and sh.line.color:
            sh.line.color = _recolour(sh.line.color)
    for an in fig.layout.annotations:
        if an.font is not None and an.font.color:
            an.font.color = _recolour(an.font.color)
    fig.update_layout(width=None, autosize=True, font=FONT)
    panels = default_panels(table)
    ncols = min(3, len(panels))
    for i, panel in enumerate(panels):
        fig.update_yaxes(title_text=_phase_unit(panel[0]), row=i // ncols + 1, col=i % ncols + 1)
    return fig


def _phase_unit(metric: str) -> str:
    """Axis title of a phase metric (its unit)."""
    m = metric.removeprefix("reader/")
    if m in ("accuracy", "planning_share") or m.startswith("tag/"):
        return "share (0-1)"
    if m.startswith(("entropy_", "semantic_entropy")):
        return "entropy (nats)"
    if m.startswith("ppl_rel"):
        return "ratio to first checkpoint"
    if m.startswith("nll_"):
        return "NLL (nats / token)"
    if m.startswith("n_distinct_grams"):
        return "grams (count)"
    if m == "length_tokens":
        return "tokens"
    if m.startswith("topo/"):
        return unit(m[5:])
    return "value"
