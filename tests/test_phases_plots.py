"""Phase pictures: small multiples over checkpoints, PNG through matplotlib, HTML through plotly."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from mechgraph.errors import ConfigError
from mechgraph.phases.plots import default_panels, plot_metric, plot_phases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _page(path) -> str:
    """The HTML with plotly's JSON escape of "/" undone."""
    return path.read_text().replace("\\u002f", "/").replace("\\/", "/")


def phase_table(n: int = 19, seed: int = 0) -> pd.DataFrame:
    """A two-phase run: execution entropy/perplexity fall then flatten, then semantic
    entropy rises with accuracy; every metric but the log columns has a CI."""
    rng = np.random.default_rng(seed)
    step = np.arange(n) * 50.0
    t = np.arange(n) / (n - 1)
    phase2 = np.clip((t - 0.45) / 0.55, 0, 1)
    metrics = {
        "accuracy": 0.3 + 0.1 * t + 0.3 * phase2,
        "reward": 0.2 + 0.5 * t,
        "entropy_exec": 0.3 + 0.5 * np.exp(-8 * t),
        "entropy_plan": 1.2 - 0.2 * t + 0.1 * phase2,
        "ppl_rel_exec": 0.75 + 0.25 * np.exp(-8 * t),
        "ppl_rel_plan": 1.0 - 0.1 * t,
        "semantic_entropy": 2.0 + 1.5 * t,
        "semantic_entropy_rarefied": 2.0 + 0.8 * phase2,
        "planning_share": 0.08 + 0.05 * phase2,
        "length_tokens": 600 + 500 * t,
        "topo/loop_count": 3 - t,
        "topo/revisits": 5 + 2 * phase2,
        "topo/diameter_norm": 0.4 + 0.1 * t,
        "topo/small_world_sigma": 1.5 + 0.2 * phase2,
        "topo/z_loop_count": -1 + 2 * t,
    }
    table = pd.DataFrame({"checkpoint": [f"step-{int(s)}" for s in step], "checkpoint_value": step})
    for m, v in metrics.items():
        scale = 0.02 * (np.abs(v).mean() + 1)
        y = v + rng.normal(0, scale, n)
        table[m], table[f"{m}_lo"], table[f"{m}_hi"] = y, y - 2 * scale, y + 2 * scale
    table["log/kl"] = 0.01 * t + rng.normal(0, 0.001, n)
    table["log/grad_norm"] = 1 - 0.5 * t
    return table


CHANGE_POINTS = {
    "entropy_exec": [{"checkpoint": "step-250", "x": 250.0, "lo": 200.0, "hi": 300.0}],
    "semantic_entropy_rarefied": [{"checkpoint": "step-450", "x": 450.0, "lo": 400.0, "hi": None}],
}


def test_full_table_writes_png_and_html(tmp_path):
    table = phase_table()
    paths = plot_phases(table, CHANGE_POINTS, out_dir=tmp_path / "out", title="synthetic run")
    assert [p.name for p in paths] == ["phases.png", "phases.html"]
    assert all(p.is_file() for p in paths)
    assert paths[0].read_bytes()[:8] == PNG_MAGIC
    html = _page(paths[1])
    for m in (
        "accuracy",
        "entropy_exec",
        "ppl_rel_plan",
        "semantic_entropy_rarefied",
        "topo/loop_count",
        "log/kl",
    ):
        assert m in html
    assert "x=250" in html and "x=450" in html  # the change points' annotations
    assert "step-250" in html
    assert "plotly.js" in html[:20000].lower() or "plotly" in html[:5000].lower()
    assert not list((tmp_path / "out").glob(".tmp-*"))  # no temp files left behind
    panels = default_panels(table)
    assert panels[:4] == [
        ["accuracy"],
        ["reward"],
        ["entropy_plan", "entropy_exec"],
        ["ppl_rel_plan", "ppl_rel_exec"],
    ]
    assert sum(p[0].startswith("topo/") for p in panels) == 4  # at most 4 topology panels
    assert ["topo/z_loop_count"] not in panels  # the named ones come first
    assert [["log/kl"], ["log/grad_norm"]] == panels[-2:]


def test_panels_argument(tmp_path):
    table = phase_table()
    paths = plot_phases(table, out_dir=tmp_path, panels=[["accuracy", "reward"], "log/kl"])
    html = _page(paths[1])
    assert "log/kl" in html and "entropy_exec" not in html
    with pytest.raises(ConfigError, match="not in the table"):
        plot_phases(table, out_dir=tmp_path / "bad", panels=[["accuracy", "acuracy"]])
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_accuracy_only_and_all_nan_metric(tmp_path):
    table = pd.DataFrame(
        {
            "checkpoint": ["a", "b", "c"],
            "checkpoint_value": [0.0, 10.0, 20.0],
            "accuracy": [0.2, 0.3, 0.5],
            "reward": [np.nan] * 3,
            "semantic_entropy": [np.nan] * 3,
            "semantic_entropy_lo": [np.nan] * 3,
            "semantic_entropy_hi": [np.nan] * 3,
        }
    )
    assert default_panels(table) == [["accuracy"]]
    png, page = plot_phases(table, out_dir=tmp_path)
    assert png.read_bytes()[:8] == PNG_MAGIC and "accuracy" in page.read_text()
    # an all-NaN metric named in a panel is skipped, not an error
    plot_phases(table, out_dir=tmp_path, panels=[["accuracy", "reward"], ["semantic_entropy"]])
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_phases(table[["checkpoint", "checkpoint_value", "reward"]], out_dir=tmp_path / "x")


def test_plot_metric_on_axis():
    import matplotlib.pyplot as plt

    table = phase_table()
    fig, ax = plt.subplots()
    assert plot_metric(table, "entropy_exec", CHANGE_POINTS, ax=ax) is ax
    assert len(ax.lines) == 2  # the series and the change point
    assert len(ax.collections) == 1 and len(ax.patches) == 1  # CI band, change interval
    # a change point given only by its checkpoint label
    plot_metric(table, "accuracy", [{"checkpoint": "step-100", "x": None}], ax=ax)
    assert ax.lines[-1].get_xdata()[0] == 100.0
    with pytest.raises(ConfigError):
        plot_metric(table, "nope", ax=ax)
    plt.close(fig)


def test_missing_extra_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(ConfigError, match=r"mechgraph\[plots\]"):
        plot_phases(phase_table(5), out_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"mechgraph\[plots\]"):
        plot_metric(phase_table(5), "accuracy")
