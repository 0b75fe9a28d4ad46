"""Null baselines: shuffles, corpus random walks, z-scores; aha odds ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import contingency, fisher_exact

from mechgraph.errors import ConfigError
from mechgraph.graphs import (
    aha_table,
    corpus_walks,
    null_zscores,
    odds_ratio_ci,
    reconsideration_mask,
    shuffled_orders,
    step_distances,
)


def corpus(seed=0, lens=(12, 1, 25, 8)):
    rng = np.random.default_rng(seed)
    nodes = rng.integers(0, 6, sum(lens))
    off = np.r_[0, np.cumsum(lens)].astype(np.int64)
    return nodes, off


def test_shuffles_are_within_trace_permutations():
    _, off = corpus()
    o = shuffled_orders(off, 5, np.random.default_rng(0))
    for r in range(5):
        for b in range(len(off) - 1):
            assert sorted(o[r, off[b] : off[b + 1]]) == list(range(off[b], off[b + 1]))
    assert not np.array_equal(o[0], o[1])


def test_walks_follow_the_corpus_transitions():
    nodes, off = corpus()
    groups = ["x", "y", "x", "y"]
    d = step_distances(np.random.default_rng(1).normal(size=(nodes.size, 3)), off)
    w, wd = corpus_walks(nodes, off, 7, np.random.default_rng(2), groups=groups, distances=d)
    assert w.shape == wd.shape == (7, nodes.size)
    seen = {g: {} for g in ("x", "y")}
    for b in range(4):
        p = nodes[off[b] : off[b + 1]]
        for t in range(p.size - 1):
            seen[groups[b]].setdefault((p[t], p[t + 1]), []).append(d[off[b] + t])
    dead = {g: {u for u in range(6)} - {a for a, _ in seen[g]} for g in seen}
    for r in range(7):
        for b in range(4):
            p = w[r, off[b] : off[b + 1]]
            assert p[0] == nodes[off[b]]  # same start, same length
            assert math.isnan(wd[r, off[b + 1] - 1])
            for t in range(p.size - 1):
                pair = (p[t], p[t + 1])
                if p[t] in dead[groups[b]]:
                    continue  # a jump by visit frequency
                assert pair in seen[groups[b]]
                assert wd[r, off[b] + t] == pytest.approx(np.mean(seen[groups[b]][pair]))


def test_walks_are_seeded():
    nodes, off = corpus()
    a, _ = corpus_walks(nodes, off, 3, np.random.default_rng(9))
    b, _ = corpus_walks(nodes, off, 3, np.random.default_rng(9))
    assert np.array_equal(a, b)


def test_zscores_columns_determinism_and_signs():
    nodes, off = corpus(lens=(30, 30, 30))
    v = np.random.default_rng(0).normal(size=(nodes.size, 4))
    z1 = null_zscores(nodes, off, vectors=v, n_null=12, seed=4)
    z2 = null_zscores(nodes, off, vectors=v, n_null=12, seed=4)
    assert z1.equals(z2)
    assert {
        "revisits_z_shuffle",
        "revisits_null_walk",
        "diameter_norm_z_walk",
        "small_world_sigma_z_shuffle",
    } <= set(z1.columns)
    assert len(z1) == 3
    # a walk that cycles 0,1,2,... has far more revisits than its own shuffles can lack
    loop = np.tile([0, 1, 2], 20)
    z = null_zscores(loop, np.array([0, loop.size]), n_null=20, kinds=["shuffle"])
    assert z["revisits_z_shuffle"].iloc[0] > 0 or np.isnan(z["revisits_z_shuffle"].iloc[0])
    # no spread in the null -> NaN, not inf
    z0 = null_zscores([0, 0, 0], np.array([0, 3]), n_null=5, kinds=["shuffle"])
    assert np.isnan(z0["revisits_z_shuffle"].iloc[0])


def test_zscore_errors():
    nodes, off = corpus()
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=1)
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=5, kinds=["bogus"])


# ------------------------------------------------------------------------------ aha
def test_lexicon_and_labels():
    texts = [
        "Wait, that's wrong.",
        "So x = 2.",
        "But wait, maybe not.",
        "Let me double-check.",
        "Hmm.",
        "I actually like it.",
        "**Actually**, no.",
        "awaiting",
    ]
    mask, src = reconsideration_mask(texts)
    assert src == "lexicon"
    assert mask.tolist() == [True, False, True, True, True, False, True, False]
    labels = ["uncertainty_management", None, "active_computation", "self_checking,fact_retrieval"]
    mask, src = reconsideration_mask(texts[:4], labels)
    assert src == "labels" and mask.tolist() == [True, False, False, True]
    mask, src = reconsideration_mask(texts[:4], labels, source="lexicon")
    assert src == "lexicon" and mask.tolist() == [True, False, True, True]
    with pytest.raises(ConfigError):
        reconsideration_mask(None, None)


def test_odds_ratio_matches_references():
    a, b, c, d = 12, 5, 7, 30
    or_, lo, hi, corr = odds_ratio_ci(a, b, c, d)
    assert not corr and or_ == pytest.approx(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert lo == pytest.approx(or_ * math.exp(-1.959964 * se), rel=1e-5)
    assert hi == pytest.approx(or_ * math.exp(1.959964 * se), rel=1e-5)
    assert contingency.odds_ratio([[a, b], [c, d]], kind="sample").statistic == pytest.approx(or_)
    or0, lo0, hi0, corr0 = odds_ratio_ci(0, 5, 7, 30)  # Haldane-Anscombe
    assert corr0 and or0 == pytest.approx(0.5 * 30.5 / (5.5 * 7.5)) and lo0 < or0 < hi0
    assert math.isnan(odds_ratio_ci(0, 0, 3, 4)[0])


def test_aha_table_counts_groups_and_lag():
    nodes = np.array([0, 1, 2, 1, 3, 1, 0, 1, 2, 3, 4, 2])
    off = np.array([0, 6, 12])
    markers = np.zeros(12, bool)
    markers[[3, 5, 10]] = True
    t = aha_table(nodes, off, markers)
    # eligible steps: 2..5 and 8..11; returns at 3, 5, 11
    row = t.iloc[0]
    assert (row.a, row.b, row.c, row.d) == (2, 1, 1, 4) and row.n_eligible == 8
    assert row.p_fisher == pytest.approx(fisher_exact([[2, 1], [1, 4]])[1])
    g = aha_table(nodes, off, markers, groups=["m1", "m2"])
    assert g["group"].tolist() == ["m1", "m2"] and g["n_eligible"].tolist() == [4, 4]
    lagged = aha_table(nodes, off, markers, lag=1).iloc[0]
    # marker at 10 pairs with the return at 11
    assert lagged.a == 1
    with pytest.raises(ConfigError):
        aha_table(nodes, off, markers[:5])
