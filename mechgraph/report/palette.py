"""The report's colours, fonts and axis units (Okabe-Ito for categories, Viridis for values)."""

from __future__ import annotations

from typing import Any

__all__ = ["METRIC_UNITS", "OKABE_ITO", "SEQ", "TAG_COLOURS", "layout", "unit"]

#: Okabe & Ito (2008), the colour-blind-safe qualitative palette.
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
}
SEQ = tuple(OKABE_ITO.values())
#: Colour of each Thought Anchors tag in the trace viewer (grey: unknown).
TAG_COLOURS = {
    "problem_setup": OKABE_ITO["sky"],
    "plan_generation": OKABE_ITO["orange"],
    "fact_retrieval": OKABE_ITO["green"],
    "active_computation": OKABE_ITO["blue"],
    "result_consolidation": OKABE_ITO["yellow"],
    "uncertainty_management": OKABE_ITO["vermillion"],
    "final_answer_emission": OKABE_ITO["purple"],
    "self_checking": "#999999",
    "unknown": "#DDDDDD",
}
#: Axis title (with units) of each graph metric.
METRIC_UNITS = {
    "n_cycles": "simple cycles (count)",
    "revisits": "revisits (steps)",
    "loop_count": "loop count (returns)",
    "has_loop": "has a loop (0/1)",
    "diameter": "diameter (L2, state units)",
    "diameter_norm": "normalised diameter (ratio)",
    "diameter_hops": "diameter (hops)",
    "small_world_sigma": "small-world index σ (ratio)",
    "clustering": "clustering coefficient (0-1)",
    "avg_path_length": "mean path length (hops)",
    "n_nodes": "nodes visited (count)",
    "n_steps": "steps (count)",
}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def layout(fig: Any, title: str, x: str, y: str, **kw: Any) -> Any:
    """The report's look on ``fig``: title, font, palette, margins and both axis titles."""
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        font=FONT,
        colorway=list(SEQ),
        margin={"l": 60, "r": 20, "t": 60, "b": 55},
        hovermode="closest",
        **kw,
    )
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig


def unit(metric: str) -> str:
    """Axis title of a metric (its unit when known)."""
    return METRIC_UNITS.get(metric, metric.replace("_", " "))
