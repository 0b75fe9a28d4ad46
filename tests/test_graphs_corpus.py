"""Stores -> node space -> metrics table, and the `mechgraph graph` command (fake stores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import ConfigError, StoreError
from mechgraph.graphs import (
    METRIC_COLUMNS,
    GraphConfig,
    NodeSpace,
    NodeSpaceConfig,
    analyze_corpus,
    graph_table,
    load_corpus,
    topology_metrics,
)
from mechgraph.graphs.cli import graph_command


class FakeStore:
    """The duck-typed store interface, in memory."""

    def __init__(self, path, lengths, *, d=8, seed=0, model="m", labels=True, extra_traces=()):
        rng = np.random.default_rng(seed)
        self.path = Path(path)
        rows, states = [], []
        centers = rng.normal(0, 5, (6, d))
        words = ["Wait, let me check.", "So x = 2.", "Then y = 3.", "Hmm, no."]
        for i, n in enumerate(lengths):
            walk = rng.integers(0, 6, n)
            for s, c in enumerate(walk):
                rows.append(
                    {
                        "trace_id": f"t{i}",
                        "step": s,
                        "char_start": 0,
                        "char_end": 1,
                        "tok_start": 0,
                        "tok_end": 1,
                        "text": words[(s + i) % 4],
                        "label": (
                            "uncertainty_management"
                            if (s + i) % 4 in (0, 3)
                            else "active_computation"
                        )
                        if labels
                        else None,
                        "model": model,
                    }
                )
                states.append(centers[c] + rng.normal(0, 0.3, d))
        self.steps = pd.DataFrame(
            rows,
            columns=[
                "trace_id",
                "step",
                "char_start",
                "char_end",
                "tok_start",
                "tok_end",
                "text",
                "label",
                "model",
            ],
        )
        ids = [f"t{i}" for i in range(len(lengths))] + list(extra_traces)
        self.traces = pd.DataFrame(
            {
                "trace_id": ids,
                "prompt": "p",
                "text": "x",
                "model": model,
                "checkpoint": "c0",
                "correct": [i % 2 == 0 for i in range(len(ids))],
                "answer": "1",
            }
        )
        self._states = np.asarray(states, np.float32).reshape(len(rows), d)
        self.layers, self.pools, self.hooks, self.config = (
            [3],
            ["mean"],
            ["blocks.3.hook_resid_post"],
            {},
        )

    def states(self, layer, pool="mean", hook="resid_post"):
        if layer != 3:
            raise ConfigError(f"layer {layer} is not in the store")
        return self._states


@pytest.fixture
def two_stores(tmp_path):
    return [
        FakeStore(tmp_path / "reasoning", [30, 25, 40], model="r1", seed=1),
        FakeStore(
            tmp_path / "base", [8, 12], model="base", seed=2, labels=False, extra_traces=("empty",)
        ),
    ]


def test_analyze_two_stores_in_one_node_space(two_stores):
    cfg = GraphConfig(layer=3, nodes=NodeSpaceConfig(k=6), n_null=4)
    res = analyze_corpus(two_stores, cfg)
    t = res.table
    assert t["store"].tolist() == ["reasoning"] * 3 + ["base"] * 3
    assert t["trace_id"].tolist() == ["t0", "t1", "t2", "t0", "t1", "empty"]
    assert set(METRIC_COLUMNS) <= set(t.columns)
    assert {"model", "checkpoint", "correct", "answer", "revisits_z_walk"} <= set(t.columns)
    assert t["model"].tolist() == ["r1"] * 3 + ["base"] * 3
    empty = t[t.trace_id == "empty"].iloc[0]
    assert empty["n_steps"] == 0 and pd.isna(empty["n_cycles"])
    assert res.nodespace.k_ == 6 and res.nodes.shape == (115,)
    # each row equals the single-trace function on that trace's nodes and states
    off = res.corpus.offsets
    one = topology_metrics(res.nodes[off[2] : off[3]], res.corpus.states[off[2] : off[3]])
    assert t.iloc[2]["n_cycles"] == one["n_cycles"]
    assert t.iloc[2]["diameter"] == pytest.approx(one["diameter"])
    assert res.aha["group"].tolist() == ["reasoning", "base"]
    assert res.aha["marker_source"].tolist() == ["labels", "lexicon"]  # base has no labels


def test_reuse_nodespace_and_layer_check(two_stores, tmp_path):
    ns = NodeSpace(NodeSpaceConfig(k=5)).fit(
        two_stores[0].states(3), layer=3, pool="mean", hook="resid_post"
    )
    path = ns.save(tmp_path / "ns")
    res = analyze_corpus([two_stores[1]], GraphConfig(layer=3), nodespace=NodeSpace.load(path))
    assert res.nodespace.k_ == 5 and res.nodes.max() < 5
    wrong = NodeSpace(NodeSpaceConfig(k=5)).fit(two_stores[0].states(3), layer=7)
    with pytest.raises(ConfigError, match="layer"):
        analyze_corpus([two_stores[1]], GraphConfig(layer=3), nodespace=wrong)


def test_graph_table_shortcut_is_deterministic(two_stores):
    a = graph_table(two_stores, 3, k=6)
    b = graph_table(two_stores, 3, k=6)
    pd.testing.assert_frame_equal(a, b)


def test_empty_and_bad_stores(tmp_path):
    with pytest.raises(ConfigError, match="hold no steps"):
        load_corpus([FakeStore(tmp_path / "e", [], extra_traces=("a",))], 3)
    with pytest.raises(ConfigError):
        load_corpus([FakeStore(tmp_path / "x", [5])], 9)
    bad = FakeStore(tmp_path / "bad", [4, 4])
    bad.steps = bad.steps.iloc[[0, 1, 4, 2, 3, 5, 6, 7]].reset_index(drop=True)
    with pytest.raises(ConfigError, match="contiguous"):
        load_corpus([bad], 3)
    unordered = FakeStore(tmp_path / "u", [4])
    unordered.steps["step"] = [0, 2, 1, 3]
    with pytest.raises(StoreError, match="ordered"):
        load_corpus([unordered], 3)
    short = FakeStore(tmp_path / "s", [4])
    short._states = short._states[:3]
    with pytest.raises(StoreError, match="state rows"):
        load_corpus([short], 3)
    with pytest.raises(ConfigError):
        GraphConfig(layer=3, n_null=1)


def test_cli_writes_table_sidecar_and_nodespace(two_stores, tmp_path, monkeypatch):
    import mechgraph.store

    by_path = {str(s.path): s for s in two_stores}
    monkeypatch.setattr(mechgraph.store, "open_store", lambda p: by_path[str(p)])
    for s in two_stores:
        s.path.mkdir()
    app = typer.Typer()
    app.command("graph")(graph_command)
    app.command("noop")(lambda: None)
    out = tmp_path / "out" / "metrics.parquet"
    args = [
        "graph",
        *[str(s.path) for s in two_stores],
        "--layer",
        "3",
        "--k",
        "6",
        "--out",
        str(out),
        "--n-null",
        "3",
        "--null-kinds",
        "shuffle",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(out)
    assert (
        len(t) == 6 and "n_cycles" in t and "revisits_z_shuffle" in t and "revisits_z_walk" not in t
    )
    doc = json.loads((out.parent / "metrics.parquet.json").read_text())
    assert doc["k_used"] == 6 and doc["config"]["layer"] == 3 and len(doc["aha"]) == 2
    ns = NodeSpace.load(out.parent / "metrics.nodespace")
    # reuse the saved node space: same nodes, same table
    out2 = tmp_path / "out" / "again.parquet"
    plots = tmp_path / "plots"
    r2 = CliRunner().invoke(
        app,
        [
            *args[:-6],
            "--nodes",
            str(out.parent / "metrics.nodespace"),
            "--out",
            str(out2),
            "--plots",
            str(plots),
            "--plot-method",
            "pca",
        ],
    )
    assert r2.exit_code == 0, r2.output
    t2 = pd.read_parquet(out2)
    pd.testing.assert_series_equal(t2["n_cycles"], t["n_cycles"])
    assert ns.k_ == 6
    assert (plots / "trajectories_label.png").is_file() and (
        plots / "compare_n_cycles.html"
    ).is_file()
    assert (plots / "plotly.min.js").is_file() and len(list((plots / "graphs").glob("*.png"))) == 5
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    bad = CliRunner().invoke(
        app, ["graph", str(two_stores[0].path), "--layer", "3", "--out", str(tmp_path / "m.csv")]
    )
    assert bad.exit_code != 0 and "parquet" in str(bad.exception)
    missing = CliRunner().invoke(app, ["graph", str(tmp_path / "nope"), "--layer", "3"])
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception)
