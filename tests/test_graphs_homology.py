"""Persistent homology of step trajectories (needs ripser; skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ripser")

from mechgraph.graphs.homology import HOMOLOGY_COLUMNS, homology_table, trajectory_homology


def circle(n=24, r=1.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[r * np.cos(t), r * np.sin(t), np.zeros(n)]


def test_circle_has_one_big_loop_and_line_has_none():
    h = trajectory_homology(circle())
    assert h["h1_count"] >= 1 and h["h1_max_persistence"] > 1.0
    line = np.c_[np.arange(20.0), np.zeros(20)]
    assert trajectory_homology(line)["h1_count"] == 0
    assert trajectory_homology(line, trajectory=False)["h1_count"] == 0


def test_scale_and_order():
    a = trajectory_homology(circle())
    b = trajectory_homology(circle(r=10.0))
    assert b["h1_total_persistence"] == pytest.approx(10 * a["h1_total_persistence"])
    assert b["h1_total_persistence_norm"] == pytest.approx(a["h1_total_persistence_norm"])
    x = circle()
    perm = np.random.default_rng(0).permutation(len(x))
    # the point cloud filtration ignores order, the trajectory filtration does not
    # (the normalised total divides by the mean consecutive distance, which depends on it)
    keys = ("h1_count", "h1_total_persistence", "h1_max_persistence")
    cloud_perm = trajectory_homology(x[perm], trajectory=False)
    cloud = trajectory_homology(x, trajectory=False)
    assert [cloud_perm[k] for k in keys] == pytest.approx([cloud[k] for k in keys])
    assert trajectory_homology(x[perm]) != pytest.approx(trajectory_homology(x))


def test_tiny_trajectories():
    h = trajectory_homology(np.ones((3, 2)))
    assert h["h1_count"] == 0 and np.isnan(h["h1_total_persistence_norm"])


def test_table_with_nulls_is_seeded():
    rng = np.random.default_rng(0)
    x = np.concatenate([circle(12), rng.normal(size=(10, 3))])
    nodes = rng.integers(0, 4, len(x))
    off = np.array([0, 12, 22])
    t1 = homology_table(x, off, nodes=nodes, n_null=4, seed=1)
    t2 = homology_table(x, off, nodes=nodes, n_null=4, seed=1)
    assert t1.equals(t2) and len(t1) == 2
    assert set(HOMOLOGY_COLUMNS) <= set(t1.columns)
    assert {"h1_count_z_shuffle", "h1_total_persistence_null_walk"} <= set(t1.columns)


def test_analyze_corpus_adds_homology_columns():
    import pandas as pd

    from mechgraph.graphs import GraphConfig, NodeSpaceConfig, analyze_corpus

    class Tiny:
        path = "tiny"
        rng = np.random.default_rng(0)
        steps = pd.DataFrame(
            {
                "trace_id": np.repeat(["a", "b"], [9, 7]),
                "step": np.r_[0:9, 0:7],
                "text": "So x = 1.",
            }
        )
        traces = pd.DataFrame({"trace_id": ["a", "b"], "model": "m"})
        _x = rng.normal(size=(16, 4))

        def states(self, layer, pool="mean", hook="resid_post"):
            return self._x

    cfg = GraphConfig(layer=0, nodes=NodeSpaceConfig(k=3), homology=True, homology_null=2)
    t = analyze_corpus([Tiny()], cfg).table
    assert {"h1_count", "h1_count_z_shuffle", "h1_total_persistence_null_walk"} <= set(t.columns)
    assert len(t) == 2
