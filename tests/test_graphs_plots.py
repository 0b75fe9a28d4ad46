"""Pictures: PNG/SVG through matplotlib, HTML through plotly (PCA only; UMAP stays out)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from mechgraph.errors import ConfigError
from mechgraph.graphs import metrics_table
from mechgraph.graphs.plots import (
    embed_2d,
    plot_metric_comparison,
    plot_trace_graph,
    plot_trajectories,
)


@pytest.fixture
def steps_states():
    rng = np.random.default_rng(0)
    lens = [12, 9, 15]
    steps = pd.DataFrame(
        {
            "trace_id": np.repeat(["a", "b", "c"], lens),
            "label": rng.choice(
                ["plan_generation", "active_computation", "self_checking"], sum(lens)
            ),
            "text": "step",
            "node": rng.integers(0, 5, sum(lens)),
        }
    )
    return steps, rng.normal(size=(sum(lens), 6))


def test_trajectories_static_and_html(tmp_path, steps_states):
    steps, X = steps_states
    for color in ("label", "position", "trace", "node"):
        plot_trajectories(X, steps, color_by=color, method="pca", out=tmp_path / f"t_{color}.png")
    plot_trajectories(X, steps, method="pca", traces=["b"], out=tmp_path / "t.svg")
    plot_trajectories(X, steps, method="pca", out=tmp_path / "t.html")
    assert (tmp_path / "t_label.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:400]
    assert "plotly" in (tmp_path / "t.html").read_text()[:5000].lower()
    assert "umap" not in sys.modules  # PCA never imports umap
    with pytest.raises(ConfigError):
        plot_trajectories(X, steps, color_by="nope", method="pca")
    with pytest.raises(ConfigError):
        plot_trajectories(X[:-1], steps, method="pca")
    with pytest.raises(ConfigError):
        plot_trajectories(X, steps, method="pca", traces=["zz"])
    with pytest.raises(ConfigError):
        embed_2d(X, method="tsne")


def test_trace_graph_and_comparison(tmp_path, steps_states):
    steps, X = steps_states
    path = steps["node"].to_numpy()[:12]
    plot_trace_graph(path, X[:12], out=tmp_path / "g.png")
    plot_trace_graph(path, X[:12], out=tmp_path / "g.html")
    table = metrics_table(steps["node"], trace_ids=steps["trace_id"]).assign(model=["x", "y", "x"])
    plot_metric_comparison(table, "revisits", by="model", out=tmp_path / "c.png")
    plot_metric_comparison(table, "revisits", by="model", out=tmp_path / "c.html")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("g.png", "g.html", "c.png", "c.html"))
    with pytest.raises(ConfigError):
        plot_metric_comparison(table, "nope")
    with pytest.raises(ConfigError):
        plot_trace_graph([], out=tmp_path / "e.png")
    with pytest.raises(ConfigError):
        plot_metric_comparison(table, "revisits", by="model", out=tmp_path / "c.gif")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
